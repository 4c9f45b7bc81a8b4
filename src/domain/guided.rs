//! The guided flow: the conversation driven without a model.
//!
//! Short numbered questions built from the owner's catalog; answers are
//! understood by code (a number, or a word that names one option). It fills
//! the same job details the model would, so the same engine prices them.

use chrono::NaiveDate;
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::availability::DateFilter;
use super::conversation::{JobDetails, JobUpdate, OfferedSlot};
use super::quote::{ModifierKind, PricingConfig, Selected};
use super::when::{self, ClockTime};
use crate::domain::business_kind::BusinessKind;

/// The next thing the flow needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    Size,
    /// Items with labour of their own (`pricing.junk.items`): a piano needs
    /// its own crew.
    LabourItems,
    Bedrooms,
    Bathrooms,
    CleanType,
    Extras,
    /// How many of a chosen per-unit or per-item extra (index into the
    /// catalog's modifiers).
    Quantity(usize),
    /// The yes-or-no question of a discount (index into the catalog's
    /// discounts).
    Discount(usize),
}

/// `JobDetails::answered` key of the items-with-labour question.
const LABOUR_ITEMS: &str = "labour_items";
/// `JobDetails::answered` key of the extras menu, once answered.
const EXTRAS_MENU: &str = "extras";
/// `JobDetails::answered` key: free text named some extras, so the menu is
/// still asked for the others ("a mattress" says nothing about stairs).
const EXTRAS_NAMED: &str = "extras_named";

fn discount_key(id: &str) -> String {
    format!("discount:{id}")
}

/// The extras a customer is asked about, as indices into the catalog's
/// modifiers. A surcharge that follows from the date (weekend, same day) is
/// priced from the opening, never asked: there is no date yet.
fn askable_extras(pricing: &PricingConfig) -> Vec<usize> {
    (0..pricing.modifiers.len())
        .filter(|&i| !pricing.modifiers[i].depends_on_date())
        .collect()
}

/// How the flow notes, for the crew, the loose things a customer named.
const ITEMS_NAMED: &str = "Items named: ";

/// Loose things were named (a couch, chairs, boxes) but no size fits them:
/// an item with labour of its own (a piano) priced alone would leave them
/// out of the price, so the size is still asked.
fn loose_things_unsized(job: &JobDetails) -> bool {
    job.size.is_none() && job.notes.as_deref().is_some_and(|n| n.contains(ITEMS_NAMED))
}

/// What is still missing, in the order it is asked; `None` when the job can
/// be priced.
pub fn next_question(job: &JobDetails, kind: BusinessKind, pricing: &PricingConfig) -> Option<Question> {
    let answered = |key: &str| job.answered.iter().any(|a| a == key);
    let extras_pending = askable_extras(pricing)
        .iter()
        .any(|&i| !job.modifiers.iter().any(|m| m.id == pricing.modifiers[i].id))
        && !answered(EXTRAS_MENU)
        && (!job.extras_answered || answered(EXTRAS_NAMED));
    let quantity_pending = || {
        job.modifiers.iter().find_map(|selected| {
            let i = pricing.modifiers.iter().position(|m| m.id == selected.id)?;
            let counted = matches!(
                pricing.modifiers[i].kind,
                ModifierKind::PerUnit { .. } | ModifierKind::PerItem { .. }
            );
            (counted && !job.quantities_answered.contains(&selected.id)).then_some(Question::Quantity(i))
        })
    };
    let discount_pending = || {
        pricing
            .discounts
            .iter()
            .position(|d| {
                d.question.is_some()
                    && d.applies_to(job.clean_type.as_deref())
                    && !job.discounts.contains(&d.id)
                    && !job.answered.contains(&discount_key(&d.id))
            })
            .map(Question::Discount)
    };
    let question = match kind {
        BusinessKind::JunkRemoval => {
            let labour_pending = !pricing.junk.items.is_empty()
                && job.items.is_empty()
                && !job.answered.iter().any(|a| a == LABOUR_ITEMS);
            if job.size.is_none() && (job.items.is_empty() || loose_things_unsized(job)) {
                Some(Question::Size)
            } else if labour_pending {
                Some(Question::LabourItems)
            } else if extras_pending {
                Some(Question::Extras)
            } else {
                None
            }
        }
        BusinessKind::Maid => {
            if job.bedrooms.is_none() {
                Some(Question::Bedrooms)
            } else if job.bathrooms.is_none() {
                Some(Question::Bathrooms)
            } else if job.clean_type.is_none() {
                Some(Question::CleanType)
            } else if extras_pending {
                Some(Question::Extras)
            } else {
                None
            }
        }
    };
    question.or_else(quantity_pending).or_else(discount_pending)
}

fn numbered(options: &[String]) -> String {
    options
        .iter()
        .enumerate()
        .map(|(i, o)| format!("{}) {o}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text of a question.
pub fn ask(question: Question, pricing: &PricingConfig) -> String {
    match question {
        Question::Size => {
            let options: Vec<String> = pricing.junk.tiers.iter().map(|t| t.label.clone()).collect();
            format!("What needs to go? Reply with a number:\n{}", numbered(&options))
        }
        Question::LabourItems => {
            let options: Vec<String> = pricing.junk.items.iter().map(|t| t.label.clone()).collect();
            format!(
                "Anything that needs extra hands? Reply with the numbers that apply, or 0 for none:\n{}",
                numbered(&options)
            )
        }
        Question::Bedrooms => "How many bedrooms? Reply with a number (0 for a studio).".into(),
        Question::Bathrooms => "How many bathrooms? Reply with a number, like 2 or 1.5.".into(),
        Question::CleanType => {
            let options: Vec<String> = pricing.maid.clean_types.iter().map(|c| c.label.clone()).collect();
            format!("Which clean? Reply with a number:\n{}", numbered(&options))
        }
        Question::Extras => {
            let options: Vec<String> = askable_extras(pricing)
                .into_iter()
                .map(|i| pricing.modifiers[i].label.clone())
                .collect();
            format!(
                "Any of these? Reply with the numbers that apply, like 1 3, or 0 for none:\n{}",
                numbered(&options)
            )
        }
        Question::Quantity(i) => match pricing.modifiers.get(i).map(|m| (&m.label, &m.kind)) {
            Some((label, ModifierKind::PerUnit { unit, .. })) => {
                format!("{label}: how many {unit}? Reply with a number.")
            }
            Some((label, _)) => format!("{label}: how many? Reply with a number."),
            None => "How many? Reply with a number.".into(),
        },
        Question::Discount(i) => match pricing.discounts.get(i).and_then(|d| d.question.as_deref()) {
            Some(question) => format!("{question} Reply YES or NO."),
            None => "Reply YES or NO.".into(),
        },
    }
}

/// Understands an answer to `question` about `job`, or `None`.
pub fn interpret(
    question: Question,
    text: &str,
    pricing: &PricingConfig,
    job: &JobDetails,
) -> Option<JobUpdate> {
    match question {
        Question::Size => {
            let labels: Vec<&str> = pricing.junk.tiers.iter().map(|t| t.label.as_str()).collect();
            let i = choice(text, labels.len()).or_else(|| keyword_match(text, &labels))?;
            Some(JobUpdate {
                size: Some(pricing.junk.tiers[i].id.clone()),
                ..JobUpdate::default()
            })
        }
        Question::LabourItems => {
            let picked = choices(text, pricing.junk.items.len())?;
            let mut items = job.items.clone();
            for i in picked {
                let id = &pricing.junk.items[i].id;
                if !items.iter().any(|s| &s.id == id) {
                    items.push(Selected {
                        id: id.clone(),
                        quantity: 1,
                    });
                }
            }
            Some(JobUpdate {
                items: (items != job.items).then_some(items),
                answered: Some(LABOUR_ITEMS.into()),
                ..JobUpdate::default()
            })
        }
        Question::Bedrooms => {
            let lower = text.trim().to_lowercase();
            let n = if lower.contains("studio") {
                Some(0)
            } else {
                count(text)
            }?;
            (n <= 20).then(|| JobUpdate {
                bedrooms: Some(n),
                ..JobUpdate::default()
            })
        }
        Question::Bathrooms => {
            let n = decimal(text)?;
            (n >= Decimal::ZERO && n <= Decimal::from(20) && (n * Decimal::TWO).fract().is_zero()).then(
                || JobUpdate {
                    bathrooms: Some(n),
                    ..JobUpdate::default()
                },
            )
        }
        Question::CleanType => {
            let labels: Vec<&str> = pricing
                .maid
                .clean_types
                .iter()
                .map(|c| c.label.as_str())
                .collect();
            let i = choice(text, labels.len()).or_else(|| keyword_match(text, &labels))?;
            Some(JobUpdate {
                clean_type: Some(pricing.maid.clean_types[i].id.clone()),
                ..JobUpdate::default()
            })
        }
        Question::Quantity(i) => {
            let id = pricing.modifiers.get(i)?.id.clone();
            let n = count(text)?;
            (1..=50).contains(&n).then(|| JobUpdate {
                quantity_of: Some(Selected { id, quantity: n }),
                ..JobUpdate::default()
            })
        }
        Question::Extras => {
            let askable = askable_extras(pricing);
            let picked = choices(text, askable.len())?;
            // Added to what free text already named, whose counts stand.
            let mut modifiers = job.modifiers.clone();
            for i in picked {
                let id = &pricing.modifiers[askable[i]].id;
                if !modifiers.iter().any(|m| &m.id == id) {
                    modifiers.push(Selected {
                        id: id.clone(),
                        quantity: 1,
                    });
                }
            }
            Some(JobUpdate {
                modifiers: Some(modifiers),
                answered: Some(EXTRAS_MENU.into()),
                ..JobUpdate::default()
            })
        }
        Question::Discount(i) => {
            let id = pricing.discounts.get(i)?.id.clone();
            let yes = yes_or_no(text)?;
            let mut discounts = job.discounts.clone();
            if yes && !discounts.contains(&id) {
                discounts.push(id.clone());
            }
            Some(JobUpdate {
                discounts: yes.then_some(discounts),
                answered: Some(discount_key(&id)),
                ..JobUpdate::default()
            })
        }
    }
}

/// A yes or a no, said plainly ("yes", "yep, first time", "nope").
pub fn yes_or_no(text: &str) -> Option<bool> {
    let t = clean(text);
    let first = t.split(|c: char| !c.is_alphanumeric()).find(|w| !w.is_empty())?;
    const YES: [&str; 10] = [
        "yes",
        "y",
        "yep",
        "yeah",
        "yup",
        "ya",
        "sure",
        "correct",
        "definitely",
        "absolutely",
    ];
    const NO: [&str; 6] = ["no", "n", "nope", "nah", "not", "never"];
    if YES.contains(&first) {
        Some(true)
    } else if NO.contains(&first) {
        Some(false)
    } else {
        None
    }
}

fn clean(text: &str) -> String {
    text.trim()
        .trim_start_matches('#')
        .trim_end_matches(['.', ')', '!'])
        .trim()
        .to_lowercase()
}

const NUMBER_WORDS: [&str; 11] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
];

/// A whole-message number: "3", "3)", "#3", "three", "option 3".
fn count(text: &str) -> Option<u32> {
    let t = clean(text);
    let t = t.strip_prefix("option").map(str::trim).unwrap_or(&t);
    t.parse()
        .ok()
        .or_else(|| NUMBER_WORDS.iter().position(|w| *w == t).map(|i| i as u32))
}

fn decimal(text: &str) -> Option<Decimal> {
    let t = clean(text);
    t.parse::<Decimal>().ok().or_else(|| count(&t).map(Decimal::from))
}

/// A 1-based menu choice, as a 0-based index.
pub fn choice(text: &str, options: usize) -> Option<usize> {
    let n = count(text)? as usize;
    (1..=options).contains(&n).then(|| n - 1)
}

/// Several menu choices ("1 3", "1, 3 and 4"); "0" or "none" for none.
fn choices(text: &str, options: usize) -> Option<Vec<usize>> {
    let t = clean(text);
    if matches!(t.as_str(), "0" | "none" | "no" | "nope" | "nothing" | "n/a") {
        return Some(Vec::new());
    }
    let mut picked = Vec::new();
    for part in t.split([',', ' ', '&']).filter(|p| !p.is_empty() && *p != "and") {
        let i = choice(part, options)?;
        if !picked.contains(&i) {
            picked.push(i);
        }
    }
    (!picked.is_empty()).then_some(picked)
}

const STOPWORDS: [&str; 12] = [
    "about", "the", "and", "for", "with", "our", "your", "truck", "more", "clean", "load", "items",
];

/// The one option whose distinctive words (found in no other option) the
/// text contains.
fn keyword_match(text: &str, labels: &[&str]) -> Option<usize> {
    let words = |s: &str| -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() >= 3 && !STOPWORDS.contains(w))
            .map(str::to_string)
            .collect()
    };
    let text_words = words(text);
    let mut matched = None;
    for (i, label) in labels.iter().enumerate() {
        let distinctive: Vec<String> = words(label)
            .into_iter()
            .filter(|w| {
                labels
                    .iter()
                    .enumerate()
                    .all(|(j, other)| j == i || !words(other).contains(w))
            })
            .collect();
        if distinctive.iter().any(|w| text_words.contains(w)) {
            if matched.is_some() {
                return None;
            }
            matched = Some(i);
        }
    }
    matched
}

