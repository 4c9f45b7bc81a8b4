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

#[derive(Template)]
#[template(path = "sms/reminder.txt")]
struct Reminder<'a> {
    name: &'a str,
    when_word: &'a str,
    label: &'a str,
    total: String,
}

/// A booking reminder; `tomorrow` picks "Tomorrow" or "Today".
pub fn reminder(
    business: &BusinessConfig,
    label: &str,
    total: crate::domain::money::Money,
    tomorrow: bool,
) -> String {
    render(&Reminder {
        name: &business.business.name,
        when_word: if tomorrow { "tomorrow" } else { "today" },
        label,
        total: total.to_string(),
    })
}

#[derive(Template)]
#[template(path = "sms/confirmation.txt")]
struct Confirmation<'a> {
    name: &'a str,
    label: &'a str,
    total: String,
}

/// The confirmation a customer gets when a booking is made or moved.
pub fn confirmation(business: &BusinessConfig, label: &str, total: crate::domain::money::Money) -> String {
    render(&Confirmation {
        name: &business.business.name,
        label,
        total: total.to_string(),
    })
}

#[derive(Template)]
#[template(path = "sms/cancelled.txt")]
struct Cancelled<'a> {
    name: &'a str,
    label: &'a str,
}

/// The customer's news that the business cancelled their booking (the
/// owner, from the console): a customer who cancels is answered by the
/// turn instead.
pub fn cancelled_by_business(business: &BusinessConfig, label: &str) -> String {
    render(&Cancelled {
        name: &business.business.name,
        label,
    })
}

#[derive(Template)]
#[template(path = "sms/opted_out.txt")]
struct OptedOut<'a> {
    name: &'a str,
    booked: Option<&'a str>,
}

/// The one confirmation of an opt-out in words. (Carriers and Twilio confirm
/// the STOP keywords themselves; words they do not recognize, we confirm.)
pub fn opted_out(business: &BusinessConfig, booked: Option<&str>) -> String {
    render(&OptedOut {
        name: &business.business.name,
        booked,
    })
}

#[derive(Template)]
#[template(path = "sms/opted_in.txt")]
struct OptedIn<'a> {
    name: &'a str,
}

/// The confirmation of START where the provider confirms nothing
/// (WhatsApp); on SMS, Twilio's Advanced Opt-Out sends its own.
pub fn opted_in(business: &BusinessConfig) -> String {
    render(&OptedIn {
        name: &business.business.name,
    })
}

#[derive(Template)]
#[template(path = "sms/handoff_ack.txt")]
struct HandoffAck<'a> {
    owner: &'a str,
}

/// What a customer hears while the owner has their conversation.
pub fn handoff_ack(business: &BusinessConfig) -> String {
    render(&HandoffAck {
        owner: business.business.owner_name(),
    })
}

#[derive(Template)]
#[template(path = "sms/follow_up.txt")]
struct FollowUp<'a> {
    name: &'a str,
    total: String,
    valid_until: String,
}

/// The one nudge on an unanswered quote.
pub fn follow_up(business: &BusinessConfig, quote: &crate::domain::quote::Quote) -> String {
    render(&FollowUp {
        name: &business.business.name,
        total: quote.total.to_string(),
        valid_until: quote
            .expires_at
            .with_timezone(&business.business.timezone)
            .format("%b %-d")
            .to_string(),
    })
}

/// What a provider email about a booking says.
pub struct BookingNotice<'a> {
    pub headline: String,
    pub when: &'a str,
    /// The time it had before, for a booking that moved.
    pub previous: Option<&'a str>,
    pub address: &'a str,
    pub customer: &'a str,
    pub phone: &'a str,
    pub job: &'a str,
    pub quote: &'a crate::domain::quote::Quote,
    pub notes: Option<&'a str>,
    pub calendar_link: Option<String>,
}

/// What both renderings of a booking email show.
struct BookingEmail<'a> {
    headline: &'a str,
    when: &'a str,
    previous: Option<&'a str>,
    address: &'a str,
    customer: &'a str,
    phone: &'a str,
    job: &'a str,
    lines: Vec<(String, String)>,
    total: String,
    notes: Option<&'a str>,
    calendar_link: Option<&'a str>,
    business: &'a str,
}

