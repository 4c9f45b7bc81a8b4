//! The HTTP edge: routes, shared state, and request logging.

mod error;
pub mod ops;
pub mod owner;
mod sms;
mod status;
mod verify;
mod voice;
pub mod webchat;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use secrecy::SecretString;
use tokio::sync::Notify;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use error::ApiError;

use crate::store::Store;

/// Twilio's webhook bodies are a few kilobytes; anything near this is not
/// Twilio.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    /// Which business a text reaches, by the number it was sent to.
    pub businesses: std::sync::Arc<crate::config::directory::BusinessDirectory>,
    pub store: Arc<dyn Store>,
    pub wake_worker: Arc<Notify>,
    /// Without the trailing slash: the request path is appended to it.
    pub public_base_url: String,
    pub twilio_auth_token: Option<SecretString>,
    pub skip_signature_validation: bool,
    /// Each business's engine: a failed text is alerted to its own owner.
    pub desks: Arc<crate::app::Desks>,
    /// Only media URLs under this base (`TWILIO_API_BASE_URL`) are fetched.
    pub media_base_url: url::Url,
    /// The owner's console (`/owner/`).
    pub owner: owner::OwnerConsole,
    /// The web chat's sessions, hub and rate limits (`/api/chat/`).
    pub webchat: webchat::WebChat,
    /// Phone calls (`/api/voice/...`): the streaming model and the clock.
    pub calls: Arc<crate::jobs::call::Calls>,
}

/// Where Twilio posts the delivery receipts of the texts we send.
pub fn status_callback_url(public_base_url: &url::Url) -> String {
    format!(
        "{}{}",
        public_base_url.as_str().trim_end_matches('/'),
        status::STATUS_PATH
    )
}

pub fn router(state: AppState) -> Router {
    let webchat = webchat::router(state.clone());
    Router::new()
        .route("/api/sms/inbound", post(sms::inbound))
        .route(status::STATUS_PATH, post(status::status))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route(crate::channel::voice::INBOUND_PATH, post(voice::inbound))
        .route(crate::channel::voice::RELAY_PATH, get(voice::relay))
        .route(crate::channel::voice::AFTER_PATH, post(voice::after))
        // Browsers ask for it on every console page; "no icon" is an
        // answer, a 404 is an error in the owner's console log.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .merge(owner::router(&state))
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(10)))
        .layer(
            // Method and path only: query strings and bodies may carry
            // phone numbers.
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    // Set by `ops::request_context`, the layer outside this.
                    let request_id = request
                        .headers()
                        .get(&ops::REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %request_id)
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        // The web chat has its own body limit and timeout (a POST waits
        // for the reply), and its own trace layer.
        .merge(
            webchat.layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request<_>| {
                        let request_id = request
                            .headers()
                            .get(&ops::REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %request_id)
                    })
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            ),
        )
        // Outermost: the request id exists before the spans above are
        // made, and the count sees every answer, a 408 or 413 included.
        .layer(axum::middleware::from_fn(ops::request_context))
}
