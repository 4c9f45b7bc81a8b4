//! SMS and WhatsApp through Twilio: the webhook read into a
//! channel-neutral message, and sending, with Twilio's errors translated
//! into `SendError`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Channel, ChannelPort, Content, SendError};
use crate::domain::delivery::DeliveryStatus;
use crate::domain::phone::E164;
use crate::media::MAX_MEDIA_PER_MESSAGE;
use crate::store::{InboundMessage, StatusReport};
use crate::twilio::{ApiError, ERROR_OPTED_OUT, ERROR_OUTSIDE_WHATSAPP_WINDOW, TwilioClient};

/// A webhook that cannot be a message from Twilio (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WebhookError(pub String);

/// Reads Twilio's incoming-message webhook (already verified) into the
/// message we store. `business_id` is left empty: routing by `To` is the
/// caller's. `media_base_url` is the only place media is fetched from.
pub fn parse_webhook(
    params: &[(String, String)],
    media_base_url: &url::Url,
) -> Result<InboundMessage, WebhookError> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let required = |name: &str| get(name).ok_or_else(|| WebhookError(format!("missing {name}")));
    let message_sid = required("MessageSid")?;
    if !is_message_sid(message_sid) {
        return Err(WebhookError("MessageSid is malformed".into()));
    }
    // Twilio's signature concatenates names and values with no separator, so
    // a parameter moved into the end of another keeps it valid. The SID's
    // fixed shape, and its copies agreeing, leave no room to smuggle a replay.
    for copy in ["SmsSid", "SmsMessageSid"] {
        if get(copy).is_some_and(|sid| sid != message_sid) {
            return Err(WebhookError(format!("{copy} differs from MessageSid")));
        }
    }
    let from = E164::parse_address(required("From")?).map_err(|e| WebhookError(format!("From: {e}")))?;
    let to = E164::parse_address(required("To")?).map_err(|e| WebhookError(format!("To: {e}")))?;
    // A reply goes back on the channel it came in on, from the address
    // written to: a text claiming to cross channels has no such answer.
    let (from_channel, to_channel) = (Channel::of(&from), Channel::of(&to));
    if from_channel != to_channel {
        return Err(WebhookError(format!(
            "From is {} but To is {}",
            from_channel.name(),
            to_channel.name()
        )));
    }
    let num_media: usize = match get("NumMedia") {
        _ if !from_channel.accepts_media() => 0,
        None | Some("") => 0,
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| *n <= MAX_MEDIA_PER_MESSAGE)
            .ok_or_else(|| WebhookError("NumMedia is not a number from 0 to 10".into()))?,
    };
    // Whether a file is fetched is decided here, where the provider's base
    // URL is known: a URL anywhere else is recorded and never requested.
    let media = (0..num_media)
        .filter_map(|i| {
            let url = get(&format!("MediaUrl{i}"))?;
            let content_type = get(&format!("MediaContentType{i}")).unwrap_or("application/octet-stream");
            Some(crate::media::plan(url, content_type, media_base_url))
        })
        .collect();
    let params: Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    // Twilio's own opt-out handling and the WhatsApp profile, handed to
    // the store as channel-neutral fields.
    let non_empty = |name: &str| get(name).filter(|v| !v.is_empty()).map(str::to_string);
    Ok(InboundMessage {
        business_id: String::new(),
        channel_message_id: message_sid.to_string(),
        from,
        to,
        body: get("Body").unwrap_or("").to_string(),
        media,
        params: Value::Object(params),
        opt_out_keyword: non_empty("OptOutType"),
        profile_name: non_empty("ProfileName"),
    })
}

/// The receipt a callback carries; `None` for a status this version does
/// not know (acknowledged, so Twilio stops, and logged).
pub fn parse_status_callback(params: &[(String, String)]) -> Result<Option<StatusReport>, WebhookError> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let required = |name: &str| get(name).ok_or_else(|| WebhookError(format!("missing {name}")));
    let message_sid = required("MessageSid")?;
    if !is_message_sid(message_sid) {
        return Err(WebhookError("MessageSid is malformed".into()));
    }
    let raw_status = required("MessageStatus")?;
    let error_code = match get("ErrorCode").map(str::trim) {
        None | Some("") => None,
        Some(code) => Some(
            code.parse::<i64>()
                .map_err(|_| WebhookError("ErrorCode is not a number".into()))?,
        ),
    };
    let Some(status) = DeliveryStatus::parse(raw_status) else {
        tracing::warn!(
            message_sid = %mask_sid(message_sid),
            status = %raw_status.chars().take(20).collect::<String>(),
            "delivery receipt with a status textdesk does not know; ignored"
        );
        return Ok(None);
    };
    Ok(Some(StatusReport {
        channel_message_id: message_sid.to_string(),
        status,
        error_code,
    }))
}

