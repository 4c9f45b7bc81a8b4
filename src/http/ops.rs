//! What an operator and a load balancer ask of each instance: liveness
//! (`/healthz`), readiness (`/readyz`), the Prometheus scrape (`/metrics`),
//! and the request id and request counts every route gets.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::meters;
use crate::store::NotReady;

/// The request id header: the client's, when it sent a usable one.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `/readyz` answers within this, however the database hangs (a load
/// balancer's probe usually waits 5 s).
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(4);

/// The webhook Twilio posts texts to; its time to answer is a histogram.
const INBOUND_ROUTE: &str = "/api/sms/inbound";

/// Liveness: 200 while the process serves requests. It asks nothing of the
/// database: a database outage is `/readyz`'s business, and restarting a
/// live process would not fix it.
pub async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, Json(serde_json::json!({"status": "ok"})))
}

/// Readiness: the database takes writes and has this build's migrations.
/// 503 otherwise, within [`READINESS_TIMEOUT`].
#[tracing::instrument(name = "readyz", skip_all)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let problem = match tokio::time::timeout(READINESS_TIMEOUT, state.store.readiness()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            let word = match &e {
                NotReady::Unreachable(_) => "unreachable",
                NotReady::MigrationsPending { .. } => "migrations_pending",
                NotReady::ReadOnly => "read_only",
            };
            Some((word, e.to_string()))
        }
        Err(_) => Some((
            "timeout",
            format!(
                "the database did not answer within {} s",
                READINESS_TIMEOUT.as_secs()
            ),
        )),
    };
    match problem {
        None => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ready", "database": "ok"})),
        )
            .into_response(),
        Some((word, detail)) => {
            // The detail goes to the log only: the answer is a word, so a
            // probe learns nothing about the database's address or errors.
            tracing::error!(problem = %detail, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                Json(serde_json::json!({"status": "unavailable", "database": word})),
            )
                .into_response()
        }
    }
}

/// The Prometheus scrape. The job gauges are read from the store now,
/// bounded in time; a database that does not answer leaves them at their
/// last reading and the rest is served.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let now = state.owner.clock.now();
    let jobs = match tokio::time::timeout(READINESS_TIMEOUT, state.store.job_counts(now)).await {
        Ok(Ok(jobs)) => Some(jobs),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: could not count jobs");
            None
        }
        Err(_) => {
            tracing::warn!("metrics: counting jobs timed out");
            None
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        meters::render(jobs.as_ref()),
    )
        .into_response()
}

/// A client's request id is kept when it is short and plain (letters,
/// digits, `-_.:`); anything else is replaced, so a log line never carries
/// a caller's arbitrary text.
fn usable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The outermost layer of every route: gives the request its id (the
/// client's, or a new one) before the trace span reads it, returns it in
/// the response, and counts the request by route template, method and
/// status once the answer (whatever layer made it) is known.
pub async fn request_context(mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(&REQUEST_ID) {
        Some(value) if usable_request_id(value) => value.clone(),
        _ => {
            let fresh = uuid::Uuid::new_v4().simple().to_string();
            HeaderValue::from_str(&fresh).expect("hex digits are a valid header value")
        }
    };
    request.headers_mut().insert(REQUEST_ID, id.clone());
    // The template (`/owner/conversations/{id}`), never the raw path.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let mut response = next.run(request).await;
    if route == INBOUND_ROUTE {
        meters::webhook_ack(started.elapsed());
    }
    meters::http_request(&route, &method, response.status().as_u16());
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_request_id_is_kept_and_anything_else_replaced() {
        assert!(usable_request_id(&HeaderValue::from_static("abc-123_x.y:z")));
        assert!(usable_request_id(&HeaderValue::from_static(
            "0f8fad5b-d9cb-469f-a165-70867728950e"
        )));
        assert!(!usable_request_id(&HeaderValue::from_static("")));
        assert!(!usable_request_id(&HeaderValue::from_static("has space")));
        assert!(!usable_request_id(&HeaderValue::from_static(
            "+15035550100\"quote"
        )));
        let long = "a".repeat(129);
        assert!(!usable_request_id(&HeaderValue::from_str(&long).unwrap()));
        assert!(usable_request_id(&HeaderValue::from_str(&long[..128]).unwrap()));
    }
}
