//! State claims ("you're booked") and commitments ("we'll waive the fee").

use std::collections::HashMap;
use std::sync::LazyLock;

use super::tokens::{Kind, Token, small_number_word};
use super::{Facts, Violation, ViolationKind, excerpt};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// The word itself.
    Word(String),
    /// A word starting with this ("waiv*": waive, waived, waiving).
    Prefix(String),
    /// `#`: any number, in digits or words.
    Number,
}

/// A phrase matched word by word, ignoring punctuation: "free of charge"
/// also finds "free-of-charge". `#` stands for any number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    parts: Vec<Part>,
    pub phrase: String,
}

impl Pattern {
    pub fn new(phrase: &str) -> Pattern {
        let prepared = super::prepare(phrase);
        let mut parts = Vec::new();
        let tokens = super::tokens::tokenize(&prepared);
        for (i, t) in tokens.iter().enumerate() {
            match t.kind {
                Kind::Sign if t.text == "#" => parts.push(Part::Number),
                Kind::Sign => {}
                Kind::Word | Kind::Number => {
                    let star = tokens
                        .get(i + 1)
                        .is_some_and(|n| n.is_sign('*') && n.start == t.end);
                    parts.push(if star {
                        Part::Prefix(t.text.to_string())
                    } else {
                        Part::Word(t.text.to_string())
                    });
                }
            }
        }
        Pattern {
            parts,
            phrase: phrase.trim().to_string(),
        }
    }

    /// Whether a match can start at `word`: a cheap filter before `matches`.
    fn may_start_with(&self, word: &str) -> bool {
        match self.parts.first() {
            Some(Part::Word(w)) => w == word,
            Some(Part::Prefix(w)) => word.starts_with(w.as_str()),
            Some(Part::Number) => true,
            None => false,
        }
    }

