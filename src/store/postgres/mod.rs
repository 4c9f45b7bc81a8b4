//! PostgreSQL: the backend for several instances on one database.
//!
//! The same ports as SQLite, written for a server that many processes
//! share: claims take rows with `FOR UPDATE SKIP LOCKED`, a crew's
//! bookings are serialized by `pg_advisory_xact_lock`, and leases are
//! judged by their expiry alone, never by "I am the only process".
//!
//! Migrations (`migrations/postgres/`) run at start. sqlx's migrator holds
//! a session-level `pg_advisory_lock` while it runs, so two instances
//! starting together apply them once: the second waits, then finds them
//! applied.
//!
//! Instants compared in hot queries (leases, due jobs, slots) are epoch
//! milliseconds as on SQLite; times a person reads are `TIMESTAMPTZ`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StoreError;
use crate::clock::{self, Clock};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Every time the store writes and every lease it judges comes from
    /// here, as on SQLite.
    clock: Arc<dyn Clock>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`)
    /// and applies the migrations; times come from the system clock.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_clock(url, clock::system()).await
    }

    /// As [`PgStore::connect`], reading the time from `clock`.
    pub async fn connect_with_clock(url: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A database that went away must not hold a webhook past
            // Twilio's patience: fail fast, answer 503, let Twilio retry.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool, clock })
    }

    /// The pool, for benchmarks and tests that set up data in bulk.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

mod pending;
mod voice;
