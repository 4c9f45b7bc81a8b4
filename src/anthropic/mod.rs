//! The Anthropic Messages API over reqwest.
//!
//! Retries follow Anthropic's guidance: 429, 5xx and 529 (overloaded) are
//! retried with exponential backoff, honouring `retry-after` and
//! `x-should-retry`; other 4xx are final. Every call is bounded in time and
//! attempts, so a turn can always end in an answer or an apology.

pub mod stream;
pub mod types;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use url::Url;

use crate::config::settings::AnthropicSettings;
pub use types::*;

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Overloaded, rate-limited, down or unreachable, after every retry.
    #[error("the model is unavailable after {attempts} attempt(s): {last_error}")]
    Unavailable { attempts: u32, last_error: String },
    /// A request the API will never accept as sent (bad key, bad request).
    #[error("the model API rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
}

/// The seam the assistant calls; tests and benchmarks substitute their own.
#[async_trait]
pub trait ModelClient: Send + Sync + 'static {
    async fn create_message(&self, request: &MessagesRequest) -> Result<MessagesResponse, ModelError>;
}

pub struct AnthropicClient {
    http: reqwest::Client,
    endpoint: Url,
    settings: AnthropicSettings,
}

enum Attempt {
    Done(MessagesResponse),
    Retry { reason: String, after: Option<Duration> },
    Fail(ModelError),
}

impl AnthropicClient {
    pub fn new(settings: AnthropicSettings) -> Self {
        let mut endpoint = settings.base_url.clone();
        endpoint.set_path(&format!(
            "{}/v1/messages",
            settings.base_url.path().trim_end_matches('/')
        ));
        Self {
            http: reqwest::Client::builder()
                .timeout(settings.timeout)
                .build()
                .expect("a TLS backend is compiled in"),
            endpoint,
            settings,
        }
    }

    async fn attempt(&self, request: &MessagesRequest) -> Attempt {
        let response = match self
            .http
            .post(self.endpoint.clone())
            .header("x-api-key", self.settings.api_key.expose_secret())
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(request)
            .send()
            .await
        {
            Ok(r) => r,
            // The Messages API has no side effects, so a timeout is safe to retry.
            Err(e) => {
                crate::meters::model_request(if e.is_timeout() { "timeout" } else { "unreachable" });
                return Attempt::Retry {
                    reason: format!("request failed: {e}"),
                    after: None,
                };
            }
        };
        let status = response.status();
        let after = retry_after(response.headers());
        let should_retry = response
            .headers()
            .get("x-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v == "true");
        if status.is_success() {
            return match response.json::<MessagesResponse>().await {
                Ok(body) => {
                    crate::meters::model_request("ok");
                    Attempt::Done(body)
                }
                Err(e) => {
                    crate::meters::model_request(if e.is_timeout() { "timeout" } else { "unreadable" });
                    Attempt::Retry {
                        reason: format!("unreadable response: {e}"),
                        after: None,
                    }
                }
            };
        }
        crate::meters::model_request(match status.as_u16() {
            429 => "rate_limited",
            529 => "overloaded",
            500..=599 => "server_error",
            _ => "rejected",
        });
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&body)
            .map(|b| format!("{}: {}", b.error.kind, b.error.message))
            .unwrap_or_else(|_| body.chars().take(300).collect());
        let retryable = should_retry.unwrap_or(
            status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || status.as_u16() == 529,
        );
        if retryable {
            Attempt::Retry {
                reason: format!("HTTP {status}: {message}"),
                after,
            }
        } else {
            Attempt::Fail(ModelError::Rejected {
                status: status.as_u16(),
                message,
            })
        }
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let raw = headers.get("retry-after")?.to_str().ok()?;
    let seconds: f64 = raw.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

#[async_trait]
impl ModelClient for AnthropicClient {
    #[tracing::instrument(name = "anthropic_messages", skip_all, fields(model = %request.model))]
    async fn create_message(&self, request: &MessagesRequest) -> Result<MessagesResponse, ModelError> {
        let max_attempts = self.settings.max_retries + 1;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (reason, after) = match self.attempt(request).await {
                Attempt::Done(body) => return Ok(body),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { reason, after } => (reason, after),
            };
            if attempts >= max_attempts {
                return Err(ModelError::Unavailable {
                    attempts,
                    last_error: reason,
                });
            }
            let backoff = self.settings.retry_base * 2u32.saturating_pow(attempts - 1);
            let delay = match after {
                Some(after) if after > self.settings.max_retry_after => {
                    return Err(ModelError::Unavailable {
                        attempts,
                        last_error: format!(
                            "{reason} (retry-after {after:?} is longer than we keep a customer waiting)"
                        ),
                    });
                }
                Some(after) => after,
                None => backoff,
            };
            tracing::warn!(%reason, attempt = attempts, ?delay, "model call failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}
