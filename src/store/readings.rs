//! The fleet's readings: what `/metrics` and `/readyz` ask the database.
//!
//! A port of its own (not a part of `JobQueue` or `Maintenance`), so each
//! backend implements it in one small file: `sqlite/readings.rs` and
//! `postgres/metrics.rs`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// The job queue at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Jobs by (kind, status), as stored; a pair with no jobs is absent.
    pub by_kind_and_status: HashMap<(String, String), u64>,
    /// How long the oldest pending job that is due has waited; `None` when
    /// no pending job is due.
    pub oldest_due: Option<Duration>,
}

/// Why the database cannot serve now.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("the database is unreachable: {0}")]
    Unreachable(#[from] StoreError),
    #[error("the database is missing {missing} migration(s) this build needs (it has {applied})")]
    MigrationsPending { missing: usize, applied: usize },
    #[error("the database is read-only (a standby?)")]
    ReadOnly,
}

#[async_trait]
pub trait FleetReadings: Send + Sync + 'static {
    /// Counts jobs by kind and status, and the oldest due pending job's
    /// wait at `now`.
    async fn job_counts(&self, now: DateTime<Utc>) -> Result<JobCounts, NotReady>;

    /// `Ok` when a text could be stored now: the database answers, takes
    /// writes, and has every migration this build knows applied. Callers
    /// bound it in time (a hung database never answers).
    async fn readiness(&self) -> Result<(), NotReady>;
}

/// Every up migration `migrator` knows is among `applied` (the versions
/// the database recorded as successful).
pub(crate) fn all_applied(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> Result<(), NotReady> {
    let known: std::collections::HashSet<i64> = applied.iter().copied().collect();
    let missing = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .filter(|m| !known.contains(&m.version))
        .count();
    if missing == 0 {
        Ok(())
    } else {
        Err(NotReady::MigrationsPending {
            missing,
            applied: applied.len(),
        })
    }
}
