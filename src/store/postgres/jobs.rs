//! The job queue on Postgres.
//!
//! Claims lock the rows they take with `FOR UPDATE SKIP LOCKED`: several
//! instances polling at once each get different jobs, and none waits on
//! another's claim. A `running` job whose lease (`locked_until_ms`) has
//! passed was held by a worker that died; any instance's next claim takes
//! it over. A running job whose lease is live is never taken.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::rows::{at_ms, json_text};
use crate::store::*;

const JOB_COLUMNS: &str =
    "id, kind, dedupe_key, conversation_id, customer_id, recipient, payload::text AS payload,
     run_at_ms, status, attempts, max_attempts, last_error, business_id";

/// Inserts a job unless its dedupe key exists; true if it was new.
pub(super) async fn insert_job(
    conn: &mut sqlx::PgConnection,
    job: &NewJob,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO jobs (kind, dedupe_key, conversation_id, customer_id, recipient, payload, run_at_ms, status,
                           max_attempts, created_at, updated_at, business_id)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, 'pending', $8, $9, $9,
                 COALESCE((SELECT business_id FROM conversations WHERE id = $3),
                          (SELECT business_id FROM customers WHERE id = $4), 'default'))
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(job.kind)
    .bind(&job.dedupe_key)
    .bind(job.conversation_id.map(|c| c.0))
    .bind(job.customer_id.map(|c| c.0))
    .bind(&job.recipient)
    .bind(json_text(&job.payload, "job payload")?)
    .bind(job.run_at.timestamp_millis())
    .bind(job.max_attempts.min(i32::MAX as u32) as i32)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn job_from_row(row: &PgRow) -> Result<Job, StoreError> {
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
        run_at: at_ms(row.try_get("run_at_ms")?),
        status: JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("job status `{status}`")))?,
        attempts: row.try_get::<i32, _>("attempts")?.max(0) as u32,
        max_attempts: row.try_get::<i32, _>("max_attempts")?.max(0) as u32,
        last_error: row.try_get("last_error")?,
        business_id: row.try_get("business_id")?,
    })
}

#[async_trait]
impl JobQueue for PgStore {
    async fn enqueue_jobs(&self, jobs: &[NewJob]) -> Result<usize, StoreError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
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
        let now_ms = now.timestamp_millis();
        let limit = limit.min(i64::MAX as usize) as i64;
        let sql = format!(
            "WITH due AS (
                 SELECT id FROM jobs WHERE status = 'pending' AND run_at_ms <= $3
                 ORDER BY run_at_ms, id LIMIT $4 FOR UPDATE SKIP LOCKED),
             -- A claim whose lease ran out: its worker died. (Disjoint from
             -- `due` by status: UNION ALL, no de-duplicating hash.)
             abandoned AS (
                 SELECT id FROM jobs WHERE status = 'running' AND locked_until_ms < $3
                 ORDER BY locked_until_ms LIMIT $4 FOR UPDATE SKIP LOCKED)
             UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_until_ms = $1, updated_at = $2
             WHERE id IN (SELECT id FROM due UNION ALL SELECT id FROM abandoned)
             RETURNING {JOB_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms + lease.as_millis().min(i64::MAX as u128) as i64)
            .bind(now)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|j| (j.run_at, j.id));
        Ok(jobs)
    }

    async fn finish_jobs(&self, outcomes: &[(JobClaim, JobOutcome)]) -> Result<Vec<bool>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let n = outcomes.len();
        let (mut ids, mut attempts, mut statuses, mut run_at, mut errors, mut results, mut uncount) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (claim, outcome) in outcomes {
            let row = outcome.row();
            ids.push(claim.id);
            attempts.push(claim.attempts.min(i32::MAX as u32) as i32);
            statuses.push(row.status);
            run_at.push(row.run_at_ms);
            errors.push(row.error);
            results.push(row.result);
            uncount.push(row.uncount as i32);
        }
        // Only the claim that holds the job records its outcome: a runner
        // that stalled past its lease, whose job was taken over (one more
        // attempt) or handed back by a restart (pending again), records
        // nothing over the claim that replaced it.
        let recorded: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs j SET status = o.status, run_at_ms = COALESCE(o.run_at_ms, j.run_at_ms),
                               last_error = COALESCE(o.error, j.last_error), result = COALESCE(o.result, j.result),
                               attempts = j.attempts - o.uncount, locked_until_ms = NULL, updated_at = $8
             FROM UNNEST($1::BIGINT[], $2::INTEGER[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], $7::INTEGER[])
                  AS o(id, attempts, status, run_at_ms, error, result, uncount)
             WHERE j.id = o.id AND j.attempts = o.attempts AND j.status = 'running'
             RETURNING j.id",
        )
        .bind(&ids)
        .bind(&attempts)
        .bind(&statuses)
        .bind(&run_at)
        .bind(&errors)
        .bind(&results)
        .bind(&uncount)
        .bind(self.now())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.iter().map(|id| recorded.contains(id)).collect())
    }

    async fn suspend_jobs(&self, customer: CustomerId, suspended: bool) -> Result<u64, StoreError> {
        let (from, to) = if suspended {
            ("pending", "suspended")
        } else {
            ("suspended", "pending")
        };
        Ok(
            sqlx::query(
                "UPDATE jobs SET status = $1, updated_at = $2 WHERE customer_id = $3 AND status = $4",
            )
            .bind(to)
            .bind(self.now())
            .bind(customer.0)
            .bind(from)
            .execute(&self.pool)
            .await?
            .rows_affected(),
        )
    }

    async fn jobs(&self, statuses: &[JobStatus], limit: usize) -> Result<Vec<Job>, StoreError> {
        let wanted: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let sql =
            format!("SELECT {JOB_COLUMNS} FROM jobs WHERE status = ANY($1) ORDER BY run_at_ms, id LIMIT $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&wanted)
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn pending_jobs_of(
        &self,
        conversation: ConversationId,
        kind: &str,
    ) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE conversation_id = $1 AND kind = $2 AND status IN ('pending', 'suspended')
             ORDER BY run_at_ms, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(conversation.0)
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }
}
