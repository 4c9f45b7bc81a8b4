//! The process's Prometheus meters, served at `GET /metrics`.
//!
//! One recorder per process (`metrics` allows one global recorder): the
//! first `install` sets it, and every later call (tests build many apps in
//! one process) gets the same handle. Call sites record through the small
//! functions below, so every series' name and labels live here, and every
//! label is a fixed, small set of words: never a phone number, an address
//! or a customer's text.
//!
//! Counters, histograms and gauges:
//! - `textdesk_http_requests_total{route,method,status}`: `route` is the
//!   axum route template (`/owner/conversations/{id}`), never the raw path;
//! - `textdesk_webhook_ack_seconds`: the SMS/WhatsApp webhook, from the
//!   request to the answer;
//! - `textdesk_turn_seconds`: one worker turn;
//! - `textdesk_model_requests_total{outcome}`: each HTTP attempt at the
//!   Messages API;
//! - `textdesk_model_tokens_total{kind}` and
//!   `textdesk_model_calls_per_turn`: described here, recorded from the
//!   API's usage and per customer text;
//! - `textdesk_sends_total{channel,outcome}`: each text the `Dispatcher`
//!   tried to send;
//! - `textdesk_jobs{kind,status}` and `textdesk_job_oldest_due_seconds`:
//!   read from the store at each scrape ([`crate::store::FleetReadings`]);
//! - `textdesk_booking_conflicts_total`, `textdesk_alerts_total{kind}`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::{AlertKind, JobCounts};

pub const HTTP_REQUESTS: &str = "textdesk_http_requests_total";
pub const WEBHOOK_ACK: &str = "textdesk_webhook_ack_seconds";
pub const TURN: &str = "textdesk_turn_seconds";
pub const MODEL_REQUESTS: &str = "textdesk_model_requests_total";
pub const MODEL_TOKENS: &str = "textdesk_model_tokens_total";
pub const MODEL_CALLS_PER_TURN: &str = "textdesk_model_calls_per_turn";
pub const SENDS: &str = "textdesk_sends_total";
pub const JOBS: &str = "textdesk_jobs";
pub const JOB_OLDEST_DUE: &str = "textdesk_job_oldest_due_seconds";
pub const BOOKING_CONFLICTS: &str = "textdesk_booking_conflicts_total";
pub const ALERTS: &str = "textdesk_alerts_total";

/// Token kinds of `textdesk_model_tokens_total`.
pub const TOKEN_KINDS: [&str; 4] = ["input", "cache_read", "cache_write", "output"];

/// Outcomes of one attempt at the model API: answered; timed out; no
/// connection; HTTP 429, 529 or another 5xx; another 4xx; a 2xx body that
/// does not read.
pub const MODEL_OUTCOMES: [&str; 8] = [
    "ok",
    "timeout",
    "unreachable",
    "rate_limited",
    "overloaded",
    "server_error",
    "rejected",
    "unreadable",
];

/// Outcomes of one send, in channel terms.
pub const SEND_OUTCOMES: [&str; 5] = ["sent", "failed", "unknown", "withheld", "opted_out"];

/// Channels a stored text goes out on (`Channel::name`, lower case; the
/// terminal's `chat` rehearses SMS and is counted as it).
pub const SEND_CHANNELS: [&str; 2] = ["sms", "whatsapp"];

/// Every job status, as stored.
pub const JOB_STATUSES: [&str; 6] = ["pending", "running", "done", "dead", "cancelled", "suspended"];

/// Every job kind this build enqueues, as stored.
pub const JOB_KINDS: [&str; 10] = crate::jobs::payload::ALL_KINDS;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed (and every series described) on the
/// first call. Safe to call from every app a test process builds.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            // A webhook answers in milliseconds, a turn in seconds.
            .set_buckets_for_metric(
                Matcher::Full(WEBHOOK_ACK.into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(TURN.into()),
                    &[
                        0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 150.0,
                    ],
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(MODEL_CALLS_PER_TURN.into()),
                    &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0],
                )
            })
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // Someone else's recorder (an embedding program's) is global:
            // ours then renders only what is set below.
            tracing::warn!("a metrics recorder was already installed; /metrics shows only its own series");
        }
        describe_all();
        handle
    })
}

