//! `business.toml`: the owner's file.
//!
//! Every key but the business name has a default, so a five-line file
//! works, and every mistake is reported as `file:line:column: key: what is
//! wrong` in plain words, with the range a number must fall in, because the
//! person editing this file is a business owner, not a Rust developer.
//! Nothing this file accepts can make a price negative or a date overflow.

use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};

pub use crate::domain::approval::ApprovalPolicy;
use crate::domain::availability::ScheduleConfig;
pub use crate::domain::business_kind::BusinessKind;
use crate::domain::conversation::Lifetimes;
use crate::domain::guardrail::GuardrailConfig;
use crate::domain::phone::E164;
use crate::domain::quiet_hours::QuietHours;
use crate::domain::quote::PricingConfig;
use crate::domain::reminders::ReminderConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusinessConfig {
    pub business: BusinessInfo,
    pub assistant: AssistantConfig,
    pub sms: SmsConfig,
    pub pricing: PricingConfig,
    pub conversation: ConversationConfig,
    pub schedule: ScheduleConfig,
    /// The crews or cleaners who do the jobs: one calendar each.
    #[serde(deserialize_with = "providers")]
    pub providers: Vec<ProviderConfig>,
    pub google: GoogleConfig,
    pub quiet_hours: QuietHours,
    pub reminders: ReminderConfig,
    /// Promises the owner does make, and phrases never to send.
    pub guardrail: GuardrailConfig,
    /// `[whatsapp.templates]`: what goes out after WhatsApp's 24-hour window.
    pub whatsapp: crate::channel::whatsapp::WhatsAppConfig,
    /// `[webchat]`: the sites allowed to embed the chat widget.
    pub webchat: crate::channel::webchat::WebChatConfig,
    /// `[voice]`: what a caller hears first (`greeting`).
    pub voice: crate::channel::voice::VoiceConfig,
    /// The file's own text, as `parse` read it: the base the console's
    /// fragments are laid over (see `config::fragments`).
    #[serde(skip)]
    pub file_text: Option<std::sync::Arc<str>>,
    /// The console's fragments applied to this configuration, if any.
    #[serde(skip)]
    pub console: super::fragments::ConsoleOverrides,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub id: String,
    pub name: String,
    /// Where booking emails go (notifications).
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<E164>,
    /// The provider's Google Calendar. Without Google credentials, textdesk's
    /// own bookings table is the calendar.
    #[serde(default)]
    pub calendar_id: Option<String>,
}

impl ProviderConfig {
    /// The calendar to read and write: the Google calendar id, or (for the
    /// local calendar) the provider id.
    pub fn calendar(&self) -> &str {
        self.calendar_id.as_deref().unwrap_or(&self.id)
    }
}

fn default_providers() -> Vec<ProviderConfig> {
    vec![ProviderConfig {
        id: "crew-1".into(),
        name: "Crew 1".into(),
        email: None,
        phone: None,
        calendar_id: None,
    }]
}

