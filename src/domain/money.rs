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

/// Every dollar amount written in a text, as exact values: `$450`,
/// `$1,234.50`, `$ 20`, `450 dollars`, `USD 75`.
pub fn amounts_in_text(text: &str) -> Vec<Decimal> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let number_at = |start: usize| -> Option<(Decimal, usize)> {
        let mut end = start;
        let mut raw = String::new();
        while end < chars.len() {
            let c = chars[end];
            let next_is_digit = chars.get(end + 1).is_some_and(|n| n.is_ascii_digit());
            if c.is_ascii_digit() {
                raw.push(c);
            } else if c == ',' && next_is_digit && !raw.is_empty() {
            } else if c == '.' && next_is_digit && !raw.contains('.') && !raw.is_empty() {
                raw.push('.');
            } else {
                break;
            }
            end += 1;
        }
        if raw.is_empty() {
            return None;
        }
        Decimal::from_str(&raw).ok().map(|d| (d, end))
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // "$450", "$ 450", "US$450"
        if c == '$' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            if let Some((amount, end)) = number_at(j) {
                found.push(amount);
                i = end;
                continue;
            }
        }
        // "USD 75", "usd75"
        if chars[i..]
            .iter()
            .take(3)
            .collect::<String>()
            .eq_ignore_ascii_case("usd")
            && (i == 0 || !chars[i - 1].is_alphanumeric())
        {
            let mut j = i + 3;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            if let Some((amount, end)) = number_at(j) {
                found.push(amount);
                i = end;
                continue;
            }
        }
        // "450 dollars", "20 bucks"
        let starts_number =
            c.is_ascii_digit() && (i == 0 || !matches!(chars[i - 1], '0'..='9' | '$' | '.' | ','));
        if starts_number && let Some((amount, end)) = number_at(i) {
            let rest: String = chars[end..]
                .iter()
                .collect::<String>()
                .trim_start()
                .to_lowercase();
            if rest.starts_with("dollar") || rest.starts_with("bucks") || rest.starts_with("usd") {
                found.push(amount);
            }
            i = end.max(i + 1);
            continue;
        }
        i += 1;
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
}
