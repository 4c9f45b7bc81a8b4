//! Phone numbers as E.164, parsed once at the edge.
//!
//! `E164` deliberately has no `Display`: the full number is only reachable via
//! [`E164::as_str`], which adapters call when they must talk to Twilio. `Debug`
//! and [`E164::masked`] show `+1503***1234`, so `?phone` in a log line cannot
//! leak a customer's number.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A phone number, or a WhatsApp address made of one (see
/// [`E164::parse_address`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

const WHATSAPP_PREFIX: &str = "whatsapp:";

/// The prefix of a web chat visitor's address (`web:` and the session's
/// 32-character random id): the web channel's customer, in the same
/// column and with the same uniqueness as a phone number.
pub const WEB_PREFIX: &str = "web:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{input}` is not a phone number in E.164 form (like +15035550142)")]
pub struct InvalidPhone {
    /// Already masked, so the error itself is safe to log.
    input: String,
}

impl E164 {
    /// Parses a number, normalizing the ways people and carriers write one.
    ///
    /// Accepts `+<country><number>`, `00<country><number>`, and, because every
    /// business we serve is in the North American Numbering Plan, a bare
    /// 10-digit number (`(503) 555-0142`) or an 11-digit one starting with 1.
    pub fn parse(input: &str) -> Result<Self, InvalidPhone> {
        let invalid = || InvalidPhone {
            input: mask_str(input.trim()),
        };
        let trimmed = input.trim();
        let (has_plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => match trimmed.strip_prefix("00") {
                Some(rest) => (true, rest),
                None => (false, trimmed),
            },
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(invalid()),
            }
        }
        let normalized = if has_plus {
            digits
        } else if digits.len() == 10 {
            format!("1{digits}")
        } else if digits.len() == 11 && digits.starts_with('1') {
            digits
        } else {
            return Err(invalid());
        };
        let valid = (2..=15).contains(&normalized.len()) && !normalized.starts_with('0');
        if !valid {
            return Err(invalid());
        }
        Ok(Self(format!("+{normalized}")))
    }

    /// Parses a customer's or a business's address on any channel: an E.164
    /// number (SMS), or Twilio's WhatsApp form `whatsapp:+E164`, which is
    /// kept whole so that sending to it and routing by it need nothing else.
    pub fn parse_address(input: &str) -> Result<Self, InvalidPhone> {
        if let Some(session) = input.trim().strip_prefix(WEB_PREFIX) {
            return Self::web(session).ok_or_else(|| InvalidPhone {
                input: mask_str(input.trim()),
            });
        }
        match input.trim().strip_prefix(WHATSAPP_PREFIX) {
            Some(number) => Ok(Self(format!("{WHATSAPP_PREFIX}{}", Self::parse(number)?.0))),
            None => Self::parse(input),
        }
    }

    /// A web chat visitor's address, `web:<session id>`: the id is 16 to
    /// 64 lower-case letters and digits (the widget's session, never typed
    /// by anyone).
    pub fn web(session: &str) -> Option<Self> {
        let valid = (16..=64).contains(&session.len())
            && session
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase());
        valid.then(|| Self(format!("{WEB_PREFIX}{session}")))
    }

    /// A web chat visitor (`web:...`) rather than a phone number.
    pub fn is_web(&self) -> bool {
        self.0.starts_with(WEB_PREFIX)
    }

    /// A WhatsApp address (`whatsapp:+E164`) rather than a phone number.
    pub fn is_whatsapp(&self) -> bool {
        self.0.starts_with(WHATSAPP_PREFIX)
    }

    /// The full number, for the provider APIs that need it. Never log this.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `+1503***1234`: enough to tell customers apart in a log, not enough to
    /// text them.
    pub fn masked(&self) -> Masked<'_> {
        Masked(&self.0)
    }
}

/// Display adapter that masks a phone number.
pub struct Masked<'a>(&'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(session) = self.0.strip_prefix(WEB_PREFIX) {
            // A session id is no secret of the visitor's, but it is the
            // key to the conversation: six characters tell sessions apart.
            let head: String = session.chars().take(6).collect();
            return write!(f, "{WEB_PREFIX}{head}...");
        }
        match self.0.strip_prefix(WHATSAPP_PREFIX) {
            Some(number) => write!(f, "{WHATSAPP_PREFIX}{}", mask_str(number)),
            None => f.write_str(&mask_str(self.0)),
        }
    }
}

