//! Calls: Twilio ConversationRelay's protocol, and speech as a channel
//! policy.
//!
//! A call is a conversation on the same desk as the caller's texts: the
//! conversation is the caller's number and the number they called, so a
//! customer who texted yesterday and calls today continues the same job.
//! What differs is the edge, and it lives here:
//!
//! - the TwiML that connects a call to our relay, and the one that
//!   transfers it to the owner;
//! - the relay's messages (Twilio's `setup`, `prompt`, `interrupt`,
//!   `dtmf`, `error`; our `text` and `end`), parsed leniently: an unknown
//!   or malformed message is reported, never fatal;
//! - the spoken style: sentences (the unit the guardrail checks before
//!   anything is said), prices in words, no numbered lists.
//!
//! Texts a call causes (the booking confirmation, reminders) still travel
//! by the conversation's own channel (SMS), through the outbox.

use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::config::business::BusinessConfig;
use crate::domain::availability::DayHours;
use crate::domain::keywords::{self, Keyword};
use crate::domain::money::Money;

pub const INBOUND_PATH: &str = "/api/voice/inbound";
pub const RELAY_PATH: &str = "/api/voice/relay";
pub const AFTER_PATH: &str = "/api/voice/after";

/// `[voice]` in the business file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceConfig {
    /// What a caller hears first. Unset: "Thank you for calling {name}.
    /// How can I help you today?"
    pub greeting: Option<String>,
}

/// What the relay session is for: the assistant's conversation, or taking
/// a message for the owner (after hours, with no owner phone, or after a
/// transfer nobody answered). Passed to the relay as a `<Parameter>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    Assistant,
    Message,
}

impl CallMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CallMode::Assistant => "assistant",
            CallMode::Message => "message",
        }
    }

    pub fn parse(raw: Option<&str>) -> Self {
        match raw {
            Some("message") => CallMode::Message,
            _ => CallMode::Assistant,
        }
    }
}

/// A message from Twilio on the relay.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayIn {
    Setup {
        /// The relay session: a call has one per `<Connect>` (a message
        /// taken after a transfer is a second session of the same call).
        session_id: String,
        call_sid: String,
        from: String,
        to: String,
        custom: serde_json::Map<String, Value>,
    },
    Prompt {
        text: String,
        last: bool,
    },
    Interrupt {
        utterance: String,
        duration_ms: u64,
    },
    Dtmf {
        digit: String,
    },
    Error {
        description: String,
    },
}

/// Why a relay message was not understood (logged; the session goes on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayParseError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("a `{0}` message without its `{1}`")]
    Missing(&'static str, &'static str),
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

impl RelayIn {
    pub fn parse(raw: &str) -> Result<Self, RelayParseError> {
        let v: Value = serde_json::from_str(raw).map_err(|e| RelayParseError::NotJson(e.to_string()))?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "setup" => Ok(RelayIn::Setup {
                session_id: string(&v, "sessionId").unwrap_or_default(),
                call_sid: string(&v, "callSid").ok_or(RelayParseError::Missing("setup", "callSid"))?,
                from: string(&v, "from").ok_or(RelayParseError::Missing("setup", "from"))?,
                to: string(&v, "to").ok_or(RelayParseError::Missing("setup", "to"))?,
                custom: v
                    .get("customParameters")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
            }),
            "prompt" => Ok(RelayIn::Prompt {
                text: string(&v, "voicePrompt").ok_or(RelayParseError::Missing("prompt", "voicePrompt"))?,
                last: v.get("last").and_then(Value::as_bool).unwrap_or(true),
            }),
            "interrupt" => Ok(RelayIn::Interrupt {
                utterance: string(&v, "utteranceUntilInterrupt").unwrap_or_default(),
                duration_ms: v
                    .get("durationUntilInterruptMs")
                    .and_then(|d| d.as_u64().or_else(|| d.as_str().and_then(|s| s.parse().ok())))
                    .unwrap_or(0),
            }),
            "dtmf" => Ok(RelayIn::Dtmf {
                digit: string(&v, "digit").ok_or(RelayParseError::Missing("dtmf", "digit"))?,
            }),
            "error" => Ok(RelayIn::Error {
                description: string(&v, "description").unwrap_or_default(),
            }),
            other => Err(RelayParseError::UnknownType(other.to_string())),
        }
    }
}

/// A `text` message: a token of speech; `last` ends the reply.
pub fn text_message(token: &str, last: bool) -> String {
    serde_json::json!({"type": "text", "token": token, "last": last}).to_string()
}