/// Describes every series and registers the ones with a fixed label set
/// at zero, so a scrape shows them before the first event.
fn describe_all() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status."
    );
    describe_histogram!(
        WEBHOOK_ACK,
        Unit::Seconds,
        "Time to answer Twilio's SMS/WhatsApp webhook (verify, store, acknowledge)."
    );
    describe_histogram!(
        TURN,
        Unit::Seconds,
        "Time one worker turn took, claim to release."
    );
    describe_counter!(
        MODEL_REQUESTS,
        "HTTP attempts at the model's Messages API, by outcome."
    );
    describe_counter!(
        MODEL_TOKENS,
        "Model tokens by kind: input, cache_read, cache_write, output."
    );
    describe_histogram!(
        MODEL_CALLS_PER_TURN,
        "Model calls made to answer one turn's customer texts."
    );
    describe_counter!(
        SENDS,
        "Texts the dispatcher tried to send, by channel and outcome."
    );
    describe_gauge!(JOBS, "Jobs in the queue, by kind and status.");
    describe_gauge!(
        JOB_OLDEST_DUE,
        Unit::Seconds,
        "How long the oldest due pending job has been waiting (0 when none is due)."
    );
    describe_counter!(
        BOOKING_CONFLICTS,
        "Bookings refused because the opening was no longer free at the final check."
    );
    describe_counter!(ALERTS, "Owner alerts raised, by kind.");

    for kind in TOKEN_KINDS {
        counter!(MODEL_TOKENS, "kind" => kind).increment(0);
    }
    for outcome in MODEL_OUTCOMES {
        counter!(MODEL_REQUESTS, "outcome" => outcome).increment(0);
    }
    for channel in SEND_CHANNELS {
        for outcome in SEND_OUTCOMES {
            counter!(SENDS, "channel" => channel, "outcome" => outcome).increment(0);
        }
    }
    counter!(BOOKING_CONFLICTS).increment(0);
    // Registered, so the histograms show (count 0) before the first event.
    let _ = histogram!(WEBHOOK_ACK);
    let _ = histogram!(TURN);
    let _ = histogram!(MODEL_CALLS_PER_TURN);
    gauge!(JOB_OLDEST_DUE).set(0.0);
}

/// The scrape: the job gauges from `jobs` (every kind and status, zero
/// included), then every series in Prometheus text format.
pub fn render(jobs: Option<&JobCounts>) -> String {
    let handle = install();
    if let Some(jobs) = jobs {
        let mut kinds: Vec<&str> = JOB_KINDS.to_vec();
        for (kind, _) in jobs.by_kind_and_status.keys() {
            if !kinds.contains(&kind.as_str()) {
                kinds.push(kind.as_str());
            }
        }
        for kind in kinds {
            for status in JOB_STATUSES {
                let n = jobs
                    .by_kind_and_status
                    .get(&(kind.to_string(), status.to_string()))
                    .copied()
                    .unwrap_or(0);
                gauge!(JOBS, "kind" => kind.to_string(), "status" => status).set(n as f64);
            }
        }
        gauge!(JOB_OLDEST_DUE).set(jobs.oldest_due.map_or(0.0, |d| d.as_secs_f64()));
    }
    handle.run_upkeep();
    handle.render()
}

pub fn http_request(route: &str, method: &str, status: u16) {
    counter!(
        HTTP_REQUESTS,
        "route" => route.to_string(),
        "method" => method.to_string(),
        "status" => status.to_string()
    )
    .increment(1);
}

pub fn webhook_ack(elapsed: Duration) {
    histogram!(WEBHOOK_ACK).record(elapsed.as_secs_f64());
}

pub fn turn(elapsed: Duration) {
    histogram!(TURN).record(elapsed.as_secs_f64());
}

/// One attempt at the model API; `outcome` is one of [`MODEL_OUTCOMES`].
pub fn model_request(outcome: &'static str) {
    counter!(MODEL_REQUESTS, "outcome" => outcome).increment(1);
}

/// Tokens of one model response; `kind` is one of [`TOKEN_KINDS`].
pub fn model_tokens(kind: &'static str, tokens: u64) {
    counter!(MODEL_TOKENS, "kind" => kind).increment(tokens);
}

pub fn model_calls_per_turn(calls: u32) {
    histogram!(MODEL_CALLS_PER_TURN).record(f64::from(calls));
}

/// One send's outcome, recorded as the `Dispatcher` records it.
pub fn send(channel: crate::channel::Channel, delivery: &crate::store::Delivery) {
    use crate::store::Delivery;
    let outcome = match delivery {
        Delivery::Sent { .. } => "sent",
        Delivery::OptedOut => "opted_out",
        Delivery::Failed { .. } => "failed",
        Delivery::Unknown { .. } => "unknown",
        Delivery::Withheld { .. } => "withheld",
    };
    counter!(SENDS, "channel" => channel.name().to_ascii_lowercase(), "outcome" => outcome).increment(1);
}

pub fn booking_conflict() {
    counter!(BOOKING_CONFLICTS).increment(1);
}

/// An owner alert raised. A kind this build does not know counts as
/// `other`, so the label set stays fixed.
pub fn alert(kind: &AlertKind) {
    let label = match kind {
        AlertKind::Other(_) => "other".to_string(),
        known => known.as_str().to_string(),
    };
    counter!(ALERTS, "kind" => label).increment(1);
}