fn providers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ProviderConfig>, D::Error> {
    let list = Vec::<ProviderConfig>::deserialize(d)?;
    if list.is_empty() {
        return Err(serde::de::Error::custom("at least one provider is needed"));
    }
    let mut seen = std::collections::HashSet::new();
    for p in &list {
        if !seen.insert(p.id.as_str()) {
            return Err(serde::de::Error::custom(format!(
                "provider id `{}` is used twice",
                p.id
            )));
        }
    }
    Ok(list)
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GoogleConfig {
    /// With domain-wide delegation, the user the service account acts as.
    pub delegated_subject: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversationConfig {
    /// Days of silence after which a customer's next text starts a new job.
    pub idle_days: u32,
    /// Days after a hand-off to the owner before the bot answers again.
    pub handoff_days: u32,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        Self {
            idle_days: 30,
            handoff_days: 7,
        }
    }
}

impl ConversationConfig {
    pub fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            idle_days: self.idle_days,
            handoff_days: self.handoff_days,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusinessInfo {
    /// The stable key of this business in the database. Defaults to the
    /// file's stem (`maid.toml` is `maid`); set it before renaming a file.
    pub id: String,
    pub name: String,
    pub kind: BusinessKind,
    pub timezone: Tz,
    /// The number customers text. Used in HELP replies and the prompt.
    pub phone: Option<E164>,
    /// More numbers (E.164) or WhatsApp senders (`whatsapp:+E164`) this
    /// business answers; a text is routed by the number it was sent to.
    pub numbers: Vec<String>,
    /// Where the owner reads alerts; email delivery arrives with notifications.
    pub owner_email: Option<String>,
    /// The owner's mobile: hand-offs and alerts that need a person are also
    /// texted here, with a link to the conversation in the console.
    pub owner_phone: Option<E164>,
    /// How customers know the owner ("Maria"), in texts sent while the
    /// owner has a conversation.
    pub owner_name: Option<String>,
}

impl BusinessInfo {
    /// The owner's name, or the business's when none is set.
    pub fn owner_name(&self) -> &str {
        self.owner_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.name)
    }
}

impl Default for BusinessInfo {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: "Our business".into(),
            numbers: Vec::new(),
            kind: BusinessKind::JunkRemoval,
            timezone: chrono_tz::America::Los_Angeles,
            phone: None,
            owner_email: None,
            owner_phone: None,
            owner_name: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssistantConfig {
    /// Replaces the built-in base prompt entirely. Logged loudly at start.
    pub base_prompt: Option<String>,
    pub tone: Tone,
    pub reply_length: ReplyLength,
    /// How the first reply to a new customer opens.
    pub greeting: Option<String>,
    /// Appended after the base prompt; never replaces it.
    pub additional_rules: Vec<String>,
    /// Promotions, closures, anything time-bound. Appended.
    pub current_info: Vec<String>,
    /// When to hand the conversation to the owner, beside the built-in
    /// cases (the customer asks for a person, a tool fails). Appended.
    pub handoff_rules: Vec<String>,
    /// How many recent messages of the conversation Claude sees.
    #[serde(deserialize_with = "history_messages")]
    pub history_messages: usize,
    /// Model calls one customer may cost in a day (business time); past
    /// it the guided flow answers them, so a flood cannot spend the
    /// owner's model budget.
    #[serde(deserialize_with = "daily_model_calls")]
    pub daily_model_calls_per_customer: usize,
    /// Which replies wait for the owner's approval before they are sent:
    /// `off`, `quotes`, `over:<amount>` or `all`.
    #[serde(deserialize_with = "approval_policy")]
    pub approval: ApprovalPolicy,
    /// A held reply no one acted on this long hands the conversation to
    /// the owner; it is never sent unapproved.
    #[serde(deserialize_with = "approval_timeout_minutes")]
    pub approval_timeout_minutes: u32,
    /// With `approval = "all"`, sent once when a reply starts waiting, so
    /// the customer knows they were heard. Not sent when unset.
    pub approval_holding_text: Option<String>,
}

impl Default for AssistantConfig {
    fn default() -> Self {
        Self {
            base_prompt: None,
            tone: Tone::Friendly,
            reply_length: ReplyLength::Short,
            greeting: None,
            additional_rules: Vec::new(),
            current_info: Vec::new(),
            handoff_rules: Vec::new(),
            history_messages: 20,
            daily_model_calls_per_customer: 100,
            approval: ApprovalPolicy::Off,
            approval_timeout_minutes: DEFAULT_APPROVAL_TIMEOUT_MINUTES,
            approval_holding_text: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    #[default]
    Friendly,
    Professional,
    Casual,
}

impl Tone {
    /// As written in business.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Friendly => "friendly",
            Tone::Professional => "professional",
            Tone::Casual => "casual",
        }
    }

    pub fn instruction(self) -> &'static str {
        match self {
            Tone::Friendly => "Be warm and friendly, like a helpful neighbor who runs a good business.",
            Tone::Professional => "Be courteous and professional; no slang.",
            Tone::Casual => "Be relaxed and casual, the way people text; stay respectful.",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReplyLength {
    /// About one SMS segment.
    #[default]
    Short,
    /// Up to about two segments.
    Medium,
}

impl ReplyLength {
    /// As written in business.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyLength::Short => "short",
            ReplyLength::Medium => "medium",
        }
    }

    pub fn instruction(self) -> &'static str {
        match self {
            ReplyLength::Short => "Keep each reply under 160 characters: one or two short sentences.",
            ReplyLength::Medium => "Keep each reply under 300 characters.",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// Longest reply, in SMS segments; longer drafts are cut.
    #[serde(deserialize_with = "max_segments")]
    pub max_segments: usize,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self { max_segments: 2 }
    }
}

fn bounded<'de, D: Deserializer<'de>>(d: D, min: usize, max: usize) -> Result<usize, D::Error> {
    let n = i64::deserialize(d)?;
    if n < min as i64 || n > max as i64 {
        return Err(serde::de::Error::custom(format!(
            "expected a whole number from {min} to {max}, got {n}"
        )));
    }
    Ok(n as usize)
}

fn history_messages<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 1, 200)
}

fn daily_model_calls<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 1, 10_000)
}

/// Half an hour: long enough to see a phone notification and act, short
/// enough that a customer is not left waiting through the afternoon.
pub const DEFAULT_APPROVAL_TIMEOUT_MINUTES: u32 = 30;
/// A held reply older than a day is stale: the owner calls instead.
pub const MAX_APPROVAL_TIMEOUT_MINUTES: u32 = 1440;

fn approval_timeout_minutes<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded(d, 1, MAX_APPROVAL_TIMEOUT_MINUTES as usize).map(|n| n as u32)
}

fn approval_policy<'de, D: Deserializer<'de>>(d: D) -> Result<ApprovalPolicy, D::Error> {
    String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
}

fn max_segments<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 1, 10)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The OS error is the `source`, not part of this message: `{e:#}`
    // prints the chain, and naming it here too printed it twice.
    #[error("{}: cannot read the business file", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

impl Default for BusinessConfig {
    fn default() -> Self {
        Self {
            business: BusinessInfo::default(),
            assistant: AssistantConfig::default(),
            sms: SmsConfig::default(),
            pricing: PricingConfig::default(),
            conversation: ConversationConfig::default(),
            schedule: ScheduleConfig::default(),
            providers: default_providers(),
            google: GoogleConfig::default(),
            quiet_hours: QuietHours::default(),
            reminders: ReminderConfig::default(),
            guardrail: GuardrailConfig::default(),
            whatsapp: Default::default(),
            webchat: Default::default(),
            voice: Default::default(),
            file_text: None,
            console: Default::default(),
        }
    }
}

/// An E.164 number or a `whatsapp:+E164` sender, in its canonical form.
pub fn parse_sender(raw: &str) -> Option<String> {
    let raw = raw.trim();
    match raw.strip_prefix("whatsapp:") {
        Some(number) => E164::parse(number)
            .ok()
            .map(|n| format!("whatsapp:{}", n.as_str())),
        None => E164::parse(raw).ok().map(|n| n.as_str().to_string()),
    }
}