/// The `end` message: Twilio ends the session and posts `handoff` (a JSON
/// string, as Twilio documents `handoffData`) to the `<Connect action>`.
pub fn end_message(handoff: &Value) -> String {
    serde_json::json!({"type": "end", "handoffData": handoff.to_string()}).to_string()
}

/// The relay's WebSocket URL: `PUBLIC_BASE_URL` with `https` as `wss` (or
/// `http` as `ws`), plus the relay path. The handshake is signed over it.
pub fn relay_url(public_base_url: &str) -> String {
    let base = public_base_url.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    format!("{base}{RELAY_PATH}")
}

/// Whether `now` falls in the business's opening hours (`[schedule.hours]`,
/// closed dates included), in its own time zone.
pub fn open_at(business: &BusinessConfig, now: DateTime<Utc>) -> bool {
    let local = now.with_timezone(&business.business.timezone);
    if business.schedule.closed_dates.contains(&local.date_naive()) {
        return false;
    }
    match business.schedule.hours.on(local.weekday()) {
        DayHours::Closed => false,
        DayHours::Open { open, close } => local.time() >= open && local.time() < close,
    }
}

/// The greeting: `[voice] greeting`, or one that names the business; after
/// hours it says so, and the call goes on (the assistant still quotes and
/// books).
pub fn greeting(business: &BusinessConfig, open: bool) -> String {
    let name = &business.business.name;
    let base = business
        .voice
        .greeting
        .as_deref()
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("Thank you for calling {name}. How can I help you today?"));
    if open {
        return base;
    }
    // The closed notice comes before the greeting's closing question, so
    // the caller hears the question last and answers it.
    const CLOSED: &str =
        "We're closed right now, but I can still give you a price and book a time, or take a message.";
    if !base.ends_with('?') {
        return format!("{base} {CLOSED}");
    }
    let question_starts = base
        .char_indices()
        .rev()
        .find(|&(i, c)| matches!(c, '.' | '!' | '?') && base[i + 1..].starts_with(' '))
        .map(|(i, _)| i + 2);
    match question_starts {
        Some(at) => format!("{}{CLOSED} {}", &base[..at], &base[at..]),
        None => format!("{CLOSED} {base}"),
    }
}

/// What a caller hears when a transfer nobody answered becomes a message.
pub fn message_greeting(business: &BusinessConfig) -> String {
    format!(
        "Sorry, nobody at {} could pick up. Please tell me your message, and I'll pass it on.",
        business.business.name
    )
}

/// What a caller's keypad press stands for in the conversation: "0" asks
/// for a person. Stored as the caller's words, so the transcript shows it.
pub const PRESSED_ZERO: &str = "[The caller pressed 0 for a person.]";

/// The inbound words a keypad digit stands for, if it means anything.
pub fn dtmf_words(digit: &str) -> Option<&'static str> {
    (digit.trim() == "0").then_some(PRESSED_ZERO)
}

/// A compliance keyword in a caller's words, read by code before the model,
/// as a text's is: STOP (and an opt-out in plain words) and HELP.
///
/// Narrower than for texts, because speech is not a command line: CANCEL,
/// END and QUIT alone are not opt-outs on a call (the caller may mean the
/// booking or the call), and START or YES never re-subscribe (YES answers a
/// question); a caller opts back in by texting START.
pub fn spoken_keyword(text: &str, opted_out: bool) -> Option<Keyword> {
    let word = text.trim().trim_end_matches(['.', '!', '?']).to_ascii_uppercase();
    if matches!(word.as_str(), "CANCEL" | "END" | "QUIT") {
        return None;
    }
    match keywords::classify(text, opted_out) {
        Some(Keyword::OptIn) => None,
        Some(Keyword::OptOutInWords) => Some(Keyword::OptOutInWords),
        // An opted-out caller asking again in words: confirmed again.
        None if opted_out && keywords::asks_to_stop_texts(text) => Some(Keyword::OptOutInWords),
        other => other,
    }
}

/// The spoken confirmation of an opt-out: code's words, then the call ends.
pub fn opted_out_spoken(business: &BusinessConfig, booked: Option<&str>) -> String {
    let mut said = format!("OK, {} will not text you again.", business.business.name);
    if let Some(label) = booked {
        said.push_str(&format!(
            " Your booking for {label} still stands; we'll call you about it."
        ));
    }
    said.push_str(" Thank you for calling. Goodbye.");
    said
}

