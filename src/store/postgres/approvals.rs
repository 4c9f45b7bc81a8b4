//! The approval port on Postgres: a held reply is a `messages` row with
//! status `held`; every decision is one UPDATE conditional on it, so of two
//! instances deciding at once exactly one moves it (the other's UPDATE
//! waits for the row, then finds it no longer `held`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PgStore;
use crate::domain::conversation::ConversationState;
use crate::store::{
    Approvals, ConversationId, HeldOutcome, HeldReply, MessageId, MessageKind, NewJob, OutboundMessage,
    Settles, StoreError,
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
        let claimed = super::outbox::outbound_in(&mut tx, message).await?;
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
        super::jobs::insert_job(&mut tx, job, now).await?;
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

/// What a decision also settles: the conversation's pending jobs made moot
/// and the owner's alerts it answers.
async fn settle(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: ConversationId,
    settles: &Settles,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    super::conversations::set_in_motion(
        tx,
        id,
        &settles.cancel_jobs,
        &settles.jobs,
        &settles.raise_alerts,
        now,
    )
    .await?;
    super::conversations::resolve_alerts(tx, id, &settles.resolve_alerts, now).await
}