#[derive(Template)]
#[template(path = "email/booking.html")]
struct BookingHtml<'a> {
    v: &'a BookingEmail<'a>,
}

#[derive(Template)]
#[template(path = "email/booking.txt")]
struct BookingText<'a> {
    v: &'a BookingEmail<'a>,
}

/// (subject, html, text) of a provider's booking email.
pub fn booking_email(business: &BusinessConfig, n: &BookingNotice<'_>) -> (String, String, String) {
    let lines: Vec<(String, String)> = n
        .quote
        .lines
        .iter()
        .map(|l| (l.label.clone(), l.amount.to_string()))
        .collect();
    let email = BookingEmail {
        headline: &n.headline,
        when: n.when,
        previous: n.previous,
        address: n.address,
        customer: n.customer,
        phone: n.phone,
        job: n.job,
        lines,
        total: n.quote.total.to_string(),
        notes: n.notes,
        calendar_link: n.calendar_link.as_deref(),
        business: &business.business.name,
    };
    let html = BookingHtml { v: &email }
        .render()
        .expect("email templates render");
    let text = BookingText { v: &email }
        .render()
        .expect("email templates render");
    (format!("{}: {}", n.headline, n.when), html, text)
}

/// What both renderings of an owner alert show.
struct AlertEmail<'a> {
    headline: &'a str,
    detail: &'a str,
    customer: Option<&'a str>,
    phone: Option<&'a str>,
    business: &'a str,
}

#[derive(Template)]
#[template(path = "email/alert.html")]
struct AlertHtml<'a> {
    v: &'a AlertEmail<'a>,
}

#[derive(Template)]
#[template(path = "email/alert.txt")]
struct AlertText<'a> {
    v: &'a AlertEmail<'a>,
}

/// (subject, html, text) of an owner alert email.
pub fn alert_email(business: &BusinessConfig, headline: &str, detail: &str) -> (String, String, String) {
    alert_email_about(business, headline, detail, None, None)
}

/// An owner alert email about one customer: their name, and their full
/// number as a link the owner can tap to call.
pub fn alert_email_about(
    business: &BusinessConfig,
    headline: &str,
    detail: &str,
    customer: Option<&str>,
    phone: Option<&str>,
) -> (String, String, String) {
    let email = AlertEmail {
        headline,
        detail,
        customer,
        phone,
        business: &business.business.name,
    };
    let html = AlertHtml { v: &email }.render().expect("email templates render");
    let text = AlertText { v: &email }.render().expect("email templates render");
    (format!("[textdesk] {headline}"), html, text)
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

    /// The texts that tell a customer how to cancel a booking must not use a
    /// carrier keyword on its own, and must stay one plain GSM-7 text.
    #[test]
    fn booking_texts_say_how_to_cancel_without_a_carrier_keyword() {
        let mut business = BusinessConfig::default();
        business.business.name = "Rose City Junk Haulers".into();
        let label = "Tue Dec 1, 8-10am";
        let total = crate::domain::money::Money::new(rust_decimal::Decimal::from(350));
        for text in [
            confirmation(&business, label, total),
            reminder(&business, label, total, true),
            opted_out(&business, Some(label)),
            handoff_ack(&business),
            cancelled_by_business(&business, label),
        ] {
            let info = segment_info(&text);
            assert_eq!(info.encoding, Encoding::Gsm7, "{text}");
            assert!(info.segments <= 1, "{text}: {info:?}");
        }
        for text in [
            confirmation(&business, label, total),
            reminder(&business, label, total, false),
        ] {
            assert!(text.contains("CANCEL BOOKING"), "{text}");
            // What the text advertises is understood as a booking
            // cancellation, and is not a keyword a carrier acts on.
            assert!(crate::domain::guided::wants_cancel_booking("CANCEL BOOKING"));
            assert_eq!(crate::domain::keywords::classify("CANCEL BOOKING", false), None);
        }
    }
}
