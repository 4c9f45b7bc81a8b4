//! `POST /api/sms/status`: Twilio's delivery receipts (status callbacks)
//! for the texts we send.
//!
//! Signed and checked like the inbound webhook. Receipts arrive out of
//! order and repeat; the engine applies each once and only forward. A
//! receipt for a text we do not know is acknowledged and ignored, so
//! Twilio does not retry it.

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};

use super::AppState;
use super::error::ApiError;
use super::sms::is_message_sid;
use super::verify::verified_form;
use crate::domain::delivery::DeliveryStatus;
use crate::store::{ReceiptApplied, StatusReport};

pub const STATUS_PATH: &str = "/api/sms/status";

#[tracing::instrument(name = "sms_status", skip_all, fields(message_sid, status))]
pub async fn status(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let params = verified_form(&state, &uri, &headers, &body)?;
    let Some(report) = parse_status(&params)? else {
        return Ok(StatusCode::OK);
    };
    let span = tracing::Span::current();
    span.record("message_sid", mask_sid(&report.channel_message_id));
    span.record("status", report.status.as_str());
    match state.store.apply_status_report(&report).await? {
        ReceiptApplied::UnknownMessage => {
            tracing::warn!("delivery receipt for a text we did not send; ignored");
        }
        ReceiptApplied::Repeated => tracing::info!("repeated delivery receipt; ignored"),
        ReceiptApplied::Late { current } => tracing::info!(
            current = current.map_or("none", DeliveryStatus::as_str),
            "late delivery receipt; the text's status stays"
        ),
        ReceiptApplied::Advanced(text) => {
            tracing::info!(
                message = text.id.0,
                error_code = text.error_code,
                "delivery status recorded"
            );
            if text.status.is_failure() {
                // The owner of the text's own business hears of it, on
                // that business's current configuration.
                let business = state.store.conversation_business(text.conversation_id).await?;
                let engine = business
                    .and_then(|b| state.desks.engine(&b))
                    .or_else(|| state.desks.any());
                match engine {
                    Some(engine) => engine.alert_undelivered(&text).await?,
                    None => {
                        tracing::error!(message = text.id.0, "no business to alert of an undelivered text")
                    }
                }
            }
        }
    }
    Ok(StatusCode::OK)
}

/// The receipt a callback carries; `None` for a status this version does
/// not know (acknowledged, so Twilio stops, and logged).
fn parse_status(params: &[(String, String)]) -> Result<Option<StatusReport>, ApiError> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let required = |name: &str| get(name).ok_or_else(|| ApiError::BadRequest(format!("missing {name}")));
    let message_sid = required("MessageSid")?;
    if !is_message_sid(message_sid) {
        return Err(ApiError::BadRequest("MessageSid is malformed".into()));
    }
    let raw_status = required("MessageStatus")?;
    let error_code = match get("ErrorCode").map(str::trim) {
        None | Some("") => None,
        Some(code) => Some(
            code.parse::<i64>()
                .map_err(|_| ApiError::BadRequest("ErrorCode is not a number".into()))?,
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
fn mask_sid(sid: &str) -> String {
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
    fn a_receipt_parses_with_its_error_code() {
        let report = parse_status(&form(&[
            ("MessageSid", SID),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30006"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(report.status, DeliveryStatus::Undelivered);
        assert_eq!(report.error_code, Some(30006));
        let report = parse_status(&form(&[("MessageSid", SID), ("MessageStatus", "sent")]))
            .unwrap()
            .unwrap();
        assert_eq!(report.error_code, None);
    }

    #[test]
    fn a_malformed_receipt_is_refused_and_an_unknown_status_ignored() {
        assert!(parse_status(&form(&[("MessageStatus", "sent")])).is_err());
        assert!(parse_status(&form(&[("MessageSid", "SMshort"), ("MessageStatus", "sent")])).is_err());
        assert!(parse_status(&form(&[("MessageSid", SID)])).is_err());
        assert!(
            parse_status(&form(&[
                ("MessageSid", SID),
                ("MessageStatus", "failed"),
                ("ErrorCode", "thirty")
            ]))
            .is_err()
        );
        assert!(
            parse_status(&form(&[("MessageSid", SID), ("MessageStatus", "teleported")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn logs_see_a_masked_sid() {
        assert_eq!(mask_sid(SID), "SM…abcdef");
    }
}
