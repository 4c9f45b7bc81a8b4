//! The conversation port on Postgres.
//!
//! Several instances share the database, so every claim takes its row with
//! `FOR UPDATE SKIP LOCKED` and judges a lease by its expiry alone
//! (`lease_until_ms < now` is free to take), and a turn's commit decides
//! by marking its texts handled (`FINISH_TURN`): two runs of one turn (an
//! expired lease taken over) commit one after the other, and the second,
//! waiting on the first's row locks, finds the texts answered and changes
//! nothing but the model calls it made.
//!
//! The hot path (a text stored, a turn committed) is one statement each:
//! on Postgres every round trip costs server CPU (parse, snapshot, a
//! wake-up on each side), and that, not textdesk, bounds a small
//! deployment's throughput.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PgStore;
use super::jobs::insert_job;
use super::outbox::outbound_from_row;
use super::rows::{MESSAGE_COLUMNS, json_text, message_from_row, parse_phone};
use super::usage::stored;
use crate::domain::conversation::ConversationState;
use crate::domain::phone::E164;
use crate::domain::quote::Quote;
use crate::store::message_json::messages_from_json;
use crate::store::sqlite::TURN_IMAGES_WITH_DATA;
use crate::store::*;

#[async_trait]
impl ConversationStore for PgStore {
    async fn record_inbound(&self, inbound: &InboundMessage) -> Result<Recorded, StoreError> {
        let now = self.now();
        if inbound.media.is_empty() {
            let mut conn = self.hot.take(&self.pool).await?;
            let was_kept = conn.was_kept();
            let row = sqlx::query(RECORD_TEXT)
                .bind(&inbound.channel_message_id)
                .bind(&inbound.business_id)
                .bind(inbound.from.as_str())
                .bind(inbound.to.as_str())
                .bind(now)
                .bind(&inbound.body)
                .bind(json_text(&inbound.params, "webhook parameters")?)
                .bind(&inbound.opt_out_keyword)
                .bind(&inbound.profile_name)
                .fetch_one(&mut *conn)
                .await;
            match conn.finished(row) {
                Ok(row) => {
                    if let (Some(message), Some(conversation)) = (
                        row.try_get::<Option<i64>, _>("duplicate_id")?,
                        row.try_get::<Option<i64>, _>("duplicate_conversation_id")?,
                    ) {
                        return Ok(Recorded::Duplicate(
                            ConversationId(conversation),
                            MessageId(message),
                        ));
                    }
                    if let (Some(message), Some(conversation)) = (
                        row.try_get::<Option<i64>, _>("message_id")?,
                        row.try_get::<Option<i64>, _>("conversation_id")?,
                    ) {
                        self.fleet_wake.after_stored_text();
                        return Ok(Recorded::New(ConversationId(conversation), MessageId(message)));
                    }
                    // A race the one statement cannot settle: a first text
                    // from a new customer whose customer row another
                    // transaction inserted meanwhile, or a retry of this
                    // text committed meanwhile. The transaction below
                    // settles both, statement by statement.
                }
                // A kept connection that died while it waited (the
                // database restarted, a proxy dropped it): the transaction
                // below, on a connection from the pool, stores the text. It
                // is keyed by its message id, so a text the lost statement
                // did store is found there, not stored twice.
                Err(e) if was_kept && super::hot::connection_lost(&e) => {
                    tracing::warn!(error = %e, "a kept database connection was gone; storing the text on a fresh one");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut tx = self.pool.begin().await?;
        if let Some(duplicate) = stored_text(&mut tx, &inbound.channel_message_id).await? {
            return Ok(duplicate);
        }
        let customer_id = customer(&mut tx, &inbound.business_id, &inbound.from, now).await?;
        let conversation_id: i64 = sqlx::query_scalar(
            "INSERT INTO conversations (customer_id, business_number, created_at, updated_at, business_id)
             VALUES ($1, $2, $3, $3, $4)
             ON CONFLICT (customer_id, business_number) DO UPDATE SET updated_at = EXCLUDED.updated_at
             RETURNING id",
        )
        .bind(customer_id)
        .bind(inbound.to.as_str())
        .bind(now)
        .bind(&inbound.business_id)
        .fetch_one(&mut *tx)
        .await?;
        let media_urls: Vec<&str> = inbound.media.iter().map(|m| m.url.as_str()).collect();
        // A retry racing this one waits here on the unique channel message
        // id until the first commits, then inserts nothing.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO messages (conversation_id, direction, kind, body, status, channel_message_id,
                                   num_media, media_urls, params, opt_out_keyword, profile_name, created_at)
             VALUES ($1, 'inbound', 'customer', $2, 'pending', $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9)
             ON CONFLICT (channel_message_id) DO NOTHING
             RETURNING id",
        )
        .bind(conversation_id)
        .bind(&inbound.body)
        .bind(&inbound.channel_message_id)
        .bind(inbound.media.len().min(i32::MAX as usize) as i32)
        .bind(json_text(&media_urls, "media urls")?)
        .bind(json_text(&inbound.params, "webhook parameters")?)
        .bind(&inbound.opt_out_keyword)
        .bind(&inbound.profile_name)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(message_id) = inserted else {
            drop(tx);
            let mut conn = self.pool.acquire().await?;
            return stored_text(&mut conn, &inbound.channel_message_id)
                .await?
                .ok_or(StoreError::NotFound("the stored text"));
        };
        // The files and the jobs that fetch them commit with the text: a text
        // the channel was told we stored never loses its photos.
        for (position, media) in inbound.media.iter().enumerate() {
            let media_id: i64 = sqlx::query_scalar(
                "INSERT INTO media (message_id, conversation_id, position, url, content_type, status, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(message_id)
            .bind(conversation_id)
            .bind(position as i32)
            .bind(&media.url)
            .bind(&media.content_type)
            .bind(media.status.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            if media.status == MediaStatus::Pending {
                let job = NewJob {
                    kind: FETCH_MEDIA,
                    dedupe_key: format!("media:{media_id}"),
                    conversation_id: Some(ConversationId(conversation_id)),
                    customer_id: Some(CustomerId(customer_id)),
                    recipient: inbound.from.as_str().to_string(),
                    payload: serde_json::json!({ "media_id": media_id }),
                    run_at: now,
                    max_attempts: FETCH_MEDIA_ATTEMPTS,
                };
                insert_job(&mut tx, &job, now).await?;
            }
        }
        tx.commit().await?;
        self.fleet_wake.after_stored_text();
        Ok(Recorded::New(
            ConversationId(conversation_id),
            MessageId(message_id),
        ))
    }

    async fn claim_next_pending(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedConversation>, StoreError> {
        let now = self.now_ms();
        // The conversation that has waited longest and has no live lease,
        // locked as it is picked: another instance claiming at the same
        // moment skips it and takes the next.
        // `more` reads the statement's snapshot: the claimed row still
        // looks free there, so it is left out by id. A conversation another
        // instance is claiming at this moment counts as waiting, which
        // costs at most one claim that finds nothing.
        const CLAIM_NEXT: &str = concat!(
            "UPDATE conversations c SET lease_owner = $1, lease_until_ms = $2
             FROM (SELECT w.id FROM messages m
                   JOIN conversations w ON w.id = m.conversation_id
                   WHERE m.direction = 'inbound' AND m.status = 'pending'
                     AND (w.lease_until_ms IS NULL OR w.lease_until_ms < $3)
                   ORDER BY m.id LIMIT 1
                   FOR UPDATE OF w SKIP LOCKED) picked, ",
            async_commit!(),
            "
             WHERE c.id = picked.id
             RETURNING c.id, c.business_id,
                 EXISTS (SELECT 1 FROM messages m
                     JOIN conversations w ON w.id = m.conversation_id
                     WHERE m.direction = 'inbound' AND m.status = 'pending'
                       AND w.id <> c.id
                       AND (w.lease_until_ms IS NULL OR w.lease_until_ms < $3)) AS more"
        );
        let mut conn = self.hot.take(&self.pool).await?;
        let claimed = sqlx::query_as::<_, (i64, String, bool)>(CLAIM_NEXT)
            .bind(worker)
            .bind(now + lease_ms(lease))
            .bind(now)
            .fetch_optional(&mut *conn)
            .await;
        let claimed = conn.finished(claimed)?;
        Ok(claimed.map(|(id, business_id, more)| ClaimedConversation {
            id: ConversationId(id),
            business_id,
            more,
        }))
    }

    async fn claim(&self, id: ConversationId, worker: &str, lease: Duration) -> Result<bool, StoreError> {
        let now = self.now_ms();
        // One named row, so no SKIP LOCKED: its row is also locked for a
        // moment by every text stored in it (the activity trigger) and
        // every turn's commit, and skipping it then would say "busy" of a
        // free conversation. The UPDATE waits out such a lock and then
        // judges the lease on the row as committed: of two claimers, the
        // second sees the first's live lease and gets `false`.
        let done = sqlx::query(
            "UPDATE conversations SET lease_owner = $1, lease_until_ms = $2
             WHERE id = $3 AND (lease_until_ms IS NULL OR lease_until_ms < $4 OR lease_owner = $1)",
        )
        .bind(worker)
        .bind(now + lease_ms(lease))
        .bind(id.0)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, id: ConversationId, worker: &str) -> Result<bool, StoreError> {
        const RELEASE: &str = concat!(
            "UPDATE conversations SET lease_owner = NULL, lease_until_ms = NULL FROM ",
            async_commit!(),
            "
             WHERE id = $1 AND lease_owner = $2
             RETURNING EXISTS (SELECT 1 FROM messages WHERE conversation_id = $1
                               AND direction = 'inbound' AND status = 'pending')"
        );
        let mut conn = self.hot.take(&self.pool).await?;
        let waiting = sqlx::query_scalar::<_, bool>(RELEASE)
            .bind(id.0)
            .bind(worker)
            .fetch_optional(&mut *conn)
            .await;
        let waiting = conn.finished(waiting)?;
        Ok(waiting.unwrap_or(true))
    }

    async fn turn_input(&self, id: ConversationId, history_limit: usize) -> Result<TurnInput, StoreError> {
        let now = self.now();
        let window = FloodWindow {
            since: now,
            limit: 0,
            day: now.date_naive(),
            day_start: now,
        };
        Ok(self.read_turn(id, history_limit, &window).await?.0)
    }

    async fn turn_input_with_flood(
        &self,
        id: ConversationId,
        history_limit: usize,
        window: &FloodWindow,
    ) -> Result<(TurnInput, FloodReading), StoreError> {
        self.read_turn(id, history_limit, window).await
    }

    async fn finish_turn(
        &self,
        id: ConversationId,
        commit: TurnCommit,
    ) -> Result<Option<OutboundMessage>, StoreError> {
        let TurnCommit {
            through,
            reply,
            held,
            state,
            new_quotes,
            alerts,
            jobs,
            cancel_jobs,
            model_calls,
            spoken,
        } = commit;
        let state_json = json_text(&state, "state")?;
        let now = self.now();
        // What the turn sets in motion beside its reply is rare (a quote, a
        // booking's reminders, an alert); without it the commit is one
        // statement and one round trip, with it one transaction around
        // that statement and the extra inserts.
        let extras =
            !(new_quotes.is_empty() && alerts.is_empty() && jobs.is_empty() && cancel_jobs.is_empty());
        let answer = held.as_ref().or(reply.as_ref());
        // The answer is stored in its final state: `held` for the owner,
        // `sent` when a call already spoke it, else `sending` under a send
        // lease (claimed by this turn's sender).
        let (answer_status, answer_attempts, answer_lease, answer_sid) = match (&held, &spoken) {
            (Some(_), _) => ("held", 0, None, None),
            (None, Some(sid)) => ("sent", 1, None, Some(sid.as_str())),
            (None, None) => ("sending", 1, Some(self.send_lease_until(self.now_ms())), None),
        };
        // With a held answer, `reply` is the holding text, sent now.
        let holding = if held.is_some() { reply.as_ref() } else { None };
        let query = sqlx::query(FINISH_TURN)
            .bind(id.0)
            .bind(through.0)
            .bind(&state_json)
            .bind(now)
            .bind(model_calls.as_ref().map(|calls| calls.customer.0))
            .bind(model_calls.as_ref().map(|calls| calls.day.to_string()))
            .bind(
                model_calls
                    .as_ref()
                    .map(|calls| calls.calls.min(i32::MAX as u32) as i32),
            )
            .bind(answer.map(|draft| draft.kind.as_str()))
            .bind(answer.map(|draft| draft.body.as_str()))
            .bind(answer_status)
            .bind(answer_attempts)
            .bind(answer_lease)
            .bind(answer_sid)
            .bind(holding.map(|draft| draft.kind.as_str()))
            .bind(holding.map(|draft| draft.body.as_str()))
            .bind(self.send_lease_until(self.now_ms()))
            .bind(held.is_some())
            .bind(model_calls.as_ref().map(|calls| stored(calls.tokens.input)))
            .bind(model_calls.as_ref().map(|calls| stored(calls.tokens.cache_read)))
            .bind(model_calls.as_ref().map(|calls| stored(calls.tokens.cache_write)))
            .bind(model_calls.as_ref().map(|calls| stored(calls.tokens.output)));
        let (row, tx) = if extras {
            let mut tx = self.pool.begin().await?;
            let row = query.fetch_one(&mut *tx).await?;
            (row, Some(tx))
        } else {
            let mut conn = self.hot.take(&self.pool).await?;
            let row = query.fetch_one(&mut *conn).await;
            (conn.finished(row)?, None)
        };
        if !row.try_get::<bool, _>("found")? {
            return Err(StoreError::NotFound("conversation"));
        }
        if !row.try_get::<bool, _>("committed")? {
            // Another run of this turn (an expired lease, a crash rerun)
            // already committed it; its state and reply stand. The model
            // calls this run made are counted all the same.
            if let Some(tx) = tx {
                tx.commit().await?;
            }
            return Ok(None);
        }
        let claimed = match row.try_get::<Option<i64>, _>("claimed_id")? {
            Some(message) => Some(outbound_from_row(MessageId(message), &row)?),
            None => None,
        };
        if let Some(mut tx) = tx {
            set_in_motion(&mut tx, id, &cancel_jobs, &jobs, &alerts, now).await?;
            insert_quotes(&mut tx, id, &new_quotes).await?;
            tx.commit().await?;
        }
        Ok(claimed)
    }

    async fn set_opted_out(&self, customer: CustomerId, opted_out: bool) -> Result<(), StoreError> {
        // COALESCE keeps the first opt-out time when STOP is sent twice.
        sqlx::query(
            "UPDATE customers SET opted_out_at = CASE WHEN $1 THEN COALESCE(opted_out_at, $2) END WHERE id = $3",
        )
        .bind(opted_out)
        .bind(self.now())
        .bind(customer.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_conversation(
        &self,
        customer: &E164,
        business_number: &E164,
    ) -> Result<Option<ConversationId>, StoreError> {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT c.id FROM conversations c JOIN customers k ON k.id = c.customer_id
             WHERE k.phone = $1 AND c.business_number = $2
             ORDER BY c.id LIMIT 1",
        )
        .bind(customer.as_str())
        .bind(business_number.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.map(ConversationId))
    }

    async fn conversation_business(&self, id: ConversationId) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT business_id FROM conversations WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn messages(&self, id: ConversationId) -> Result<Vec<Message>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 ORDER BY id");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(message_from_row)
            .collect()
    }

    async fn last_inbound_at(&self, id: ConversationId) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(created_at) FROM messages WHERE conversation_id = $1 AND direction = 'inbound'",
        )
        .bind(id.0)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn commit_owner_action(
        &self,
        id: ConversationId,
        commit: &OwnerCommit,
    ) -> Result<Option<MessageId>, StoreError> {
        let state_json = json_text(&commit.state, "state")?;
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE conversations
             SET state_changed_at = CASE WHEN state IS NOT DISTINCT FROM $1::jsonb THEN state_changed_at ELSE $2 END,
                 state = $1::jsonb, updated_at = $2
             WHERE id = $3",
        )
        .bind(&state_json)
        .bind(now)
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("conversation"));
        }
        set_in_motion(
            &mut tx,
            id,
            &commit.cancel_jobs,
            &commit.jobs,
            &commit.alerts,
            now,
        )
        .await?;
        insert_quotes(&mut tx, id, &commit.new_quotes).await?;
        resolve_alerts(&mut tx, id, &commit.resolve_alerts, now).await?;
        let queued = match &commit.text {
            None => None,
            Some(draft) => {
                let message_id: i64 = sqlx::query_scalar(
                    "INSERT INTO messages (conversation_id, direction, kind, body, status, attempts, created_at)
                     VALUES ($1, 'outbound', $2, $3, 'queued', 0, $4)
                     RETURNING id",
                )
                .bind(id.0)
                .bind(draft.kind.as_str())
                .bind(&draft.body)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                Some(MessageId(message_id))
            }
        };
        tx.commit().await?;
        Ok(queued)
    }

