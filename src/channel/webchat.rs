//! The web chat channel: a visitor on the owner's website, talking to the
//! same desk through the widget (`/chat/widget.js`, `http::webchat`).
//!
//! The visitor's address is `web:<session id>` (`E164::web`), so the
//! visitor is a customer like any other: the same conversation, state
//! machine, tools, quotes, guardrail and console. The channel's policy
//! (`Channel::Web`): Unicode up to `WEB_MAX_CHARS`, no segment budget, no
//! quiet hours (the visitor is on the page, waiting), no media.
//!
//! "Sending" stores nothing of its own: the reply is already in the
//! outbox; `WebChatChannel::send` marks it delivered (the Dispatcher
//! records `sent`) and wakes the visitor's waiting request through the
//! `WebChatHub`. The widget fetches sent replies by message id.
//!
//! To book, a web visitor proves a phone number: a code texted to it (a
//! `verification_code` job, through the SMS channel and the outbox) typed
//! back in the chat (`jobs::turns`). The booking use case refuses an
//! unverified web customer (`desk::book`) and keeps the opening picked,
//! which the right code then books (`jobs::verification`).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Deserializer};
use sha1::{Digest, Sha1};
use tokio::sync::broadcast;

use super::{ChannelPort, Content, SendError};
use crate::domain::phone::E164;

/// How long a texted code may be typed back.
pub const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Wrong codes allowed for one texted code; then a new code is needed.
pub const MAX_CODE_ATTEMPTS: i64 = 5;
/// Codes texted per session: each is a real text to someone's phone.
pub const MAX_CODES_PER_SESSION: i64 = 3;

/// What a web visitor who has not verified a phone number is told when
/// they try to book.
pub const ASK_FOR_PHONE: &str = "To book online, please type your mobile number here first. \
     A code will be texted to it; then type the code here.";

/// The code-written texts (the guided flow, confirmations, stated facts)
/// as a web visitor reads them: they are written for texting ("Thanks for
/// texting", "Reply R to reschedule", "the owner will text you"), and a
/// visitor is typing in the chat on the business's site, where the owner's
/// answer from the console also shows. The model's own words are its own.
pub fn web_wording(text: &str) -> String {
    const SWAPS: [(&str, &str); 9] = [
        ("Thanks for texting", "Thanks for reaching out to"),
        ("thanks for texting", "thanks for reaching out to"),
        ("Reply R to reschedule", "Type R here to reschedule"),
        ("Text us any time", "Write to us here any time"),
        ("the owner to text you", "the owner to answer you here"),
        ("the owner will text you", "the owner will answer you here"),
        ("they'll text you soon", "they'll answer you here soon"),
        ("Reply with", "Type"),
        ("Reply ", "Type "),
    ];
    SWAPS
        .iter()
        .fold(text.to_string(), |text, (from, to)| text.replace(from, to))
}

/// `[webchat]` in the business file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WebChatConfig {
    /// The sites allowed to embed the widget, as origins
    /// (`https://example.com`, `http://localhost:8080`): a browser on any
    /// other gets no CORS headers and a 403. Empty: web chat is off.
    #[serde(deserialize_with = "origins")]
    pub allowed_origins: Vec<String>,
}

impl WebChatConfig {
    /// Whether a browser's `Origin` header names an allowed site.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        self.allowed_origins.contains(&origin)
    }
}

/// An origin in its canonical form (`scheme://host[:port]`, lower case,
/// no path), or why not.
pub fn canonical_origin(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("`{raw}` is not an origin: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{raw}` must start with https:// or http://"));
    }
    if url.host_str().is_none() || !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(format!(
            "`{raw}` must be an origin only, like https://example.com (no path or query)"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

fn origins<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|o| canonical_origin(o).map_err(serde::de::Error::custom))
        .collect()
}

/// Wakes the requests waiting for a visitor's reply. One broadcast of the
/// visitor's address per delivered reply; each waiter keeps its own.
#[derive(Clone)]
pub struct WebChatHub {
    sender: broadcast::Sender<String>,
}

impl Default for WebChatHub {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(1024);
        Self { sender }
    }
}

impl WebChatHub {
    /// A receiver of every delivered reply's address; subscribe before
    /// reading the store, so a reply delivered in between is not missed.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.sender.subscribe()
    }

    fn delivered(&self, to: &E164) {
        // No receiver is fine: the widget polls for it.
        let _ = self.sender.send(to.as_str().to_string());
    }
}

/// The web chat's `ChannelPort`.
pub struct WebChatChannel {
    hub: WebChatHub,
}