/// HELP on a call: who answers, what it can do, how to stop texts.
pub fn help_spoken(business: &BusinessConfig) -> String {
    format!(
        "This is the assistant for {}. I can answer questions, give you a price, and book a time. \
         To stop our texts, say stop. What can I help you with?",
        business.business.name
    )
}

/// The caller asks for a person. Read by code, so it works with no model.
pub fn wants_person(text: &str) -> bool {
    if text.trim() == PRESSED_ZERO {
        return true;
    }
    let t = text.to_lowercase();
    const ASKS: [&str; 12] = [
        "talk to someone",
        "speak to someone",
        "talk to a person",
        "speak to a person",
        "real person",
        "a human",
        "representative",
        "operator",
        "talk to the owner",
        "speak to the owner",
        "speak with someone",
        "talk with someone",
    ];
    ASKS.iter().any(|a| t.contains(a))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

const TWIML_HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

/// Connects the call to the relay; Twilio posts to `action` when it ends.
pub fn connect_twiml(action: &str, relay: &str, greeting: &str, mode: CallMode) -> String {
    format!(
        "{TWIML_HEAD}<Response><Connect action=\"{}\"><ConversationRelay url=\"{}\" welcomeGreeting=\"{}\" interruptible=\"any\" dtmfDetection=\"true\"><Parameter name=\"mode\" value=\"{}\"/></ConversationRelay></Connect></Response>",
        xml_escape(action),
        xml_escape(relay),
        xml_escape(greeting),
        mode.as_str()
    )
}

/// Transfers the call to the owner; `action` hears how it went.
pub fn dial_twiml(owner: &str, action: &str, caller_id: Option<&str>) -> String {
    let caller_id = caller_id
        .map(|c| format!(" callerId=\"{}\"", xml_escape(c)))
        .unwrap_or_default();
    format!(
        "{TWIML_HEAD}<Response><Dial action=\"{}\" timeout=\"20\"{caller_id}>{}</Dial></Response>",
        xml_escape(action),
        xml_escape(owner)
    )
}

pub fn hangup_twiml() -> String {
    format!("{TWIML_HEAD}<Response><Hangup/></Response>")
}

/// The spoken-style section of the system prompt: a call's channel policy.
pub const SPOKEN_STYLE: &str = "\n\n# This conversation is a phone call\n\
You are speaking, not texting: the caller hears every word. Answer in one to three short sentences. \
Never use numbered or bulleted lists, symbols, links or emoji. Say prices in words (\"three hundred fifty dollars\"). \
Offer at most two or three openings at a time, in words (\"Tuesday the tenth between eight and ten in the morning\"), \
and ask which suits. If the caller asks for a person, call escalate_to_owner.";

/// The guided flow's texts, as a caller hears them: they are written for
/// texting ("Reply 1 to book"), and a caller answers by saying it.
pub fn guided_spoken(text: &str) -> String {
    text.replace("Thanks for texting", "Thanks for calling")
        .replace("thanks for texting", "thanks for calling")
        .replace("Reply with", "Say")
        .replace("reply with", "say")
        .replace("Reply ", "Say ")
        .replace(", reply ", ", say ")
        .replace(" or reply ", " or say ")
        .replace("Text us", "Call us")
}

/// Cuts streamed text into sentences: the unit checked by the guardrail
/// and then spoken.
#[derive(Debug, Default)]
pub struct Sentences {
    pending: String,
}

impl Sentences {
    /// Adds streamed text; returns the sentences it completed.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        loop {
            let chars: Vec<(usize, char)> = self.pending.char_indices().collect();
            let mut cut = None;
            for (i, &(at, c)) in chars.iter().enumerate() {
                let ends = matches!(c, '.' | '!' | '?' | '\n');
                if !ends {
                    continue;
                }
                // A sentence ends at its mark followed by a space; "3.5"
                // and "a.m." mid-word are not ends, and a mark at the end
                // of what arrived waits for the next piece.
                match chars.get(i + 1) {
                    Some(&(_, next)) if next.is_whitespace() => {
                        if c == '.' && is_abbreviation(&self.pending[..at]) {
                            continue;
                        }
                        cut = Some(at + c.len_utf8());
                        break;
                    }
                    _ => {}
                }
            }
            let Some(cut) = cut else { break };
            let sentence: String = self.pending[..cut].trim().to_string();
            self.pending = self.pending[cut..].trim_start().to_string();
            if !sentence.is_empty() {
                out.push(sentence);
            }
        }
        out
    }

    /// Whatever is left when the reply ends.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_string())
    }
}