/// A SID fit for a log line: enough to match Twilio's console, not the
/// whole key.
pub fn mask_sid(sid: &str) -> String {
    let tail: String = sid
        .chars()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{}…{tail}", sid.chars().take(2).collect::<String>())
}

/// Twilio's message SIDs: `SM` (SMS, and WhatsApp text) or `MM` (media),
/// then 32 lowercase hex digits.
pub fn is_message_sid(sid: &str) -> bool {
    let Some(digits) = sid.strip_prefix("SM").or_else(|| sid.strip_prefix("MM")) else {
        return false;
    };
    digits.len() == 32 && digits.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What a Twilio error code means for the conversation, when it means more
/// than "rejected": the same codes arrive on a refused send and on a
/// delivery receipt.
pub fn meaning_of_code(code: i64) -> Option<SendError> {
    match code {
        ERROR_OPTED_OUT => Some(SendError::OptedOut),
        ERROR_OUTSIDE_WHATSAPP_WINDOW => Some(SendError::OutsideWindow(format!(
            "Twilio refused free-form text ({ERROR_OUTSIDE_WHATSAPP_WINDOW})"
        ))),
        _ => None,
    }
}

/// A failed request to the Messages API, in channel terms.
pub fn send_error(error: ApiError) -> SendError {
    match error {
        ApiError::Refused {
            status,
            code,
            message,
        } => {
            if let Some(meaning) = code.and_then(meaning_of_code) {
                return meaning;
            }
            if status == 429 || (500..600).contains(&status) {
                return SendError::Unavailable(format!("Twilio: HTTP {status}: {message}"));
            }
            SendError::Rejected {
                status,
                code,
                message,
            }
        }
        ApiError::Unreachable(reason) => SendError::Unavailable(format!("Twilio: cannot connect: {reason}")),
        ApiError::NoAnswer(reason) => SendError::Ambiguous(format!("Twilio: {reason}")),
    }
}

/// SMS and WhatsApp through one Twilio account. Each text goes out from
/// the conversation's own business address (the number the customer
/// wrote to).
pub struct TwilioChannel {
    client: TwilioClient,
    retry_base: Duration,
    max_retries: u32,
}

impl TwilioChannel {
    pub fn new(client: TwilioClient) -> Self {
        Self {
            client,
            retry_base: Duration::from_millis(500),
            max_retries: 2,
        }
    }

    /// Shorter backoff, for tests.
    pub fn with_retry_base(mut self, retry_base: Duration) -> Self {
        self.retry_base = retry_base;
        self
    }

    /// Only what was certainly not sent is tried again.
    async fn send_with_retries(
        &self,
        from: &E164,
        to: &E164,
        content: &[(&'static str, &str)],
    ) -> Result<String, SendError> {
        let mut attempt = 0;
        loop {
            match self
                .client
                .create_message(from, to, content)
                .await
                .map_err(send_error)
            {
                Err(SendError::Unavailable(reason)) if attempt < self.max_retries => {
                    let delay = self.retry_base * 2u32.pow(attempt);
                    tracing::warn!(%reason, ?delay, "Twilio unavailable; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl ChannelPort for TwilioChannel {
    #[tracing::instrument(name = "twilio_send", skip_all, fields(to = %to.masked()))]
    async fn send(&self, from: &E164, to: &E164, content: Content<'_>) -> Result<String, SendError> {
        match content {
            Content::Text(body) => self.send_with_retries(from, to, &[("Body", body)]).await,
            Content::Template { id, variables } => {
                self.send_with_retries(from, to, &[("ContentSid", id), ("ContentVariables", variables)])
                    .await
            }
        }
    }

    #[tracing::instrument(name = "twilio_find_sent", skip_all, fields(to = %to.masked()))]
    async fn find_sent(
        &self,
        from: &E164,
        to: &E164,
        content: Content<'_>,
        since: DateTime<Utc>,
    ) -> Result<Option<String>, SendError> {
        // Twilio lists a template send with its rendered body: ours is in
        // it as a variable, on one line.
        let carried = match content {
            Content::Text(_) => None,
            Content::Template { variables, .. } => match super::whatsapp::text_of_variables(variables) {
                Some(text) => Some(text),
                None => return Ok(None),
            },
        };
        let is_ours = |listed: &str| match (&content, &carried) {
            (Content::Text(body), _) => listed == *body,
            (_, Some(text)) => super::whatsapp::one_line(listed).contains(text.as_str()),
            (_, None) => false,
        };
        let day = (since - chrono::Duration::days(1)).date_naive();
        let listed = self
            .client
            .list_messages(from, to, day)
            .await
            .map_err(|e| SendError::Unavailable(format!("listing messages: {e}")))?;
        Ok(listed
            .into_iter()
            .find(|m| {
                // The same words sent earlier (a second HELP, say) are not this text.
                let created = m
                    .date_created
                    .as_deref()
                    .and_then(|d| DateTime::parse_from_rfc2822(d).ok());
                m.body.as_deref().is_some_and(is_ours)
                    && created.is_none_or(|c| c >= since - chrono::Duration::seconds(5))
            })
            .map(|m| m.sid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SID: &str = "SM0123456789abcdef0123456789abcdef";

    #[test]
    fn message_sids_have_twilios_shape() {
        assert!(is_message_sid("SM0123456789abcdef0123456789abcdef"));
        assert!(is_message_sid("MM0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "SM",
            "SM0123456789abcdef0123456789abcde",
            "SM0123456789abcdef0123456789abcdef0",
            "SM0123456789abcdef0123456789abcdefNumMedia0",
            "SM0123456789ABCDEF0123456789ABCDEF",
            "XX0123456789abcdef0123456789abcdef",
            "sm0123456789abcdef0123456789abcdef",
            "SMquery0000000000000000000000000001",
        ] {
            assert!(!is_message_sid(bad), "{bad}");
        }
    }

    #[test]
    fn opted_out_and_window_codes_have_channel_meanings() {
        let refused = |status, code| ApiError::Refused {
            status,
            code: Some(code),
            message: "m".into(),
        };
        assert_eq!(send_error(refused(400, 21610)), SendError::OptedOut);
        assert!(matches!(
            send_error(refused(400, 63016)),
            SendError::OutsideWindow(ref why) if why.contains("63016")
        ));
        assert_eq!(meaning_of_code(21610), Some(SendError::OptedOut));
        assert_eq!(meaning_of_code(30006), None);
    }

    #[test]
    fn other_failures_split_by_whether_the_text_may_have_gone_out() {
        assert_eq!(
            send_error(ApiError::Refused {
                status: 400,
                code: Some(21211),
                message: "bad number".into()
            }),
            SendError::Rejected {
                status: 400,
                code: Some(21211),
                message: "bad number".into()
            }
        );
        for status in [429, 500, 503] {
            let e = send_error(ApiError::Refused {
                status,
                code: None,
                message: "busy".into(),
            });
            assert!(
                matches!(e, SendError::Unavailable(ref m) if m.contains("busy")),
                "{e:?}"
            );
        }
        assert!(matches!(
            send_error(ApiError::Unreachable("refused".into())),
            SendError::Unavailable(_)
        ));
        assert!(matches!(
            send_error(ApiError::NoAnswer("timed out".into())),
            SendError::Ambiguous(_)
        ));
    }

    #[test]
    fn the_webhook_becomes_a_neutral_message_on_its_channel() {
        let base: url::Url = "https://api.twilio.com".parse().unwrap();
        let wa = parse_webhook(
            &form(&[
                ("MessageSid", SID),
                ("From", "whatsapp:+15035551234"),
                ("To", "whatsapp:+15035550142"),
                ("Body", "hi"),
            ]),
            &base,
        )
        .unwrap();
        assert_eq!(Channel::of(&wa.from), Channel::WhatsApp);
        assert_eq!(wa.body, "hi");
        assert_eq!(wa.params["MessageSid"], SID);
        let crossed = parse_webhook(
            &form(&[
                ("MessageSid", SID),
                ("From", "whatsapp:+15035551234"),
                ("To", "+15035550142"),
            ]),
            &base,
        )
        .unwrap_err();
        assert_eq!(crossed.0, "From is WhatsApp but To is SMS");
        let smuggled = parse_webhook(
            &form(&[
                ("MessageSid", SID),
                ("SmsSid", "SM0000000000000000000000000000000f"),
                ("From", "+15035551234"),
                ("To", "+15035550142"),
            ]),
            &base,
        )
        .unwrap_err();
        assert_eq!(smuggled.0, "SmsSid differs from MessageSid");
    }

    #[test]
    fn a_receipt_parses_with_its_error_code() {
        let report = parse_status_callback(&form(&[
            ("MessageSid", SID),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30006"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(report.status, DeliveryStatus::Undelivered);
        assert_eq!(report.error_code, Some(30006));
        let report = parse_status_callback(&form(&[("MessageSid", SID), ("MessageStatus", "sent")]))
            .unwrap()
            .unwrap();
        assert_eq!(report.error_code, None);
    }

    #[test]
    fn a_malformed_receipt_is_refused_and_an_unknown_status_ignored() {
        assert!(parse_status_callback(&form(&[("MessageStatus", "sent")])).is_err());
        assert!(
            parse_status_callback(&form(&[("MessageSid", "SMshort"), ("MessageStatus", "sent")])).is_err()
        );
        assert!(parse_status_callback(&form(&[("MessageSid", SID)])).is_err());
        assert!(
            parse_status_callback(&form(&[
                ("MessageSid", SID),
                ("MessageStatus", "failed"),
                ("ErrorCode", "thirty")
            ]))
            .is_err()
        );
        assert!(
            parse_status_callback(&form(&[("MessageSid", SID), ("MessageStatus", "teleported")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn logs_see_a_masked_sid() {
        assert_eq!(mask_sid(SID), "SM…abcdef");
    }
}
