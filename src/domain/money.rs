//! Money: exact decimal dollars, always held to the cent.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Rounds half away from zero to the cent.
    pub fn new(amount: Decimal) -> Self {
        Money(amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero))
    }

    pub fn dollars(whole: i64) -> Self {
        Money(Decimal::new(whole * 100, 2))
    }

    pub fn amount(self) -> Decimal {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money::new(self.0 + rhs.0)
    }
}

impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money::new(self.0 - rhs.0)
    }
}

impl std::ops::Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

/// `$450`, `$1,234.50`, `-$45`: whole dollars drop the cents, as people
/// write prices in a text.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let negative = self.is_negative();
        let abs = self.0.abs();
        let whole = abs.trunc();
        let cents = ((abs - whole) * Decimal::ONE_HUNDRED).trunc();
        let digits = whole.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        let sign = if negative { "-" } else { "" };
        if cents.is_zero() {
            write!(f, "{sign}${grouped}")
        } else {
            write!(f, "{sign}${grouped}.{cents:0>2}")
        }
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({})", self.0)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let amount = <Decimal as Deserialize>::deserialize(d)?;
        Ok(Money::new(amount))
    }
}

impl FromStr for Money {
    type Err = rust_decimal::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Money::new(Decimal::from_str(
            s.trim().trim_start_matches('$').replace(',', "").as_str(),
        )?))
    }
}

/// A dollar amount found in prepared text (see
/// [`crate::domain::guardrail::prepare`]): its value and byte span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundAmount {
    pub value: Decimal,
    pub start: usize,
    pub end: usize,
}

/// Every dollar amount written in a text, as exact values.
///
/// The text is first prepared as the customer reads it (normalized as it
/// will be sent, so an invisible or non-breaking space cannot hide a `$20`,
/// and in NFKC form, so `＄１９９` is `$199`). A number is an amount when a
/// currency sign or word stands before or after it (`$450`, `450$`,
/// `USD 75`, `30 dollars`, `$1.5k`, a `$` ending one line and `199` starting
/// the next), when a rate or price word follows it (`275/hr`, `40 each`,
/// `20 off`, `350 total`), or when it continues a range or choice that
/// starts with an amount (`$150-600`, `$150 to 600`, `$150 or 600`).
pub fn amounts_in_text(text: &str) -> Vec<Decimal> {
    find_amounts(&crate::domain::guardrail::prepare(text))
        .into_iter()
        .map(|a| a.value)
        .collect()
}

const CURRENCY_SIGNS: [char; 4] = ['$', '\u{20AC}', '\u{00A3}', '\u{00A5}'];