impl BusinessConfig {
    /// Every number and sender this business claims: `phone`, then `numbers`.
    pub fn senders(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .business
            .phone
            .iter()
            .map(|p| p.as_str().to_string())
            .collect();
        out.extend(self.business.numbers.iter().filter_map(|n| parse_sender(n)));
        out.dedup();
        out
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses the file's text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
            let (line, column) = line_column(text, span.map_or(0, |s| s.start));
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                key,
                message,
            }
        };
        let syntax = |e: toml::de::Error| invalid(e.span(), "(syntax)".into(), e.message().to_string());
        // The same text as a tree of spans, to point at keys that values
        // checked after deserializing came from.
        let spans = toml::de::DeTable::parse(text).map_err(syntax)?.into_inner();
        let deserializer = toml::Deserializer::parse(text).map_err(syntax)?;
        let mut config: BusinessConfig = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let mut key = err.path().to_string();
            // The path already ends with an unknown key's own name.
            let inner = err.inner();
            let message = with_range(&key, plain_words(inner.message().trim()));
            if key == "." || key.is_empty() {
                key = "(file)".into();
            }
            invalid(inner.span(), key, message)
        })?;
        let name_given = matches!(
            value_at(&spans, "business.name").map(|v| v.get_ref()),
            Some(toml::de::DeValue::String(name)) if !name.trim().is_empty()
        );
        if !name_given {
            return Err(invalid(
                span_at(&spans, "business.name"),
                "business.name".into(),
                "the business name is missing: customers see it in greetings and HELP replies, \
                 e.g. name = \"Rose City Junk Haulers\""
                    .into(),
            ));
        }
        config.pricing.validate().map_err(|e| {
            let at = match &e.id {
                Some(id) => entry_span(&spans, e.key, id).or_else(|| {
                    // Point at the offending id if the file names it.
                    let quoted = format!("\"{id}\"");
                    let first = text.find(&quoted)?;
                    Some(first..first)
                }),
                None => span_at(&spans, e.key),
            };
            invalid(at, e.key.to_string(), e.message)
        })?;
        config
            .check_ranges()
            .map_err(|(key, message)| invalid(span_at(&spans, key), key.to_string(), message))?;
        config.business.id = config.business.id.trim().to_string();
        if config.business.id.is_empty() {
            config.business.id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "default".into());
        }
        if !config
            .business
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                span_at(&spans, "business.id"),
                "business.id".into(),
                format!(
                    "expected letters, digits, - and _ only (it keys the database), got `{}`",
                    config.business.id
                ),
            ));
        }
        for (i, number) in config.business.numbers.iter().enumerate() {
            if parse_sender(number).is_none() {
                let key = format!("business.numbers[{i}]");
                let at = text.find(&format!("\"{number}\"")).map(|at| at..at);
                return Err(invalid(
                    at.or_else(|| span_at(&spans, "business.numbers")),
                    key,
                    format!(
                        "expected an E.164 number like +15035550142 or a WhatsApp sender like whatsapp:+15035550142, got `{number}`"
                    ),
                ));
            }
        }
        config.file_text = Some(text.into());
        Ok(config)
    }

    /// Bounds on schedule and conversation numbers, far beyond any real
    /// business and well inside what date arithmetic can hold. (Pricing
    /// bounds live with the catalog, in `PricingConfig::validate`.)
    fn check_ranges(&self) -> Result<(), (&'static str, String)> {
        for range in &RANGES {
            let got = (range.value)(self);
            if !(range.min..=range.max).contains(&got) {
                return Err((range.key, range.message(&got.to_string())));
            }
        }
        Ok(())
    }

    /// Settings that are valid but leave something undone: printed by
    /// `check-config` and logged at start, never fatal.
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut out = Vec::new();
        let b = &self.business;
        // Alerts reach the owner by email or by text; with neither they stay in the console.
        if b.owner_email.as_deref().is_none_or(|e| e.trim().is_empty()) && b.owner_phone.is_none() {
            out.push(ConfigWarning {
                key: "business.owner_email",
                message: "not set: owner alerts (hand-offs, failed texts, bookings that need a look) \
                          will go nowhere but the console and the log (set it, or `owner_phone`)"
                    .into(),
            });
        }
        if !self.webchat.allowed_origins.is_empty() && b.phone.is_none() {
            out.push(ConfigWarning {
                key: "webchat.allowed_origins",
                message: "web chat is allowed but `[business] phone` is not set: the chat's conversations \
                          and verification codes need the business's number, so the chat answers 503"
                    .into(),
            });
        }
        if b.phone.is_none() {
            out.push(ConfigWarning {
                key: "business.phone",
                message: "not set: HELP replies and hand-offs give customers no number to call".into(),
            });
        }
        if b.owner_phone.is_some() && b.phone.is_none() {
            out.push(ConfigWarning {
                key: "business.owner_phone",
                message: "set, but `phone` is not: alert texts to the owner go out from TWILIO_FROM_NUMBER, \
                          or not at all without it"
                    .into(),
            });
        }
        out.extend(
            crate::domain::quote::date_surcharge_warnings(&self.pricing, &self.schedule)
                .into_iter()
                .map(|message| ConfigWarning {
                    key: "pricing.modifiers",
                    message,
                }),
        );
        if b.numbers
            .iter()
            .any(|n| n.starts_with(crate::channel::WHATSAPP_PREFIX))
        {
            out.extend(
                self.whatsapp
                    .templates
                    .missing()
                    .map(|(key, message)| ConfigWarning { key, message }),
            );
        }
        if self.assistant.approval == ApprovalPolicy::All
            && self
                .assistant
                .approval_holding_text
                .as_deref()
                .is_none_or(|t| t.trim().is_empty())
        {
            out.push(ConfigWarning {
                key: "assistant.approval_holding_text",
                message:
                    "not set: with approval = \"all\" a customer hears nothing until you approve each reply"
                        .into(),
            });
        }
        out
    }

    /// The greeting, defaulted from the business name.
    pub fn greeting(&self) -> String {
        self.assistant
            .greeting
            .clone()
            .unwrap_or_else(|| format!("Hi! Thanks for texting {}.", self.business.name))
    }

    /// What the price-and-facts guardrail needs to know of this business.
    pub fn guardrail_terms(&self) -> crate::domain::guardrail::OwnerTerms<'_> {
        crate::domain::guardrail::OwnerTerms {
            name: &self.business.name,
            greeting: self.greeting(),
            timezone: self.business.timezone,
            pricing: &self.pricing,
            schedule: &self.schedule,
            owner_said: self
                .assistant
                .current_info
                .iter()
                .chain(&self.assistant.additional_rules)
                .map(String::as_str)
                .collect(),
            rules: &self.guardrail,
        }
    }
}

