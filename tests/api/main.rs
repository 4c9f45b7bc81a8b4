//! One integration-test binary (one link, shared helpers), zero2prod style.
//! This one runs every test on SQLite; `tests/api_postgres` runs the same
//! modules on Postgres when `TEST_DATABASE_URL` is set.

/// Which backend `helpers::TestDb` creates: SQLite here.
pub const POSTGRES: bool = false;

mod approval;
mod businesses;
mod clients;
mod console;
mod console_actions;
mod date_pricing;
mod desk;
mod fake_google;
mod flood;
mod guardrail;
mod guided;
mod helpers;
mod holds;
mod media;
mod model_calls;
mod notifications;
mod owner;
mod panics;
mod postgres_ports;
mod postgres_store;
mod proofs;
mod quotes;
mod receipts;
mod scheduling;
mod settings;
mod store;
mod turns;
mod upgrade;
mod voice;
mod webchat;
mod webhook;
mod whatsapp;
