//! The price guardrail: every dollar amount a text states must be one the
//! quote engine produced for this conversation.

use rust_decimal::Decimal;

use super::money::amounts_in_text;
use super::quote::Quote;

/// Amounts in `text` that no quote of the conversation states.
pub fn unsupported_amounts<'a>(text: &str, quotes: impl IntoIterator<Item = &'a Quote>) -> Vec<Decimal> {
    let allowed: Vec<Decimal> = quotes
        .into_iter()
        .flat_map(|q| q.stated_amounts().map(|m| m.amount()).collect::<Vec<_>>())
        .collect();
    amounts_in_text(text)
        .into_iter()
        .filter(|amount| !allowed.iter().any(|a| a == amount))
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::quote::{JobSpec, JunkJob, PricingConfig, price};

    fn quote() -> Quote {
        let job = JobSpec::Junk(JunkJob {
            tier: Some("half_truck".into()),
            ..JunkJob::default()
        });
        price(&PricingConfig::default(), &job, "q".into(), Utc::now()).unwrap()
    }

    #[test]
    fn engine_amounts_pass_and_others_do_not() {
        let q = quote();
        assert_eq!(q.total.to_string(), "$350");
        assert!(
            unsupported_amounts(
                "Your total is $350 ($150 delivery + $200 labour, $50/hour).",
                [&q]
            )
            .is_empty()
        );
        assert!(unsupported_amounts("That comes to $350.00.", [&q]).is_empty());
        assert_eq!(
            unsupported_amounts("Sure, $20 it is!", [&q]),
            vec![Decimal::from(20)]
        );
        assert_eq!(
            unsupported_amounts("It's about 300 dollars", [&q]),
            vec![Decimal::from(300)]
        );
        // Without any quote, no amount is allowed at all.
        assert_eq!(unsupported_amounts("$150 delivery", []), vec![Decimal::from(150)]);
        assert!(unsupported_amounts("We can come Tuesday 8-10am with 2 people.", []).is_empty());
    }
}
