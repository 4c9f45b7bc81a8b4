//! The job queue on SQLite.

use super::*;

/// Inserts a job unless its dedupe key exists; true if it was new.
pub(super) async fn insert_job(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    job: &NewJob,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO jobs (kind, dedupe_key, conversation_id, customer_id, recipient, payload, run_at_ms, status,
                           max_attempts, created_at, updated_at, business_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10,
                 COALESCE((SELECT business_id FROM conversations WHERE id = ?3),
                          (SELECT business_id FROM customers WHERE id = ?4), 'default'))
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(job.kind)
    .bind(&job.dedupe_key)
    .bind(job.conversation_id.map(|c| c.0))
    .bind(job.customer_id.map(|c| c.0))
    .bind(&job.recipient)
    .bind(job.payload.to_string())
    .bind(job.run_at.timestamp_millis())
    .bind(job.max_attempts as i64)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl JobQueue for SqliteStore {
    async fn enqueue_jobs(&self, jobs: &[NewJob]) -> Result<usize, StoreError> {
        let now = self.now();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut added = 0;
        for job in jobs {
            added += insert_job(&mut tx, job, now).await? as usize;
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn claim_due_jobs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError> {
        // `LIMIT +?4`: a bare bound LIMIT is recompiled on every bind (see
        // `read_turn`), and the runner claims every poll.
        let rows = sqlx::query(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_until_ms = ?1, updated_at = ?2
             WHERE id IN (SELECT id FROM jobs WHERE status = 'pending' AND run_at_ms <= ?3 ORDER BY run_at_ms LIMIT +?4)
                -- A claim whose lease ran out: its worker died.
                OR id IN (SELECT id FROM jobs WHERE status = 'running' AND locked_until_ms < ?3 LIMIT +?4)
             RETURNING id, kind, dedupe_key, conversation_id, customer_id, recipient, payload, run_at_ms, status,
                       attempts, max_attempts, last_error, business_id",
        )
        .bind(now.timestamp_millis() + lease.as_millis() as i64)
        .bind(now)
        .bind(now.timestamp_millis())
        .bind(limit as i64)
        .fetch_all(&self.writer)
        .await?;
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|j| j.run_at);
        Ok(jobs)
    }

    async fn finish_jobs(&self, outcomes: &[(JobClaim, JobOutcome)]) -> Result<Vec<bool>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut recorded = Vec::with_capacity(outcomes.len());
        for (claim, outcome) in outcomes {
            let row = outcome.row();
            // Only the claim that holds the job records its outcome: a
            // runner that stalled past its lease, whose job was taken over
            // (one more attempt) or handed back by a restart (pending
            // again), records nothing over the claim that replaced it.
            let done = sqlx::query(
                "UPDATE jobs SET status = ?, run_at_ms = COALESCE(?, run_at_ms), last_error = COALESCE(?, last_error),
                                 result = COALESCE(?, result), attempts = attempts - ?, locked_until_ms = NULL,
                                 updated_at = ?
                 WHERE id = ? AND attempts = ? AND status = 'running'",
            )
            .bind(row.status)
            .bind(row.run_at_ms)
            .bind(row.error)
            .bind(row.result)
            .bind(row.uncount as i64)
            .bind(now)
            .bind(claim.id)
            .bind(claim.attempts as i64)
            .execute(&mut *tx)
            .await?;
            recorded.push(done.rows_affected() == 1);
        }
        tx.commit().await?;
        Ok(recorded)
    }

    async fn suspend_jobs(&self, customer: CustomerId, suspended: bool) -> Result<u64, StoreError> {
        let (from, to) = if suspended {
            ("pending", "suspended")
        } else {
            ("suspended", "pending")
        };
        Ok(
            sqlx::query("UPDATE jobs SET status = ?, updated_at = ? WHERE customer_id = ? AND status = ?")
                .bind(to)
                .bind(self.now())
                .bind(customer.0)
                .bind(from)
                .execute(&self.writer)
                .await?
                .rows_affected(),
        )
    }

    async fn jobs(&self, statuses: &[JobStatus], limit: usize) -> Result<Vec<Job>, StoreError> {
        let wanted: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let rows = sqlx::query(
            "SELECT id, kind, dedupe_key, conversation_id, customer_id, recipient, payload, run_at_ms, status,
                    attempts, max_attempts, last_error, business_id
             FROM jobs WHERE status IN (SELECT value FROM json_each(?)) ORDER BY run_at_ms LIMIT ?",
        )
        .bind(serde_json::to_string(&wanted).unwrap_or_else(|_| "[]".into()))
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn pending_jobs_of(
        &self,
        conversation: ConversationId,
        kind: &str,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, dedupe_key, conversation_id, customer_id, recipient, payload, run_at_ms, status,
                    attempts, max_attempts, last_error, business_id
             FROM jobs WHERE conversation_id = ? AND kind = ? AND status IN ('pending', 'suspended')
             ORDER BY run_at_ms",
        )
        .bind(conversation.0)
        .bind(kind)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(job_from_row).collect()
    }
}

fn job_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Job, StoreError> {
    let status: String = row.try_get("status")?;
    let payload: String = row.try_get("payload")?;
    Ok(Job {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        dedupe_key: row.try_get("dedupe_key")?,
        conversation_id: row
            .try_get::<Option<i64>, _>("conversation_id")?
            .map(ConversationId),
        customer_id: row.try_get::<Option<i64>, _>("customer_id")?.map(CustomerId),
        recipient: row.try_get("recipient")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("job payload: {e}")))?,
        run_at: interval(row.try_get("run_at_ms")?, 0).start,
        status: JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("job status `{status}`")))?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        last_error: row.try_get("last_error")?,
        business_id: row.try_get("business_id")?,
    })
}
