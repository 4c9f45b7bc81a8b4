//! Lease renewal and release on SQLite.

use super::*;

#[async_trait]
impl Leases for SqliteStore {
    async fn renew_lease(
        &self,
        id: ConversationId,
        token: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE conversations SET lease_until_ms = ? WHERE id = ? AND lease_owner = ?")
                .bind(self.now_ms() + lease.as_millis() as i64)
                .bind(id.0)
                .bind(token)
                .execute(&self.writer)
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
        let until = self.now_ms() + lease.as_millis() as i64;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut held = Vec::with_capacity(jobs.len());
        for job in jobs {
            let done = sqlx::query(
                "UPDATE jobs SET locked_until_ms = ? WHERE id = ? AND attempts = ? AND status = 'running'",
            )
            .bind(until)
            .bind(job.id)
            .bind(job.attempts as i64)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                held.push(*job);
            }
        }
        tx.commit().await?;
        Ok(held)
    }

    async fn release_jobs(&self, jobs: &[JobClaim]) -> Result<u64, StoreError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut released = 0;
        for job in jobs {
            released += sqlx::query(
                "UPDATE jobs SET status = 'pending', attempts = attempts - 1, locked_until_ms = NULL, updated_at = ?
                 WHERE id = ? AND attempts = ? AND status = 'running'",
            )
            .bind(now)
            .bind(job.id)
            .bind(job.attempts as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(released)
    }
}
