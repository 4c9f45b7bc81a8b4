//! `POST /api/sms/inbound`: Twilio's incoming-message webhook, for SMS and
//! WhatsApp (read by `channel::twilio`).
//!
//! Verify, store, acknowledge. The reply is produced by the worker, never
//! here: Twilio gives up on a webhook after 15 seconds, and a model call can
//! take longer.

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::verify::verified_form;
use crate::channel::twilio::parse_webhook;
use crate::store::Recorded;

/// How long the webhook waits for its text to be stored before it answers
/// 503.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

#[tracing::instrument(name = "sms_inbound", skip_all, fields(message_sid, from))]
pub async fn inbound(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = verified_form(&state, &uri, &headers, &body)?;

    let mut sms = parse_webhook(&params, &state.media_base_url)?;
    let Some(business) = state.businesses.current().route(sms.to.as_str()).cloned() else {
        // 200, so Twilio does not retry a text no business here answers.
        tracing::warn!(to = ?sms.to, "a text to a number no business claims; ignored");
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response());
    };
    sms.business_id = business.business.id.clone();
    let span = tracing::Span::current();
    span.record("message_sid", sms.channel_message_id.as_str());
    span.record("from", tracing::field::display(sms.from.masked()));

    // A database that is down, locked or hung gets a 503 in seconds, well
    // inside Twilio's patience (15 s), so Twilio retries. Should the text
    // be stored after all, the retry finds it a duplicate.
    let recorded = tokio::time::timeout(STORE_WAIT, state.store.record_inbound(&sms))
        .await
        .map_err(|_| ApiError::Unavailable("the text was not stored in time"))??;
    match recorded {
        Recorded::New(conversation, _) => {
            tracing::info!(conversation = conversation.0, "text stored");
            state.wake_worker.notify_one();
        }
        Recorded::Duplicate(..) => tracing::info!("duplicate delivery of a stored text; ignored"),
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response())
}
