//! One integration-test binary (one link, shared helpers), zero2prod style.

mod clients;
mod fake_google;
mod guardrail;
mod helpers;
mod notifications;
mod quotes;
mod scheduling;
mod turns;
mod webhook;