/// A whole number with a range, and what it counts.
struct Range {
    key: &'static str,
    value: fn(&BusinessConfig) -> u32,
    min: u32,
    max: u32,
    what: &'static str,
}

impl Range {
    fn message(&self, got: &str) -> String {
        format!(
            "expected {} from {} to {}, got {got}",
            self.what, self.min, self.max
        )
    }
}

const MINUTES: &str = "a number of minutes";
const HOURS: &str = "a number of hours";
const DAYS: &str = "a number of days";

/// The schedule and conversation numbers `check_ranges` bounds.
const RANGES: [Range; 11] = [
    Range {
        key: "schedule.slot_minutes",
        value: |c| c.schedule.slot_minutes,
        min: 5,
        max: 720,
        what: MINUTES,
    },
    Range {
        key: "schedule.arrival_window_minutes",
        value: |c| c.schedule.arrival_window_minutes,
        min: 0,
        max: 720,
        what: MINUTES,
    },
    Range {
        key: "schedule.buffer_before_minutes",
        value: |c| c.schedule.buffer_before_minutes,
        min: 0,
        max: 720,
        what: MINUTES,
    },
    Range {
        key: "schedule.buffer_after_minutes",
        value: |c| c.schedule.buffer_after_minutes,
        min: 0,
        max: 720,
        what: MINUTES,
    },
    Range {
        key: "schedule.min_notice_hours",
        value: |c| c.schedule.min_notice_hours,
        min: 0,
        max: 720,
        what: HOURS,
    },
    Range {
        key: "schedule.horizon_days",
        value: |c| c.schedule.horizon_days,
        min: 1,
        max: 365,
        what: DAYS,
    },
    Range {
        key: "schedule.hold_minutes",
        value: |c| c.schedule.hold_minutes,
        min: 1,
        max: 1440,
        what: MINUTES,
    },
    Range {
        key: "schedule.offers",
        value: |c| c.schedule.offers,
        min: 1,
        max: 10,
        what: "a number of openings",
    },
    Range {
        key: "conversation.idle_days",
        value: |c| c.conversation.idle_days,
        min: 1,
        max: 365,
        what: DAYS,
    },
    Range {
        key: "conversation.handoff_days",
        value: |c| c.conversation.handoff_days,
        min: 1,
        max: 365,
        what: DAYS,
    },
    Range {
        key: "reminders.quote_follow_up_hours",
        value: |c| c.reminders.quote_follow_up_hours,
        min: 0,
        max: 720,
        what: HOURS,
    },
];

/// A number that failed to parse as a whole number (`-3`, `1e20`, `"ten"`)
/// at a key with a known range states that range rather than the type's.
fn with_range(key: &str, message: String) -> String {
    match (RANGES.iter().find(|r| r.key == key), message.split_once(", got ")) {
        (Some(range), Some((expected, got))) if expected.starts_with("expected a whole number") => {
            // It was not a whole number at all: say that it must be one.
            range
                .message(got)
                .replacen("expected a number", "expected a whole number", 1)
        }
        _ => message,
    }
}

/// Valid, but probably not what the owner meant (see
/// [`BusinessConfig::warnings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub key: &'static str,
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// serde and toml word their messages for Rust programmers ("expected
/// u32"); the person reading them edits a text file. The common ones are
/// said again in plain words; anything else passes through unchanged.
fn plain_words(message: &str) -> String {
    if let Some(zone) = message
        .strip_prefix("failed to parse timezone: '")
        .and_then(|rest| rest.strip_suffix('\''))
    {
        return format!("`{zone}` is not a time zone; expected an IANA time zone like America/Chicago");
    }
    let Some((got, expected)) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|rest| rest.rsplit_once(", expected "))
    else {
        return message.to_string();
    };
    let largest = match expected {
        "u8" => Some(u64::from(u8::MAX)),
        "u16" => Some(u64::from(u16::MAX)),
        "u32" => Some(u64::from(u32::MAX)),
        "u64" | "usize" => Some(u64::MAX),
        _ => None,
    };
    let wanted = match (expected, largest) {
        (_, Some(max)) => format!("a whole number from 0 to {max}"),
        ("i8" | "i16" | "i32" | "i64" | "isize", _) => "a whole number".into(),
        ("a boolean", _) => "true or false".into(),
        ("a string" | "a borrowed string", _) => "text in quotes".into(),
        ("a Decimal type representing a fixed-point number", _) => "a number like 12.5".into(),
        ("an IANA timezone string", _) => "an IANA time zone like America/Chicago".into(),
        ("a sequence", _) => "a list in brackets, like [\"a\", \"b\"]".into(),
        _ => return message.to_string(),
    };
    let got = got
        .strip_prefix("integer ")
        .or_else(|| got.strip_prefix("floating point "))
        .or_else(|| got.strip_prefix("boolean "))
        .map(|v| v.trim_matches('`').to_string())
        .or_else(|| got.strip_prefix("string ").map(|v| format!("the text {v}")))
        .unwrap_or_else(|| got.to_string());
    format!("expected {wanted}, got {got}")
}

