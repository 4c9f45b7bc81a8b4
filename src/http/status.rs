//! `POST /api/sms/status`: Twilio's delivery receipts (status callbacks)
//! for the texts we send, read by `channel::twilio`.
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
use super::verify::verified_form;
use crate::channel::twilio::{mask_sid, parse_status_callback};
use crate::domain::delivery::DeliveryStatus;
use crate::store::ReceiptApplied;

pub const STATUS_PATH: &str = "/api/sms/status";

#[tracing::instrument(name = "sms_status", skip_all, fields(message_sid, status))]
pub async fn status(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let params = verified_form(&state, &uri, &headers, &body)?;
    let Some(report) = parse_status_callback(&params)? else {
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