// ---------------------------------------------------------------------------
// Free text: "a couch, a fridge and two mattresses", "3 bed 2 bath deep
// clean". Catalog entries are found by the words of their own labels and ids,
// widened by a built-in list of synonyms, so any owner's catalog works.

/// Things people ask to have hauled or cleaned, each group one thing under
/// several names.
/// A catalog entry whose label or id names any of a group's words answers
/// to all of them.
const THINGS: &[&[&str]] = &[
    &[
        "couch",
        "sofa",
        "loveseat",
        "love seat",
        "sectional",
        "settee",
        "futon",
        "sleeper sofa",
    ],
    &["fridge", "refrigerator", "freezer", "mini fridge", "icebox"],
    &["hot tub", "spa", "jacuzzi", "hottub", "whirlpool tub"],
    &["mattress", "box spring", "boxspring"],
    &["bed frame", "bedframe", "headboard", "bunk bed", "bed"],
    &["washer", "dryer", "washing machine"],
    &["piano", "upright piano", "grand piano", "baby grand", "organ"],
    &["shed", "playhouse", "shed teardown"],
    &["stairs", "stair", "flight", "staircase", "stairway", "step"],
    &["tv", "television", "flat screen"],
    &["stove", "oven", "range hood", "cooktop"],
    &["dishwasher"],
    &["microwave"],
    &["water heater"],
    &["air conditioner", "ac unit", "window unit"],
    &["chair", "armchair", "recliner", "office chair"],
    &["table", "dining table", "coffee table", "end table"],
    &["desk"],
    &["dresser", "chest of drawers", "armoire", "wardrobe", "nightstand"],
    &["bookshelf", "bookcase", "shelf", "shelving"],
    &["treadmill", "elliptical", "exercise bike", "weight bench"],
    &["safe", "gun safe", "gun cabinet"],
    &["bike", "bicycle"],
    &["grill", "bbq", "barbecue"],
    &["lawn mower", "mower"],
    &["box"],
    &["bag", "trash bag", "garbage bag"],
    &["tire"],
    &["carpet", "rug"],
    &["trampoline"],
    &["crib"],
    &["lamp"],
    &["pet", "pet hair", "dog", "cat"],
    &["window"],
];

/// Kinds of clean under their common names, matched to the owner's clean
/// types the same way.
const CLEANS: &[&[&str]] = &[
    &[
        "standard",
        "regular",
        "basic",
        "normal",
        "routine",
        "maintenance",
        "general",
        "weekly",
        "biweekly",
    ],
    &["deep", "thorough", "spring", "detailed"],
    &[
        "move",
        "move out",
        "moveout",
        "move in",
        "movein",
        "moving",
        "vacate",
        "end of lease",
    ],
];

/// Words that say nothing about which entry a label means.
const LABEL_NOISE: [&str; 33] = [
    "a", "an", "the", "or", "and", "of", "with", "for", "in", "inside", "interior", "on", "per", "item",
    "disposal", "removal", "service", "fee", "extra", "clean", "cleaning", "up", "to", "out", "our", "your",
    "more", "about", "truck", "load", "heavy", "large", "small",
];

/// A loose handful: up to this many things with no size named are priced
/// as the smallest size; more get the size question.
const LOOSE_ITEMS_FOR_SMALLEST_SIZE: u32 = 4;

fn singular(word: &str) -> String {
    let w = word;
    if w.len() > 4
        && (w.ends_with("sses") || w.ends_with("shes") || w.ends_with("ches") || w.ends_with("xes"))
    {
        w[..w.len() - 2].to_string()
    } else if w.len() > 4 && w.ends_with("ies") {
        format!("{}y", &w[..w.len() - 3])
    } else if w.len() >= 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") {
        w[..w.len() - 1].to_string()
    } else {
        w.to_string()
    }
}

/// Words (letters and digits together, "1.5" kept whole, "1,800" read as
/// 1800) and separators: "," for , ; & + and line or sentence ends, "/"
/// for a slash.
fn job_tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    let mut tokens = Vec::new();
    let mut word = String::new();
    let digit_at = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    for (i, &c) in chars.iter().enumerate() {
        let inside_number = i > 0 && digit_at(i - 1) && digit_at(i + 1);
        let thousands = c == ',' && inside_number && (1..=3).all(|k| digit_at(i + k)) && !digit_at(i + 4);
        if c.is_alphanumeric() || (c == '.' && inside_number) {
            word.push(c);
        } else if thousands || c == '\'' || c == '\u{2019}' {
            // "1,800" is one number; "don't" one word.
        } else {
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            if matches!(c, ',' | ';' | '&' | '+' | '\n' | '.' | '!' | '?') {
                tokens.push(",".into());
            } else if c == '/' {
                tokens.push("/".into());
            }
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

/// A stated quantity: digits, a number word, "a", "couple", "pair".
fn quantity_word(word: &str) -> Option<u32> {
    match word {
        "a" | "an" | "single" => Some(1),
        "couple" | "pair" | "both" => Some(2),
        _ => word
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=99).contains(n))
            .or_else(|| super::number_words::small_number_word(word).filter(|n| (1..=99).contains(n))),
    }
}

/// What a phrase in the text stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `pricing.junk.items[i]`: an item with labour of its own.
    Item(usize),
    /// `pricing.modifiers[i]`.
    Modifier(usize),
    /// `pricing.maid.clean_types[i]`.
    Clean(usize),
    /// A thing to haul with no catalog entry of its own.
    Thing,
}

fn label_words(label: &str) -> Vec<String> {
    label
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !LABEL_NOISE.contains(w) && !w.chars().all(|c| c.is_ascii_digit()))
        .map(singular)
        .collect()
}

fn phrase(words: &str) -> Vec<String> {
    words.split_whitespace().map(singular).collect()
}