    async fn owner_conversation(
        &self,
        business_id: &str,
        owner_phone: &E164,
        business_number: &E164,
    ) -> Result<ConversationId, StoreError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let customer_id = customer(&mut tx, business_id, owner_phone, now).await?;
        // As with the customer, an insert that finds the row locks nothing.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO conversations (customer_id, business_number, created_at, updated_at, business_id)
             VALUES ($1, $2, $3, $3, $4)
             ON CONFLICT (customer_id, business_number) DO NOTHING
             RETURNING id",
        )
        .bind(customer_id)
        .bind(business_number.as_str())
        .bind(now)
        .bind(business_id)
        .fetch_optional(&mut *tx)
        .await?;
        let conversation_id: i64 = match inserted {
            Some(id) => id,
            None => {
                sqlx::query_scalar(
                    "SELECT id FROM conversations WHERE customer_id = $1 AND business_number = $2",
                )
                .bind(customer_id)
                .bind(business_number.as_str())
                .fetch_one(&mut *tx)
                .await?
            }
        };
        tx.commit().await?;
        Ok(ConversationId(conversation_id))
    }
}

/// The customer with this phone at this business, made on first contact.
///
/// Never `ON CONFLICT DO UPDATE`: updating a column of the unique key (even
/// to its own value) locks the row `FOR UPDATE`, which conflicts with the
/// `KEY SHARE` lock every insert referencing the customer takes (a turn's
/// model calls, its jobs). A text stored while its conversation's turn
/// commits would then deadlock with that commit: the text holding the
/// customer and waiting for the conversation, the commit the other way
/// round. An insert that finds the customer there locks nothing.
/// An inbound text without media, with its customer and conversation on
/// first contact, in one statement (the transaction in `record_inbound`
/// does the same in six round trips, and remains for media and races).
///
/// `dup` answers a webhook retry without writing. A customer is found or
/// inserted; if another transaction inserted it meanwhile, the insert
/// returns nothing, no text is stored, and the caller falls back to the
/// transaction. A retry racing this one waits on the unique channel
/// message id until the first commits, then inserts nothing: the caller
/// falls back and finds it stored.
const RECORD_TEXT: &str = "
WITH dup AS (SELECT id, conversation_id FROM messages WHERE channel_message_id = $1),
found AS (SELECT id FROM customers WHERE business_id = $2 AND phone = $3),
new_customer AS (
    INSERT INTO customers (business_id, phone, created_at)
    SELECT $2, $3, $5 WHERE NOT EXISTS (SELECT 1 FROM found) AND NOT EXISTS (SELECT 1 FROM dup)
    ON CONFLICT (business_id, phone) DO NOTHING
    RETURNING id
),
customer AS (SELECT id FROM found UNION ALL SELECT id FROM new_customer),
conversation AS (
    INSERT INTO conversations (customer_id, business_number, created_at, updated_at, business_id)
    SELECT id, $4, $5, $5, $2 FROM customer WHERE NOT EXISTS (SELECT 1 FROM dup)
    ON CONFLICT (customer_id, business_number) DO UPDATE SET updated_at = EXCLUDED.updated_at
    RETURNING id
),
text AS (
    INSERT INTO messages (conversation_id, direction, kind, body, status, channel_message_id,
                          num_media, media_urls, params, opt_out_keyword, profile_name, created_at)
    SELECT id, 'inbound', 'customer', $6, 'pending', $1, 0, '[]'::jsonb, $7::jsonb, $8, $9, $5
    FROM conversation
    ON CONFLICT (channel_message_id) DO NOTHING
    RETURNING id, conversation_id
)
SELECT d.id AS duplicate_id, d.conversation_id AS duplicate_conversation_id,
       t.id AS message_id, t.conversation_id