/// The value at a dotted key ("schedule.horizon_days"), if the file has it.
fn value_at<'a, 'i>(
    root: &'a toml::de::DeTable<'i>,
    key: &str,
) -> Option<&'a toml::Spanned<toml::de::DeValue<'i>>> {
    let mut parts = key.split('.');
    let mut value = root.get(parts.next()?)?;
    for part in parts {
        let toml::de::DeValue::Table(table) = value.get_ref() else {
            return None;
        };
        value = table.get(part)?;
    }
    Some(value)
}

/// Where to point for a dotted key: the value itself, or failing that the
/// nearest enclosing key the file states.
fn span_at(root: &toml::de::DeTable<'_>, key: &str) -> Option<std::ops::Range<usize>> {
    let mut key = key;
    loop {
        if let Some(value) = value_at(root, key) {
            return Some(value.span());
        }
        key = key.rsplit_once('.')?.0;
    }
}

/// In a list of tables (`[[pricing.modifiers]]`), the last entry that names
/// `id` (a duplicate is its second mention), at the value naming it.
fn entry_span(root: &toml::de::DeTable<'_>, key: &str, id: &str) -> Option<std::ops::Range<usize>> {
    let toml::de::DeValue::Array(entries) = value_at(root, key)?.get_ref() else {
        return None;
    };
    entries.iter().rev().find_map(|entry| {
        let toml::de::DeValue::Table(fields) = entry.get_ref() else {
            return None;
        };
        fields.values().find_map(|v| match v.get_ref() {
            toml::de::DeValue::String(s) if s == id => Some(v.span()),
            _ => None,
        })
    })
}

