//! `business.toml`: the owner's file.
//!
//! Every key has a default, so a five-line file works, and every mistake is
//! reported as `file:line:column: key: what is wrong`, because the person
//! editing this file is a business owner, not a Rust developer.

use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};

use crate::domain::availability::ScheduleConfig;
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
    pub name: String,
    pub kind: BusinessKind,
    pub timezone: Tz,
    /// The number customers text. Used in HELP replies and the prompt.
    pub phone: Option<E164>,
    /// Where the owner reads alerts; email delivery arrives with notifications.
    pub owner_email: Option<String>,
}

impl Default for BusinessInfo {
    fn default() -> Self {
        Self {
            name: "Our business".into(),
            kind: BusinessKind::JunkRemoval,
            timezone: chrono_tz::America::Los_Angeles,
            phone: None,
            owner_email: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BusinessKind {
    #[default]
    JunkRemoval,
    Maid,
}

impl BusinessKind {
    /// As written in business.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            BusinessKind::JunkRemoval => "junk_removal",
            BusinessKind::Maid => "maid",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            BusinessKind::JunkRemoval => "a junk removal and hauling company",
            BusinessKind::Maid => "a residential maid and cleaning service",
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
    /// How many recent messages of the conversation Claude sees.
    #[serde(deserialize_with = "history_messages")]
    pub history_messages: usize,
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
            history_messages: 20,
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
            "must be between {min} and {max}, got {n}"
        )));
    }
    Ok(n as usize)
}

fn history_messages<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 1, 200)
}

fn max_segments<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 1, 10)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the business file: {source}")]
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
        }
    }
}

impl BusinessConfig {
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
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| invalid(e.span(), "(syntax)".into(), e.message().to_string()))?;
        let config: BusinessConfig = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let mut key = err.path().to_string();
            // The path already ends with an unknown key's own name.
            let inner = err.inner();
            let message = inner.message().trim().to_string();
            if key == "." || key.is_empty() {
                key = "(file)".into();
            }
            invalid(inner.span(), key, message)
        })?;
        config.pricing.validate().map_err(|e| {
            // Point at the offending id if the file names it, else at the table.
            let at =
                e.id.as_ref()
                    .and_then(|id| {
                        let quoted = format!("\"{id}\"");
                        let first = text.find(&quoted)?;
                        // A duplicate is the second mention.
                        Some(text[first + 1..].find(&quoted).map_or(first, |i| first + 1 + i))
                    })
                    .or_else(|| text.find(&format!("[{}", e.key)))
                    .or_else(|| text.find("[pricing"));
            invalid(at.map(|a| a..a), e.key.to_string(), e.message)
        })?;
        Ok(config)
    }

    /// The greeting, defaulted from the business name.
    pub fn greeting(&self) -> String {
        self.assistant
            .greeting
            .clone()
            .unwrap_or_else(|| format!("Hi! Thanks for texting {}.", self.business.name))
    }
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

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("").unwrap();
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
    fn unknown_table_is_named() {
        let (line, _, key, _) = error("[busines]\nname = \"X\"\n");
        assert_eq!(line, 1);
        assert_eq!(key, "busines");
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

        let (line, _, key, message) = error("[sms]\nmax_segments = 0\n");
        assert_eq!((line, key.as_str()), (2, "sms.max_segments"));
        assert!(message.contains("between 1 and 10"), "{message}");
    }

    #[test]
    fn syntax_errors_are_located() {
        let (line, _, key, _) = error("[business]\nname = \"unterminated\n");
        assert_eq!(line, 2);
        assert_eq!(key, "(syntax)");
    }

    #[test]
    fn catalog_mistakes_are_located() {
        let text = "[pricing]\nminimum_charge = 100\n\n[[pricing.modifiers]]\nid = \"stairs\"\nlabel = \"Stairs\"\nkind = \"per_unit\"\namount = 25\nunit = \"flight\"\n\n[[pricing.modifiers]]\nid = \"stairs\"\nlabel = \"Again\"\nkind = \"flat\"\namount = \"10\"\n";
        let (line, _, key, message) = error(text);
        assert_eq!((line, key.as_str()), (12, "pricing.modifiers"));
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
        let c = parse("[schedule]\nslot_minutes = 30\nclosed_dates = [2026-12-25]\n[schedule.hours]\nsun = \"closed\"\nsat = \"09:00-13:00\"\n\n[[providers]]\nid = \"a\"\nname = \"Crew A\"\ncalendar_id = \"a@group.calendar.google.com\"\n").unwrap();
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
}
