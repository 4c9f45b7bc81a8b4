//! One error type for every handler, mapped to a status in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database did not answer in time: try again later.
    #[error("unavailable: {0}")]
    Unavailable(&'static str),
}

impl From<crate::channel::twilio::WebhookError> for ApiError {
    fn from(e: crate::channel::twilio::WebhookError) -> Self {
        ApiError::BadRequest(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Forbidden(reason) => {
                tracing::warn!(reason, "request refused");
                (StatusCode::FORBIDDEN, "forbidden\n").into_response()
            }
            ApiError::BadRequest(reason) => {
                tracing::warn!(%reason, "bad request");
                (StatusCode::BAD_REQUEST, format!("bad request: {reason}\n")).into_response()
            }
            ApiError::Store(e @ (StoreError::Database(_) | StoreError::Migrate(_))) => {
                // The database is down, locked or unreachable: 503, so
                // Twilio retries later. Nothing was acknowledged that was
                // not stored, so the retry loses nothing.
                tracing::error!(error = %e, "storage unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::RETRY_AFTER, "5")],
                    "storage unavailable, retry later\n",
                )
                    .into_response()
            }
            ApiError::Unavailable(reason) => {
                tracing::error!(reason, "storage unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::RETRY_AFTER, "5")],
                    "storage unavailable, retry later\n",
                )
                    .into_response()
            }
            ApiError::Store(e) => {
                // 500 makes Twilio retry later; the text is not lost.
                tracing::error!(error = %e, "storage failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
            }
        }
    }
}
