//! One integration-test binary (one link, shared helpers), zero2prod style.

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
mod notifications;
mod owner;
mod panics;
mod quotes;
mod receipts;
mod scheduling;
mod settings;
mod store;
mod turns;
mod upgrade;
mod webhook;
mod whatsapp;
