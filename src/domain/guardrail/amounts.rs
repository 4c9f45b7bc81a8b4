//! Amounts and percentages, each in its role.

use rust_decimal::Decimal;

use super::tokens::{Kind, Token, small_number_word};
use super::{Facts, Violation, ViolationKind, excerpt};
use crate::domain::money::{FoundAmount, Money, find_amounts};

/// Words that present a figure as the whole price.
const TOTAL_BEFORE: [&str; 12] = [
    "total",
    "price",
    "cost",
    "costs",
    "comes",
    "come",
    "estimate",
    "quote",
    "altogether",
    "overall",
    "pay",
    "owe",
];
const TOTAL_AFTER: [&str; 5] = ["total", "altogether", "overall", "all-in", "everything"];

const DISCOUNT_WORDS: [&str; 10] = [
    "off", "discount", "save", "savings", "less", "knock", "knocked", "reduce", "reduced", "cheaper",
];
const SURCHARGE_WORDS: [&str; 9] = [
    "surcharge",
    "extra",
    "more",
    "added",
    "add",
    "plus",
    "markup",
    "premium",
    "top",
];

pub(super) fn check(prepared: &str, tokens: &[Token<'_>], facts: &Facts, out: &mut Vec<Violation>) {
    let mut found = find_amounts(prepared);
    found.extend(word_amounts(tokens));
    for amount in found {
        let (before, after) = clause_around(tokens, amount.start, amount.end);
        let near = |words: &[&str], side: &[Token<'_>]| side.iter().any(|t| words.contains(&t.text));
        let is_line_word =
            |t: &Token<'_>| t.kind == Kind::Word && facts.line_words.iter().any(|w| w == t.text);
        // "$150 delivery", "delivery fee: $150", "the labour is $200".
        let names_a_line = after.first().is_some_and(is_line_word)
            || before
                .iter()
                .rev()
                .find(|t| !matches!(t.text, ":" | "is" | "of" | "for" | "fee" | "the" | "=" | "-"))
                .is_some_and(is_line_word);
        let as_total = !names_a_line && (near(&TOTAL_BEFORE, before) || near(&TOTAL_AFTER, after));
        let phrase = || excerpt(prepared, amount.start, amount.end);
        let shown = || Money::new(amount.value).to_string();
        if facts.opening_totals.contains(&amount.value) {
            continue;
        }
        match facts.total {
            None => out.push(Violation {
                kind: ViolationKind::Amount,
                phrase: phrase(),
                reason: format!(
                    "{} is not a price: the conversation is {} and has no current quote",
                    shown(),
                    facts.state
                ),
            }),
            Some(total) if as_total && amount.value != total => out.push(Violation {
                kind: ViolationKind::Price,
                phrase: phrase(),
                reason: format!(
                    "{} is presented as the price, but the current quote's total is {}",
                    shown(),
                    Money::new(total)
                ),
            }),
            Some(total) if amount.value != total && !facts.line_amounts.contains(&amount.value) => {
                out.push(Violation {
                    kind: ViolationKind::Amount,
                    phrase: phrase(),
                    reason: format!(
                        "{} is not in the current quote (total {})",
                        shown(),
                        Money::new(total)
                    ),
                })
            }
            Some(_) => {}
        }
    }
    check_percents(prepared, tokens, facts, out);
}

/// Words of a quote's line labels ("delivery", "labour"): a figure right
/// beside one is stated as that line, not as the price.
pub(super) fn line_words(quote: &crate::domain::quote::Quote) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for label in quote.lines.iter().map(|l| super::prepare(&l.label)) {
        for t in super::tokens::tokenize(&label) {
            let generic = TOTAL_BEFORE.contains(&t.text) || TOTAL_AFTER.contains(&t.text);
            if t.kind == Kind::Word && t.text.len() >= 4 && !generic && !words.iter().any(|w| w == t.text) {
                words.push(t.text.to_string());
            }
        }
    }
    words
}

/// The tokens before and after a span, within its clause: a comma, a
/// bracket, a plus, a sentence end or a line break closes it.
fn clause_around<'t, 'a>(
    tokens: &'t [Token<'a>],
    start: usize,
    end: usize,
) -> (&'t [Token<'a>], &'t [Token<'a>]) {
    let is_break = |t: &Token<'_>| {
        t.kind == Kind::Sign && matches!(t.text, "," | "(" | ")" | "+" | ";" | "!" | "?" | "." | "&")
    };
    let first_inside = tokens.partition_point(|t| t.start < start);
    let first_after = tokens.partition_point(|t| t.start < end);
    let mut from = first_inside;
    while from > 0
        && first_inside - from < 6
        && !is_break(&tokens[from - 1])
        && !tokens[from].after_line_break
    {
        from -= 1;
    }
    let mut to = first_after;
    while to < tokens.len() && to - first_after < 4 && !is_break(&tokens[to]) && !tokens[to].after_line_break
    {
        to += 1;
    }
    (&tokens[from..first_inside], &tokens[first_after..to])
}

