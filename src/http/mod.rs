//! The HTTP edge: routes, shared state, and request logging.

mod error;
pub mod owner;
mod sms;
mod status;
mod verify;
mod voice;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
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
    Router::new()
        .route("/api/sms/inbound", post(sms::inbound))
        .route(status::STATUS_PATH, post(status::status))
        .route(crate::channel::voice::INBOUND_PATH, post(voice::inbound))
        .route(crate::channel::voice::RELAY_PATH, get(voice::relay))
        .route(crate::channel::voice::AFTER_PATH, post(voice::after))
        .route("/healthz", get(health))
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
                    tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
}

#[tracing::instrument(name = "healthz", skip_all)]
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ok", "database": "ok"})),
        ),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "unavailable", "database": "unreachable"})),
            )
        }
    }
}
