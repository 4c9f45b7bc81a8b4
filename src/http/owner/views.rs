//! The console's pages (askama, `templates/owner/`) and the view models
//! they render. Every value reaches HTML through askama's escaping; the
//! templates never mark customer text safe.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::channel::{Channel, WHATSAPP_PREFIX};
use crate::store::Direction;

/// What every signed-in page shows at the top.
pub struct Nav {
    pub csrf: String,
    pub open_alerts: i64,
    pub active: &'static str,
    /// (id, name) of every business, when there are several.
    pub businesses: Vec<(String, String)>,
    /// The business picked with the switcher (empty: all).
    pub business: String,
}

impl Nav {
    /// `?business=...` for links that keep the switcher's choice.
    pub fn business_query(&self) -> String {
        if self.business.is_empty() {
            String::new()
        } else {
            format!(
                "business={}",
                form_urlencoded::byte_serialize(self.business.as_bytes()).collect::<String>()
            )
        }
    }
}

pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console: a page failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "owner/login.html")]
pub struct LoginPage {
    pub csrf: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "owner/setup.html")]
pub struct SetupPage;

/// Until a password exists, every console page is this one.
pub fn setup_page() -> Response {
    render(StatusCode::OK, &SetupPage)
}

#[derive(Template)]
#[template(path = "owner/error.html")]
pub struct ErrorPage<'a> {
    pub status: u16,
    pub message: &'a str,
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    render(
        status,
        &ErrorPage {
            status: status.as_u16(),
            message,
        },
    )
}

#[derive(Template)]
#[template(path = "owner/inbox.html")]
pub struct InboxPage {
    pub nav: Nav,
    /// (value, label, selected)
    pub filters: Vec<(&'static str, &'static str, bool)>,
    pub filter: &'static str,
    pub search: String,
    pub rows: Vec<InboxItem>,
    pub next_page: Option<String>,
}

pub struct InboxItem {
    pub href: String,
    pub name: String,
    pub address: String,
    pub channel: &'static str,
    pub state: &'static str,
    pub needs_you: bool,
    pub last_text: String,
    pub last_by: &'static str,
    pub since: String,
    pub unread: bool,
    pub business: String,
}

#[derive(Template)]
#[template(path = "owner/conversation.html")]
pub struct ConversationPage {
    pub nav: Nav,
    pub id: i64,
    pub name: String,
    pub address: String,
    pub tel: String,
    pub channel: &'static str,
    pub business: String,
    pub timezone: String,
    pub state: &'static str,
    pub needs_you: bool,
    pub opted_out: bool,
    /// Why and when it was handed off.
    pub handoff: Option<String>,
    pub job: Vec<(&'static str, String)>,
    pub quote: Option<QuoteView>,
    pub bookings: Vec<BookingView>,
    pub messages: Vec<MessageView>,
    /// The reply waiting for the owner's approval, if one is.
    pub held: Option<HeldView>,
    /// Take over or hand back, reply, move or cancel the booking.
    pub actions: super::actions::ActionsView,
    /// The model's tokens in this conversation and what they cost, if it
    /// called the model at all.
    pub usage: Option<UsageView>,
    /// The same customer's other conversations: a web visitor's texts from
    /// the number they verified, or the web chats linked to a phone's.
    pub linked: Vec<LinkView>,
}

/// A link to another conversation of the same customer.
pub struct LinkView {
    pub href: String,
    pub label: String,
}

/// A conversation's model usage, and its cost as an estimate.
pub struct UsageView {
    pub turns: u64,
    pub calls: u64,
    pub input: String,
    pub cache_read: String,
    pub cache_write: String,
    pub output: String,
    /// The share of input tokens read from the prompt cache.
    pub cached_share: String,
    pub cost: String,
}

impl UsageView {
    pub fn of(totals: &crate::store::UsageTotals, prices: &crate::config::settings::ModelPrices) -> Self {
        let t = &totals.tokens;
        let share = if t.total_input() == 0 {
            0
        } else {
            (t.cache_read * 100 + t.total_input() / 2) / t.total_input()
        };
        Self {
            turns: totals.turns,
            calls: totals.model_calls,
            input: thousands(t.input),
            cache_read: thousands(t.cache_read),
            cache_write: thousands(t.cache_write),
            output: thousands(t.output),
            cached_share: format!("{share}%"),
            cost: dollars_estimate(prices.cost(t)),
        }
    }
}

/// 1234567 as "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A small cost readably: cents to four places below a dollar.
pub fn dollars_estimate(dollars: f64) -> String {
    if dollars < 1.0 {
        format!("${dollars:.4}")
    } else {
        format!("${dollars:.2}")
    }
}

/// A held reply with its three actions; after a refused edit, the owner's
/// wording and the guardrail's reasons.
pub struct HeldView {
    pub action: String,
    pub draft: String,
    pub time: String,
    pub deadline: String,
    /// What the edit box holds: the draft, or the refused edit.
    pub text: String,
    pub reasons: Vec<String>,
}

pub struct QuoteView {
    pub total: String,
    pub lines: Vec<(String, String)>,
    pub assumptions: Vec<String>,
    pub valid_until: String,
}

pub struct BookingView {
    pub window: String,
    pub crew: String,
    pub status: String,
    pub needs_you: bool,
}

pub struct MessageView {
    pub author: &'static str,
    pub inbound: bool,
    /// A customer text the owner had not seen before this visit.
    pub unread: bool,
    pub body: String,
    pub time: String,
    pub status: String,
    pub media: Vec<MediaView>,
}

pub struct MediaView {
    pub href: Option<String>,
    pub label: String,
}

#[derive(Template)]
#[template(path = "owner/schedule.html")]
pub struct SchedulePage {
    pub nav: Nav,
    pub business: String,
    pub timezone: String,
    pub days: Vec<DayView>,
}

pub struct DayView {
    pub label: String,
    pub crews: Vec<CrewView>,
}

pub struct CrewView {
    pub crew: String,
    pub bookings: Vec<ScheduleItem>,
}

pub struct ScheduleItem {
    pub window: String,
    pub customer: String,
    pub address: String,
    pub price: String,
    pub href: String,
    pub attention: Option<String>,
}

#[derive(Template)]
#[template(path = "owner/alerts.html")]
pub struct AlertsPage {
    pub nav: Nav,
    pub open: bool,
    pub alerts: Vec<AlertView>,
}

pub struct AlertView {
    pub id: i64,
    pub kind: String,
    pub detail: String,
    pub when: String,
    pub customer: String,
    pub tel: String,
    pub address: String,
    pub href: Option<String>,
    pub resolved: Option<String>,
}

#[derive(Template)]
#[template(path = "owner/jobs.html")]
pub struct JobsPage {
    pub nav: Nav,
    pub jobs: Vec<JobView>,
    pub notice: Option<String>,
}

pub struct JobView {
    pub id: i64,
    pub kind: String,
    pub status: &'static str,
    pub recipient: String,
    pub due: String,
    pub attempts: String,
    pub last_error: String,
    pub text: String,
    pub href: Option<String>,
    pub can_retry: bool,
    pub can_cancel: bool,
}

/// In words, for the inbox and the conversation page.
pub fn state_label(tag: &str) -> &'static str {
    match tag {
        "intake" => "New",
        "quoted" => "Quoted",
        "scheduling" => "Scheduling",
        "booked" => "Booked",
        "handed_off" => "With you",
        "cancelled" => "Cancelled",
        "opted_out" => "Opted out",
        "closed" => "Closed",
        _ => "Unknown",
    }
}

