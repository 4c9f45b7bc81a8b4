//! What every Twilio webhook gets before its handler reads it: a form body
//! in UTF-8 (400 otherwise), signed with `X-Twilio-Signature` over
//! `PUBLIC_BASE_URL` + path + query and every parameter (403 otherwise).

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri, header};

use super::AppState;
use super::error::ApiError;
use crate::twilio::signature;

/// The webhook's parameters, once its body and signature check out.
pub(super) fn verified_form(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, String)>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::BadRequest(
            "expected an application/x-www-form-urlencoded body".into(),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
    let params: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes()).into_owned().collect();

    if !state.skip_signature_validation {
        let Some(token) = &state.twilio_auth_token else {
            tracing::error!("TWILIO_AUTH_TOKEN is not set, so no webhook can be verified");
            return Err(ApiError::Forbidden("signature cannot be verified"));
        };
        let signature = headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Forbidden("missing X-Twilio-Signature"))?;
        let path_and_query = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
        let url = format!("{}{}", state.public_base_url, path_and_query);
        if !signature::verify(
            secrecy::ExposeSecret::expose_secret(token),
            &url,
            &params,
            signature,
        ) {
            return Err(ApiError::Forbidden("X-Twilio-Signature does not match"));
        }
    }
    Ok(params)
}
