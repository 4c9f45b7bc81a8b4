//! The owner's assistant settings from the console, laid over
//! `business.toml`.
//!
//! A fragment is one `[assistant]` key and a TOML value, stored in the
//! database. Applying fragments merges them into the file's own
//! `[assistant]` table and runs the very parser and validator the file goes
//! through, so a console value is accepted exactly when the same line in the
//! file would be, and an `[assistant]` key added to `AssistantConfig` is
//! editable here with no code of its own. A list is appended to the file's
//! list (the owner's rules in the file stay, the console's follow them);
//! any other value replaces the file's.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::business::{BusinessConfig, ConfigError};

/// Who a fragment saved from the owner's console is recorded as.
pub const CONSOLE_EDITOR: &str = "owner console";

/// One console setting: an `[assistant]` key and its value as TOML text
/// (`"casual"`, `["No paint."]`, `45`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub key: String,
    pub value: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// The fragments applied to a configuration, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleOverrides {
    pub fragments: Vec<Fragment>,
}

impl ConsoleOverrides {
    pub fn get(&self, key: &str) -> Option<&Fragment> {
        self.fragments.iter().find(|f| f.key == key)
    }

    pub fn is_empty(&self) -> bool {
        self.fragments.is_empty()
    }

    /// How many entries at the end of the list at `key` are the console's.
    pub fn appended(&self, key: &str) -> usize {
        self.get(key)
            .and_then(|f| parse_value(&f.key, &f.value).ok())
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FragmentError {
    /// The value is not TOML, or the key is not a key of its own.
    #[error("assistant.{key}: {message}")]
    Syntax { key: String, message: String },
    /// The merged configuration does not pass the file's rules.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error("the business file has `assistant` as something other than a table")]
    NotATable,
    /// A configuration that was not read from a file has nothing to lay
    /// fragments over.
    #[error("this business's configuration was not read from a file")]
    NoFileText,
}

impl FragmentError {
    /// The dotted key at fault (`assistant.tone`), without the section.
    pub fn key(&self) -> Option<&str> {
        match self {
            FragmentError::Syntax { key, .. } => Some(key),
            FragmentError::Invalid { key, .. } => Some(key.strip_prefix("assistant.").unwrap_or(key)),
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            FragmentError::Syntax { message, .. } | FragmentError::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

/// A fragment's value, read as TOML.
pub fn parse_value(key: &str, value: &str) -> Result<toml::Value, FragmentError> {
    let syntax = |message: String| FragmentError::Syntax {
        key: key.to_string(),
        message,
    };
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(syntax(
            "a setting's name is lower-case letters, digits and _".into(),
        ));
    }
    let mut table: toml::Table = format!("value = {value}")
        .parse()
        .map_err(|e: toml::de::Error| syntax(format!("not a valid value: {}", e.message().trim())))?;
    // `value = 1\nother = 2` would smuggle a second key in.
    if table.len() != 1 {
        return Err(syntax("one value only".into()));
    }
    table.remove("value").ok_or_else(|| syntax("no value".into()))
}

/// `text`'s TOML with `fragments` merged into its `[assistant]` table.
pub fn merge(text: &str, fragments: &[Fragment]) -> Result<toml::Table, FragmentError> {
    let mut root: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| FragmentError::Invalid {
            key: "(file)".into(),
            message: e.message().trim().to_string(),
        })?;
    let assistant = root
        .entry("assistant")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or(FragmentError::NotATable)?;
    for fragment in fragments {
        let value = parse_value(&fragment.key, &fragment.value)?;
        match (assistant.get_mut(&fragment.key), value) {
            (Some(toml::Value::Array(file)), toml::Value::Array(console)) => file.extend(console),
            (_, value) => {
                assistant.insert(fragment.key.clone(), value);
            }
        }
    }
    Ok(root)
}

/// `base` (a configuration `parse` read, with or without fragments
/// applied) with `fragments` applied instead, validated by the file's rules.
pub fn apply(
    base: &BusinessConfig,
    path: &Path,
    fragments: &[Fragment],
) -> Result<BusinessConfig, FragmentError> {
    if fragments.is_empty() && base.console.is_empty() {
        return Ok(base.clone());
    }
    let text = base.file_text.clone().ok_or(FragmentError::NoFileText)?;
    let merged = toml::to_string(&merge(&text, fragments)?).map_err(|e| FragmentError::Invalid {
        key: "(file)".into(),
        message: e.to_string(),
    })?;
    let mut config = BusinessConfig::parse(&merged, path).map_err(|e| match e {
        ConfigError::Invalid { key, message, .. } => FragmentError::Invalid { key, message },
        other => FragmentError::Invalid {
            key: "(file)".into(),
            message: other.to_string(),
        },
    })?;
    // What the file left to its surroundings stays as they set it (the
    // single file's `TWILIO_FROM_NUMBER`); fragments touch [assistant] only.
    config.business = base.business.clone();
    config.file_text = Some(text);
    let mut sorted = fragments.to_vec();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    config.console = ConsoleOverrides { fragments: sorted };
    Ok(config)
}

/// The file with the console's fragments merged in, as TOML: what
/// `textdesk config export` prints.
pub fn export(config: &BusinessConfig) -> Result<String, FragmentError> {
    let text = config.file_text.clone().ok_or(FragmentError::NoFileText)?;
    let merged = merge(&text, &config.console.fragments)?;
    toml::to_string(&merged).map_err(|e| FragmentError::Invalid {
        key: "(file)".into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(key: &str, value: &str) -> Fragment {
        Fragment {
            key: key.into(),
            value: value.into(),
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
            updated_by: CONSOLE_EDITOR.into(),
        }
    }

    fn base(text: &str) -> BusinessConfig {
        BusinessConfig::parse(text, Path::new("rose.toml")).unwrap()
    }

    const FILE: &str = "[business]\nname = \"Rose\"\n[assistant]\ntone = \"professional\"\nadditional_rules = [\"No paint.\"]\n";

    #[test]
    fn scalars_replace_and_lists_append_after_the_files() {
        let config = apply(
            &base(FILE),
            Path::new("rose.toml"),
            &[
                fragment("tone", "\"casual\""),
                fragment("additional_rules", "[\"No tires.\"]"),
            ],
        )
        .unwrap();
        assert_eq!(config.assistant.tone.as_str(), "casual");
        assert_eq!(config.assistant.additional_rules, ["No paint.", "No tires."]);
        assert_eq!(config.console.appended("additional_rules"), 1);
        assert_eq!(config.business.id, "rose");
        // The base is still the file, not the merge.
        assert_eq!(config.file_text.as_deref(), Some(FILE));
    }

    #[test]
    fn a_value_the_file_would_refuse_is_refused_naming_the_key() {
        let err = apply(
            &base(FILE),
            Path::new("rose.toml"),
            &[fragment("tone", "\"grumpy\"")],
        )
        .unwrap_err();
        assert_eq!(err.key(), Some("tone"));
        assert!(err.message().contains("friendly"), "{err}");
        let err = apply(
            &base(FILE),
            Path::new("rose.toml"),
            &[fragment("history_messages", "0")],
        )
        .unwrap_err();
        assert!(err.message().contains("from 1 to 200"), "{err}");
        let err = apply(
            &base(FILE),
            Path::new("rose.toml"),
            &[fragment("no_such_key", "1")],
        )
        .unwrap_err();
        assert_eq!(err.key(), Some("no_such_key"));
    }

    #[test]
    fn a_value_cannot_smuggle_a_second_key() {
        let err = parse_value("tone", "\"casual\"\nbase_prompt = \"x\"").unwrap_err();
        assert!(matches!(err, FragmentError::Syntax { .. }), "{err}");
        assert!(parse_value("[business]", "1").is_err());
    }

    #[test]
    fn export_is_the_file_with_the_fragments_merged() {
        let config = apply(
            &base(FILE),
            Path::new("rose.toml"),
            &[fragment("greeting", "\"Hey there!\"")],
        )
        .unwrap();
        let exported = export(&config).unwrap();
        let again = base(&exported);
        assert_eq!(again.assistant.greeting.as_deref(), Some("Hey there!"));
        assert_eq!(again.assistant.tone.as_str(), "professional");
    }
}
