//! Lease renewal and release on Postgres: one statement each, judged by
//! the claim's token (or attempt number) and this store's clock, never by
//! "I am the only process".

use std::time::Duration;

use async_trait::async_trait;

use super::PgStore;
use crate::store::{ConversationId, JobClaim, Leases, StoreError};

#[async_trait]
impl Leases for PgStore {
    async fn renew_lease(
        &self,
        id: ConversationId,
        token: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE conversations SET lease_until_ms = $1 WHERE id = $2 AND lease_owner = $3")
                .bind(self.now_ms() + lease.as_millis() as i64)
                .bind(id.0)
                .bind(token)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn renew_job_leases(
        &self,
        jobs: &[JobClaim],
        lease: Duration,
    ) -> Result<Vec<JobClaim>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, attempts): (Vec<i64>, Vec<i32>) = jobs.iter().map(|j| (j.id, j.attempts as i32)).unzip();
        let rows: Vec<(i64, i32)> = sqlx::query_as(
            "UPDATE jobs j SET locked_until_ms = $1
             FROM UNNEST($2::BIGINT[], $3::INTEGER[]) AS c(id, attempts)
             WHERE j.id = c.id AND j.attempts = c.attempts AND j.status = 'running'
             RETURNING j.id, j.attempts",
        )
        .bind(self.now_ms() + lease.as_millis() as i64)
        .bind(&ids)
        .bind(&attempts)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, attempts)| JobClaim {
                id,
                attempts: attempts.max(0) as u32,
            })
            .collect())
    }

    async fn release_jobs(&self, jobs: &[JobClaim]) -> Result<u64, StoreError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let (ids, attempts): (Vec<i64>, Vec<i32>) = jobs.iter().map(|j| (j.id, j.attempts as i32)).unzip();
        let done = sqlx::query(
            "UPDATE jobs j SET status = 'pending', attempts = j.attempts - 1, locked_until_ms = NULL, updated_at = $1
             FROM UNNEST($2::BIGINT[], $3::INTEGER[]) AS c(id, attempts)
             WHERE j.id = c.id AND j.attempts = c.attempts AND j.status = 'running'",
        )
        .bind(self.now())
        .bind(&ids)
        .bind(&attempts)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