/// The phrases an entry answers to: its label's and id's own words, and
/// every name of a synonym group that shares one of them.
fn entry_phrases(texts: &[&str], groups: &[&[&'static str]]) -> Vec<Vec<String>> {
    let words: Vec<String> = texts.iter().flat_map(|t| label_words(t)).collect();
    let joined = format!(" {} ", words.join(" "));
    let mut phrases: Vec<Vec<String>> = words.iter().map(|w| vec![w.clone()]).collect();
    for group in groups {
        let shares = group.iter().any(|name| {
            let name = phrase(name).join(" ");
            joined.contains(&format!(" {name} "))
        });
        if shares {
            phrases.extend(group.iter().map(|name| phrase(name)));
        }
    }
    phrases
}

/// The phrase table for a catalog: its entries first (so the owner's
/// catalog wins), then the built-in things.
fn phrase_table(kind: BusinessKind, pricing: &PricingConfig) -> Vec<(Vec<String>, Target)> {
    let mut table = Vec::new();
    if kind == BusinessKind::JunkRemoval {
        for (i, item) in pricing.junk.items.iter().enumerate() {
            let id = item.id.replace('_', " ");
            for p in entry_phrases(&[&item.label, &id], THINGS) {
                table.push((p, Target::Item(i)));
            }
        }
    }
    for (i, m) in pricing.modifiers.iter().enumerate() {
        // A percentage is a circumstance (same day, weekend), not a thing
        // a customer names; it is chosen from the extras menu if at all.
        if m.depends_on_date() || matches!(m.kind, ModifierKind::Percent { .. }) {
            continue;
        }
        let id = m.id.replace('_', " ");
        let unit = match &m.kind {
            ModifierKind::PerUnit { unit, .. } => unit.replace("(s)", ""),
            _ => String::new(),
        };
        for p in entry_phrases(&[&m.label, &id, &unit], THINGS) {
            table.push((p, Target::Modifier(i)));
        }
    }
    if kind == BusinessKind::Maid {
        for (i, c) in pricing.maid.clean_types.iter().enumerate() {
            let id = c.id.replace('_', " ");
            for p in entry_phrases(&[&c.label, &id], CLEANS) {
                table.push((p, Target::Clean(i)));
            }
        }
    } else {
        for group in THINGS {
            for name in *group {
                table.push((phrase(name), Target::Thing));
            }
        }
    }
    table
}

/// One mention of a catalog entry or thing: which, how many if the text
/// says, and the words used.
#[derive(Debug)]
struct Mention {
    target: Target,
    quantity: Option<u32>,
    /// The words as the customer wrote them, in the singular: "box spring".
    said: String,
}

fn mentions(tokens: &[String], table: &[(Vec<String>, Target)]) -> Vec<Mention> {
    let singulars: Vec<String> = tokens.iter().map(|t| singular(t)).collect();
    let mut found: Vec<Mention> = Vec::new();
    let mut last: Option<(Target, usize)> = None;
    let mut i = 0;
    while i < tokens.len() {
        // The longest phrase here; among equals, the first in the table.
        let mut best: Option<&(Vec<String>, Target)> = None;
        for entry in table {
            let here = !entry.0.is_empty() && singulars.get(i..i + entry.0.len()) == Some(entry.0.as_slice());
            if here && best.is_none_or(|b| entry.0.len() > b.0.len()) {
                best = Some(entry);
            }
        }
        let Some((p, target)) = best else {
            i += 1;
            continue;
        };
        let end = i + p.len();
        // "2 flights of stairs" is one mention.
        let continues = last.is_some_and(|(t, last_end)| {
            t == *target && tokens[last_end..i].iter().all(|w| w == "of" || w == "the") && i - last_end <= 2
        });
        if !continues {
            let mut quantity = None;
            for k in (i.saturating_sub(3)..i).rev() {
                let w = tokens[k].as_str();
                if [
                    ",", "/", "and", "or", "plus", "with", "few", "several", "some", "many", "lots", "bunch",
                ]
                .contains(&w)
                {
                    break;
                }
                if let Some(n) = quantity_word(w) {
                    quantity = Some(n);
                    break;
                }
            }
            // A thing named in the singular is one of it.
            let typed = &tokens[end - 1];
            if quantity.is_none() && singular(typed) == *typed {
                quantity = Some(1);
            }
            found.push(Mention {
                target: *target,
                quantity,
                said: singulars[i..end].join(" "),
            });
        }
        last = Some((*target, end));
        i = end;
    }
    found
}

/// What a free-text message says about the job, in the catalog's terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Understood {
    /// The fields found, to record as one update.
    pub update: JobUpdate,
    /// Counted extras whose number the text gave, recorded as answered.
    pub counted: Vec<Selected>,
    /// Things to haul that no size covers yet: the size is still to ask.
    pub needs_size: bool,
}

impl Understood {
    pub fn is_empty(&self) -> bool {
        self.update.is_empty() && !self.needs_size
    }

    /// The updates to record, in order.
    pub fn updates(self) -> Vec<JobUpdate> {
        let mut updates = Vec::new();
        if !self.update.is_empty() {
            updates.push(self.update);
        }
        updates.extend(self.counted.into_iter().map(|selected| JobUpdate {
            quantity_of: Some(selected),
            ..JobUpdate::default()
        }));
        updates
    }
}

fn add(list: &mut Vec<Selected>, id: &str, quantity: u32) {
    match list.iter_mut().find(|s| s.id == id) {
        Some(s) => s.quantity = s.quantity.saturating_add(quantity).min(50),
        None => list.push(Selected {
            id: id.to_string(),
            quantity: quantity.min(50),
        }),
    }
}

/// A size tier named in free text: only with a word about a load ("half a
/// truck", "a full load") or "few", so "a full size bed" is not a size.
fn tier_in(text: &str, pricing: &PricingConfig) -> Option<usize> {
    let words: Vec<String> = job_tokens(text).iter().map(|w| singular(w)).collect();
    let about_load = ["truck", "load", "truckload", "trailer", "pickup", "few"]
        .iter()
        .any(|w| words.iter().any(|x| x == w));
    let labels: Vec<&str> = pricing.junk.tiers.iter().map(|t| t.label.as_str()).collect();
    about_load.then(|| keyword_match(text, &labels)).flatten()
}

/// Rooms: "3 bed 2 bath", "2br/1ba", "3bd 2.5ba", "three bedrooms", "3/2",
/// "studio"; and square feet.
fn rooms(tokens: &[String]) -> (Option<u32>, Option<Decimal>, Option<u32>) {
    const BED: [&str; 7] = ["bed", "bedroom", "br", "bd", "bdr", "bdrm", "bedrm"];
    const BATH: [&str; 5] = ["bath", "bathroom", "ba", "bth", "bathrm"];
    const SQFT: [&str; 5] = ["sq", "sqft", "square", "sf", "ft"];
    let number = |w: &str| -> Option<Decimal> {
        w.parse::<Decimal>().ok().or_else(|| {
            quantity_word(w)
                .filter(|_| w != "a" && w != "an")
                .map(Decimal::from)
        })
    };
    let (mut beds, mut baths, mut sqft) = (None, None, None);
    for (i, w) in tokens.iter().enumerate() {
        if w == "studio" {
            beds = beds.or(Some(Decimal::ZERO));
            continue;
        }
        // "3br" in one word, or "3 br" / "three bedrooms" in two ("3 full baths").
        let split = w.find(|c: char| c.is_alphabetic()).filter(|&at| at > 0);
        let (n, unit) = match split {
            Some(at) => (number(&w[..at]), singular(&w[at..])),
            None => {
                let next = tokens.get(i + 1).map(|x| singular(x)).unwrap_or_default();
                let unit = if next == "full" || next == "half" {
                    tokens.get(i + 2).map(|x| singular(x)).unwrap_or_default()
                } else {
                    next
                };
                (number(w), unit)
            }
        };
        let Some(n) = n else { continue };
        if BED.contains(&unit.as_str()) {
            beds = beds.or(Some(n));
        } else if BATH.contains(&unit.as_str()) {
            baths = baths.or(Some(n));
        } else if SQFT.contains(&unit.as_str()) && n >= Decimal::from(100) {
            sqft = sqft.or(Some(n));
        }
    }
    // "3/2": bedrooms over bathrooms, when nothing else said which.
    if beds.is_none() && baths.is_none() {
        for x in tokens.windows(3) {
            if x[1] == "/"
                && let (Some(b), Some(h)) = (number(&x[0]), number(&x[2]))
                && b <= Decimal::from(10)
                && h <= Decimal::from(10)
            {
                beds = Some(b);
                baths = Some(h);
                break;
            }
        }
    }
    let beds = beds
        .filter(|b| b.fract().is_zero() && *b <= Decimal::from(20))
        .and_then(|b| b.to_string().parse().ok());
    let baths = baths.filter(|b| *b <= Decimal::from(20) && (*b * Decimal::TWO).fract().is_zero());
    let sqft = sqft
        .filter(|s| s.fract().is_zero() && *s <= Decimal::from(50_000))
        .and_then(|s| s.to_string().parse().ok());
    (beds, baths, sqft)
}

/// A name the customer gives unasked: "my name is Dana Smith, I have...".
/// Only that phrase: "I'm moving out" is not a name.
fn introduced_name(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let at = ["my name is ", "my name's "]
        .iter()
        .find_map(|p| lower.find(p).map(|i| i + p.len()))?;
    let rest = text.get(at..)?;
    let clause = rest.split([',', '.', ';', '!', '?', '\n']).next()?;
    let words: Vec<&str> = clause
        .split_whitespace()
        .take_while(|w| !["and", "i", "i'm", "we", "from", "at"].contains(&w.to_lowercase().as_str()))
        .take(3)
        .collect();
    customer_name(&words.join(" "))
}

/// Everything a free-text message says about the job, given what `job`
/// already holds (lists are merged, not replaced).
pub fn understand(text: &str, kind: BusinessKind, pricing: &PricingConfig, job: &JobDetails) -> Understood {
    let tokens = job_tokens(text);
    let table = phrase_table(kind, pricing);
    let found = mentions(&tokens, &table);
    let mut out = Understood::default();
    let mut items = job.items.clone();
    let mut modifiers = job.modifiers.clone();
    let mut things: Vec<(String, Option<u32>)> = Vec::new();
    let mut clean_type = None;
    for m in &found {
        match m.target {
            Target::Item(i) => add(&mut items, &pricing.junk.items[i].id, m.quantity.unwrap_or(1)),
            Target::Modifier(i) => {
                let def = &pricing.modifiers[i];
                let counted = matches!(
                    def.kind,
                    ModifierKind::PerUnit { .. } | ModifierKind::PerItem { .. }
                );
                if counted {
                    let n = m.quantity.unwrap_or(1);
                    add(&mut modifiers, &def.id, n);
                    if m.quantity.is_some() {
                        let total = modifiers
                            .iter()
                            .find(|s| s.id == def.id)
                            .map_or(n, |s| s.quantity);
                        out.counted.retain(|s| s.id != def.id);
                        out.counted.push(Selected {
                            id: def.id.clone(),
                            quantity: total,
                        });
                    }
                    if matches!(def.kind, ModifierKind::PerItem { .. }) {
                        things.push((m.said.clone(), m.quantity));
                    }
                } else if !modifiers.iter().any(|s| s.id == def.id) {
                    modifiers.push(Selected {
                        id: def.id.clone(),
                        quantity: 1,
                    });
                }
            }
            Target::Clean(i) => clean_type = clean_type.or(Some(pricing.maid.clean_types[i].id.clone())),
            Target::Thing => things.push((m.said.clone(), m.quantity)),
        }
    }
    let update = &mut out.update;
    if job.customer_name.is_none() {
        update.customer_name = introduced_name(text);
    }
    if items != job.items {
        update.items = Some(items);
    }
    if modifiers != job.modifiers {
        update.modifiers = Some(modifiers);
        let first_to_name_extras = !job.extras_answered || job.answered.iter().any(|a| a == EXTRAS_NAMED);
        if first_to_name_extras && !job.answered.iter().any(|a| a == EXTRAS_MENU) {
            update.answered = Some(EXTRAS_NAMED.into());
        }
    }
    match kind {
        BusinessKind::JunkRemoval => {
            if let Some(i) = tier_in(text, pricing) {
                update.size = Some(pricing.junk.tiers[i].id.clone());
            } else if job.size.is_none() && !things.is_empty() {
                let count: u32 = things.iter().map(|(_, n)| n.unwrap_or(2)).sum();
                let smallest = pricing
                    .junk
                    .tiers
                    .iter()
                    .min_by(|a, b| a.hours.cmp(&b.hours).then(a.crew.cmp(&b.crew)));
                match smallest {
                    Some(tier) if count <= LOOSE_ITEMS_FOR_SMALLEST_SIZE => {
                        update.size = Some(tier.id.clone())
                    }
                    _ => out.needs_size = true,
                }
            }
            if !things.is_empty() {
                let named: Vec<String> = things
                    .iter()
                    .map(|(name, n)| match n {
                        Some(n) if *n > 1 => format!("{n} x {name}"),
                        _ => name.clone(),
                    })
                    .collect();
                let said = format!("{ITEMS_NAMED}{}", named.join(", "));
                update.notes = Some(match &job.notes {
                    Some(notes) if !notes.contains(&said) => format!("{notes}; {said}"),
                    Some(notes) => notes.clone(),
                    None => said,
                });
            }
        }
        BusinessKind::Maid => {
            let (beds, baths, sqft) = rooms(&tokens);
            update.bedrooms = beds;
            update.bathrooms = baths;
            update.square_feet = sqft;
            update.clean_type = clean_type;
        }
    }
    out
}

/// Replies to a quote in the guided flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotedChoice {
    Book,
    Person,
}