/// Amounts written in words before a currency word: "three hundred fifty
/// dollars", "a hundred bucks", "two grand".
fn word_amounts(tokens: &[Token<'_>]) -> Vec<FoundAmount> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Some((value, next)) = number_words(tokens, i) else {
            i += 1;
            continue;
        };
        let currency_after = tokens.get(next).is_some_and(|t| {
            t.kind == Kind::Word
                && (t.text.starts_with("dollar")
                    || t.text.starts_with("buck")
                    || t.text == "usd"
                    || t.text == "grand")
        });
        let currency_before = i > 0 && tokens[i - 1].is_sign('$');
        if currency_after || currency_before {
            let grand = tokens.get(next).is_some_and(|t| t.text == "grand");
            out.push(FoundAmount {
                value: if grand { value * Decimal::from(1000) } else { value },
                start: tokens[i].start,
                end: tokens[next.saturating_sub(1).max(i)].end,
            });
        }
        i = next.max(i + 1);
    }
    out
}

/// A run of number words from `i`: its value and the index after it.
fn number_words(tokens: &[Token<'_>], i: usize) -> Option<(Decimal, usize)> {
    let mut total: u64 = 0;
    let mut current: u64 = 0;
    let mut j = i;
    let mut any = false;
    let mut last_small: Option<u32> = None;
    while let Some(t) = tokens.get(j) {
        if t.kind == Kind::Sign && t.text == "-" && any {
            j += 1;
            continue;
        }
        if t.kind != Kind::Word {
            break;
        }
        match t.text {
            "a" if !any
                && tokens
                    .get(j + 1)
                    .is_some_and(|n| matches!(n.text, "hundred" | "thousand")) =>
            {
                current = 1;
            }
            "and"
                if any
                    && tokens
                        .get(j + 1)
                        .and_then(|n| small_number_word(n.text))
                        .is_some() => {}
            "hundred" if any => current = current.max(1) * 100,
            "thousand" if any => {
                total += current.max(1) * 1000;
                current = 0;
            }
            w => match small_number_word(w) {
                Some(n) => {
                    // "two fifty" is two hundred fifty.
                    if let Some(prev) = last_small
                        && (1..10).contains(&prev)
                        && n >= 10
                        && current == u64::from(prev)
                    {
                        current = u64::from(prev) * 100 + u64::from(n);
                    } else {
                        current += u64::from(n);
                    }
                    last_small = Some(n);
                    any = true;
                    j += 1;
                    continue;
                }
                None => break,
            },
        }
        any = true;
        last_small = None;
        j += 1;
    }
    any.then(|| (Decimal::from(total + current), j))
}

/// Percentages: "20%", "20 percent", each checked in its role.
fn check_percents(prepared: &str, tokens: &[Token<'_>], facts: &Facts, out: &mut Vec<Violation>) {
    for (i, t) in tokens.iter().enumerate() {
        if t.kind != Kind::Number || (i > 0 && tokens[i - 1].is_sign('.')) {
            continue;
        }
        let (value, after) = match (tokens.get(i + 1), tokens.get(i + 2)) {
            (Some(dot), Some(frac))
                if dot.is_sign('.') && frac.kind == Kind::Number && dot.start == t.end =>
            {
                (format!("{}.{}", t.text, frac.text), i + 3)
            }
            _ => (t.text.to_string(), i + 1),
        };
        let is_percent = tokens
            .get(after)
            .is_some_and(|n| n.is_sign('%') || n.is_word("percent") || n.is_word("pct"));
        if !is_percent {
            continue;
        }
        let Ok(value) = value.parse::<Decimal>() else {
            continue;
        };
        let end = tokens[after].end;
        let (before, following) = clause_around(tokens, t.start, end);
        let role_words = |words: &[&str]| before.iter().chain(following).any(|w| words.contains(&w.text));
        let (allowed, role): (Vec<&Decimal>, &str) = if role_words(&DISCOUNT_WORDS) {
            (facts.discount_percents.iter().collect(), "discount")
        } else if role_words(&SURCHARGE_WORDS) {
            (facts.surcharge_percents.iter().collect(), "surcharge")
        } else {
            (
                facts
                    .discount_percents
                    .iter()
                    .chain(&facts.surcharge_percents)
                    .collect(),
                "discount or surcharge",
            )
        };
        if !allowed.iter().any(|p| **p == value) {
            out.push(Violation {
                kind: ViolationKind::Percent,
                phrase: excerpt(prepared, t.start, end),
                reason: format!("{}% is not a {role} the owner configured", value.normalize()),
            });
        }
    }
}
