//! Fixed texts, rendered by askama from `templates/`, so the owner can read
//! and reword every message the code (rather than the model) sends.

use askama::Template;

use crate::config::business::BusinessConfig;

#[derive(Template)]
#[template(path = "sms/apology.txt")]
struct Apology<'a> {
    name: &'a str,
}

#[derive(Template)]
#[template(path = "sms/help.txt")]
struct Help<'a> {
    name: &'a str,
    phone: Option<&'a str>,
}

fn render(t: &impl Template) -> String {
    // Templates are compiled in and take only strings: rendering cannot fail.
    t.render().expect("SMS templates render").trim().to_string()
}

#[derive(Template)]
#[template(path = "sms/quote.txt")]
struct QuoteMessage<'a> {
    name: &'a str,
    total: String,
    basis: String,
    valid_until: String,
}

/// A quote, stated by code: used by the guided flow, and when a drafted
/// reply states an amount no quote produced.
pub fn quote_message(business: &BusinessConfig, quote: &crate::domain::quote::Quote) -> String {
    let valid = quote.expires_at.with_timezone(&business.business.timezone);
    render(&QuoteMessage {
        name: &business.business.name,
        total: quote.total.to_string(),
        basis: quote.assumptions.join(" "),
        valid_until: valid.format("%b %-d").to_string(),
    })
}

/// Sent when the model stays unreachable after retries.
pub fn apology(business: &BusinessConfig) -> String {
    render(&Apology {
        name: &business.business.name,
    })
}

/// The answer to HELP or INFO.
pub fn help(business: &BusinessConfig) -> String {
    render(&Help {
        name: &business.business.name,
        phone: business.business.phone.as_ref().map(|p| p.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sms_text::{Encoding, segment_info};

    #[test]
    fn fixed_texts_are_single_gsm7_segments() {
        let mut business = BusinessConfig::default();
        business.business.name = "Rose City Junk Haulers".into();
        business.business.phone = Some(crate::domain::phone::E164::parse("+15035550142").unwrap());
        for text in [apology(&business), help(&business)] {
            let info = segment_info(&text);
            assert_eq!(info.encoding, Encoding::Gsm7, "{text}");
            assert!(info.segments <= 1, "{text}: {info:?}");
            assert!(text.contains("Rose City Junk Haulers"));
        }
        let help = help(&business);
        assert!(help.contains("+15035550142") && help.contains("STOP"), "{help}");
    }
}