pub const QUOTED_MENU: &str = "Reply 1 to book a time, or 2 to talk to a person.";

/// An explicit request for a person: the whole message ("person", "a
/// human please") or a clear phrase ("can I talk to someone"). A mention of
/// "someone" or "personal items" is not one.
pub fn wants_person(text: &str) -> bool {
    let t = clean(text);
    let t = t.trim_end_matches(" please").trim_start_matches("please ");
    const WHOLE: [&str; 10] = [
        "person",
        "a person",
        "human",
        "a human",
        "real person",
        "a real person",
        "agent",
        "owner",
        "the owner",
        "representative",
    ];
    const PHRASES: [&str; 12] = [
        "talk to a person",
        "speak to a person",
        "talk to someone",
        "speak to someone",
        "speak with someone",
        "talk with someone",
        "talk to a human",
        "talk to a real",
        "speak to a real",
        "talk to the owner",
        "speak to the owner",
        "have someone call me",
    ];
    WHOLE.contains(&t) || PHRASES.iter().any(|p| t.contains(p))
}

pub fn quoted_choice(text: &str) -> Option<QuotedChoice> {
    match choice(text, 2) {
        Some(0) => Some(QuotedChoice::Book),
        Some(1) => Some(QuotedChoice::Person),
        _ => {
            let t = clean(text);
            if ["book", "schedule", "yes", "yes please", "sure", "ok", "okay"].contains(&t.as_str()) {
                Some(QuotedChoice::Book)
            } else if wants_person(&t) {
                Some(QuotedChoice::Person)
            } else {
                None
            }
        }
    }
}

pub const ADDRESS_QUESTION: &str = "What's the address for the job?";
pub const RESCHEDULE_HINT: &str = "Need to change it? Reply R to reschedule, or CANCEL BOOKING to cancel it.";

/// What a customer's words ask for in time: a date or range, a part of
/// the day, an exact time or window.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub filter: DateFilter,
    pub at: Option<ClockTime>,
    /// "on Mon Nov 30 at 2pm": what was understood, for logs and tests. Not
    /// said to the customer: a text states only times that were offered.
    pub description: String,
}

impl Wanted {
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty() && self.at.is_none()
    }

    /// The filter for a new search: an exact time searches its part of
    /// the day.
    pub fn search_filter(&self) -> DateFilter {
        let mut filter = self.filter.clone();
        if let Some(at) = self.at {
            filter.part = Some(at.part());
        }
        filter
    }
}

fn clock_label(t: chrono::NaiveTime) -> String {
    use chrono::Timelike;
    let (pm, h) = t.hour12();
    let minutes = if t.minute() == 0 {
        String::new()
    } else {
        format!(":{:02}", t.minute())
    };
    format!("{h}{minutes}{}", if pm { "pm" } else { "am" })
}

/// Reads the customer's words about when, relative to `today`.
pub fn wanted(text: &str, today: NaiveDate) -> Wanted {
    let (filter, _) = when::resolve(text, today);
    let at = when::clock(text);
    let mut said = Vec::new();
    match (filter.from, filter.to) {
        (Some(a), Some(b)) if a == b => said.push(a.format("on %a %b %-d").to_string()),
        (Some(a), Some(b)) => said.push(format!(
            "from {} to {}",
            a.format("%a %b %-d"),
            b.format("%a %b %-d")
        )),
        _ => {}
    }
    match (at, filter.part) {
        (Some(at), _) => said.push(format!("at {}", clock_label(at.start))),
        (None, Some(part)) => said.push(
            match part {
                super::availability::PartOfDay::Morning => "in the morning",
                super::availability::PartOfDay::Afternoon => "in the afternoon",
                super::availability::PartOfDay::Evening => "in the evening",
            }
            .to_string(),
        ),
        (None, None) => {}
    }
    Wanted {
        filter,
        at,
        description: said.join(" "),
    }
}

/// Whether an offered opening is what the words ask for, judged on its
/// real local start (and its arrival window, as labelled), in day and time.
/// The offered openings the words fit. "At 2pm" fits both a 1-3pm and a
/// 2-4pm window; when exactly the asked time starts one or more of them,
/// those are what was meant.
pub fn fitting(offered: &[OfferedSlot], tz: Tz, wanted: &Wanted) -> Vec<usize> {
    let all: Vec<usize> = (0..offered.len())
        .filter(|&i| fits(&offered[i], tz, wanted))
        .collect();
    let Some(at) = wanted.at.filter(|at| at.end.is_none() && all.len() > 1) else {
        return all;
    };
    let starting: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| offered[i].start.with_timezone(&tz).time() == at.start)
        .collect();
    if starting.is_empty() { all } else { starting }
}

pub fn fits(slot: &OfferedSlot, tz: Tz, wanted: &Wanted) -> bool {
    let local = slot.start.with_timezone(&tz).naive_local();
    // An exact time is more precise than the part of the day it implies.
    let filter = DateFilter {
        part: if wanted.at.is_some() {
            None
        } else {
            wanted.filter.part
        },
        ..wanted.filter.clone()
    };
    if !filter.admits(local) {
        return false;
    }
    let Some(at) = wanted.at else {
        return true;
    };
    let window_end = when::clock(&slot.label)
        .filter(|w| w.start == local.time())
        .and_then(|w| w.end);
    match window_end {
        Some(end) => local.time() <= at.start && at.start < end,
        None => at.start == local.time(),
    }
}

/// How a reply in SCHEDULING names the openings it was offered.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotPick {
    /// By number ("2"): booked at once.
    Number(usize),
    /// By words that fit exactly this one: confirmed before booking.
    Words(usize),
    /// Words that fit several of them.
    Several(Vec<usize>),
    /// Words about a time that none of them fits: search for that time.
    Elsewhere(Wanted),
    /// Nothing about a time at all.
    Unclear,
}

const ORDINALS: [&str; 5] = ["first", "second", "third", "fourth", "fifth"];

/// "The second one", "the last option": a position in the list.
fn ordinal(text: &str, options: usize) -> Option<usize> {
    let t = clean(text);
    let words: Vec<&str> = t
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let position = |w: &str| {
        if w == "last" {
            options.checked_sub(1)
        } else {
            ORDINALS.iter().position(|o| *o == w).filter(|i| *i < options)
        }
    };
    let alone = matches!(words.as_slice(), [w] | ["the", w] if position(w).is_some());
    if alone {
        return words.last().and_then(|w| position(w));
    }
    words.windows(2).find_map(|pair| {
        ["one", "option", "slot", "opening", "time"]
            .contains(&pair[1])
            .then(|| position(pair[0]))
            .flatten()
    })
}