FROM (SELECT 1) one
LEFT JOIN dup d ON true
LEFT JOIN text t ON true";

/// A turn's commit in one statement.
///
/// `answered` marks the turn's texts handled and is what decides whether
/// this run commits: a second run of the same turn (an expired lease taken
/// over) blocks on those rows until the first commits, then re-reads them
/// (`handled` now), updates none and so writes nothing but its model
/// calls. Everything else waits on `answered` (an InitPlan runs it first),
/// so the rows are locked in one order: the texts, then the conversation.
/// The stored answer comes back with what its sender needs, so nothing is
/// read back. (Data-modifying CTEs run to completion whether or not the
/// final SELECT reads them: `calls`, `usage` and `state` need no reader.)
const FINISH_TURN: &str = "
WITH calls AS (
    INSERT INTO model_calls (customer_id, day, calls)
    SELECT $5, $6, $7 WHERE $5::bigint IS NOT NULL
    ON CONFLICT (customer_id, day) DO UPDATE SET calls = model_calls.calls + EXCLUDED.calls
    RETURNING 1
),
usage AS (
    INSERT INTO turn_usage (conversation_id, through_message_id, model_calls, input_tokens,
                            cache_read_tokens, cache_write_tokens, output_tokens, created_at)
    SELECT $1, $2, $7, $18, $19, $20, $21, $4 WHERE $5::bigint IS NOT NULL
    RETURNING 1
),
answered AS (
    UPDATE messages SET status = 'handled'
    WHERE conversation_id = $1 AND direction = 'inbound' AND status = 'pending' AND id <= $2
    RETURNING id
),
turn AS (SELECT EXISTS (SELECT 1 FROM answered) AS committed),
answer AS (
    INSERT INTO messages (conversation_id, direction, kind, body, status, attempts, reply_to_id,
                          created_at, send_lease_until_ms, channel_message_id, sent_at)
    SELECT $1, 'outbound', $8, $9, $10, $11, $2, $4, $12, $13, CASE WHEN $13::text IS NULL THEN NULL ELSE $4 END
    WHERE $9::text IS NOT NULL AND (SELECT committed FROM turn)
    ON CONFLICT (reply_to_id) DO NOTHING
    RETURNING id, body, kind, attempts, created_at
),
holding AS (
    INSERT INTO messages (conversation_id, direction, kind, body, status, attempts, reply_to_id,
                          created_at, send_lease_until_ms)
    SELECT $1, 'outbound', $14, $15, 'sending', 1, NULL, $4, $16
    WHERE $15::text IS NOT NULL AND (SELECT committed FROM turn)
    RETURNING id, body, kind, attempts, created_at
),
state AS (
    UPDATE conversations
    SET state_changed_at = CASE WHEN state IS NOT DISTINCT FROM $3::jsonb THEN state_changed_at ELSE $4 END,
        state = $3::jsonb, updated_at = $4,
        -- The activity trigger's move, made here: the trigger then finds
        -- the row current and writes no second version of it.
        last_message_id = GREATEST(last_message_id,
                                   (SELECT MAX(id) FROM (SELECT id FROM answer UNION ALL SELECT id FROM holding) s))
    WHERE id = $1 AND (SELECT committed FROM turn)
    RETURNING id
),
claimed AS (
    SELECT * FROM holding
    UNION ALL
    SELECT * FROM answer WHERE NOT $17::boolean
)
SELECT t.committed,
       c.id IS NOT NULL AS found,
       m.id AS claimed_id, $1::bigint AS conversation_id, m.body, m.kind, m.attempts, m.created_at,
       k.phone, c.business_number, c.customer_id,
       (SELECT MAX(i.created_at) FROM messages i
         WHERE i.conversation_id = $1 AND i.direction = 'inbound') AS last_inbound_at,
       k.opted_out_at IS NOT NULL AND m.kind NOT IN ('opt_out_confirmation', 'help') AS opted_out
