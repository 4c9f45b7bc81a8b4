//! `POST /api/sms/inbound`: Twilio's incoming-message webhook.
//!
//! Verify, store, acknowledge. The reply is produced by the worker, never
//! here: Twilio gives up on a webhook after 15 seconds, and a model call can
//! take longer.

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::AppState;
use super::error::ApiError;
use super::verify::verified_form;
use crate::channel::Channel;
use crate::domain::phone::E164;
use crate::media::MAX_MEDIA_PER_MESSAGE;
use crate::store::{InboundMessage, Recorded};

const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

#[tracing::instrument(name = "sms_inbound", skip_all, fields(message_sid, from))]
pub async fn inbound(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = verified_form(&state, &uri, &headers, &body)?;

    let mut sms = parse_inbound(&params, &state.media_base_url)?;
    let Some(business) = state.businesses.current().route(sms.to.as_str()).cloned() else {
        // 200, so Twilio does not retry a text no business here answers.
        tracing::warn!(to = ?sms.to, "a text to a number no business claims; ignored");
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response());
    };
    sms.business_id = business.business.id.clone();
    let span = tracing::Span::current();
    span.record("message_sid", sms.channel_message_id.as_str());
    span.record("from", tracing::field::display(sms.from.masked()));

    match state.store.record_inbound(&sms).await? {
        Recorded::New(conversation, _) => {
            tracing::info!(conversation = conversation.0, "text stored");
            state.wake_worker.notify_one();
        }
        Recorded::Duplicate(..) => tracing::info!("duplicate delivery of a stored text; ignored"),
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response())
}

fn parse_inbound(params: &[(String, String)], media_base_url: &url::Url) -> Result<InboundMessage, ApiError> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let required = |name: &str| get(name).ok_or_else(|| ApiError::BadRequest(format!("missing {name}")));
    let message_sid = required("MessageSid")?;
    if !is_message_sid(message_sid) {
        return Err(ApiError::BadRequest("MessageSid is malformed".into()));
    }
    // Twilio's signature concatenates names and values with no separator, so
    // a parameter moved into the end of another keeps it valid. The SID's
    // fixed shape, and its copies agreeing, leave no room to smuggle a replay.
    for copy in ["SmsSid", "SmsMessageSid"] {
        if get(copy).is_some_and(|sid| sid != message_sid) {
            return Err(ApiError::BadRequest(format!("{copy} differs from MessageSid")));
        }
    }
    let from =
        E164::parse_address(required("From")?).map_err(|e| ApiError::BadRequest(format!("From: {e}")))?;
    let to = E164::parse_address(required("To")?).map_err(|e| ApiError::BadRequest(format!("To: {e}")))?;
    // A reply goes back on the channel it came in on, from the address
    // written to: a text claiming to cross channels has no such answer.
    let (from_channel, to_channel) = (Channel::of(&from), Channel::of(&to));
    if from_channel != to_channel {
        return Err(ApiError::BadRequest(format!(
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
            .ok_or_else(|| ApiError::BadRequest("NumMedia is not a number from 0 to 10".into()))?,
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
    // Twilio's own opt-out handling and WhatsApp profile, handed to the
    // store as channel-neutral fields.
    let non_empty = |name: &str| get(name).filter(|v| !v.is_empty()).map(str::to_string);
    let opt_out_keyword = non_empty("OptOutType");
    let profile_name = non_empty("ProfileName");
    Ok(InboundMessage {
        business_id: String::new(),
        channel_message_id: message_sid.to_string(),
        from,
        to,
        body: get("Body").unwrap_or("").to_string(),
        media,
        params: Value::Object(params),
        opt_out_keyword,
        profile_name,
    })
}

/// Twilio's message SIDs: `SM` (SMS, and WhatsApp text) or `MM` (media),
/// then 32 lowercase hex digits.
pub(super) fn is_message_sid(sid: &str) -> bool {
    let Some(digits) = sid.strip_prefix("SM").or_else(|| sid.strip_prefix("MM")) else {
        return false;
    };
    digits.len() == 32 && digits.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