/// A TOML file's parse error as `file:line:column: message`, in plain
/// words: for the owner's other files (`textdesk quote --job`).
pub fn describe_toml_error(path: &Path, text: &str, error: &toml::de::Error) -> String {
    let (line, column) = line_column(text, error.span().map_or(0, |s| s.start));
    format!(
        "{}:{line}:{column}: {}",
        path.display(),
        plain_words(error.message().trim())
    )
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BusinessConfig, ConfigError> {
        BusinessConfig::parse(text, Path::new("business.toml"))
    }

    fn error(text: &str) -> (usize, usize, String, String) {
        match parse(text).unwrap_err() {
            ConfigError::Invalid {
                line,
                column,
                key,
                message,
                ..
            } => (line, column, key, message),
            other => panic!("{other}"),
        }
    }

    const NAMED: &str = "[business]\nname = \"Rose City Junk Haulers\"\n";

    #[test]
    fn a_named_business_is_all_defaults_otherwise() {
        let c = parse(NAMED).unwrap();
        assert_eq!(c.business.kind, BusinessKind::JunkRemoval);
        assert_eq!(c.assistant.history_messages, 20);
        assert_eq!(c.sms.max_segments, 2);
        assert_eq!(c.assistant.tone, Tone::Friendly);
    }

    #[test]
    fn five_lines_work() {
        let c = parse(
            "[business]\nname = \"Sparkle Maids\"\nkind = \"maid\"\ntimezone = \"America/Chicago\"\nphone = \"(217) 555-0100\"\n",
        )
        .unwrap();
        assert_eq!(c.business.kind, BusinessKind::Maid);
        assert_eq!(c.business.timezone, chrono_tz::America::Chicago);
        assert_eq!(c.business.phone.as_ref().unwrap().as_str(), "+12175550100");
        assert_eq!(c.greeting(), "Hi! Thanks for texting Sparkle Maids.");
    }

    #[test]
    fn unknown_key_names_file_line_column_and_key() {
        let (line, column, key, message) =
            error("[business]\nname = \"X\"\n\n[assistant]\ntonee = \"friendly\"\n");
        assert_eq!((line, column), (5, 1));
        assert_eq!(key, "assistant.tonee");
        assert!(message.contains("unknown field"), "{message}");
        let rendered = parse("[assistant]\ntonee = 1\n").unwrap_err().to_string();
        assert!(
            rendered.starts_with("business.toml:2:1: assistant.tonee: "),
            "{rendered}"
        );
    }

    #[test]
    fn approval_reads_as_a_policy_and_a_bad_one_is_located() {
        let c = parse(&format!(
            "{NAMED}[assistant]\napproval = \"over:450\"\napproval_timeout_minutes = 45\n"
        ))
        .unwrap();
        assert_eq!(
            c.assistant.approval,
            ApprovalPolicy::Over(crate::domain::money::Money::dollars(450))
        );
        assert_eq!(c.assistant.approval_timeout_minutes, 45);
        let defaults = parse(NAMED).unwrap();
        assert_eq!(defaults.assistant.approval, ApprovalPolicy::Off);
        assert_eq!(
            defaults.assistant.approval_timeout_minutes,
            DEFAULT_APPROVAL_TIMEOUT_MINUTES
        );

        let (line, _, key, message) = error(&format!("{NAMED}[assistant]\napproval = \"sometimes\"\n"));
        assert_eq!((line, key.as_str()), (4, "assistant.approval"));
        assert!(
            message.contains("\"over:<amount>\"") && message.contains("sometimes"),
            "{message}"
        );
        let (line, _, key, message) = error(&format!(
            "{NAMED}[assistant]\napproval = \"all\"\napproval_timeout_minutes = 0\n"
        ));
        assert_eq!((line, key.as_str()), (5, "assistant.approval_timeout_minutes"));
        assert!(message.contains("from 1 to 1440, got 0"), "{message}");
    }

    #[test]
    fn web_chat_origins_are_canonical_and_need_the_business_phone() {
        let text =
            "[business]\nname = \"Haul\"\n[webchat]\nallowed_origins = [\"https://Shop.example.com/\"]\n";
        let config = parse(text).unwrap();
        assert_eq!(config.webchat.allowed_origins, ["https://shop.example.com"]);
        assert!(
            config
                .warnings()
                .iter()
                .any(|w| w.key == "webchat.allowed_origins")
        );
        let with_phone = parse(&text.replace("[webchat]", "phone = \"+15035550142\"\n[webchat]")).unwrap();
        assert!(
            !with_phone
                .warnings()
                .iter()
                .any(|w| w.key == "webchat.allowed_origins")
        );
        let err = parse(
            "[business]\nname = \"Haul\"\n[webchat]\nallowed_origins = [\"https://shop.example.com/chat\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("must be an origin only"), "{err}");
    }

    #[test]
    fn approval_of_all_without_a_holding_text_is_a_warning() {
        let silent = parse(&format!("{NAMED}[assistant]\napproval = \"all\"\n")).unwrap();
        assert!(
            silent
                .warnings()
                .iter()
                .any(|w| w.key == "assistant.approval_holding_text")
        );
        let told = parse(&format!(
            "{NAMED}[assistant]\napproval = \"all\"\napproval_holding_text = \"Thanks! We'll text you back shortly.\"\n"
        ))
        .unwrap();
        assert!(
            !told
                .warnings()
                .iter()
                .any(|w| w.key == "assistant.approval_holding_text")
        );
    }

    #[test]
    fn unknown_table_is_named() {
        let (line, _, key, _) = error("[busines]\nname = \"X\"\n");
        assert_eq!(line, 1);
        assert_eq!(key, "busines");
    }

    #[test]
    fn the_owners_phone_is_read_like_the_business_phone() {
        let c = BusinessConfig::parse(
            "[business]\nname = \"X\"\nphone = \"+15035550142\"\nowner_phone = \"(503) 555-0199\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.business.owner_phone.as_ref().unwrap().as_str(), "+15035550199");
        assert!(
            c.warnings().iter().all(|w| w.key != "business.owner_email"),
            "alerts reach the owner by text"
        );
        let (line, _, key, _) = error("[business]\nowner_phone = \"call me\"\n");
        assert_eq!((line, key.as_str()), (2, "business.owner_phone"));
    }

    #[test]
    fn bad_values_are_located() {
        let (line, column, key, message) = error("[business]\ntimezone = \"Mars/Olympus\"\n");
        assert_eq!((line, column, key.as_str()), (2, 12, "business.timezone"));
        assert!(!message.is_empty());

        let (line, _, key, message) = error("[assistant]\ntone = \"sarcastic\"\n");
        assert_eq!((line, key.as_str()), (2, "assistant.tone"));
        assert!(message.contains("sarcastic"), "{message}");

        let (line, _, key, _) = error("[business]\nphone = \"call me\"\n");
        assert_eq!((line, key.as_str()), (2, "business.phone"));

        let (line, _, key, message) = error(&format!("{NAMED}[sms]\nmax_segments = 0\n"));
        assert_eq!((line, key.as_str()), (4, "sms.max_segments"));
        assert!(
            message.contains("expected a whole number from 1 to 10, got 0"),
            "{message}"
        );

        let (line, _, key, message) = error(&format!(
            "{NAMED}[assistant]\ndaily_model_calls_per_customer = 0\n"
        ));
        assert_eq!(
            (line, key.as_str()),
            (4, "assistant.daily_model_calls_per_customer")
        );
        assert!(
            message.contains("expected a whole number from 1 to 10000, got 0"),
            "{message}"
        );
        assert_eq!(
            parse(NAMED).unwrap().assistant.daily_model_calls_per_customer,
            100
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let (line, _, key, _) = error("[business]\nname = \"unterminated\n");
        assert_eq!(line, 2);
        assert_eq!(key, "(syntax)");
    }

    #[test]
    fn catalog_mistakes_are_located() {
        let text = "[business]\nname = \"X\"\n[pricing]\nminimum_charge = 100\n\n[[pricing.modifiers]]\nid = \"stairs\"\nlabel = \"Stairs\"\nkind = \"per_unit\"\namount = 25\nunit = \"flight\"\n\n[[pricing.modifiers]]\nid = \"stairs\"\nlabel = \"Again\"\nkind = \"flat\"\namount = \"10\"\n";
        let (line, _, key, message) = error(text);
        assert_eq!((line, key.as_str()), (14, "pricing.modifiers"));
        // The earlier definition parses: `amount` as a TOML number is fine.
        assert!(message.contains("`stairs` is used twice"), "{message}");

        let (line, _, key, _) = error("[pricing]\nrounding = \"nearest_penny\"\n");
        assert_eq!((line, key.as_str()), (2, "pricing.rounding"));
        let (line, _, key, message) =
            error("[[pricing.modifiers]]\nid = \"x\"\nlabel = \"X\"\nkind = \"sometimes\"\n");
        assert_eq!(line, 1);
        assert_eq!(key, "pricing.modifiers[0]");
        assert!(message.contains("sometimes"), "{message}");
    }

    #[test]
    fn schedule_and_providers() {
        let c = parse("[business]\nname = \"X\"\n[schedule]\nslot_minutes = 30\nclosed_dates = [2026-12-25]\n[schedule.hours]\nsun = \"closed\"\nsat = \"09:00-13:00\"\n\n[[providers]]\nid = \"a\"\nname = \"Crew A\"\ncalendar_id = \"a@group.calendar.google.com\"\n").unwrap();
        assert_eq!(c.schedule.slot_minutes, 30);
        assert_eq!(c.providers[0].calendar(), "a@group.calendar.google.com");
        assert_eq!(BusinessConfig::default().providers[0].calendar(), "crew-1");
        let (line, _, key, message) = error("[schedule.hours]\nmon = \"9 to 5\"\n");
        assert_eq!((line, key.as_str()), (2, "schedule.hours.mon"));
        assert!(message.contains("08:00-17:00"), "{message}");
        let (_, _, key, message) =
            error("[[providers]]\nid = \"a\"\nname = \"A\"\n[[providers]]\nid = \"a\"\nname = \"B\"\n");
        assert_eq!(key, "providers");
        assert!(message.contains("used twice"), "{message}");
    }

    #[test]
    fn shipped_files_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let junk = BusinessConfig::load(&root.join("business.toml")).unwrap();
        assert_eq!(junk.business.kind, BusinessKind::JunkRemoval);
        assert_eq!(junk.business.timezone, chrono_tz::America::Los_Angeles);
        assert!(!junk.pricing.modifiers.is_empty() && !junk.pricing.junk.tiers.is_empty());
        let maid = BusinessConfig::load(&root.join("examples/maid.toml")).unwrap();
        assert_eq!(maid.business.kind, BusinessKind::Maid);
        assert!(!maid.pricing.maid.clean_types.is_empty());
        assert_eq!(maid.business.timezone, chrono_tz::America::Chicago);
    }

    /// The values the issue found accepted, each refused with the range it
    /// must fall in, at the line that states it.
    #[test]
    fn prices_fees_and_minimums_cannot_be_negative() {
        let cases = [
            (
                "[pricing.junk]\nhourly_rate_per_person = -50\n",
                "pricing.junk.hourly_rate_per_person",
                "expected an amount from $0 to $100,000, got -$50",
            ),
            (
                "[pricing.junk]\ndelivery_fee = -150\n",
                "pricing.junk.delivery_fee",
                "got -$150",
            ),
            (
                "[pricing]\nminimum_charge = -10\n",
                "pricing.minimum_charge",
                "got -$10",
            ),
            (
                "[pricing.maid]\ntrip_fee = -5\n",
                "pricing.maid.trip_fee",
                "got -$5",
            ),
        ];
        for (text, want_key, want_message) in cases {
            let (line, column, key, message) = error(&format!("{NAMED}{text}"));
            assert_eq!(key, want_key, "{text}");
            assert_eq!(line, 4, "{text}");
            assert!(column > 1, "{text}: points at the value");
            assert!(message.contains(want_message), "{text}: {message}");
        }
    }

    #[test]
    fn percentages_are_bounded() {
        let surcharge = format!(
            "{NAMED}[[pricing.modifiers]]\nid = \"weekend\"\nlabel = \"Weekend\"\nkind = \"percent\"\npercent = 500\n"
        );
        let (line, _, key, message) = error(&surcharge);
        assert_eq!((line, key.as_str()), (4, "pricing.modifiers"));
        assert!(
            message.contains("`weekend`: expected a percentage from 0 up to 100, got 500"),
            "{message}"
        );
        let discount = format!(
            "{NAMED}[[pricing.discounts]]\nid = \"senior\"\nlabel = \"Senior\"\nkind = \"percent\"\npercent = 150\n"
        );
        let (_, _, key, message) = error(&discount);
        assert_eq!(key, "pricing.discounts");
        assert!(message.contains("up to 100, got 150"), "{message}");
        let negative_discount = format!(
            "{NAMED}[[pricing.discounts]]\nid = \"c\"\nlabel = \"C\"\nkind = \"amount\"\namount = -20\n"
        );
        let (_, _, key, message) = error(&negative_discount);
        assert_eq!(key, "pricing.discounts");
        assert!(message.contains("got -$20"), "{message}");
        // A discount for a service the catalog does not have is located.
        let for_service = |service: &str| {
            format!(
                "{NAMED}kind = \"maid\"\n\n[[pricing.discounts]]\nid = \"first\"\nlabel = \"First deep clean\"\nkind = \"percent\"\npercent = 10\nservices = [\"{service}\"]\n"
            )
        };
        // Line 6: the discount's `id`, naming the entry.
        let (line, _, key, message) = error(&for_service("deap"));
        assert_eq!((line, key.as_str()), (6, "pricing.discounts"));
        assert!(message.contains("unknown service `deap`"), "{message}");
        let limited = parse(&for_service("deep")).unwrap();
        assert_eq!(limited.pricing.discounts[0].services, ["deep"]);
        let (_, _, key, message) = error(&format!(
            "{NAMED}[[pricing.modifiers]]\nid = \"w\"\nlabel = \"W\"\nkind = \"flat\"\namount = 5\nservices = [\"deep\"]\n"
        ));
        assert!(key.starts_with("pricing.modifiers"), "{key}");
        assert!(message.contains("`services` belongs to discounts"), "{message}");
        // A surcharge of 100% and a discount of 100% are the limits, and valid.
        let limits = format!(
            "{NAMED}[[pricing.modifiers]]\nid = \"w\"\nlabel = \"W\"\nkind = \"percent\"\npercent = 100\n[[pricing.discounts]]\nid = \"f\"\nlabel = \"Free\"\nkind = \"percent\"\npercent = 100\n"
        );
        parse(&limits).unwrap();
    }

    /// These parsed, then panicked inside a turn (quote expiry, the offer
    /// range, the notice cut-off).
    #[test]
    fn days_and_hours_that_overflowed_dates_are_refused() {
        let cases = [
            (
                "[pricing]\nquote_valid_days = 4294967295\n",
                "pricing.quote_valid_days",
                "expected a number of days from 1 to 365, got 4294967295",
            ),
            (
                "[schedule]\nhorizon_days = 100000000\n",
                "schedule.horizon_days",
                "expected a number of days from 1 to 365, got 100000000",
            ),
            (
                "[schedule]\nmin_notice_hours = 4294967295\n",
                "schedule.min_notice_hours",
                "expected a number of hours from 0 to 720, got 4294967295",
            ),
            (
                "[schedule]\nslot_minutes = 0\n",
                "schedule.slot_minutes",
                "from 5 to 720",
            ),
            (
                "[schedule]\nhold_minutes = 0\n",
                "schedule.hold_minutes",
                "from 1 to 1440",
            ),
            (
                "[conversation]\nidle_days = 0\n",
                "conversation.idle_days",
                "from 1 to 365",
            ),
            (
                "[pricing.junk]\nminimum_hours = 5000\n",
                "pricing.junk.minimum_hours",
                "expected a number of hours from 0 up to 24, got 5000",
            ),
            (
                "[pricing.junk]\nbilling_increment_hours = 0\n",
                "pricing.junk.billing_increment_hours",
                "above 0 up to 24",
            ),
            (
                "[pricing.maid]\ncrew = 0\n",
                "pricing.maid.crew",
                "expected a crew size from 1 to 100",
            ),
        ];
        for (text, want_key, want_message) in cases {
            let (line, _, key, message) = error(&format!("{NAMED}{text}"));
            assert_eq!((line, key.as_str()), (4, want_key), "{text}");
            assert!(message.contains(want_message), "{text}: {message}");
        }
        let tier = format!(
            "{NAMED}[[pricing.junk.tiers]]\nid = \"huge\"\nlabel = \"Huge\"\nhours = 2\ncrew = 1000\n"
        );
        let (line, _, key, message) = error(&tier);
        assert_eq!((line, key.as_str()), (4, "pricing.junk.tiers"));
        assert!(
            message.contains("`huge`: expected a crew size from 1 to 100, got 1000"),
            "{message}"
        );
    }

    #[test]
    fn serde_messages_are_said_in_plain_words() {
        let (_, _, key, message) = error(&format!("{NAMED}[pricing]\nquote_valid_days = -3\n"));
        assert_eq!(key, "pricing.quote_valid_days");
        assert_eq!(message, "expected a whole number from 0 to 4294967295, got -3");
        let (_, _, _, message) = error(&format!("{NAMED}[pricing.junk]\ndefault_crew = \"two\"\n"));
        assert_eq!(
            message,
            "expected a whole number from 0 to 4294967295, got the text \"two\""
        );
        // Where the key has a range of its own, that range is the one stated.
        let (_, _, key, message) = error(&format!("{NAMED}[schedule]\nhorizon_days = -3\n"));
        assert_eq!(key, "schedule.horizon_days");
        assert_eq!(message, "expected a whole number of days from 1 to 365, got -3");
        let (_, _, _, message) = error(&format!("{NAMED}[schedule]\nhorizon_days = \"thirty\"\n"));
        assert_eq!(
            message,
            "expected a whole number of days from 1 to 365, got the text \"thirty\""
        );
        let (_, _, _, message) = error(&format!("{NAMED}[schedule]\nslot_minutes = 7.5\n"));
        assert!(message.starts_with("expected a whole number"), "{message}");
        assert!(!message.contains("u32"), "{message}");
        let (_, _, key, message) = error(&format!("{NAMED}[pricing.junk]\ndelivery_fee = true\n"));
        assert_eq!(key, "pricing.junk.delivery_fee");
        assert_eq!(message, "expected a number like 12.5, got true");
        let (_, _, _, message) = error(&format!("{NAMED}[quiet_hours]\nreplies_allowed = \"yes\"\n"));
        assert_eq!(message, "expected true or false, got the text \"yes\"");
        let (_, _, _, message) = error("[business]\nname = \"X\"\ntimezone = \"Mars/Olympus\"\n");
        assert_eq!(
            message,
            "`Mars/Olympus` is not a time zone; expected an IANA time zone like America/Chicago"
        );
        // Messages already in plain words pass through.
        let (_, _, _, message) = error(&format!("{NAMED}[assistant]\ntone = \"sarcastic\"\n"));
        assert!(message.contains("unknown variant `sarcastic`"), "{message}");
    }

    #[test]
    fn a_missing_business_name_is_an_error() {
        for text in ["", "[business]\nkind = \"maid\"\n", "[business]\nname = \"  \"\n"] {
            let (_, _, key, message) = error(text);
            assert_eq!(key, "business.name", "{text:?}");
            assert!(message.contains("business name is missing"), "{message}");
        }
        let (line, column, _, _) = error("[business]\nname = \"\"\n");
        assert_eq!((line, column), (2, 8));
    }

    #[test]
    fn missing_owner_contacts_are_warnings_not_errors() {
        let bare = parse(NAMED).unwrap();
        let warnings: Vec<String> = bare.warnings().iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("business.owner_email: not set: owner alerts")
                && warnings[0].contains("will go nowhere"),
            "{warnings:?}"
        );
        assert!(warnings[1].starts_with("business.phone: not set"), "{warnings:?}");
        let full = parse(&format!(
            "{NAMED}owner_email = \"owner@example.com\"\nphone = \"+15035550142\"\n"
        ))
        .unwrap();
        assert!(full.warnings().is_empty());
    }

    #[test]
    fn a_missing_file_names_the_os_error_once() {
        let err = BusinessConfig::load(Path::new("/nonexistent/business.toml")).unwrap_err();
        let chained = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(
            chained.matches("No such file or directory").count(),
            1,
            "{chained}"
        );
    }
}