/// Which offered opening a reply names. Words ("monday at 2pm", "the
/// afternoon one", "the 1st") pick one only when they fit exactly one
/// opening in both day and time.
pub fn pick_slot(text: &str, offered: &[OfferedSlot], tz: Tz, today: NaiveDate) -> SlotPick {
    if let Some(i) = choice(text, offered.len()) {
        return SlotPick::Number(i);
    }
    if let Some(i) = ordinal(text, offered.len()) {
        return SlotPick::Words(i);
    }
    let wanted = wanted(text, today);
    if wanted.is_empty() {
        return SlotPick::Unclear;
    }
    let fitting = fitting(offered, tz, &wanted);
    match fitting.as_slice() {
        [] => SlotPick::Elsewhere(wanted),
        [one] => SlotPick::Words(*one),
        _ => SlotPick::Several(fitting),
    }
}

/// Ends the text that asks to confirm a pick made in words.
pub const CONFIRM_SUFFIX: &str = ": reply YES to book.";

/// "Tue Dec 1, 1-3pm, $350: reply YES to book."
pub fn confirm_pick(slot: &OfferedSlot, total: super::money::Money) -> String {
    format!("{}, {total}{CONFIRM_SUFFIX}", slot.label)
}

/// The opening a sent confirmation asked about, if `sent` is one.
pub fn confirmed_in(sent: &str, offered: &[OfferedSlot]) -> Option<usize> {
    if !sent.ends_with(CONFIRM_SUFFIX) {
        return None;
    }
    let named: Vec<usize> = (0..offered.len())
        .filter(|&i| sent.contains(&format!("{}, $", offered[i].label)))
        .collect();
    match named.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

pub const NAME_QUESTION: &str = "What name should I put the booking under?";

/// A name given in answer to [`NAME_QUESTION`]: "Dana", "it's dana
/// smith", "My name is O'Neil". Not a number, an address or a sentence.
pub fn customer_name(text: &str) -> Option<String> {
    let t = text.trim().trim_end_matches(['.', '!']).trim();
    let lower = t.to_lowercase();
    const LEAD_INS: [&str; 11] = [
        "my name is ",
        "my name's ",
        "name is ",
        "name's ",
        "it's ",
        "its ",
        "it is ",
        "this is ",
        "i'm ",
        "i am ",
        "under ",
    ];
    let rest = LEAD_INS
        .iter()
        .find(|p| lower.starts_with(*p) && t.is_char_boundary(p.len()))
        .map_or(t, |p| &t[p.len()..])
        .trim();
    let words: Vec<&str> = rest.split_whitespace().collect();
    let wordlike = |w: &str| {
        w.chars().any(char::is_alphabetic)
            && w.chars()
                .all(|c| c.is_alphabetic() || matches!(c, '\'' | '-' | '.' | '\u{2019}'))
    };
    if words.is_empty() || words.len() > 4 || !words.iter().all(|w| wordlike(w)) {
        return None;
    }
    let rest_lower = rest.to_lowercase();
    if yes_or_no(&rest_lower).is_some()
        || wants_person(&rest_lower)
        || [
            "ok", "okay", "hi", "hello", "thanks", "why", "what", "none", "nothing",
        ]
        .contains(&rest_lower.as_str())
    {
        return None;
    }
    let capitalized = |w: &str| {
        let mut chars = w.chars();
        chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect::<String>())
            .unwrap_or_default()
    };
    Some(if rest == rest_lower {
        words.iter().map(|w| capitalized(w)).collect::<Vec<_>>().join(" ")
    } else {
        words.join(" ")
    })
}