FROM turn t
LEFT JOIN claimed m ON true
LEFT JOIN conversations c ON c.id = $1
LEFT JOIN customers k ON k.id = c.customer_id";

async fn customer(
    conn: &mut sqlx::PgConnection,
    business_id: &str,
    phone: &E164,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO customers (business_id, phone, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (business_id, phone) DO NOTHING
         RETURNING id",
    )
    .bind(business_id)
    .bind(phone.as_str())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        // A statement of its own, so that it sees a customer another
        // transaction committed while this insert waited on it.
        None => Ok(
            sqlx::query_scalar("SELECT id FROM customers WHERE business_id = $1 AND phone = $2")
                .bind(business_id)
                .bind(phone.as_str())
                .fetch_one(&mut *conn)
                .await?,
        ),
    }
}

fn lease_ms(lease: Duration) -> i64 {
    lease.as_millis().min(i64::MAX as u128 / 2) as i64
}

/// The text stored with this channel message id, as a duplicate.
async fn stored_text(
    conn: &mut sqlx::PgConnection,
    channel_message_id: &str,
) -> Result<Option<Recorded>, StoreError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT id, conversation_id FROM messages WHERE channel_message_id = $1")
            .bind(channel_message_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row
        .map(|(message, conversation)| Recorded::Duplicate(ConversationId(conversation), MessageId(message))))
}