    /// Whether the pattern matches the words starting at `at`; returns the
    /// index after the match.
    fn matches(&self, words: &[Token<'_>], at: usize) -> Option<usize> {
        if self.parts.is_empty() {
            return None;
        }
        for (k, part) in self.parts.iter().enumerate() {
            let w = words.get(at + k)?;
            let ok = match part {
                Part::Word(p) => w.text == p,
                Part::Prefix(p) => w.text.starts_with(p.as_str()),
                Part::Number => w.kind == Kind::Number || small_number_word(w.text).is_some(),
            };
            if !ok {
                return None;
            }
        }
        Some(at + self.parts.len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Booked,
    Cancelled,
    Moved,
}

const BOOKED: &[&str] = &[
    "you're booked",
    "youre booked",
    "you are booked",
    "is booked",
    "are booked",
    "booked for",
    "booked you",
    "booked in",
    "got you booked",
    "got you down",
    "all set",
    "you're set",
    "you are set",
    "you're confirmed",
    "you are confirmed",
    "is confirmed",
    "are confirmed",
    "confirmed for",
    "booking confirmed",
    "appointment confirmed",
    "you're scheduled",
    "you are scheduled",
    "is scheduled",
    "scheduled for",
    "scheduled you",
    "locked in",
    "reserved for",
    "is reserved",
    "penciled in",
    "pencilled in",
    "see you then",
    "see you on",
    "on the calendar",
    "on our calendar",
    "on the schedule",
];
const CANCELLED: &[&str] = &["cancelled", "canceled", "called off"];
const MOVED: &[&str] = &[
    "moved to",
    "moved you",
    "moved your",
    "moved it",
    "been moved",
    "is moved",
    "rescheduled",
    "changed your booking",
    "changed your appointment",
    "switched you",
    "switched your",
];

/// Promises no reply may make unless the owner allows them.
const COMMITMENTS: &[&str] = &[
    // Waived fees, free extras, discounts nobody configured.
    "waiv*",
    "free of charge",
    "for free",
    "free",
    "no charge",
    "no extra charge*",
    "no additional charge*",
    "no extra cost*",
    "no additional cost*",
    "no extra fee*",
    "at no cost",
    "at no charge",
    "at no extra",
    "no cost to you",
    "on the house",
    "on us",
    "no fee",
    "no fees",
    "won't charge",
    "wont charge",
    "will not charge",
    "won't be charged",
    "wont be charged",
    "will not be charged",
    "not be charged",
    "not charge you",
    "complimentary",
    "throw in",
    "throw it in",
    "throw that in",
    "knock off",
    "knock # off",
    "give you a discount",
    "get you a discount",
    "special discount",
    "special deal",
    "special price",
    "special rate",
    "price match*",
    "match any",
    "beat any",
    "lowest price",
    "best price",
    "refund*",
    "money back",
    "no cancellation fee*",
    // Guarantees.
    "guarantee*",
    "promise*",
    // Arrival within minutes.
    "within # minute*",
    "within # min",
    "within # mins",
    "in # minute*",
    "in # min",
    "in # mins",
    "within a few minutes",
    "in a few minutes",
    "within the hour",
    "within an hour",
    "within # hour*",
    "on our way",
    "on the way",
    "right over",
    "be there in",
    "be there within",
    "there asap",
    // A call-back at a time.
    "call you at",
    "call you by",
    "call you within",
    "call you in",
    "call you tomorrow",
    "call you today",
    "call you tonight",
    "call you this",
    "call you first thing",
    "call you back at",
    "call you back by",
    "call you back within",
    "call you back in",
    "call you back tomorrow",
    "call you back today",
    "call you back tonight",
    "text you at",
    "text you by",
    "text you within",
    "text you in #",
    "text you in the",
    "text you tomorrow",
    "text you tonight",
    "text you back at",
    "text you back within",
    "text you back by",
    "get back to you within",
    "get back to you by",
    "get back to you in",
    "get back to you tomorrow",
    "reach out within",
    "reach out by",
    "reach out tomorrow",
    "reach out in",
    "hear from us within",
    "hear from us by",
    "hear from us tomorrow",
];

/// Built-in patterns, found by their first word: each word of a reply is
/// looked up once instead of tried against every pattern.
struct Index<T> {
    by_word: HashMap<String, Vec<T>>,
    /// Patterns that start with a prefix ("waiv*") or a number.
    other: Vec<T>,
}

impl<T: Copy> Index<T> {
    fn new(entries: impl Iterator<Item = (T, Pattern)>) -> (Index<usize>, Vec<(T, Pattern)>) {
        let all: Vec<(T, Pattern)> = entries.collect();
        let mut index = Index {
            by_word: HashMap::new(),
            other: Vec::new(),
        };
        for (i, (_, p)) in all.iter().enumerate() {
            match p.parts.first() {
                Some(Part::Word(w)) => index.by_word.entry(w.clone()).or_default().push(i),
                _ => index.other.push(i),
            }
        }
        (index, all)
    }
}

impl Index<usize> {
    /// Patterns that may match at `word`: those starting with it, in the
    /// order they were listed, then those starting with a prefix.
    fn candidates(&self, word: &str) -> impl Iterator<Item = usize> + '_ {
        self.by_word
            .get(word)
            .into_iter()
            .flatten()
            .chain(&self.other)
            .copied()
    }
}

type Indexed<T> = (Index<usize>, Vec<(T, Pattern)>);

static BUILT_IN: LazyLock<Indexed<Claim>> = LazyLock::new(|| {
    let claims = [
        (Claim::Booked, BOOKED),
        (Claim::Cancelled, CANCELLED),
        (Claim::Moved, MOVED),
    ];
    Index::new(
        claims
            .into_iter()
            .flat_map(|(claim, list)| list.iter().map(move |p| (claim, Pattern::new(p)))),
    )
});
static BUILT_IN_COMMITMENTS: LazyLock<Indexed<()>> =
    LazyLock::new(|| Index::new(COMMITMENTS.iter().map(|p| ((), Pattern::new(p)))));

/// Words before a claim that make it no claim: a negation, a condition, a
/// question, a future ("not booked yet", "once you're booked", "want me to").
fn hedged(words: &[Token<'_>], all: &[Token<'_>], at: usize, end: usize) -> bool {
    const HEDGES: [&str; 28] = [
        "not", "no", "never", "nothing", "once", "if", "when", "after", "until", "before", "unless",
        "whether", "want", "would", "could", "can", "to", "will", "shall", "should", "may", "might", "like",
        "ready", "yet", "get", "cannot", "able",
    ];
    let start = words[at].start;
    // Within the clause: back to a comma, a sentence end or a line break.
    let clause_start = all
        .iter()
        .rev()
        .filter(|t| t.start < start)
        .find(|t| {
            matches!(t.text, "," | "." | "!" | "?" | ";" | ":") && t.kind == Kind::Sign || t.after_line_break
        })
        .map_or(0, |t| if t.kind == Kind::Sign { t.end } else { t.start });
    let before = words[..at]
        .iter()
        .rev()
        .take(4)
        .filter(|w| w.start >= clause_start);
    let hedged_before = before
        .clone()
        .any(|w| HEDGES.contains(&w.text) || w.text.ends_with("n't") || w.text.ends_with("'ll"));
    // A question is not a claim: "want me to get you booked for Tuesday?"
    let asks = all
        .iter()
        .filter(|t| t.start >= words[end - 1].end)
        .find(|t| t.kind == Kind::Sign && matches!(t.text, "." | "!" | "?") || t.after_line_break)
        .is_some_and(|t| t.is_sign('?') && !t.after_line_break);
    let yet_after = words.get(end).is_some_and(|w| w.is_word("yet"));
    hedged_before || asks || yet_after
}

/// "Is confirmed" is a claim about the booking only when the booking (or
/// "it") is what is confirmed: "your address is confirmed" is not one.
fn about_the_job(words: &[Token<'_>], at: usize) -> bool {
    const SUBJECTS: [&str; 16] = [
        "booking",
        "appointment",
        "pickup",
        "visit",
        "job",
        "time",
        "slot",
        "opening",
        "cleaning",
        "clean",
        "haul",
        "removal",
        "service",
        "it",
        "that",
        "everything",
    ];
    if !matches!(words[at].text, "is" | "are") {
        return true;
    }
    at.checked_sub(1)
        .is_some_and(|before| SUBJECTS.contains(&words[before].text) || words[before].text == "you")
}

/// "free" as a promise, not "feel free", "stress-free" or "a free slot".
fn free_is_a_promise(words: &[Token<'_>], all: &[Token<'_>], at: usize) -> bool {
    let w = &words[at];
    let prev = at.checked_sub(1).map(|p| words[p].text);
    let next = words.get(at + 1).map(|n| n.text);
    let hyphenated = all.iter().any(|t| t.is_sign('-') && t.end == w.start);
    !hyphenated
        && !matches!(prev, Some("feel" | "toll" | "you're" | "are" | "is" | "be"))
        && !matches!(
            next,
            Some(
                "to" | "up"
                    | "time"
                    | "of"
                    | "slot"
                    | "slots"
                    | "opening"
                    | "openings"
                    | "window"
                    | "spot"
                    | "spots"
                    | "day"
                    | "days"
                    | "at"
                    | "on"
                    | "then"
            )
        )
}

pub(super) fn check(prepared: &str, tokens: &[Token<'_>], facts: &Facts, out: &mut Vec<Violation>) {
    let words: Vec<Token<'_>> = tokens.iter().filter(|t| t.kind != Kind::Sign).copied().collect();
    let mut allowed_spans: Vec<(usize, usize)> = Vec::new();
    for at in 0..words.len() {
        for p in &facts.allowed_commitments {
            if let Some(end) = p.matches(&words, at) {
                allowed_spans.push((at, end));
            }
        }
    }
    let mut claimed_until = 0;
    for at in 0..words.len() {
        let first = words[at].text;
        // State claims.
        if at >= claimed_until {
            let (index, claims) = &*BUILT_IN;
            for (claim, pattern) in index.candidates(first).map(|i| &claims[i]) {
                if !pattern.may_start_with(first) {
                    continue;
                }
                let Some(end) = pattern.matches(&words, at) else {
                    continue;
                };
                let (true_now, reason) = match claim {
                    Claim::Booked => (
                        facts.claims.booked,
                        "the conversation has no booking standing after this turn",
                    ),
                    Claim::Cancelled => (facts.claims.cancelled, "no booking was cancelled"),
                    Claim::Moved => (facts.claims.moved, "no booking was moved this turn"),
                };
                if !true_now && about_the_job(&words, at) && !hedged(&words, tokens, at, end) {
                    out.push(Violation {
                        kind: ViolationKind::StateClaim,
                        phrase: excerpt(prepared, words[at].start, words[end - 1].end),
                        reason: format!("{reason} (the conversation is {})", facts.state),
                    });
                }
                claimed_until = end;
                break;
            }
        }
        // Commitments, built in and the owner's own.
        let (index, commitments) = &*BUILT_IN_COMMITMENTS;
        let forbidden = index
            .candidates(first)
            .map(|i| &commitments[i].1)
            .filter(|p| p.may_start_with(first))
            .chain(&facts.forbidden_phrases);
        for pattern in forbidden {
            let Some(end) = pattern.matches(&words, at) else {
                continue;
            };
            if pattern.phrase == "free" && !free_is_a_promise(&words, tokens, at) {
                continue;
            }
            let allowed = allowed_spans.iter().any(|&(s, e)| s <= at && end <= e);
            if !allowed {
                out.push(Violation {
                    kind: ViolationKind::Commitment,
                    phrase: excerpt(prepared, words[at].start, words[end - 1].end),
                    reason: format!(
                        "a promise (\"{}\") the owner has not configured; add it to [guardrail] \
                         allowed_commitments if the business makes it",
                        pattern.phrase
                    ),
                });
            }
            break;
        }
    }
}
