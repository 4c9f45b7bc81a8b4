//! `FleetReadings` on SQLite: job counts for `/metrics`, readiness for
//! `/readyz`.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MIGRATOR, SqliteStore};
use crate::store::{FleetReadings, JobCounts, NotReady, StoreError};

#[async_trait]
impl FleetReadings for SqliteStore {
    async fn job_counts(&self, now: DateTime<Utc>) -> Result<JobCounts, NotReady> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT kind, status, COUNT(*) FROM jobs GROUP BY kind, status")
                .fetch_all(&self.reader)
                .await
                .map_err(StoreError::from)?;
        let now_ms = now.timestamp_millis();
        // `jobs_due` (pending, by run_at_ms): the first entry is the answer.
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(run_at_ms) FROM jobs WHERE status = 'pending' AND run_at_ms <= ?1",
        )
        .bind(now_ms)
        .fetch_one(&self.reader)
        .await
        .map_err(StoreError::from)?;
        Ok(JobCounts {
            by_kind_and_status: rows
                .into_iter()
                .map(|(kind, status, n)| ((kind, status), n.max(0) as u64))
                .collect::<HashMap<_, _>>(),
            oldest_due: oldest.map(|at| std::time::Duration::from_millis((now_ms - at).max(0) as u64)),
        })
    }

    async fn readiness(&self) -> Result<(), NotReady> {
        // A text is stored through the one writer connection: readiness is
        // that connection taking a write lock now, not a reader answering.
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::from)?;
        tx.rollback().await.map_err(StoreError::from)?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::from)?;
        migrations_applied(&applied)
    }
}

/// Every migration this build knows is among `applied`.
fn migrations_applied(applied: &[i64]) -> Result<(), NotReady> {
    crate::store::readings::all_applied(&MIGRATOR, applied)
}