/// "Keep it", "never mind": stay with the booking as it is.
pub fn wants_to_keep(text: &str) -> bool {
    let t = clean(text);
    [
        "keep",
        "never mind",
        "nevermind",
        "nvm",
        "original",
        "leave it",
        "as is",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// "C", "confirm", "yes": the answer to a reminder.
pub fn is_confirm(text: &str) -> bool {
    matches!(
        clean(text).as_str(),
        "c" | "confirm" | "confirmed" | "yes" | "y" | "ok" | "okay"
    )
}

/// "R", "reschedule", "change the time".
pub fn wants_reschedule(text: &str) -> bool {
    let t = clean(text);
    t == "r" || t.contains("reschedule") || t.contains("change the time") || t.contains("different time")
}

/// A clear request to cancel the booking. A bare CANCEL never gets here:
/// carriers treat it as an opt-out, and so does textdesk.
pub fn wants_cancel_booking(text: &str) -> bool {
    let t = clean(text);
    [
        "cancel my",
        "cancel the",
        "cancel it",
        "cancel our",
        "call it off",
        "cancel appointment",
        "cancel booking",
        "want to cancel",
        "need to cancel",
        "like to cancel",
        "have to cancel",
        "please cancel",
    ]
    .iter()
    .any(|p| t.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn junk_job() -> JobDetails {
        JobDetails::default()
    }

    #[test]
    fn junk_questions_come_from_the_catalog() {
        let pricing = PricingConfig::default();
        assert_eq!(
            next_question(&junk_job(), BusinessKind::JunkRemoval, &pricing),
            Some(Question::Size)
        );
        let text = ask(Question::Size, &pricing);
        assert_eq!(
            text,
            "What needs to go? Reply with a number:\n1) a few items\n2) about a quarter truck\n3) about half a truck\n4) a full truck or more"
        );
    }

    #[test]
    fn answers_by_number_or_word() {
        let pricing = PricingConfig::default();
        let size =
            |t: &str| interpret(Question::Size, t, &pricing, &JobDetails::default()).and_then(|u| u.size);
        assert_eq!(size("3").as_deref(), Some("half_truck"));
        assert_eq!(size(" 3) ").as_deref(), Some("half_truck"));
        assert_eq!(size("three").as_deref(), Some("half_truck"));
        assert_eq!(size("about half a truck I think").as_deref(), Some("half_truck"));
        assert_eq!(size("a quarter load").as_deref(), Some("quarter_truck"));
        assert_eq!(size("just a few things").as_deref(), Some("few_items"));
        assert_eq!(size("full").as_deref(), Some("full_truck"));
        assert_eq!(size("9"), None);
        assert_eq!(size("I have 2 couches"), None);
        assert_eq!(size("half or full, not sure"), None);
        let beds = |t: &str| {
            interpret(Question::Bedrooms, t, &pricing, &JobDetails::default()).and_then(|u| u.bedrooms)
        };
        assert_eq!(beds("3"), Some(3));
        assert_eq!(beds("two"), Some(2));
        assert_eq!(beds("it's a studio"), Some(0));
        let baths = |t: &str| {
            interpret(Question::Bathrooms, t, &pricing, &JobDetails::default()).and_then(|u| u.bathrooms)
        };
        assert_eq!(baths("1.5"), Some(Decimal::new(15, 1)));
        assert_eq!(baths("1.3"), None);
        let clean = |t: &str| {
            interpret(Question::CleanType, t, &pricing, &JobDetails::default()).and_then(|u| u.clean_type)
        };
        assert_eq!(clean("2").as_deref(), Some("deep"));
        assert_eq!(clean("move out please").as_deref(), Some("move_out"));
    }

    #[test]
    fn extras_take_several_numbers_or_none() {
        let pricing = PricingConfig {
            modifiers: ["a", "b", "c"]
                .iter()
                .map(|id| super::super::quote::ModifierDef {
                    id: id.to_string(),
                    label: id.to_uppercase(),
                    kind: super::super::quote::ModifierKind::Flat {
                        amount: super::super::money::Money::dollars(10),
                    },
                    applies: None,
                })
                .collect(),
            ..PricingConfig::default()
        };
        let ids = |t: &str| {
            interpret(Question::Extras, t, &pricing, &JobDetails::default())
                .and_then(|u| u.modifiers)
                .map(|m| m.into_iter().map(|s| s.id).collect::<Vec<_>>())
        };
        assert_eq!(ids("1 3"), Some(vec!["a".to_string(), "c".to_string()]));
        assert_eq!(
            ids("1, 2 and 3"),
            Some(vec!["a".to_string(), "b".to_string(), "c".to_string()])
        );
        assert_eq!(ids("0"), Some(vec![]));
        assert_eq!(ids("none"), Some(vec![]));
        assert_eq!(ids("4"), None);
        assert_eq!(ids("lots"), None);
        let mut job = junk_job();
        job.size = Some("half_truck".into());
        assert_eq!(
            next_question(&job, BusinessKind::JunkRemoval, &pricing),
            Some(Question::Extras)
        );
        job.apply(interpret(Question::Extras, "0", &pricing, &JobDetails::default()).unwrap());
        assert_eq!(next_question(&job, BusinessKind::JunkRemoval, &pricing), None);
    }

    #[test]
    fn maid_questions_in_order() {
        let pricing = PricingConfig::default();
        let mut job = JobDetails::default();
        let mut asked = Vec::new();
        for answer in ["3", "2", "1"] {
            let q = next_question(&job, BusinessKind::Maid, &pricing).unwrap();
            asked.push(q);
            job.apply(interpret(q, answer, &pricing, &job).unwrap());
        }
        assert_eq!(
            asked,
            vec![Question::Bedrooms, Question::Bathrooms, Question::CleanType]
        );
        assert_eq!(next_question(&job, BusinessKind::Maid, &pricing), None);
    }

    #[test]
    fn only_a_clear_request_means_a_person() {
        for yes in [
            "person",
            "PERSON",
            "a human please",
            "can I talk to someone?",
            "I want to speak to the owner",
        ] {
            assert!(wants_person(yes), "{yes}");
        }
        for no in [
            "can someone pick up a couch?",
            "it's mostly personal items",
            "the property manager said ok",
            "call me when you're close",
        ] {
            assert!(!wants_person(no), "{no}");
        }
    }

    #[test]
    fn counted_extras_ask_how_many() {
        let pricing = PricingConfig {
            modifiers: vec![super::super::quote::ModifierDef {
                id: "stairs".into(),
                label: "Stairs".into(),
                kind: ModifierKind::PerUnit {
                    amount: super::super::money::Money::dollars(25),
                    unit: "flight(s)".into(),
                },
                applies: None,
            }],
            ..PricingConfig::default()
        };
        let mut job = JobDetails {
            size: Some("half_truck".into()),
            ..JobDetails::default()
        };
        job.apply(interpret(Question::Extras, "1", &pricing, &JobDetails::default()).unwrap());
        let q = next_question(&job, BusinessKind::JunkRemoval, &pricing);
        assert_eq!(q, Some(Question::Quantity(0)));
        assert_eq!(
            ask(Question::Quantity(0), &pricing),
            "Stairs: how many flight(s)? Reply with a number."
        );
        job.apply(interpret(Question::Quantity(0), "3", &pricing, &JobDetails::default()).unwrap());
        assert_eq!(job.modifiers[0].quantity, 3);
        assert_eq!(next_question(&job, BusinessKind::JunkRemoval, &pricing), None);
    }

    #[test]
    fn reschedule_and_cancel_requests() {
        assert!(wants_reschedule("R") && wants_reschedule("can we reschedule?"));
        assert!(
            wants_cancel_booking("please cancel my booking") && wants_cancel_booking("let's call it off")
        );
        assert!(
            !wants_cancel_booking("cancel"),
            "bare CANCEL is an opt-out, handled before this"
        );
    }

    #[test]
    fn quoted_menu() {
        assert_eq!(quoted_choice("1"), Some(QuotedChoice::Book));
        assert_eq!(quoted_choice("yes"), Some(QuotedChoice::Book));
        assert_eq!(quoted_choice("2"), Some(QuotedChoice::Person));
        assert_eq!(
            quoted_choice("can I talk to a person"),
            Some(QuotedChoice::Person)
        );
        assert_eq!(quoted_choice("what about a couch"), None);
    }

    /// The example junk catalog (business.toml), with date-priced
    /// surcharges and a discount question.
    fn junk_catalog() -> PricingConfig {
        toml::from_str(
            r#"
            [junk]
            [[junk.tiers]]
            id = "few_items"
            label = "a few items"
            hours = 1
            crew = 2
            [[junk.tiers]]
            id = "quarter_truck"
            label = "about a quarter truck"
            hours = 1.5
            crew = 2
            [[junk.tiers]]
            id = "half_truck"
            label = "about half a truck"
            hours = 2
            crew = 2
            [[junk.tiers]]
            id = "full_truck"
            label = "a full truck or more"
            hours = 3.5
            crew = 3
            [[junk.items]]
            id = "hot_tub"
            label = "hot tub"
            hours = 2
            crew = 3
            [[junk.items]]
            id = "piano"
            label = "piano"
            hours = 1
            crew = 3
            [[junk.items]]
            id = "shed"
            label = "shed teardown"
            hours = 3
            [[modifiers]]
            id = "heavy_item"
            label = "Heavy item (safe, treadmill, gun cabinet)"
            kind = "flat"
            amount = 75
            [[modifiers]]
            id = "stairs"
            label = "Stairs"
            kind = "per_unit"
            amount = 25
            unit = "flight(s)"
            [[modifiers]]
            id = "mattress"
            label = "Mattress disposal"
            kind = "per_item"
            amount = 30
            [[modifiers]]
            id = "appliance"
            label = "Refrigerator or freezer disposal"
            kind = "per_item"
            amount = 45
            [[modifiers]]
            id = "same_day"
            label = "Same-day service"
            kind = "percent"
            percent = 20
            applies = "same_day"
            [[modifiers]]
            id = "weekend"
            label = "Weekend service"
            kind = "percent"
            percent = 10
            applies = "weekend"
            [[discounts]]
            id = "senior"
            label = "Senior discount"
            kind = "percent"
            percent = 10
            question = "Is anyone in the home 65 or older?"
            "#,
        )
        .unwrap()
    }

    /// The maid example's catalog (examples/maid.toml).
    fn maid_catalog() -> PricingConfig {
        toml::from_str(
            r#"
            [[maid.clean_types]]
            id = "standard"
            label = "standard clean"
            multiplier = 1
            [[maid.clean_types]]
            id = "deep"
            label = "deep clean"
            multiplier = 1.5
            [[maid.clean_types]]
            id = "move_out"
            label = "move-out clean"
            multiplier = 1.75
            [[modifiers]]
            id = "pets"
            label = "Pet hair"
            kind = "flat"
            amount = 20
            [[modifiers]]
            id = "inside_oven"
            label = "Inside the oven"
            kind = "flat"
            amount = 30
            [[modifiers]]
            id = "inside_fridge"
            label = "Inside the fridge"
            kind = "flat"
            amount = 30
            [[modifiers]]
            id = "windows"
            label = "Interior windows"
            kind = "per_unit"
            amount = 5
            unit = "window(s)"
            [[modifiers]]
            id = "weekend"
            label = "Weekend service"
            kind = "percent"
            percent = 15
            applies = "weekend"
            [[discounts]]
            id = "first_clean"
            label = "First clean"
            kind = "percent"
            percent = 10
            question = "Is this your first clean with us?"
            "#,
        )
        .unwrap()
    }

    /// Every field the parse set, in a fixed order: the exact update.
    fn summary(u: &Understood) -> String {
        let list = |l: &[Selected]| {
            l.iter()
                .map(|s| format!("{}:{}", s.id, s.quantity))
                .collect::<Vec<_>>()
                .join("+")
        };
        let JobUpdate {
            size,
            items,
            bedrooms,
            bathrooms,
            square_feet,
            clean_type,
            modifiers,
            discounts,
            address,
            customer_name,
            notes,
            quantity_of,
            answered,
        } = &u.update;
        let mut parts = Vec::new();
        if let Some(x) = size {
            parts.push(format!("size={x}"));
        }
        if let Some(x) = items {
            parts.push(format!("items={}", list(x)));
        }
        if let Some(x) = bedrooms {
            parts.push(format!("beds={x}"));
        }
        if let Some(x) = bathrooms {
            parts.push(format!("baths={x}"));
        }
        if let Some(x) = square_feet {
            parts.push(format!("sqft={x}"));
        }
        if let Some(x) = clean_type {
            parts.push(format!("clean={x}"));
        }
        if let Some(x) = modifiers {
            parts.push(format!("mods={}", list(x)));
        }
        if !u.counted.is_empty() {
            parts.push(format!("counted={}", list(&u.counted)));
        }
        if let Some(x) = notes {
            parts.push(format!("notes=[{x}]"));
        }
        if u.needs_size {
            parts.push("needs_size".into());
        }
        if let Some(x) = answered {
            parts.push(format!("answered={x}"));
        }
        if let Some(x) = customer_name {
            parts.push(format!("name={x}"));
        }
        assert!(
            discounts.is_none() && address.is_none() && quantity_of.is_none(),
            "free text never sets these: {u:?}"
        );
        parts.join(" ")
    }

    #[test]
    fn free_text_is_understood_against_the_junk_catalog() {
        let junk = junk_catalog();
        let table: &[(&str, &str)] = &[
            (
                "a couch, a fridge and a mattress",
                "size=few_items mods=appliance:1+mattress:1 counted=appliance:1+mattress:1 notes=[Items named: couch, fridge, mattress] answered=extras_named",
            ),
            (
                "two mattresses",
                "size=few_items mods=mattress:2 counted=mattress:2 notes=[Items named: 2 x mattress] answered=extras_named",
            ),
            (
                "2 mattresses and a box spring",
                "size=few_items mods=mattress:3 counted=mattress:3 notes=[Items named: 2 x mattress, box spring] answered=extras_named",
            ),
            ("I have a piano", "items=piano:1"),
            (
                "old upright piano and 3 flights of stairs",
                "items=piano:1 mods=stairs:3 counted=stairs:3 answered=extras_named",
            ),
            (
                "a sofa and a loveseat",
                "size=few_items notes=[Items named: sofa, loveseat]",
            ),
            ("sectional couch", "size=few_items notes=[Items named: sectional]"),
            ("hot tub removal", "items=hot_tub:1"),
            ("can you take a jacuzzi?", "items=hot_tub:1"),
            ("our spa needs to go", "items=hot_tub:1"),
            (
                "washer and dryer",
                "size=few_items notes=[Items named: washer, dryer]",
            ),
            (
                "refrigerator",
                "size=few_items mods=appliance:1 counted=appliance:1 notes=[Items named: refrigerator] answered=extras_named",
            ),
            (
                "2 freezers",
                "size=few_items mods=appliance:2 counted=appliance:2 notes=[Items named: 2 x freezer] answered=extras_named",
            ),
            ("a shed teardown", "items=shed:1"),
            ("tear down a shed in the backyard", "items=shed:1"),
            ("about half a truck", "size=half_truck"),
            (
                "half a truckload of junk plus a piano",
                "size=half_truck items=piano:1",
            ),
            ("a full load", "size=full_truck"),
            ("just a few things", "size=few_items"),
            ("stairs", "mods=stairs:1 answered=extras_named"),
            (
                "2nd floor, 2 flights of stairs",
                "mods=stairs:2 counted=stairs:2 answered=extras_named",
            ),
            ("a gun safe", "mods=heavy_item:1 answered=extras_named"),
            ("treadmill", "mods=heavy_item:1 answered=extras_named"),
            (
                "couch, chair, table, desk, dresser, tv",
                "notes=[Items named: couch, chair, table, desk, dresser, tv] needs_size",
            ),
            (
                "three chairs and a table",
                "size=few_items notes=[Items named: 3 x chair, table]",
            ),
            (
                "a couple of mattresses",
                "size=few_items mods=mattress:2 counted=mattress:2 notes=[Items named: 2 x mattress] answered=extras_named",
            ),
            (
                "a queen mattress",
                "size=few_items mods=mattress:1 counted=mattress:1 notes=[Items named: mattress] answered=extras_named",
            ),
            ("a full size bed", "size=few_items notes=[Items named: bed]"),
            ("hi", ""),
            (
                "Hi, my name is dana smith and I have a piano",
                "items=piano:1 name=Dana Smith",
            ),
            (
                "I'm moving out, can you take a desk",
                "size=few_items notes=[Items named: desk]",
            ),
            ("how much do you charge?", ""),
            ("maybe a tonne?", ""),
            ("a hot tub and a piano", "items=hot_tub:1+piano:1"),
            (
                "fridge, freezer and a mini fridge",
                "size=few_items mods=appliance:3 counted=appliance:3 notes=[Items named: fridge, freezer, mini fridge] answered=extras_named",
            ),
            ("1 couch", "size=few_items notes=[Items named: couch]"),
            ("a bunch of boxes", "size=few_items notes=[Items named: box]"),
            (
                "some bags of trash and a grill",
                "size=few_items notes=[Items named: bag, grill]",
            ),
        ];
        for (text, expected) in table {
            let got = summary(&understand(
                text,
                BusinessKind::JunkRemoval,
                &junk,
                &JobDetails::default(),
            ));
            assert_eq!(&got, expected, "{text}");
        }
    }

    #[test]
    fn free_text_is_understood_against_the_maid_catalog() {
        let maid = maid_catalog();
        let table: &[(&str, &str)] = &[
            ("3 bed 2 bath deep clean", "beds=3 baths=2 clean=deep"),
            ("2br/1ba standard", "beds=2 baths=1 clean=standard"),
            ("studio, move out", "beds=0 clean=move_out"),
            ("3bd 2.5ba", "beds=3 baths=2.5"),
            ("three bedrooms two bathrooms", "beds=3 baths=2"),
            (
                "a 4 bedroom 3 bath house, regular cleaning",
                "beds=4 baths=3 clean=standard",
            ),
            ("3/2 deep clean please", "beds=3 baths=2 clean=deep"),
            (
                "move-out clean for a 2 bed 1 bath apartment",
                "beds=2 baths=1 clean=move_out",
            ),
            ("1 bedroom 1 bathroom", "beds=1 baths=1"),
            ("deep clean", "clean=deep"),
            (
                "2 bed 2 bath with a dog",
                "beds=2 baths=2 mods=pets:1 answered=extras_named",
            ),
            ("1800 sq ft, 3 bed 2 bath", "beds=3 baths=2 sqft=1800"),
            ("1,800 square feet", "sqft=1800"),
            (
                "inside the oven and fridge too",
                "mods=inside_oven:1+inside_fridge:1 answered=extras_named",
            ),
            (
                "12 windows",
                "mods=windows:12 counted=windows:12 answered=extras_named",
            ),
            (
                "thorough clean, 2 full baths, 3 bedrooms",
                "beds=3 baths=2 clean=deep",
            ),
            ("we're moving out, 2br 1ba", "beds=2 baths=1 clean=move_out"),
            ("weekend please", ""),
            ("spring cleaning 5 bed 4 bath", "beds=5 baths=4 clean=deep"),
            ("hello", ""),
        ];
        for (text, expected) in table {
            let got = summary(&understand(
                text,
                BusinessKind::Maid,
                &maid,
                &JobDetails::default(),
            ));
            assert_eq!(&got, expected, "{text}");
        }
    }

    fn slot(id: u8, tz: Tz, (m, d): (u32, u32), (h, min): (u32, u32), window_minutes: i64) -> OfferedSlot {
        use chrono::TimeZone;
        let start = tz
            .with_ymd_and_hms(2026, m, d, h, min, 0)
            .single()
            .unwrap()
            .with_timezone(&chrono::Utc);
        let opening = super::super::availability::Opening {
            provider: "crew-1".into(),
            start,
            window_end: start + chrono::Duration::minutes(window_minutes),
            end: start + chrono::Duration::minutes(window_minutes + 120),
        };
        OfferedSlot {
            id,
            start,
            end: opening.end,
            label: super::super::availability::label(&opening, tz),
            crew: "crew-1".into(),
            quote: None,
        }
    }

    /// Wednesday, Nov 25 2026, as in the issue.
    fn wednesday() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
    }

    #[test]
    fn next_tuesday_afternoon_does_not_book_a_tuesday_morning() {
        // Issue 8: "next Tuesday afternoon" booked "Tue Dec 1, 8-10am".
        let tz = chrono_tz::America::Los_Angeles;
        let offered = [
            slot(1, tz, (11, 30), (8, 0), 120),
            slot(2, tz, (12, 1), (8, 0), 120),
            slot(3, tz, (12, 2), (8, 0), 120),
        ];
        assert_eq!(offered[1].label, "Tue Dec 1, 8-10am");
        match pick_slot("next Tuesday afternoon", &offered, tz, wednesday()) {
            SlotPick::Elsewhere(wanted) => {
                assert_eq!(wanted.description, "on Tue Dec 1 in the afternoon");
                let filter = wanted.search_filter();
                assert_eq!(filter.from, NaiveDate::from_ymd_opt(2026, 12, 1));
                assert_eq!(
                    filter.part,
                    Some(super::super::availability::PartOfDay::Afternoon)
                );
            }
            other => panic!("expected a search for Tuesday afternoon, got {other:?}"),
        }
    }

    #[test]
    fn monday_at_2pm_does_not_book_monday_at_830am() {
        // Issue 8, maid example: "monday at 2pm" booked "Mon Nov 30, 8:30am".
        let tz = chrono_tz::America::Chicago;
        let offered = [
            slot(1, tz, (11, 30), (8, 30), 0),
            slot(2, tz, (12, 1), (8, 30), 0),
            slot(3, tz, (12, 2), (8, 30), 0),
        ];
        assert_eq!(offered[0].label, "Mon Nov 30, 8:30am");
        match pick_slot("monday at 2pm", &offered, tz, wednesday()) {
            SlotPick::Elsewhere(wanted) => {
                assert_eq!(wanted.description, "on Mon Nov 30 at 2pm");
                assert_eq!(
                    wanted.search_filter().part,
                    Some(super::super::availability::PartOfDay::Afternoon)
                );
            }
            other => panic!("expected a search for Monday 2pm, got {other:?}"),
        }
        assert_eq!(
            pick_slot("monday at 8:30", &offered, tz, wednesday()),
            SlotPick::Words(0)
        );
        assert_eq!(
            pick_slot("Mon Nov 30, 8:30am", &offered, tz, wednesday()),
            SlotPick::Words(0)
        );
    }

    #[test]
    fn a_time_that_starts_one_of_several_fitting_windows_picks_that_one() {
        // "monday at 2pm" fits both 1-3pm and 2-4pm; the 2-4pm window is
        // the one that starts when the customer said.
        let tz = chrono_tz::America::Los_Angeles;
        let offered = [
            slot(1, tz, (11, 30), (12, 0), 120),
            slot(2, tz, (11, 30), (13, 0), 120),
            slot(3, tz, (11, 30), (14, 0), 120),
        ];
        assert_eq!(offered[2].label, "Mon Nov 30, 2-4pm");
        let pick = |t: &str| pick_slot(t, &offered, tz, wednesday());
        assert_eq!(pick("monday at 2pm"), SlotPick::Words(2));
        // A time inside windows that no window starts at is still unclear.
        assert_eq!(pick("monday at 1:30pm"), SlotPick::Several(vec![0, 1]));
    }

    #[test]
    fn words_pick_only_an_opening_they_fit_in_day_and_time() {
        let tz = chrono_tz::America::Los_Angeles;
        let offered = [
            slot(1, tz, (11, 30), (8, 0), 120),
            slot(2, tz, (12, 1), (8, 0), 120),
            slot(3, tz, (12, 1), (13, 0), 120),
        ];
        let pick = |t: &str| pick_slot(t, &offered, tz, wednesday());
        assert_eq!(pick("2"), SlotPick::Number(1));
        assert_eq!(pick("#3"), SlotPick::Number(2));
        assert_eq!(pick("next Tuesday afternoon"), SlotPick::Words(2));
        assert_eq!(pick("the afternoon one"), SlotPick::Words(2));
        assert_eq!(pick("the monday one"), SlotPick::Words(0));
        assert_eq!(pick("Tue Dec 1, 1-3pm"), SlotPick::Words(2));
        assert_eq!(
            pick("tuesday at 2pm works"),
            SlotPick::Words(2),
            "inside the 1-3pm window"
        );
        assert_eq!(pick("tuesday at 8"), SlotPick::Words(1));
        assert_eq!(pick("the 1st in the morning"), SlotPick::Words(1));
        assert_eq!(pick("the second one"), SlotPick::Words(1));
        assert_eq!(pick("the last one"), SlotPick::Words(2));
        assert_eq!(pick("tuesday"), SlotPick::Several(vec![1, 2]));
        assert_eq!(pick("the 1st"), SlotPick::Several(vec![1, 2]));
        assert_eq!(pick("the morning"), SlotPick::Several(vec![0, 1]));
        assert!(
            matches!(pick("tuesday at 3pm"), SlotPick::Elsewhere(_)),
            "3pm ends the window"
        );
        assert!(matches!(pick("friday"), SlotPick::Elsewhere(w) if w.description == "on Fri Nov 27"));
        assert_eq!(pick("4"), SlotPick::Unclear);
        assert_eq!(pick("whatever works"), SlotPick::Unclear);
    }

    #[test]
    fn a_pick_in_words_is_confirmed_with_its_price() {
        let tz = chrono_tz::America::Los_Angeles;
        let offered = [
            slot(1, tz, (11, 30), (8, 0), 120),
            slot(2, tz, (12, 1), (13, 0), 120),
        ];
        let text = confirm_pick(&offered[1], super::super::money::Money::dollars(350));
        assert_eq!(text, "Tue Dec 1, 1-3pm, $350: reply YES to book.");
        assert_eq!(confirmed_in(&text, &offered), Some(1));
        assert_eq!(confirmed_in(&format!("Sorry! {text}"), &offered), Some(1));
        assert_eq!(confirmed_in("Openings:\n1) Mon Nov 30, 8-10am", &offered), None);
        assert_eq!(yes_or_no("YES"), Some(true));
        assert_eq!(yes_or_no("yep, book it"), Some(true));
        assert_eq!(yes_or_no("no, the other one"), Some(false));
        assert_eq!(yes_or_no("2"), None);
    }

    #[test]
    fn free_text_skips_what_it_answered() {
        let maid = maid_catalog();
        let mut job = JobDetails::default();
        for update in understand("3 bed 2 bath deep clean", BusinessKind::Maid, &maid, &job).updates() {
            job.apply(update);
        }
        // Rooms and clean known: straight to the extras, which never list a
        // surcharge priced from the date.
        assert_eq!(
            next_question(&job, BusinessKind::Maid, &maid),
            Some(Question::Extras)
        );
        let menu = ask(Question::Extras, &maid);
        assert_eq!(
            menu,
            "Any of these? Reply with the numbers that apply, like 1 3, or 0 for none:\n\
             1) Pet hair\n2) Inside the oven\n3) Inside the fridge\n4) Interior windows"
        );
        assert!(!menu.contains("Weekend"));
        job.apply(interpret(Question::Extras, "4", &maid, &job).unwrap());
        assert_eq!(
            job.modifiers,
            vec![Selected {
                id: "windows".into(),
                quantity: 1
            }]
        );
        assert_eq!(
            next_question(&job, BusinessKind::Maid, &maid),
            Some(Question::Quantity(3))
        );
        job.apply(interpret(Question::Quantity(3), "8", &maid, &job).unwrap());
        // Then the discount's own question.
        assert_eq!(
            next_question(&job, BusinessKind::Maid, &maid),
            Some(Question::Discount(0))
        );
        assert_eq!(
            ask(Question::Discount(0), &maid),
            "Is this your first clean with us? Reply YES or NO."
        );
        job.apply(interpret(Question::Discount(0), "yes it is", &maid, &job).unwrap());
        assert_eq!(job.discounts, vec!["first_clean".to_string()]);
        assert_eq!(next_question(&job, BusinessKind::Maid, &maid), None);
    }

    #[test]
    fn a_discount_for_other_services_is_not_asked() {
        let mut maid = maid_catalog();
        maid.discounts[0].services = vec!["deep".into()];
        let mut job = JobDetails::default();
        for update in understand("3 bed 2 bath standard clean", BusinessKind::Maid, &maid, &job).updates() {
            job.apply(update);
        }
        job.apply(interpret(Question::Extras, "0", &maid, &job).unwrap());
        assert_eq!(job.clean_type.as_deref(), Some("standard"));
        assert_eq!(
            next_question(&job, BusinessKind::Maid, &maid),
            None,
            "nothing about a deep clean's discount"
        );
        job.clean_type = Some("deep".into());
        assert_eq!(
            next_question(&job, BusinessKind::Maid, &maid),
            Some(Question::Discount(0)),
            "asked for the service it is for"
        );
    }

    #[test]
    fn loose_things_beside_an_item_with_its_own_labour_still_ask_the_size() {
        let junk = junk_catalog();
        let mut job = JobDetails::default();
        let said = "a couch, two mattresses, a fridge, a dresser, a treadmill, a washer, a dryer, a piano, \
                    a table, 6 chairs and 20 boxes";
        for update in understand(said, BusinessKind::JunkRemoval, &junk, &job).updates() {
            job.apply(update);
        }
        assert_eq!(
            job.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            ["piano"]
        );
        assert_eq!(job.size, None);
        // The piano alone would price none of the rest: how much in all?
        assert_eq!(
            next_question(&job, BusinessKind::JunkRemoval, &junk),
            Some(Question::Size)
        );
        job.apply(interpret(Question::Size, "4", &junk, &job).unwrap());
        assert_eq!(job.size.as_deref(), Some("full_truck"));
        assert_ne!(
            next_question(&job, BusinessKind::JunkRemoval, &junk),
            Some(Question::Size)
        );
    }

    #[test]
    fn junk_asks_items_with_their_own_labour_and_discounts() {
        let junk = junk_catalog();
        let mut job = JobDetails::default();
        for update in understand(
            "a couch, a fridge and a mattress",
            BusinessKind::JunkRemoval,
            &junk,
            &job,
        )
        .updates()
        {
            job.apply(update);
        }
        assert_eq!(job.size.as_deref(), Some("few_items"));
        // Both counted extras were counted by the text: no "how many?".
        assert_eq!(
            next_question(&job, BusinessKind::JunkRemoval, &junk),
            Some(Question::LabourItems)
        );
        assert_eq!(
            ask(Question::LabourItems, &junk),
            "Anything that needs extra hands? Reply with the numbers that apply, or 0 for none:\n\
             1) hot tub\n2) piano\n3) shed teardown"
        );
        job.apply(interpret(Question::LabourItems, "2", &junk, &job).unwrap());
        assert_eq!(
            job.items,
            vec![Selected {
                id: "piano".into(),
                quantity: 1
            }]
        );
        // A mattress says nothing about stairs: the other extras are still
        // asked, and what the text counted stands.
        assert_eq!(
            next_question(&job, BusinessKind::JunkRemoval, &junk),
            Some(Question::Extras)
        );
        job.apply(interpret(Question::Extras, "2", &junk, &job).unwrap());
        let chosen: Vec<(&str, u32)> = job
            .modifiers
            .iter()
            .map(|m| (m.id.as_str(), m.quantity))
            .collect();
        assert_eq!(chosen, vec![("appliance", 1), ("mattress", 1), ("stairs", 1)]);
        assert_eq!(
            next_question(&job, BusinessKind::JunkRemoval, &junk),
            Some(Question::Quantity(1))
        );
        job.apply(interpret(Question::Quantity(1), "2", &junk, &job).unwrap());
        assert_eq!(
            next_question(&job, BusinessKind::JunkRemoval, &junk),
            Some(Question::Discount(0))
        );
        job.apply(interpret(Question::Discount(0), "no", &junk, &job).unwrap());
        assert!(job.discounts.is_empty());
        assert_eq!(next_question(&job, BusinessKind::JunkRemoval, &junk), None);

        // "None" to the labour question is an answer too.
        let mut job = JobDetails {
            size: Some("half_truck".into()),
            ..JobDetails::default()
        };
        job.apply(interpret(Question::LabourItems, "none", &junk, &job).unwrap());
        assert_eq!(
            next_question(&job, BusinessKind::JunkRemoval, &junk),
            Some(Question::Extras)
        );
        let menu = ask(Question::Extras, &junk);
        assert!(!menu.contains("Same-day") && !menu.contains("Weekend"), "{menu}");
    }

    #[test]
    fn free_text_adds_to_what_the_job_has() {
        let junk = junk_catalog();
        let job = JobDetails {
            size: Some("half_truck".into()),
            modifiers: vec![Selected {
                id: "mattress".into(),
                quantity: 1,
            }],
            extras_answered: true,
            notes: Some("Gate code 1234".into()),
            ..JobDetails::default()
        };
        let got = understand(
            "oh and a piano and 2 more mattresses",
            BusinessKind::JunkRemoval,
            &junk,
            &job,
        );
        assert_eq!(
            summary(&got),
            "items=piano:1 mods=mattress:3 counted=mattress:3 notes=[Gate code 1234; Items named: 2 x mattress]"
        );
    }

    #[test]
    fn names() {
        for (text, name) in [
            ("Dana", Some("Dana")),
            ("dana smith", Some("Dana Smith")),
            ("it's Dana", Some("Dana")),
            ("My name is Mary-Jo O'Neil.", Some("Mary-Jo O'Neil")),
            ("this is dana", Some("Dana")),
            ("12 Oak St", None),
            ("yes", None),
            ("2", None),
            ("why do you need my name for a junk pickup?", None),
            ("a person please", None),
        ] {
            assert_eq!(customer_name(text).as_deref(), name, "{text}");
        }
    }

    proptest::proptest! {
        /// Whatever a customer texts, reading it never panics, and what it
        /// yields stays in the catalog's bounds.
        #[test]
        fn any_text_is_read_without_panicking(text in "\\PC{0,80}", words in proptest::collection::vec(
            proptest::sample::select(vec![
                "2", "two", "a", "couch", "mattresses", "3br", "2.5ba", "1,800", "sq", "ft", "/", "at", "pm",
                "11-1pm", "tuesday", "the", "1st", "studio", "my name is", "ñes", "piano", "of", "stairs", "ünï",
            ]),
            0..12,
        )) {
            let junk = junk_catalog();
            let maid = maid_catalog();
            let tz = chrono_tz::America::Los_Angeles;
            let offered = [slot(1, tz, (11, 30), (8, 0), 120), slot(2, tz, (12, 1), (13, 0), 0)];
            for t in [text.clone(), words.join(" ")] {
                let u = understand(&t, BusinessKind::JunkRemoval, &junk, &JobDetails::default());
                for s in u.update.items.iter().flatten().chain(u.update.modifiers.iter().flatten()) {
                    proptest::prop_assert!((1..=50).contains(&s.quantity));
                }
                let m = understand(&t, BusinessKind::Maid, &maid, &JobDetails::default());
                proptest::prop_assert!(m.update.bedrooms.is_none_or(|b| b <= 20));
                let _ = pick_slot(&t, &offered, tz, wednesday());
                let _ = customer_name(&t);
                let _ = when::clock(&t);
                for q in [Question::Size, Question::Bedrooms, Question::Bathrooms, Question::Extras, Question::Discount(0)] {
                    let _ = interpret(q, &t, &junk, &JobDetails::default());
                }
            }
        }
    }
}
