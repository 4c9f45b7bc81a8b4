//! The guided flow: the conversation driven without a model.
//!
//! Short numbered questions built from the owner's catalog; answers are
//! understood by code (a number, or a word that names one option). It fills
//! the same job details the model would, so the same engine prices them.

use rust_decimal::Decimal;

use super::conversation::{JobDetails, JobUpdate};
use super::quote::{ModifierKind, PricingConfig, Selected};
use crate::config::business::BusinessKind;

/// The next thing the flow needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    Size,
    Bedrooms,
    Bathrooms,
    CleanType,
    Extras,
    /// How many of a chosen per-unit or per-item extra (index into the
    /// catalog's modifiers).
    Quantity(usize),
}

/// What is still missing, in the order it is asked; `None` when the job can
/// be priced.
pub fn next_question(job: &JobDetails, kind: BusinessKind, pricing: &PricingConfig) -> Option<Question> {
    let extras_pending = !pricing.modifiers.is_empty() && !job.extras_answered;
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
    let question = match kind {
        BusinessKind::JunkRemoval => {
            if job.size.is_none() && job.items.is_empty() {
                Some(Question::Size)
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
    question.or_else(quantity_pending)
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
        Question::Bedrooms => "How many bedrooms? Reply with a number (0 for a studio).".into(),
        Question::Bathrooms => "How many bathrooms? Reply with a number, like 2 or 1.5.".into(),
        Question::CleanType => {
            let options: Vec<String> = pricing.maid.clean_types.iter().map(|c| c.label.clone()).collect();
            format!("Which clean? Reply with a number:\n{}", numbered(&options))
        }
        Question::Extras => {
            let options: Vec<String> = pricing.modifiers.iter().map(|m| m.label.clone()).collect();
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
    }
}

/// Understands an answer to `question`, or `None`.
pub fn interpret(question: Question, text: &str, pricing: &PricingConfig) -> Option<JobUpdate> {
    match question {
        Question::Size => {
            let labels: Vec<&str> = pricing.junk.tiers.iter().map(|t| t.label.as_str()).collect();
            let i = choice(text, labels.len()).or_else(|| keyword_match(text, &labels))?;
            Some(JobUpdate {
                size: Some(pricing.junk.tiers[i].id.clone()),
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
            let picked = choices(text, pricing.modifiers.len())?;
            Some(JobUpdate {
                modifiers: Some(
                    picked
                        .into_iter()
                        .map(|i| Selected {
                            id: pricing.modifiers[i].id.clone(),
                            quantity: 1,
                        })
                        .collect(),
                ),
                ..JobUpdate::default()
            })
        }
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
pub const RESCHEDULE_HINT: &str = "Need to change it? Reply R to reschedule.";

/// Which offered slot a reply names: its number ("2"), or a word only its
/// label has ("the Tuesday one", "the 8am one").
pub fn pick_slot(text: &str, labels: &[&str]) -> Option<usize> {
    if let Some(i) = choice(text, labels.len()) {
        return Some(i);
    }
    const DAYS: [(&str, &str); 7] = [
        ("monday", "mon"),
        ("tuesday", "tue"),
        ("wednesday", "wed"),
        ("thursday", "thu"),
        ("friday", "fri"),
        ("saturday", "sat"),
        ("sunday", "sun"),
    ];
    let norm = |s: &str| -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| !(c.is_alphanumeric() || c == ':'))
            .filter(|w| !w.is_empty())
            .map(|w| {
                DAYS.iter()
                    .find(|(full, _)| *full == w)
                    .map_or(w.to_string(), |(_, short)| short.to_string())
            })
            .collect()
    };
    let said = norm(text);
    let mut matched = None;
    for (i, label) in labels.iter().enumerate() {
        let distinctive: Vec<String> = norm(label)
            .into_iter()
            .filter(|w| {
                w.len() >= 3
                    && labels
                        .iter()
                        .enumerate()
                        .all(|(j, other)| j == i || !norm(other).contains(w))
            })
            .collect();
        if distinctive.iter().any(|w| said.contains(w)) {
            if matched.is_some_and(|m| m != i) {
                return None;
            }
            matched = Some(i);
        }
    }
    matched
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
        let size = |t: &str| interpret(Question::Size, t, &pricing).and_then(|u| u.size);
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
        let beds = |t: &str| interpret(Question::Bedrooms, t, &pricing).and_then(|u| u.bedrooms);
        assert_eq!(beds("3"), Some(3));
        assert_eq!(beds("two"), Some(2));
        assert_eq!(beds("it's a studio"), Some(0));
        let baths = |t: &str| interpret(Question::Bathrooms, t, &pricing).and_then(|u| u.bathrooms);
        assert_eq!(baths("1.5"), Some(Decimal::new(15, 1)));
        assert_eq!(baths("1.3"), None);
        let clean = |t: &str| interpret(Question::CleanType, t, &pricing).and_then(|u| u.clean_type);
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
            interpret(Question::Extras, t, &pricing)
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
        job.apply(interpret(Question::Extras, "0", &pricing).unwrap());
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
            job.apply(interpret(q, answer, &pricing).unwrap());
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
        job.apply(interpret(Question::Extras, "1", &pricing).unwrap());
        let q = next_question(&job, BusinessKind::JunkRemoval, &pricing);
        assert_eq!(q, Some(Question::Quantity(0)));
        assert_eq!(
            ask(Question::Quantity(0), &pricing),
            "Stairs: how many flight(s)? Reply with a number."
        );
        job.apply(interpret(Question::Quantity(0), "3", &pricing).unwrap());
        assert_eq!(job.modifiers[0].quantity, 3);
        assert_eq!(next_question(&job, BusinessKind::JunkRemoval, &pricing), None);
    }

    #[test]
    fn slots_are_picked_by_number_or_by_a_word_only_they_have() {
        let labels = ["Mon Nov 23, 8am", "Tue Nov 24, 8am", "Tue Nov 24, 1pm"];
        assert_eq!(pick_slot("2", &labels), Some(1));
        assert_eq!(pick_slot("the monday one", &labels), Some(0));
        assert_eq!(pick_slot("Tuesday at 1pm", &labels), Some(2));
        assert_eq!(pick_slot("tuesday", &labels), None, "two Tuesdays: ambiguous");
        assert_eq!(pick_slot("4", &labels), None);
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
}