fn is_abbreviation(before: &str) -> bool {
    let word = before.rsplit(|c: char| c.is_whitespace()).next().unwrap_or("");
    let word = word.to_ascii_lowercase();
    matches!(
        word.as_str(),
        "mr" | "mrs" | "ms" | "dr" | "st" | "a.m" | "p.m" | "e.g" | "i.e" | "approx"
    ) || (word.len() == 1 && word.chars().all(|c| c.is_ascii_alphabetic()))
}

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

fn under_thousand(n: u64) -> String {
    let mut parts = Vec::new();
    if n >= 100 {
        parts.push(format!("{} hundred", ONES[(n / 100) as usize]));
    }
    let rest = n % 100;
    if rest > 0 || n == 0 {
        if rest < 20 {
            parts.push(ONES[rest as usize].to_string());
        } else if rest.is_multiple_of(10) {
            parts.push(TENS[(rest / 10) as usize].to_string());
        } else {
            parts.push(format!(
                "{}-{}",
                TENS[(rest / 10) as usize],
                ONES[(rest % 10) as usize]
            ));
        }
    }
    parts.join(" ")
}

/// A whole number in words ("one thousand two hundred fifty").
pub fn number_in_words(n: u64) -> String {
    if n < 1000 {
        return under_thousand(n);
    }
    let mut parts = Vec::new();
    let scales = [
        (1_000_000_000, "billion"),
        (1_000_000, "million"),
        (1000, "thousand"),
    ];
    let mut rest = n;
    for (size, name) in scales {
        if rest >= size {
            parts.push(format!("{} {name}", under_thousand(rest / size)));
            rest %= size;
        }
    }
    if rest > 0 {
        parts.push(under_thousand(rest));
    }
    parts.join(" ")
}

/// An amount as a caller hears it: "three hundred fifty dollars", "twelve
/// dollars and fifty cents".
pub fn money_in_words(amount: Money) -> String {
    use rust_decimal::prelude::ToPrimitive;
    let value = amount.amount().abs();
    let dollars = value.trunc().to_u64().unwrap_or(0);
    let cents = ((value - value.trunc()) * rust_decimal::Decimal::from(100))
        .round()
        .to_u64()
        .unwrap_or(0);
    let sign = if amount.is_negative() { "minus " } else { "" };
    let unit = if dollars == 1 { "dollar" } else { "dollars" };
    if cents == 0 {
        format!("{sign}{} {unit}", number_in_words(dollars))
    } else {
        format!(
            "{sign}{} {unit} and {} {}",
            number_in_words(dollars),
            number_in_words(cents),
            if cents == 1 { "cent" } else { "cents" }
        )
    }
}