/// Masks anything in free text that looks like a phone number (seven or
/// more digits, with the usual separators), for error messages from
/// providers that quote numbers back.
pub fn redact_phone_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            || (chars[i] == '+' && chars.get(i + 1).is_some_and(char::is_ascii_digit));
        if !starts_number {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len()
            && (chars[j].is_ascii_digit() || matches!(chars[j], ' ' | '-' | '.' | '(' | ')'))
        {
            j += 1;
        }
        // Do not swallow a trailing separator.
        while j > i + 1 && !chars[j - 1].is_ascii_digit() {
            j -= 1;
        }
        let run: String = chars[i..j].iter().collect();
        let digits = run.chars().filter(char::is_ascii_digit).count();
        if digits >= 7 {
            out.push_str(&mask_str(
                &run.chars()
                    .filter(|c| c.is_ascii_digit() || *c == '+')
                    .collect::<String>(),
            ));
        } else {
            out.push_str(&run);
        }
        i = j;
    }
    out
}

fn mask_str(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..5].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.masked())
    }
}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for E164 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        E164::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_web_visitor_is_an_address_of_its_own_and_masked() {
        let web = E164::parse_address("web:0123456789abcdef0123456789abcdef").unwrap();
        assert!(web.is_web());
        assert!(!web.is_whatsapp());
        assert_eq!(web.masked().to_string(), "web:012345...");
        assert!(E164::parse_address("web:short").is_err());
        assert!(E164::parse_address("web:0123456789ABCDEF0123456789abcdef").is_err());
        assert!(E164::web("0123456789abcdef").is_some());
    }

    #[test]
    fn accepts_the_forms_people_write() {
        for input in [
            "+15035550142",
            "15035550142",
            "5035550142",
            "(503) 555-0142",
            "503.555.0142",
            " +1 503 555 0142 ",
            "0015035550142",
        ] {
            assert_eq!(E164::parse(input).unwrap().as_str(), "+15035550142", "{input}");
        }
        assert_eq!(E164::parse("+442071838750").unwrap().as_str(), "+442071838750");
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        for input in [
            "",
            "+",
            "+0123456789",
            "12345",
            "+1234567890123456",
            "whatsapp:+15035550142",
            "503-555-014x",
            "+1 (503) 555-0142 ext 5",
        ] {
            assert!(E164::parse(input).is_err(), "{input} should be rejected");
        }
    }

    #[test]
    fn matches_the_e164_shape() {
        let n = E164::parse("+15035550142").unwrap();
        let s = n.as_str();
        assert!(s.starts_with('+'));
        assert!(s[1..].chars().all(|c| c.is_ascii_digit()));
        assert!((2..=16).contains(&s.len()));
        assert_ne!(&s[1..2], "0");
    }

    #[test]
    fn redacts_numbers_in_free_text() {
        let text = "The 'To' number +1 503-555-0142 is not a valid phone number. Code 21211, HTTP 400.";
        let out = redact_phone_numbers(text);
        assert_eq!(
            out,
            "The 'To' number +1503***0142 is not a valid phone number. Code 21211, HTTP 400."
        );
        assert_eq!(
            redact_phone_numbers("call 5035550142 now"),
            "call 50355***0142 now"
        );
        assert_eq!(
            redact_phone_numbers("no numbers, 2 or 400"),
            "no numbers, 2 or 400"
        );
    }

    #[test]
    fn whatsapp_addresses_keep_their_prefix_and_stay_masked() {
        let a = E164::parse_address("whatsapp:+1 503 555 1234").unwrap();
        assert_eq!(a.as_str(), "whatsapp:+15035551234");
        assert!(a.is_whatsapp());
        assert_eq!(a.masked().to_string(), "whatsapp:+1503***1234");
        let sms = E164::parse_address("+15035551234").unwrap();
        assert!(!sms.is_whatsapp());
        assert!(E164::parse_address("whatsapp:hello").is_err());
        assert!(E164::parse_address("telegram:+15035551234").is_err());
    }

    #[test]
    fn masks_in_debug_and_errors() {
        let n = E164::parse("+15035551234").unwrap();
        assert_eq!(n.masked().to_string(), "+1503***1234");
        assert_eq!(format!("{n:?}"), "E164(+1503***1234)");
        let err = E164::parse("+1503987123x").unwrap_err().to_string();
        assert!(err.contains("+1503***123x") && !err.contains("987"), "{err}");
    }
}