impl WebChatChannel {
    pub fn new(hub: WebChatHub) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl ChannelPort for WebChatChannel {
    async fn send(&self, _from: &E164, to: &E164, content: Content<'_>) -> Result<String, SendError> {
        if !to.is_web() {
            return Err(SendError::Rejected {
                status: 400,
                code: None,
                message: "the web chat carries only web visitors' conversations".into(),
            });
        }
        if let Content::Template { .. } = content {
            return Err(SendError::Rejected {
                status: 400,
                code: None,
                message: "the web chat has no templates".into(),
            });
        }
        self.hub.delivered(to);
        Ok(format!("WEB{}", uuid::Uuid::new_v4().simple()))
    }
}

/// A fresh random id of 32 lower-case hex digits (122 random bits).
pub fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new session token: 64 hex digits (244 random bits), given to the
/// browser once and stored only as its hash.
pub fn new_token() -> String {
    format!("{}{}", random_id(), random_id())
}

/// What the store keeps of a token (or a code): its SHA-1, in hex.
pub fn hash_secret(salt: &str, secret: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(salt.as_bytes());
    hasher.update(b":");
    hasher.update(secret.as_bytes());
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A six-digit code, from the random bits of a v4 UUID.
pub fn new_code() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let n = u64::from_be_bytes(bytes[..8].try_into().expect("eight bytes")) % 1_000_000;
    format!("{n:06}")
}

/// The text if it is only a code (4 to 8 digits, spaces allowed).
pub fn as_code(text: &str) -> Option<String> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
    ((4..=8).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())).then_some(digits)
}

/// The text if it is only a phone number ("503-555-1234", "+1 (503)
/// 555 1234", "my number is 5035551234").
pub fn as_phone(text: &str) -> Option<E164> {
    let trimmed = text.trim();
    let start = trimmed.find(|c: char| c.is_ascii_digit() || c == '+' || c == '(')?;
    let prefix = trimmed[..start].to_ascii_lowercase();
    let prefix_ok = prefix.trim().is_empty()
        || [
            "my number is",
            "number:",
            "it's",
            "it is",
            "my phone is",
            "phone:",
            "call me at",
        ]
        .iter()
        .any(|p| prefix.trim() == *p);
    if !prefix_ok {
        return None;
    }
    E164::parse(trimmed[start..].trim_end_matches('.')).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn code_written_texts_speak_of_the_chat_not_of_texting() {
        assert_eq!(
            web_wording(
                "Hi! Thanks for texting Sparkle Maids. How many bedrooms? Reply with a number (0 for a studio)."
            ),
            "Hi! Thanks for reaching out to Sparkle Maids. How many bedrooms? Type a number (0 for a studio)."
        );
        assert_eq!(
            web_wording(&format!(
                "You're booked with X: Mon Nov 30, 8:30am. Total $328. {}",
                crate::domain::guided::RESCHEDULE_HINT
            )),
            "You're booked with X: Mon Nov 30, 8:30am. Total $328. Need to change it? Type R here to reschedule, \
             or CANCEL BOOKING to cancel it."
        );
        assert_eq!(
            web_wording("OK, I've asked the owner to text you."),
            "OK, I've asked the owner to answer you here."
        );
        assert!(!web_wording("Reply 1 to book a time, or 2 to talk to a person.").contains("Reply"));
    }

    use super::*;

    #[test]
    fn origins_are_canonical_and_paths_refused() {
        assert_eq!(
            canonical_origin("https://Example.com/").unwrap(),
            "https://example.com"
        );
        assert_eq!(
            canonical_origin("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(canonical_origin("https://example.com/chat").is_err());
        assert!(canonical_origin("ftp://example.com").is_err());
        assert!(canonical_origin("example.com").is_err());
        let config = WebChatConfig {
            allowed_origins: vec!["https://example.com".into()],
        };
        assert!(config.allows("https://example.com"));
        assert!(config.allows("HTTPS://EXAMPLE.COM"));
        assert!(!config.allows("https://example.com.evil.net"));
        assert!(!config.allows("null"));
    }

    #[test]
    fn codes_and_phones_are_read_only_when_they_are_the_whole_text() {
        assert_eq!(as_code(" 123 456 ").as_deref(), Some("123456"));
        assert_eq!(as_code("1"), None);
        assert_eq!(as_code("12a456"), None);
        assert_eq!(as_phone("503-555-1234").unwrap().as_str(), "+15035551234");
        assert_eq!(
            as_phone("my number is (503) 555 1234.").unwrap().as_str(),
            "+15035551234"
        );
        assert!(as_phone("I have 2 couches").is_none());
        assert!(as_phone("1").is_none());
        let code = new_code();
        assert_eq!(code.len(), 6);
        assert!(as_code(&code).is_some());
    }

    #[test]
    fn tokens_are_long_random_and_stored_hashed() {
        let a = new_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_token());
        let h = hash_secret("salt", &a);
        assert_eq!(h.len(), 40);
        assert_ne!(h, hash_secret("other", &a));
        assert_eq!(h, hash_secret("salt", &a));
    }

    #[tokio::test]
    async fn sending_wakes_the_waiting_visitor_and_refuses_other_addresses() {
        let hub = WebChatHub::default();
        let mut rx = hub.subscribe();
        let port = WebChatChannel::new(hub);
        let visitor = E164::web(&random_id()).unwrap();
        let business = E164::parse("+15035550142").unwrap();
        let id = port.send(&business, &visitor, Content::Text("hi")).await.unwrap();
        assert!(id.starts_with("WEB"));
        assert_eq!(rx.recv().await.unwrap(), visitor.as_str());
        assert!(
            port.send(&business, &business, Content::Text("hi"))
                .await
                .is_err()
        );
    }
}