/// The digit-written amounts of already prepared text, with their spans.
pub fn find_amounts(prepared: &str) -> Vec<FoundAmount> {
    let indexed: Vec<(usize, char)> = prepared.char_indices().collect();
    let chars: Vec<char> = indexed.iter().map(|&(_, c)| c).collect();
    let byte_at = |i: usize| indexed.get(i).map_or(prepared.len(), |&(b, _)| b);
    let rest = |from: usize| -> &str { &prepared[byte_at(from)..] };

    // Every number: value, start, end (exclusive), in chars.
    let mut numbers: Vec<(Decimal, usize, usize)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_digit());
        if !starts_number {
            i += 1;
            continue;
        }
        let mut end = i;
        let mut raw = String::new();
        while end < chars.len() {
            let c = chars[end];
            let next_is_digit = chars.get(end + 1).is_some_and(|n| n.is_ascii_digit());
            if c.is_ascii_digit() {
                raw.push(c);
            } else if c == ',' && next_is_digit {
            } else if c == '.' && next_is_digit && !raw.contains('.') {
                raw.push('.');
            } else {
                break;
            }
            end += 1;
        }
        if let Ok(mut value) = Decimal::from_str(&raw) {
            // "$1.5k"
            if chars.get(end) == Some(&'k') && chars.get(end + 1).is_none_or(|c| !c.is_alphanumeric()) {
                value *= Decimal::from(1000);
                end += 1;
            }
            numbers.push((value, i, end));
        }
        i = end.max(i + 1);
    }

    // Any whitespace, a line break included: a reply split into texts is
    // still read as one.
    // Where the currency sign before a number starts, if it has one.
    let currency_before = |start: usize| {
        let mut j = start;
        while j > 0 && chars[j - 1].is_whitespace() {
            j -= 1;
        }
        if j > 0 && CURRENCY_SIGNS.contains(&chars[j - 1]) {
            Some(j - 1)
        } else if j >= 3 && chars[j - 3..j].iter().collect::<String>() == "usd" {
            Some(j - 3)
        } else {
            None
        }
    };
    let after_marks_price = |end: usize| {
        let after = rest(end);
        let trimmed = after.trim_start();
        const WORDS: [&str; 15] = [
            "$", "\u{20AC}", "\u{00A3}", "\u{00A5}", "dollar", "buck", "usd", "/h", "per ", "an hour",
            "a hour", "each", "total", "off", "flat",
        ];
        WORDS
            .iter()
            .any(|w| trimmed.starts_with(w) || (w.starts_with('/') && after.starts_with(w)))
    };

    let mut found = Vec::new();
    let mut previous_was_amount: Option<usize> = None;
    for (value, start, end) in numbers {
        let joins_previous = previous_was_amount.is_some_and(|prev_end| {
            let between: String = chars[prev_end..start].iter().collect::<String>();
            let between = between.trim();
            matches!(
                between,
                "-" | "to" | "or" | "and" | "/" | "or $" | "to $" | "- $" | "-$"
            )
        });
        let sign = currency_before(start);
        if sign.is_some() || after_marks_price(end) || joins_previous {
            found.push(FoundAmount {
                value,
                start: byte_at(sign.unwrap_or(start)),
                end: byte_at(end),
            });
            previous_was_amount = Some(end);
        } else {
            previous_was_amount = None;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn displays_like_a_price_in_a_text() {
        assert_eq!(Money::dollars(450).to_string(), "$450");
        assert_eq!(Money::new(d("1234.5")).to_string(), "$1,234.50");
        assert_eq!(Money::new(d("1234567.05")).to_string(), "$1,234,567.05");
        assert_eq!(Money::new(d("-45")).to_string(), "-$45");
        assert_eq!(Money::ZERO.to_string(), "$0");
    }

    #[test]
    fn rounds_half_away_from_zero_to_the_cent() {
        assert_eq!(Money::new(d("10.005")).amount(), d("10.01"));
        assert_eq!(Money::new(d("10.004")).amount(), d("10.00"));
        assert_eq!(Money::new(d("-10.005")).amount(), d("-10.01"));
    }

    #[test]
    fn finds_amounts_hidden_the_ways_models_write_them() {
        let found = |t: &str| amounts_in_text(t);
        assert_eq!(found("Most jobs run $150-600"), vec![d("150"), d("600")]);
        assert_eq!(found("between $150 to 600 or so"), vec![d("150"), d("600")]);
        assert_eq!(found("$150 or 600"), vec![d("150"), d("600")]);
        assert_eq!(found("only 350$"), vec![d("350")]);
        assert_eq!(
            found("it's 275 total, 40 each, 20 off"),
            vec![d("275"), d("40"), d("20")]
        );
        assert_eq!(found("we charge 60/hr or 55 per hour"), vec![d("60"), d("55")]);
        assert_eq!(found("about $1.5k"), vec![d("1500")]);
        assert_eq!(found("$\u{00A0}20 and $\u{200B}30"), vec![d("20"), d("30")]);
        // Not amounts.
        assert!(found("2 people for 2-3 hours, 8-10am, call 503-555-0142").is_empty());
        assert!(found("$350 for 2-3 hours").len() == 1);
    }

    #[test]
    fn finds_amounts_in_text() {
        assert_eq!(amounts_in_text("Your total is $450."), vec![d("450")]);
        assert_eq!(
            amounts_in_text("$1,234.50 or $ 20, maybe 30 dollars or USD 75"),
            vec![d("1234.50"), d("20"), d("30"), d("75")]
        );
        assert_eq!(
            amounts_in_text("We come 8-10am, 2 people, 3 hours"),
            Vec::<Decimal>::new()
        );
        assert_eq!(amounts_in_text("ok $20 bucks"), vec![d("20")]);
        assert_eq!(amounts_in_text("call 503-555-0142"), Vec::<Decimal>::new());
        assert_eq!(amounts_in_text("It's $150."), vec![d("150")]);
    }

    #[test]
    fn finds_amounts_in_other_scripts_and_across_texts() {
        assert_eq!(
            amounts_in_text("only \u{FF04}\u{FF11}\u{FF19}\u{FF19}"),
            vec![d("199")]
        );
        assert_eq!(amounts_in_text("That's just $\n199. Deal?"), vec![d("199")]);
        assert_eq!(
            amounts_in_text("\u{20AC}40 or 40 \u{20AC}"),
            vec![d("40"), d("40")]
        );
    }
}