/// Resolves the conversation's open alerts of `kinds`, as the owner's.
pub(super) async fn resolve_alerts(
    conn: &mut sqlx::PgConnection,
    id: ConversationId,
    kinds: &[AlertKind],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for kind in kinds {
        sqlx::query(
            "UPDATE alerts SET resolved_at = $1, resolved_by = 'owner'
             WHERE conversation_id = $2 AND kind = $3 AND resolved_at IS NULL",
        )
        .bind(now)
        .bind(id.0)
        .bind(kind.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// What a commit sets in motion beside its state: jobs cancelled and
/// queued, and the owner's alerts.
pub(super) async fn set_in_motion(
    conn: &mut sqlx::PgConnection,
    id: ConversationId,
    cancel_jobs: &[String],
    jobs: &[NewJob],
    alerts: &[NewAlert],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for prefix in cancel_jobs {
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled', updated_at = $1
             WHERE conversation_id = $2 AND status IN ('pending', 'suspended') AND starts_with(dedupe_key, $3)",
        )
        .bind(now)
        .bind(id.0)
        .bind(prefix)
        .execute(&mut *conn)
        .await?;
    }
    for job in jobs {
        insert_job(&mut *conn, job, now).await?;
    }
    for alert in alerts {
        sqlx::query(
            "INSERT INTO alerts (kind, conversation_id, detail, created_at, business_id)
             VALUES ($1, $2, $3, $4, COALESCE((SELECT business_id FROM conversations WHERE id = $2), 'default'))",
        )
        .bind(alert.kind.as_str())
        .bind(id.0)
        .bind(&alert.detail)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn insert_quotes(
    conn: &mut sqlx::PgConnection,
    id: ConversationId,
    quotes: &[Quote],
) -> Result<(), StoreError> {
    for quote in quotes {
        sqlx::query(
            "INSERT INTO quotes (id, conversation_id, total, quote, created_at, business_id)
             VALUES ($1, $2, $3, $4::jsonb, $5, (SELECT business_id FROM conversations WHERE id = $2))
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&quote.id)
        .bind(id.0)
        .bind(quote.total.amount().to_string())
        .bind(json_text(quote, "quote")?)
        .bind(quote.created_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl PgStore {
    /// A turn's input and flood reading in one statement: one snapshot (a
    /// statement sees one, at any isolation level), so a text arriving
    /// meanwhile is in neither `pending` nor `history` (not in one only),
    /// and one round trip where a transaction with a query per list took
    /// seven (the lists come back as JSON arrays, as on SQLite).
    async fn read_turn(
        &self,
        id: ConversationId,
        history_limit: usize,
        window: &FloodWindow,
    ) -> Result<(TurnInput, FloodReading), StoreError> {
        // `history` is in conversation order, not insertion order: a reply
        // sorts right after the last text it answers, before texts that
        // arrived while it was being written. Replies that never reached
        // the customer are left out; `unknown` ones probably did, so they
        // stay.
        let mut conn = self.hot.take(&self.pool).await?;
        let row = sqlx::query(
            "SELECT c.customer_id, c.business_number, k.phone, k.opted_out_at IS NOT NULL AS opted_out,
                    c.state::text AS state,
                    NOT EXISTS (SELECT 1 FROM messages WHERE conversation_id = $1 AND direction = 'outbound')
                        AS first_contact,
                    (SELECT MAX(created_at) FROM messages
                      WHERE conversation_id = $1 AND NOT (direction = 'inbound' AND status = 'pending'))
                        AS last_activity,
                    (SELECT profile_name FROM messages
                      WHERE conversation_id = $1 AND direction = 'inbound' AND profile_name <> ''
                      ORDER BY id DESC LIMIT 1) AS profile_name,
                    (SELECT COALESCE(json_agg(json_build_array(id, direction, kind, body, status, channel_message_id,
                                                               num_media, opt_out_keyword, created_at) ORDER BY id),
                                     '[]')::text
                       FROM messages
                      WHERE conversation_id = $1 AND direction = 'inbound' AND status = 'pending') AS pending,
                    (SELECT COALESCE(json_agg(json_build_array(id, direction, kind, body, status, channel_message_id,
                                                               num_media, opt_out_keyword, created_at)
                                              ORDER BY position, id),
                                     '[]')::text
                       FROM (SELECT m.*, COALESCE(m.reply_to_id, m.id) AS position FROM messages m
                              WHERE m.conversation_id = $1
                                AND (m.direction = 'inbound' OR m.status IN ('queued', 'sending', 'sent', 'unknown'))
                              ORDER BY position DESC, m.id DESC LIMIT $6) h) AS history,
                    (SELECT COALESCE(json_agg(q.quote ORDER BY q.created_at, q.seq), '[]')::text
                       FROM (SELECT quote, created_at, seq FROM quotes WHERE conversation_id = $1
                              ORDER BY created_at DESC, seq DESC LIMIT 20) q) AS quotes,
                    (SELECT COUNT(*) FROM (SELECT created_at FROM messages
                        WHERE conversation_id = $1 AND direction = 'inbound'
                        ORDER BY id DESC LIMIT $2) r WHERE created_at >= $3) AS recent,
                    (SELECT created_at FROM messages
                        WHERE conversation_id = $1 AND direction = 'outbound'
                        ORDER BY id DESC LIMIT 1) AS last_reply,
                    (SELECT m.calls FROM model_calls m
                        WHERE m.customer_id = c.customer_id AND m.day = $4) AS calls,
                    EXISTS (SELECT 1 FROM alerts
                        WHERE conversation_id = $1 AND kind = 'flood_throttled' AND created_at >= $5) AS alerted
             FROM conversations c JOIN customers k ON k.id = c.customer_id WHERE c.id = $1",
        )
        .bind(id.0)
        .bind(window.limit.min(i64::MAX as usize - 1) as i64 + 1)
        .bind(window.since)
        .bind(window.day.to_string())
        .bind(window.day_start)
        .bind(history_limit.min(i64::MAX as usize) as i64)
        .fetch_optional(&mut *conn)
        .await;
        let row = conn.finished(row)?.ok_or(StoreError::NotFound("conversation"))?;
        let pending = messages_from_json(row.try_get("pending")?)?;
        let history = messages_from_json(row.try_get("history")?)?;
        let quotes: Vec<Quote> = serde_json::from_str(row.try_get("quotes")?)
            .map_err(|e| StoreError::Corrupt(format!("quote: {e}")))?;
        // Only texts with media need a second read: their images' rows can
        // only have been added or fetched since, never removed.
        let images = if history.iter().any(|m| m.num_media > 0) {
            let mut conn = self.pool.acquire().await?;
            history_images(&mut conn, id, &history).await?
        } else {
            Vec::new()
        };
        let conversation = Conversation {
            id,
            customer_id: CustomerId(row.try_get("customer_id")?),
            customer_phone: parse_phone(row.try_get("phone")?)?,
            business_number: parse_phone(row.try_get("business_number")?)?,
            opted_out: row.try_get("opted_out")?,
            profile_name: row.try_get("profile_name")?,
        };
        let state = match row.try_get::<Option<String>, _>("state")? {
            None => ConversationState::default(),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("conversation {} state: {e}", id.0)))?,
        };
        let reading = FloodReading {
            recent_texts: row.try_get::<i64, _>("recent")?.max(0) as usize,
            last_reply_at: row.try_get("last_reply")?,
            model_calls_today: row.try_get::<Option<i32>, _>("calls")?.unwrap_or(0).max(0) as u32,
            alerted_today: row.try_get("alerted")?,
        };
        let turn = TurnInput {
            conversation,
            pending,
            history,
            first_contact: row.try_get("first_contact")?,
            state,
            last_activity: row.try_get("last_activity")?,
            quotes,
            images,
        };
        Ok((turn, reading))
    }
}

/// The images of `history`'s texts, in order, with the bytes of the newest
/// few fetched ones (as on SQLite).
async fn history_images(
    conn: &mut sqlx::PgConnection,
    id: ConversationId,
    history: &[Message],
) -> Result<Vec<StoredImage>, StoreError> {
    let Some(first) = history.iter().filter(|m| m.num_media > 0).map(|m| m.id.0).min() else {
        return Ok(Vec::new());
    };
    let in_history: std::collections::HashSet<i64> = history.iter().map(|m| m.id.0).collect();
    let rows = sqlx::query(
        "SELECT id, message_id, position, content_type, status FROM media
         WHERE conversation_id = $1 AND message_id >= $2 AND content_type LIKE 'image/%'
         ORDER BY message_id, position",
    )
    .bind(id.0)
    .bind(first)
    .fetch_all(&mut *conn)
    .await?;
    let mut images = Vec::new();
    let mut media_ids = Vec::new();
    for row in &rows {
        let message_id: i64 = row.try_get("message_id")?;
        if !in_history.contains(&message_id) {
            continue;
        }
        let status: String = row.try_get("status")?;
        media_ids.push(row.try_get::<i64, _>("id")?);
        images.push(StoredImage {
            message_id: MessageId(message_id),
            position: row.try_get::<i32, _>("position")? as i64,
            content_type: row.try_get("content_type")?,
            status: MediaStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("media status `{status}`")))?,
            data: None,
        });
    }
    let mut with_data = 0;
    for (image, media_id) in images.iter_mut().zip(&media_ids).rev() {
        if with_data == TURN_IMAGES_WITH_DATA {
            break;
        }
        if image.status == MediaStatus::Fetched {
            image.data = sqlx::query_scalar("SELECT bytes FROM media WHERE id = $1")
                .bind(media_id)
                .fetch_one(&mut *conn)
                .await?;
            with_data += 1;
        }
    }
    Ok(images)
}
