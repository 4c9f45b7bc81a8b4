//! The approval port on Postgres: a held reply is a `messages` row with
//! status `held`; every decision is one UPDATE conditional on it, so of two
//! instances deciding at once exactly one moves it (the other's UPDATE
//! waits for the row, then finds it no longer `held`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PgStore;
use crate::domain::conversation::ConversationState;
use crate::domain::phone::E164;
use crate::store::{
    Approvals, ConversationId, CustomerId, HeldOutcome, HeldReply, MessageId, MessageKind, NewJob,
    OutboundMessage, Settles, StoreError,
};

#[async_trait]
impl Approvals for PgStore {
    async fn held_reply(&self, id: ConversationId) -> Result<Option<HeldReply>, StoreError> {
        let row = sqlx::query(
            "SELECT id, kind, body, reply_to_id, created_at FROM messages
             WHERE conversation_id = $1 AND direction = 'outbound' AND status = 'held'
             ORDER BY id DESC LIMIT 1",
        )
        .bind(id.0)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(HeldReply {
                id: MessageId(row.try_get("id")?),
                kind: MessageKind::parse(row.try_get("kind")?),
                body: row.try_get("body")?,
                reply_to: MessageId(row.try_get::<Option<i64>, _>("reply_to_id")?.unwrap_or_default()),
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn release_held(
        &self,
        id: ConversationId,
        message: MessageId,
        body: Option<&str>,
        settles: &Settles,
    ) -> Result<Option<OutboundMessage>, StoreError> {
        let now = self.now();
        let mut tx = self.pool().begin().await?;
        let released = sqlx::query(
            // A send lease like every text moved to `sending`: without one,
            // another instance's claim would take it for a dead send.
            "UPDATE messages SET status = 'sending', attempts = attempts + 1, body = COALESCE($1, body),
                                 send_lease_until_ms = $4
             WHERE id = $2 AND conversation_id = $3 AND direction = 'outbound' AND status = 'held'",
        )
        .bind(body)
        .bind(message.0)
        .bind(id.0)
        .bind(self.send_lease_until(self.now_ms()))
        .execute(&mut *tx)
        .await?;
        if released.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let claimed = outbound_in(&mut tx, message).await?;
        settle(&mut tx, id, settles, now).await?;
        tx.commit().await?;
        Ok(Some(claimed))
    }

    async fn defer_held(
        &self,
        id: ConversationId,
        message: MessageId,
        body: Option<&str>,
        job: &NewJob,
        settles: &Settles,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let mut tx = self.pool().begin().await?;
        let deferred = sqlx::query(
            "UPDATE messages SET status = 'deferred', body = COALESCE($1, body)
             WHERE id = $2 AND conversation_id = $3 AND direction = 'outbound' AND status = 'held'",
        )
        .bind(body)
        .bind(message.0)
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        if deferred.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_job(&mut tx, job, now).await?;
        settle(&mut tx, id, settles, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn discard_held(
        &self,
        id: ConversationId,
        message: MessageId,
        outcome: HeldOutcome,
        state: Option<&ConversationState>,
        settles: &Settles,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let mut tx = self.pool().begin().await?;
        let discarded = sqlx::query(
            "UPDATE messages SET status = $1
             WHERE id = $2 AND conversation_id = $3 AND direction = 'outbound' AND status = 'held'",
        )
        .bind(outcome.status())
        .bind(message.0)
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        if discarded.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(state) = state {
            let state_json = serde_json::to_string(state)
                .map_err(|e| StoreError::Corrupt(format!("state does not serialize: {e}")))?;
            sqlx::query(
                "UPDATE conversations
                 SET state_changed_at = CASE WHEN state IS NOT DISTINCT FROM $1::jsonb
                                             THEN state_changed_at ELSE $2 END,
                     state = $1::jsonb, updated_at = $2
                 WHERE id = $3",
            )
            .bind(&state_json)
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        }
        settle(&mut tx, id, settles, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// The released text as the dispatcher sends it (the columns of SQLite's
/// `outbound_in`).
async fn outbound_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: MessageId,
) -> Result<OutboundMessage, StoreError> {
    let row = sqlx::query(
        "SELECT m.conversation_id, m.body, m.kind, m.attempts::BIGINT AS attempts, m.created_at, k.phone,
                c.business_number, c.customer_id,
                (SELECT MAX(i.created_at) FROM messages i
                  WHERE i.conversation_id = m.conversation_id AND i.direction = 'inbound') AS last_inbound_at,
                -- An opt-out is confirmed once, after the opt-out, and HELP is
                -- answered even then (where the provider answers neither).
                k.opted_out_at IS NOT NULL AND m.kind NOT IN ('opt_out_confirmation', 'help') AS opted_out
         FROM messages m
         JOIN conversations c ON c.id = m.conversation_id
         JOIN customers k ON k.id = c.customer_id
         WHERE m.id = $1",
    )
    .bind(id.0)
    .fetch_one(&mut **tx)
    .await?;
    let phone = |column: &str| -> Result<E164, StoreError> {
        E164::parse_address(row.try_get(column)?).map_err(|e| StoreError::Corrupt(e.to_string()))
    };
    Ok(OutboundMessage {
        id,
        conversation_id: ConversationId(row.try_get("conversation_id")?),
        customer_id: CustomerId(row.try_get("customer_id")?),
        customer_opted_out: row.try_get("opted_out")?,
        to: phone("phone")?,
        from: phone("business_number")?,
        body: row.try_get("body")?,
        kind: MessageKind::parse(row.try_get("kind")?),
        last_inbound_at: row.try_get("last_inbound_at")?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Queues `job` unless one with its dedupe key exists (SQLite's
/// `insert_job`).
async fn insert_job(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
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
    .bind(job.payload.to_string())
    .bind(job.run_at.timestamp_millis())
    .bind(i32::try_from(job.max_attempts).unwrap_or(i32::MAX))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What a decision also settles: the conversation's pending jobs made moot
/// and the owner's alerts it answers.
async fn settle(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: ConversationId,
    settles: &Settles,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for prefix in &settles.cancel_jobs {
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled', updated_at = $1
             WHERE conversation_id = $2 AND status IN ('pending', 'suspended') AND starts_with(dedupe_key, $3)",
        )
        .bind(now)
        .bind(id.0)
        .bind(prefix)
        .execute(&mut **tx)
        .await?;
    }
    for kind in &settles.resolve_alerts {
        sqlx::query(
            "UPDATE alerts SET resolved_at = $1, resolved_by = 'owner'
             WHERE conversation_id = $2 AND kind = $3 AND resolved_at IS NULL",
        )
        .bind(now)
        .bind(id.0)
        .bind(kind.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
