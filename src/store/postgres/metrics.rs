//! `FleetReadings` on Postgres: job counts for `/metrics`, readiness for
//! `/readyz`. A port of its own, so it is written apart from the ports
//! that move conversations and jobs.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MIGRATOR, PgStore};
use crate::store::readings::all_applied;
use crate::store::{FleetReadings, JobCounts, NotReady, StoreError};

#[async_trait]
impl FleetReadings for PgStore {
    async fn job_counts(&self, now: DateTime<Utc>) -> Result<JobCounts, NotReady> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT kind, status, COUNT(*) FROM jobs GROUP BY kind, status")
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from)?;
        let now_ms = now.timestamp_millis();
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(run_at_ms) FROM jobs WHERE status = 'pending' AND run_at_ms <= $1",
        )
        .bind(now_ms)
        .fetch_one(&self.pool)
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
        // A standby after a failover answers but cannot store a text.
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::from)?;
        if in_recovery {
            return Err(NotReady::ReadOnly);
        }
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::from)?;
        all_applied(&MIGRATOR, &applied)
    }
}