/// A checked sentence as it is spoken: dollar amounts in words, list
/// markers and symbols a voice would read aloud dropped.
pub fn speakable(sentence: &str) -> String {
    let mut out = String::with_capacity(sentence.len() + 16);
    let mut chars = sentence.trim().chars().peekable();
    // A list marker at the start ("1. ", "- ", "* ") is not spoken.
    let trimmed = sentence.trim_start();
    let mut skip = 0;
    let marker_len = trimmed
        .char_indices()
        .take_while(|(_, c)| c.is_ascii_digit())
        .count();
    if marker_len > 0 && (trimmed[marker_len..].starts_with(". ") || trimmed[marker_len..].starts_with(") "))
    {
        skip = marker_len + 2;
    } else if trimmed.starts_with("- ") || trimmed.starts_with("* ") || trimmed.starts_with("• ") {
        skip = trimmed.chars().next().map_or(0, char::len_utf8) + 1;
    }
    let skip_chars = trimmed[..skip].chars().count();
    for _ in 0..skip_chars {
        chars.next();
    }
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut raw = String::new();
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_digit() || d == ',' {
                        raw.push(d);
                        chars.next();
                    } else if d == '.' {
                        // Cents only when digits follow the point.
                        let mut ahead = chars.clone();
                        ahead.next();
                        if ahead.peek().is_some_and(char::is_ascii_digit) {
                            raw.push(d);
                            chars.next();
                        } else {
                            break;
                        }
                    } else {
                        break;
                    }
                }
                let raw = raw.trim_end_matches(',').replace(',', "");
                match raw.parse::<rust_decimal::Decimal>() {
                    Ok(value) => out.push_str(&money_in_words(Money::new(value))),
                    Err(_) => {
                        out.push('$');
                        out.push_str(&raw);
                    }
                }
            }
            '*' | '#' | '_' | '`' => {}
            c => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoken_keywords_are_narrower_than_texted_ones() {
        assert_eq!(spoken_keyword("Stop.", false), Some(Keyword::OptOut));
        assert_eq!(
            spoken_keyword("stop texting me", false),
            Some(Keyword::OptOutInWords)
        );
        assert_eq!(
            spoken_keyword("stop texting me", true),
            Some(Keyword::OptOutInWords)
        );
        assert_eq!(spoken_keyword("Help", false), Some(Keyword::Help));
        assert_eq!(spoken_keyword("Cancel.", false), None);
        assert_eq!(spoken_keyword("End", false), None);
        assert_eq!(spoken_keyword("Yes.", true), None);
        assert_eq!(spoken_keyword("Start", true), None);
        assert_eq!(spoken_keyword("Please stop by on Tuesday", false), None);
        assert_eq!(spoken_keyword("I need a couch hauled away", false), None);
    }

    #[test]
    fn zero_on_the_keypad_asks_for_a_person() {
        assert_eq!(dtmf_words("0"), Some(PRESSED_ZERO));
        assert!(wants_person(dtmf_words("0").unwrap()));
        assert_eq!(dtmf_words("5"), None);
        assert_eq!(dtmf_words("#"), None);
    }

    #[test]
    fn relay_url_follows_the_public_base() {
        assert_eq!(
            relay_url("https://desk.example.com/"),
            "wss://desk.example.com/api/voice/relay"
        );
        assert_eq!(
            relay_url("http://127.0.0.1:8080"),
            "ws://127.0.0.1:8080/api/voice/relay"
        );
    }

    #[test]
    fn messages_parse_and_unknown_ones_are_errors() {
        let setup = RelayIn::parse(
            r#"{"type":"setup","sessionId":"VX1","callSid":"CA1","from":"+15035550100","to":"+15035550142","customParameters":{"mode":"message"}}"#,
        )
        .unwrap();
        let RelayIn::Setup { call_sid, custom, .. } = setup else {
            panic!()
        };
        assert_eq!(call_sid, "CA1");
        assert_eq!(custom["mode"], "message");
        assert_eq!(
            RelayIn::parse(r#"{"type":"prompt","voicePrompt":"hi","lang":"en-US","last":true}"#).unwrap(),
            RelayIn::Prompt {
                text: "hi".into(),
                last: true
            }
        );
        assert_eq!(
            RelayIn::parse(r#"{"type":"interrupt","utteranceUntilInterrupt":"It's three","durationUntilInterruptMs":"820"}"#)
                .unwrap(),
            RelayIn::Interrupt {
                utterance: "It's three".into(),
                duration_ms: 820
            }
        );
        assert!(matches!(
            RelayIn::parse(r#"{"type":"hologram"}"#),
            Err(RelayParseError::UnknownType(t)) if t == "hologram"
        ));
        assert!(matches!(
            RelayIn::parse("{nope"),
            Err(RelayParseError::NotJson(_))
        ));
        assert!(matches!(
            RelayIn::parse(r#"{"type":"prompt"}"#),
            Err(RelayParseError::Missing("prompt", "voicePrompt"))
        ));
    }

    #[test]
    fn end_carries_handoff_data_as_a_json_string() {
        let end: Value =
            serde_json::from_str(&end_message(&serde_json::json!({"reason": "transfer"}))).unwrap();
        assert_eq!(end["type"], "end");
        let data: Value = serde_json::from_str(end["handoffData"].as_str().unwrap()).unwrap();
        assert_eq!(data["reason"], "transfer");
    }

    #[test]
    fn sentences_are_cut_at_their_ends_only() {
        let mut s = Sentences::default();
        assert!(s.push("It's $3").is_empty());
        assert!(
            s.push("50.").is_empty(),
            "a point at the end of what arrived waits"
        );
        assert_eq!(s.push(" Want a time?"), vec!["It's $350."]);
        assert_eq!(
            s.push(" Dr. Smith said ok. "),
            vec!["Want a time?", "Dr. Smith said ok."]
        );
        assert_eq!(s.push("Bye"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("Bye"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn prices_are_said_in_words_and_lists_are_not_read() {
        assert_eq!(
            speakable("It's $350 for both."),
            "It's three hundred fifty dollars for both."
        );
        assert_eq!(
            speakable("1. Total $1,234.50."),
            "Total one thousand two hundred thirty-four dollars and fifty cents."
        );
        assert_eq!(speakable("- **Tuesday** works."), "Tuesday works.");
        assert_eq!(money_in_words(Money::dollars(1)), "one dollar");
    }

    #[test]
    fn an_amount_in_words_is_checked_like_digits() {
        use crate::domain::guardrail;
        let business = BusinessConfig::default();
        let quote_state = crate::domain::conversation::ConversationState::default();
        let facts = guardrail::Facts::of(
            &business.guardrail_terms(),
            &quote_state,
            &quote_state,
            std::iter::empty(),
            Utc::now(),
        );
        // No quote: an amount in words is caught like one in digits.
        assert!(!guardrail::check(&speakable("It's $350."), &facts).is_empty());
        assert!(!guardrail::check("It's $350.", &facts).is_empty());
    }

    #[test]
    fn the_greeting_is_configured_or_names_the_business_and_says_when_closed() {
        let parse = |text: &str| BusinessConfig::parse(text, std::path::Path::new("t.toml"));
        let plain = parse("[business]\nname = \"Rose City Junk Haulers\"\n").unwrap();
        assert_eq!(
            greeting(&plain, true),
            "Thank you for calling Rose City Junk Haulers. How can I help you today?"
        );
        assert_eq!(
            greeting(&plain, false),
            "Thank you for calling Rose City Junk Haulers. We're closed right now, but I can still \
             give you a price and book a time, or take a message. How can I help you today?",
            "the closed notice first, the question last"
        );
        let asks =
            parse("[business]\nname = \"X\"\n[voice]\ngreeting = \"Hi, X here! What can we do?\"\n").unwrap();
        assert!(greeting(&asks, false).starts_with("Hi, X here! We're closed right now"));
        assert!(greeting(&asks, false).ends_with(" What can we do?"));
        let only =
            parse("[business]\nname = \"X\"\n[voice]\ngreeting = \"What can X do for you?\"\n").unwrap();
        assert!(greeting(&only, false).starts_with("We're closed right now"));
        assert!(greeting(&only, false).ends_with("What can X do for you?"));
        let own = parse("[business]\nname = \"X\"\n[voice]\ngreeting = \"Hi, X here.\"\n").unwrap();
        assert_eq!(greeting(&own, true), "Hi, X here.");
        assert!(
            parse("[voice]\ngreting = \"typo\"\n").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn opening_hours_are_the_schedule_in_the_business_zone() {
        use chrono::TimeZone;
        let business = BusinessConfig::parse(
            "[business]\nname = \"X\"\ntimezone = \"America/Los_Angeles\"\n[schedule.hours]\nmon = \"08:00-17:00\"\nsun = \"closed\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        // Monday 2026-11-30, 09:00 and 18:00 in Los Angeles (UTC-8).
        assert!(open_at(
            &business,
            Utc.with_ymd_and_hms(2026, 11, 30, 17, 0, 0).unwrap()
        ));
        assert!(!open_at(
            &business,
            Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap()
        ));
        // Sunday.
        assert!(!open_at(
            &business,
            Utc.with_ymd_and_hms(2026, 11, 29, 18, 0, 0).unwrap()
        ));
    }

    #[test]
    fn the_guided_flow_is_spoken_not_texted() {
        assert_eq!(
            guided_spoken("Hi! Thanks for texting X. Reply 1 to book a time, or 2 to talk to a person."),
            "Hi! Thanks for calling X. Say 1 to book a time, or 2 to talk to a person."
        );
    }

    #[test]
    fn asking_for_a_person_is_read_by_code() {
        assert!(wants_person("Let me talk to someone"));
        assert!(wants_person("can I get a REAL PERSON please"));
        assert!(!wants_person("I need a couch and a fridge hauled away"));
    }

    #[test]
    fn twiml_escapes_what_it_quotes() {
        let twiml = connect_twiml(
            "https://d.example/api/voice/after",
            "wss://d.example/api/voice/relay",
            "Tom & Jerry's \"Haul\"",
            CallMode::Assistant,
        );
        assert!(twiml.contains("welcomeGreeting=\"Tom &amp; Jerry&apos;s &quot;Haul&quot;\""));
        assert!(twiml.contains("<Connect action=\"https://d.example/api/voice/after\">"));
    }
}
