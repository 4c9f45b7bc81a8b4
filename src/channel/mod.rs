//! Channels: how a conversation's texts travel, and the rules each one
//! imposes on what we send.
//!
//! A conversation's channel is read from its customer's address (a
//! `whatsapp:` prefix, or a bare E.164 number for SMS), so it is stored with
//! the customer and needs no column of its own. Each channel
//!
//! - turns what arrives into a channel-neutral `InboundMessage` (the Twilio
//!   webhook in `twilio.rs`, for SMS and WhatsApp; a terminal line in
//!   `console.rs`, for `chat`);
//! - states its policy (`Channel`: length budget and encoding, keywords,
//!   quiet hours, media, the free-form window);
//! - sends, through a `ChannelPort`, with results in channel terms
//!   (`SendError`), so nothing past this module knows a provider's codes.
//!
//! The engine drafts one reply and asks the channel how to shape it; the
//! outbox stores it; `jobs::dispatch::Dispatcher` asks the conversation's
//! channel to deliver it.

pub mod console;
pub mod twilio;
pub mod voice;
pub mod webchat;
pub mod whatsapp;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::domain::phone::E164;
use crate::domain::sms_text;

/// WhatsApp's hard limit on a free-form message body.
pub const WHATSAPP_MAX_CHARS: usize = 4096;

/// The longest reply shown in the web chat widget.
pub const WEB_MAX_CHARS: usize = 2000;

/// The prefix Twilio gives WhatsApp addresses (`whatsapp:+15035550142`).
pub const WHATSAPP_PREFIX: &str = "whatsapp:";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// SMS (and MMS) through Twilio.
    Sms,
    /// WhatsApp through Twilio's Messages API.
    WhatsApp,
    /// The owner's terminal (`textdesk chat`): rehearses the SMS desk, so
    /// it follows SMS's rules and shows exactly what a customer would get.
    Chat,
    /// The web chat widget on the owner's site (`web:` addresses): replies
    /// are stored for the widget to fetch.
    Web,
}

impl Channel {
    /// The channel an address (`From` or `To` of a webhook, or a stored
    /// customer address) belongs to.
    pub fn of_address(address: &str) -> Self {
        if address.starts_with(crate::domain::phone::WEB_PREFIX) {
            Self::Web
        } else if address.starts_with(WHATSAPP_PREFIX) {
            Self::WhatsApp
        } else {
            Self::Sms
        }
    }

    /// The channel of a parsed address.
    pub fn of(address: &E164) -> Self {
        if address.is_web() {
            Self::Web
        } else if address.is_whatsapp() {
            Self::WhatsApp
        } else {
            Self::Sms
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sms => "SMS",
            Self::WhatsApp => "WhatsApp",
            Self::Chat => "chat",
            Self::Web => "web chat",
        }
    }

    /// The reply exactly as it will be sent: SMS rewrites to GSM-7 (so a
    /// curly quote does not turn the text into UCS-2 and triple its cost)
    /// and cuts to the owner's segment budget; WhatsApp sends Unicode as
    /// written and only enforces its 4,096-character limit.
    pub fn prepare_reply(self, text: &str, max_segments: usize) -> String {
        match self {
            Self::Sms | Self::Chat => sms_text::prepare_reply(text, max_segments),
            Self::WhatsApp => cut_to_chars(text.trim(), WHATSAPP_MAX_CHARS),
            // A browser shows any Unicode and costs nothing per segment.
            Self::Web => cut_to_chars(text.trim(), WEB_MAX_CHARS),
        }
    }

    /// STOP, START and HELP are honoured on every channel: carriers require
    /// it for SMS, and WhatsApp's opt-out rules ask for the same.
    pub fn honours_keywords(self) -> bool {
        true
    }

    /// Whether the provider itself confirms STOP and START to the customer
    /// (Twilio's Advanced Opt-Out does on SMS). Where it does not
    /// (WhatsApp), our code confirms an opt-out, once.
    pub fn provider_confirms_keywords(self) -> bool {
        matches!(self, Self::Sms | Self::Chat)
    }

    /// Quiet hours are the owner's rule about when a customer's phone may
    /// buzz; they hold on every channel the customer carries in a pocket.
    /// The web visitor is on the page waiting for the answer: nothing
    /// buzzes, so replies to them are never held for quiet hours.
    pub fn observes_quiet_hours(self) -> bool {
        !matches!(self, Self::Chat | Self::Web)
    }

    /// Customers may send photos (MMS, WhatsApp media); the terminal cannot.
    pub fn accepts_media(self) -> bool {
        !matches!(self, Self::Chat | Self::Web)
    }

    /// How long after the customer's last message free-form text may be
    /// sent; `None` when the channel has no such window.
    pub fn free_form_window(self) -> Option<Duration> {
        match self {
            Self::WhatsApp => Some(Duration::hours(24)),
            Self::Sms | Self::Chat | Self::Web => None,
        }
    }

    /// Whether free-form text may go out `now`, the customer having last
    /// written at `last_inbound` (judged at the moment of sending, so a
    /// reply deferred past the window is caught).
    pub fn free_form_allowed(self, last_inbound: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        match self.free_form_window() {
            None => true,
            Some(window) => last_inbound.is_some_and(|at| now - at < window),
        }
    }
}

/// Why a message was not sent, in channel terms.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The recipient has opted out with the provider. Never retried.
    #[error("the recipient has opted out")]
    OptedOut,
    /// Only an approved template may go out now (WhatsApp's 24-hour window
    /// has closed). Retrying the same text cannot succeed.
    #[error("outside WhatsApp's 24-hour window: {0}")]
    OutsideWindow(String),
    /// The provider refused this message; sending it again would not help.
    #[error("the provider rejected the message (HTTP {status}, code {code:?}): {message}")]
    Rejected {
        status: u16,
        /// The provider's own error code, for the owner to look up.
        code: Option<i64>,
        message: String,
    },
    /// The provider could not take the message now, and retries ran out.
    /// It was not sent.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The request went out but no answer came back: it may have been sent.
    #[error("no answer from the provider, the message may have been sent: {0}")]
    Ambiguous(String),
}

