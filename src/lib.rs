//! textdesk: the text-message front desk of a small service business.
//!
//! See ARCHITECTURE.md for the map of this crate.

pub mod anthropic;
pub mod app;
pub mod assistant;
pub mod calendar;
pub mod channel;
pub mod cli;
pub mod clock;
pub mod config;
pub mod desk;
pub mod domain;
pub mod email;
pub mod http;
pub mod jobs;
pub mod media;
pub mod meters;
pub mod rehearsal;
pub mod scheduling;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod twilio;
