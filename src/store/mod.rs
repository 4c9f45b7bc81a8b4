//! Durable state, behind ports in domain terms.
//!
//! Callers speak of customers, conversations, messages and alerts, never of
//! SQL. The store is split into narrow ports, one module each, so a second
//! backend (Postgres) implements small, clear pieces, and a consumer can
//! hold only the port it needs:
//!
//! - [`ConversationStore`]: texts in, leases, a turn's input and commit,
//!   consent, flood readings;
//! - [`Outbox`]: texts out, claimed once, their sends and delivery receipts;
//! - [`BookingStore`]: bookings and held openings;
//! - [`JobQueue`]: proactive work;
//! - [`OwnerAlerts`]: what the owner is told;
//! - [`MediaStore`]: customers' photos and files;
//! - [`Approvals`]: replies held for the owner's approval;
//! - [`FleetReadings`]: job counts and readiness, for `/metrics` and
//!   `/readyz`;
//! - [`ModelUsage`]: each turn's model requests and tokens;
//! - [`CallRecords`]: what a phone call adds (a spoken reply cut at a barge-in);
//! - [`Maintenance`]: what a process does at start;
//! - [`Leases`]: keeping a claim alive while its work runs, and giving
//!   it back.
//!
//! [`Store`] is all of them, implemented for every type that implements
//! each, so `Arc<dyn Store>` is what wiring passes around and coerces to
//! any one port. Every method that the webhook or the worker may repeat
//! (after a channel's retry or a crash) is idempotent.

pub mod alerts;
pub mod approvals;
pub mod backend;
pub mod bookings;
pub mod console;
pub mod conversations;
pub mod fragments;
pub mod jobs;
pub mod kinds;
pub mod leases;
pub mod media;
mod message_json;
pub mod outbox;
pub mod postgres;
pub mod readings;
pub mod sqlite;
pub mod usage;
pub mod voice;
pub mod webchat;

use async_trait::async_trait;

pub use alerts::*;
pub use approvals::*;
pub use bookings::*;
pub use conversations::*;
pub use fragments::*;
pub use jobs::*;
pub use kinds::*;
pub use leases::*;
pub use media::*;
pub use outbox::*;
pub use readings::{FleetReadings, JobCounts, NotReady};
pub use usage::{ModelUsage, TokenCounts, TurnUsage, UsageTotals};
pub use voice::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomerId(pub i64);

/// What a restart found unfinished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    pub leases_freed: u64,
    pub sends_requeued: u64,
    pub jobs_requeued: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The work's lease was taken over by another worker (this one stalled
    /// past it): its result is not committed; the new holder redoes it.
    #[error("the lease on this work was lost to another worker")]
    LeaseLost,
    /// The database server could not be reached or refused us at start:
    /// says where it looked and what to check, never the URL's password.
    #[error("{0}")]
    Unreachable(String),
}

/// What a process does with the store as a whole: a health check, and at
/// start, recovery from a crash and the adoption of rows older than
/// businesses.
#[async_trait]
pub trait Maintenance: Send + Sync + 'static {
    async fn ping(&self) -> Result<(), StoreError>;

    /// Frees every lease and requeues texts left mid-send. Called at start
    /// by the process that is the only one serving its database (always true
    /// of SQLite), so turns interrupted by a crash run again at once.
    async fn recover_interrupted_work(&self) -> Result<Recovered, StoreError>;

    /// Gives rows written before businesses existed (business `default`)
    /// to `business_id`: those of conversations with one of `numbers`, or
    /// all of them when `numbers` is `None` (one business answers every
    /// number). Returns how many conversations it adopted.
    async fn adopt_legacy_rows(
        &self,
        business_id: &str,
        numbers: Option<&[String]>,
    ) -> Result<u64, StoreError>;

    /// Every business id that has conversations, with how many.
    async fn businesses_with_conversations(&self) -> Result<Vec<(String, u64)>, StoreError>;
}

/// Every port at once: what a backend provides and what wiring holds.
pub trait Store:
    Maintenance
    + ConversationStore
    + Outbox
    + BookingStore
    + JobQueue
    + OwnerAlerts
    + MediaStore
    + AssistantFragments
    + Approvals
    + FleetReadings
    + ModelUsage
    + Leases
    + CallRecords
{
}

impl<T> Store for T where
    T: Maintenance
        + ConversationStore
        + Outbox
        + BookingStore
        + JobQueue
        + OwnerAlerts
        + MediaStore
        + AssistantFragments
        + Approvals
        + FleetReadings
        + ModelUsage
        + Leases
        + CallRecords
        + ?Sized
{
}
