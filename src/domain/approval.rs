//! Approval before sending: which of the assistant's replies wait for the
//! owner. A pure decision over the reply as it will be sent, the quotes the
//! turn issued and the texts the customer has actually received.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use super::money::{Money, amounts_in_text};

/// Largest `over:` threshold accepted: above it nothing would ever wait,
/// which is `off` said confusingly.
pub const MAX_THRESHOLD_DOLLARS: i64 = 1_000_000;

/// "1 minute", "30 minutes": the approval timeout as the owner reads it.
pub fn minutes_in_words(minutes: u32) -> String {
    if minutes == 1 {
        "1 minute".to_string()
    } else {
        format!("{minutes} minutes")
    }
}

/// The start of a held reply, for an alert: whole words, at most
/// `max_chars` characters, with "..." when it was cut.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= max_chars {
        return text;
    }
    let mut cut = String::new();
    for word in text.split(' ') {
        let next = if cut.is_empty() {
            word.chars().count()
        } else {
            cut.chars().count() + 1 + word.chars().count()
        };
        if next > max_chars {
            break;
        }
        if !cut.is_empty() {
            cut.push(' ');
        }
        cut.push_str(word);
    }
    if cut.is_empty() {
        // One word longer than the room: cut inside it.
        cut = text.chars().take(max_chars).collect();
    }
    let cut = cut.trim_end_matches([',', ';', ':', '.', ' ']);
    format!("{cut}...")
}

/// `[assistant] approval` in business.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApprovalPolicy {
    /// Every reply goes out as drafted (after the guardrail).
    #[default]
    Off,
    /// A reply that states a price the customer has not been sent waits.
    Quotes,
    /// A reply with a new price above this amount waits.
    Over(Money),
    /// Every reply of the assistant waits.
    All,
}

impl ApprovalPolicy {
    pub fn is_off(self) -> bool {
        self == ApprovalPolicy::Off
    }

    /// Whether this reply must wait for the owner.
    ///
    /// `new_quote_totals` are the totals of the quotes this turn issued;
    /// `received` are the bodies of our texts that went out to the
    /// customer (held, rejected and expired replies are not among them). A
    /// price is new when the reply states an amount none of those texts
    /// stated, or the turn issued a quote: so a price the owner rejected
    /// and the customer never saw still waits when a later reply repeats it.
    pub fn holds<'a>(
        self,
        body: &str,
        new_quote_totals: &[Money],
        received: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        let threshold = match self {
            ApprovalPolicy::Off => return false,
            ApprovalPolicy::All => return true,
            ApprovalPolicy::Quotes => None,
            ApprovalPolicy::Over(limit) => Some(limit.amount()),
        };
        let above = |amount: Decimal| threshold.is_none_or(|limit| amount > limit);
        if new_quote_totals.iter().any(|total| above(total.amount())) {
            return true;
        }
        let stated = amounts_in_text(body);
        if !stated.iter().any(|a| above(*a)) {
            return false;
        }
        let seen: Vec<Decimal> = received.into_iter().flat_map(amounts_in_text).collect();
        stated.iter().any(|a| above(*a) && !seen.contains(a))
    }
}

impl fmt::Display for ApprovalPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApprovalPolicy::Off => f.write_str("off"),
            ApprovalPolicy::Quotes => f.write_str("quotes"),
            ApprovalPolicy::All => f.write_str("all"),
            ApprovalPolicy::Over(limit) => write!(f, "over:{}", limit.amount().normalize()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected \"off\", \"quotes\", \"all\" or \"over:<amount>\" with an amount from 1 to {MAX_THRESHOLD_DOLLARS} (e.g. \"over:500\"), got \"{0}\""
)]
pub struct ApprovalPolicyError(pub String);

impl FromStr for ApprovalPolicy {
    type Err = ApprovalPolicyError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let text = raw.trim().to_ascii_lowercase();
        let refused = || ApprovalPolicyError(raw.to_string());
        match text.as_str() {
            "off" => Ok(ApprovalPolicy::Off),
            "quotes" => Ok(ApprovalPolicy::Quotes),
            "all" => Ok(ApprovalPolicy::All),
            _ => {
                let amount = text.strip_prefix("over:").ok_or_else(refused)?;
                let limit = Money::from_str(amount).map_err(|_| refused())?;
                let range = Decimal::ONE..=Decimal::from(MAX_THRESHOLD_DOLLARS);
                if !range.contains(&limit.amount()) {
                    return Err(refused());
                }
                Ok(ApprovalPolicy::Over(limit))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn minutes_read_in_the_singular_for_one() {
        assert_eq!(minutes_in_words(1), "1 minute");
        assert_eq!(minutes_in_words(30), "30 minutes");
    }

    #[test]
    fn an_excerpt_ends_on_a_whole_word_with_an_ellipsis() {
        assert_eq!(excerpt("Short reply.", 40), "Short reply.");
        assert_eq!(
            excerpt("Half a truck is $350, and we can come Tuesday.", 24),
            "Half a truck is $350..."
        );
        assert_eq!(excerpt("Supercalifragilistic", 5), "Super...");
    }

    use super::*;

    fn over(n: i64) -> ApprovalPolicy {
        ApprovalPolicy::Over(Money::dollars(n))
    }

    #[test]
    fn policies_read_as_written_and_print_back() {
        for text in ["off", "quotes", "all", "over:500", "over:99.5"] {
            let policy: ApprovalPolicy = text.parse().unwrap();
            assert_eq!(policy.to_string(), text);
        }
        assert_eq!(" Over:$1,000 ".parse::<ApprovalPolicy>().unwrap(), over(1000));
        for bad in [
            "",
            "some",
            "over:",
            "over:0",
            "over:-5",
            "over:abc",
            "over:1000001",
        ] {
            assert!(bad.parse::<ApprovalPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn off_never_holds_and_all_always_does() {
        assert!(!ApprovalPolicy::Off.holds("It's $350.", &[Money::dollars(350)], []));
        assert!(ApprovalPolicy::All.holds("Hi! What needs hauling?", &[], []));
    }

    #[test]
    fn quotes_holds_a_new_price_and_not_one_the_customer_already_has() {
        let quotes = ApprovalPolicy::Quotes;
        assert!(quotes.holds("It's $350 all in.", &[Money::dollars(350)], []));
        assert!(quotes.holds("It's $350 all in.", &[], []), "never sent before");
        assert!(!quotes.holds("Yes, $350 covers it.", &[], ["It's $350 all in."]));
        assert!(!quotes.holds("What day suits you?", &[], ["It's $350 all in."]));
        assert!(quotes.holds("A quote is on its way.", &[Money::dollars(350)], []));
    }

    #[test]
    fn over_holds_only_what_is_above_the_threshold() {
        assert!(!over(500).holds("It's $350.", &[Money::dollars(350)], []));
        assert!(over(500).holds("It's $650.", &[Money::dollars(650)], []));
        assert!(
            !over(500).holds("It's $500.", &[Money::dollars(500)], []),
            "at the line"
        );
        assert!(over(300).holds("$200 plus $150 labour", &[Money::dollars(350)], []));
        assert!(!over(300).holds("Still $650.", &[], ["It's $650."]));
    }
}
