//! The process's Prometheus recorder, as far as the model's series need it.
//!
//! A minimal stand-in with the same names as the fleet's `meters` module
//! (issue 11, part 4), which owns `/metrics`: that module replaces this
//! file whole. Call sites record with the `metrics` macros under these
//! names; without an installed recorder they are no-ops.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// `textdesk_model_tokens_total{kind}`, kind one of [`TOKEN_KINDS`].
pub const MODEL_TOKENS: &str = "textdesk_model_tokens_total";
/// `textdesk_model_calls_per_turn`: model requests per customer text.
pub const MODEL_CALLS_PER_TURN: &str = "textdesk_model_calls_per_turn";

/// Token kinds of `textdesk_model_tokens_total`.
pub const TOKEN_KINDS: [&str; 4] = ["input", "cache_read", "cache_write", "output"];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on the first call; every later call
/// gets the same handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; this handle renders nothing");
        }
        handle
    })
}
