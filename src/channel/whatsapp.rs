//! WhatsApp's rule for proactive messages: outside the 24-hour window only
//! an approved template may go out, named by its Content SID.

use serde::{Deserialize, Deserializer};

/// `[whatsapp]` in the business file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhatsAppConfig {
    pub templates: WhatsAppTemplates,
}

/// `[whatsapp.templates]`: the Content SIDs (`HX` + 32 hex digits) of the
/// owner's approved templates. Each gets the same two variables, both
/// produced by our code: `{{1}}` the business's name, `{{2}}` the text we
/// would have sent free-form (on one line; WhatsApp refuses line breaks in a
/// variable).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhatsAppTemplates {
    #[serde(deserialize_with = "content_sid")]
    pub reminder: Option<String>,
    #[serde(deserialize_with = "content_sid")]
    pub follow_up: Option<String>,
    #[serde(deserialize_with = "content_sid")]
    pub confirmation: Option<String>,
}

impl WhatsAppTemplates {
    /// Templates not configured, as (key, what goes undone), for
    /// `check-config`: a business with a WhatsApp sender and no template
    /// cannot reach a customer whose window has closed.
    pub fn missing(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        [
            ("whatsapp.templates.reminder", &self.reminder, "booking reminders"),
            ("whatsapp.templates.follow_up", &self.follow_up, "quote follow-ups and replies held past quiet hours"),
            ("whatsapp.templates.confirmation", &self.confirmation, "booking confirmations"),
        ]
        .into_iter()
        .filter(|(_, sid, _)| sid.is_none())
        .map(|(key, _, what)| {
            (
                key,
                format!(
                    "not set: {what} to a WhatsApp customer who last wrote more than 24 hours ago are not sent; the owner is alerted instead"
                ),
            )
        })
    }

    /// The template for a message of `kind`, and the key it is configured
    /// under. A reminder and a confirmation have their own; anything else
    /// sent after the window closed (a follow-up, a reply held by quiet
    /// hours) is a follow-up: it carries our text and invites an answer,
    /// which reopens the window.
    pub fn for_kind(&self, kind: &str) -> (&'static str, Option<&str>) {
        match kind {
            "reminder" => ("reminder", self.reminder.as_deref()),
            "confirmation" => ("confirmation", self.confirmation.as_deref()),
            _ => ("follow_up", self.follow_up.as_deref()),
        }
    }
}

/// `ContentVariables` for a template: a JSON object of "1", "2".
pub fn content_variables(business_name: &str, text: &str) -> String {
    serde_json::json!({ "1": business_name, "2": one_line(text) }).to_string()
}

/// The text a template's variables carry ("2"), as sent: on one line.
pub fn text_of_variables(variables: &str) -> Option<String> {
    let parsed: serde_json::Value = serde_json::from_str(variables).ok()?;
    parsed["2"].as_str().filter(|t| !t.is_empty()).map(str::to_string)
}

/// Whitespace runs as single spaces: a template variable cannot hold a
/// line break.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn content_sid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let sid = String::deserialize(d)?;
    let valid = sid
        .strip_prefix("HX")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        return Err(serde::de::Error::custom(format!(
            "expected a Content SID like HX followed by 32 hex digits, got `{sid}`"
        )));
    }
    Ok(Some(sid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_a_json_object_on_one_line() {
        let vars = content_variables("Haul \"Co\"", "Tomorrow 9am\nReply STOP");
        let parsed: serde_json::Value = serde_json::from_str(&vars).unwrap();
        assert_eq!(parsed["1"], "Haul \"Co\"");
        assert_eq!(parsed["2"], "Tomorrow 9am Reply STOP");
    }

    #[test]
    fn a_template_sid_is_checked_and_missing_ones_are_named() {
        let config: WhatsAppConfig =
            toml::from_str("[templates]\nreminder = \"HX0123456789abcdef0123456789abcdef\"\n").unwrap();
        let missing: Vec<_> = config.templates.missing().map(|(key, _)| key).collect();
        assert_eq!(
            missing,
            ["whatsapp.templates.follow_up", "whatsapp.templates.confirmation"]
        );
        let bad = toml::from_str::<WhatsAppConfig>("[templates]\nreminder = \"reminder-v1\"\n").unwrap_err();
        assert!(bad.to_string().contains("Content SID"), "{bad}");
    }

    #[test]
    fn kinds_map_to_their_templates() {
        let t = WhatsAppTemplates {
            reminder: Some("HXr".into()),
            follow_up: Some("HXf".into()),
            confirmation: None,
        };
        assert_eq!(t.for_kind("reminder"), ("reminder", Some("HXr")));
        assert_eq!(t.for_kind("reply"), ("follow_up", Some("HXf")));
        assert_eq!(t.for_kind("confirmation"), ("confirmation", None));
    }
}