/// What the error code of a delivery receipt means for the conversation,
/// when it means more than "not delivered" (an opt-out). Receipts come
/// from Twilio, the one provider.
pub fn receipt_error(code: i64) -> Option<SendError> {
    twilio::meaning_of_code(code)
}

/// What one message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    /// Free-form text.
    Text(&'a str),
    /// An approved template (WhatsApp's Content SID, `HX...`) and its
    /// variables (a JSON object).
    Template { id: &'a str, variables: &'a str },
}

/// The port every channel's sender implements.
#[async_trait]
pub trait ChannelPort: Send + Sync + 'static {
    /// Sends one message from `from` (the address the customer wrote to)
    /// and returns the channel's id for it.
    async fn send(&self, from: &E164, to: &E164, content: Content<'_>) -> Result<String, SendError>;

    /// The id of this exact content (a text, or a template carrying the
    /// text) if it was already sent since `since`: how a send cut off by a
    /// crash is recognized instead of repeated. A channel that cannot tell
    /// answers `None`.
    async fn find_sent(
        &self,
        _from: &E164,
        _to: &E164,
        _content: Content<'_>,
        _since: DateTime<Utc>,
    ) -> Result<Option<String>, SendError> {
        Ok(None)
    }
}

/// Which port carries each channel.
#[derive(Clone)]
pub struct Channels {
    sms: Arc<dyn ChannelPort>,
    whatsapp: Arc<dyn ChannelPort>,
    chat: Arc<dyn ChannelPort>,
    /// The web chat's port: stores nothing of its own (the reply is already
    /// in the outbox) and wakes the visitor's waiting request.
    web: Arc<dyn ChannelPort>,
}

impl Channels {
    pub fn new(
        sms: Arc<dyn ChannelPort>,
        whatsapp: Arc<dyn ChannelPort>,
        chat: Arc<dyn ChannelPort>,
    ) -> Self {
        Self {
            sms,
            whatsapp,
            chat,
            web: Arc::new(webchat::WebChatChannel::new(webchat::WebChatHub::default())),
        }
    }

    /// The same channels with this port for the web chat (the app's, whose
    /// hub the HTTP handlers wait on).
    pub fn with_web(mut self, web: Arc<dyn ChannelPort>) -> Self {
        self.web = web;
        self
    }

    /// One port carries everything: the console, in `chat` or with no
    /// provider configured, shows what each channel would deliver.
    pub fn only(port: Arc<dyn ChannelPort>) -> Self {
        Self {
            sms: port.clone(),
            whatsapp: port.clone(),
            chat: port,
            web: Arc::new(webchat::WebChatChannel::new(webchat::WebChatHub::default())),
        }
    }

    pub fn port(&self, channel: Channel) -> &dyn ChannelPort {
        match channel {
            Channel::Sms => self.sms.as_ref(),
            Channel::WhatsApp => self.whatsapp.as_ref(),
            Channel::Chat => self.chat.as_ref(),
            Channel::Web => self.web.as_ref(),
        }
    }

    /// The channel of a conversation with `address`, and the port that
    /// carries it.
    pub fn for_address(&self, address: &E164) -> (Channel, &dyn ChannelPort) {
        let channel = Channel::of(address);
        (channel, self.port(channel))
    }
}

/// `text` cut to at most `max` characters, at a word when one is near,
/// marked with "...".
fn cut_to_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep: String = text.chars().take(max - 3).collect();
    let cut = keep
        .rfind(char::is_whitespace)
        .filter(|&i| i > keep.len() * 2 / 3)
        .unwrap_or(keep.len());
    format!("{}...", keep[..cut].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_names_the_channel() {
        assert_eq!(Channel::of_address("whatsapp:+15035550142"), Channel::WhatsApp);
        assert_eq!(Channel::of_address("+15035550142"), Channel::Sms);
    }

    #[test]
    fn whatsapp_keeps_unicode_and_sms_rewrites_it() {
        let text = "We\u{2019}ll haul it \u{1F69A} \u{201C}today\u{201D}";
        assert_eq!(Channel::WhatsApp.prepare_reply(text, 1), text);
        let sms = Channel::Sms.prepare_reply(text, 1);
        assert!(sms.starts_with("We'll haul it"), "{sms}");
        assert!(!sms.contains('\u{2019}'));
    }

    #[test]
    fn whatsapp_cuts_at_its_own_limit_not_the_segment_budget() {
        let long = "word ".repeat(2000);
        let sent = Channel::WhatsApp.prepare_reply(&long, 1);
        assert!(sent.chars().count() <= WHATSAPP_MAX_CHARS, "{}", sent.len());
        assert!(sent.chars().count() > 4000);
        assert!(sent.ends_with("..."));
        let medium = "word ".repeat(100);
        assert_eq!(Channel::WhatsApp.prepare_reply(&medium, 1), medium.trim());
    }

    #[test]
    fn the_whatsapp_window_is_24_hours_from_the_last_customer_message() {
        let now: DateTime<Utc> = "2026-03-10T12:00:00Z".parse().unwrap();
        let wa = Channel::WhatsApp;
        assert!(wa.free_form_allowed(Some(now - Duration::hours(23)), now));
        assert!(!wa.free_form_allowed(Some(now - Duration::hours(24)), now));
        assert!(!wa.free_form_allowed(None, now));
        assert!(Channel::Sms.free_form_allowed(None, now));
    }
}