/// Who wrote a text, from how it was stored.
pub fn author(direction: Direction, kind: &str) -> &'static str {
    match direction {
        Direction::Inbound => "Customer",
        // textdesk's alert to the owner's phone, not the owner's writing.
        Direction::Outbound if kind == "owner_alert" => "System",
        Direction::Outbound if kind.starts_with("owner") => "You",
        Direction::Outbound
            if kind.contains("reminder") || kind.contains("follow_up") || kind == "day_before" =>
        {
            "Reminder"
        }
        Direction::Outbound
            if matches!(
                kind,
                "reply" | "templated" | "confirmation" | "cancellation" | "quote"
            ) =>
        {
            "Assistant"
        }
        Direction::Outbound => "System",
    }
}

pub fn channel_name(address: &str) -> &'static str {
    Channel::of_address(address).name()
}

/// A `tel:` link for an address (a WhatsApp address rings its number).
pub fn tel_href(address: &str) -> String {
    format!("tel:{}", address.strip_prefix(WHATSAPP_PREFIX).unwrap_or(address))
}

/// "4m", "3h", "2d": how long ago, at a glance.
pub fn since(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - then).num_seconds().max(0);
    match seconds {
        0..60 => "now".into(),
        60..3_600 => format!("{}m", seconds / 60),
        3_600..86_400 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

pub fn local_time(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%a %b %-d, %-I:%M %P").to_string()
}

/// Twilio's status when it sent one, else ours.
pub fn delivery_label(status: &str, delivery: Option<&str>, error_code: Option<i64>) -> String {
    let base = delivery.unwrap_or(status);
    match error_code {
        Some(code) => format!("{base}: {}", crate::domain::delivery::describe_error(Some(code))),
        None => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authors_follow_direction_and_kind() {
        assert_eq!(author(Direction::Inbound, "customer"), "Customer");
        assert_eq!(author(Direction::Outbound, "reply"), "Assistant");
        assert_eq!(author(Direction::Outbound, "owner_reply"), "You");
        assert_eq!(author(Direction::Outbound, "owner_alert"), "System");
        assert_eq!(author(Direction::Outbound, "reminder"), "Reminder");
        assert_eq!(author(Direction::Outbound, "quote_follow_up"), "Reminder");
        assert_eq!(author(Direction::Outbound, "help"), "System");
    }

    #[test]
    fn time_since_reads_at_a_glance() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        assert_eq!(since(now, now), "now");
        assert_eq!(since(now - chrono::Duration::minutes(5), now), "5m");
        assert_eq!(since(now - chrono::Duration::hours(3), now), "3h");
        assert_eq!(since(now - chrono::Duration::days(2), now), "2d");
    }

    #[test]
    fn a_whatsapp_address_rings_its_number() {
        assert_eq!(tel_href("whatsapp:+15035550100"), "tel:+15035550100");
        assert_eq!(tel_href("+15035550100"), "tel:+15035550100");
        assert_eq!(channel_name("whatsapp:+15035550100"), "WhatsApp");
    }
}
