//! The API suite again, on Postgres: the same modules as `tests/api`,
//! each test on a database of its own on the server `TEST_DATABASE_URL`
//! names (a schema of its own there, created at the start of the test and
//! dropped at its end). Without
//! `TEST_DATABASE_URL` every test prints "skipped" and returns.

/// Which backend `helpers::TestDb` creates: Postgres here.
pub const POSTGRES: bool = true;

#[path = "../api/approval.rs"]
mod approval;
#[path = "../api/businesses.rs"]
mod businesses;
#[path = "../api/clients.rs"]
mod clients;
#[path = "../api/console.rs"]
mod console;
#[path = "../api/console_actions.rs"]
mod console_actions;
#[path = "../api/date_pricing.rs"]
mod date_pricing;
#[path = "../api/desk.rs"]
mod desk;
#[path = "../api/fake_google.rs"]
mod fake_google;
#[path = "../api/flood.rs"]
mod flood;
#[path = "../api/guardrail.rs"]
mod guardrail;
#[path = "../api/guided.rs"]
mod guided;
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../api/holds.rs"]
mod holds;
#[path = "../api/media.rs"]
mod media;
#[path = "../api/model_calls.rs"]
mod model_calls;
#[path = "../api/notifications.rs"]
mod notifications;
#[path = "../api/owner.rs"]
mod owner;
#[path = "../api/panics.rs"]
mod panics;
#[path = "../api/proofs.rs"]
mod proofs;
#[path = "../api/quotes.rs"]
mod quotes;
#[path = "../api/receipts.rs"]
mod receipts;
#[path = "../api/scheduling.rs"]
mod scheduling;
#[path = "../api/settings.rs"]
mod settings;
#[path = "../api/store.rs"]
mod store;
#[path = "../api/turns.rs"]
mod turns;
#[path = "../api/upgrade.rs"]
mod upgrade;
#[path = "../api/voice.rs"]
mod voice;
#[path = "../api/webchat.rs"]
mod webchat;
#[path = "../api/webhook.rs"]
mod webhook;
#[path = "../api/whatsapp.rs"]
mod whatsapp;
