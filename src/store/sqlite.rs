//! The embedded default backend: one SQLite file, WAL mode.
//!
//! Write transactions begin IMMEDIATE so that two writers queue on the busy
//! timeout instead of failing on a lock upgrade. A single process serves a
//! SQLite database, which is what lets `recover_interrupted_work` free
//! every lease at start.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::*;
use crate::domain::availability::Interval;
use crate::domain::conversation::ConversationState;
use crate::domain::quote::Quote;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Two pools over one file: many readers, and exactly one writer. SQLite
/// admits one writer at a time and makes a waiting writer *sleep* in
/// growing steps; with a single writer connection, writes queue in the
/// pool instead (async, first come first served), which keeps webhook
/// latency flat under load. WAL lets the readers run meanwhile.
#[derive(Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    /// Inbound texts on their way to the next group commit.
    inbound: tokio::sync::mpsc::Sender<InboundWaiter>,
}

/// An inbound text to store, and who waits to hear it is durable.
type InboundWaiter = (
    InboundSms,
    tokio::sync::oneshot::Sender<Result<Recorded, StoreError>>,
);

/// Most texts one group commit stores: bounds how long the writer is held.
const MAX_INBOUND_GROUP: usize = 64;

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and applies the
    /// migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // NORMAL in WAL mode survives any crash of this process; only a
        // power loss can drop the last commits. That is fine for the
        // worker's progress (a lost commit means a turn is redone, which is
        // idempotent) but not for a text Twilio was told we stored, so
        // `record_inbound` commits with FULL. Its fsync of the WAL makes
        // every earlier commit durable too.
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // Only another process (e.g. `textdesk chat`) can make us wait;
            // stay well inside the webhook's 10 s budget.
            .busy_timeout(Duration::from_secs(3))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await?;
        let (inbound, queue) = tokio::sync::mpsc::channel(4 * MAX_INBOUND_GROUP);
        // Ends when the last clone of the store (the last sender) is dropped.
        tokio::spawn(commit_inbound_in_groups(writer.clone(), queue));
        Ok(Self {
            reader,
            writer,
            inbound,
        })
    }
}

/// Group commit for inbound texts. Each must be durable (a FULL commit,
/// one fsync of the WAL) before Twilio hears 200, and an fsync takes
/// milliseconds on a real disk: one per text would let the fsyncs alone
/// fill the single writer at a few hundred texts a second. Texts that
/// arrive while a commit is in progress are stored together in the next
/// one, under one fsync; every waiter hears only after the commit holding
/// its text. Alone, a text commits at once, as before.
async fn commit_inbound_in_groups(writer: SqlitePool, mut queue: tokio::sync::mpsc::Receiver<InboundWaiter>) {
    let mut group: Vec<InboundWaiter> = Vec::with_capacity(MAX_INBOUND_GROUP);
    while queue.recv_many(&mut group, MAX_INBOUND_GROUP).await > 0 {
        let texts: Vec<&InboundSms> = group.iter().map(|(sms, _)| sms).collect();
        let results = match record_inbound_group(&writer, &texts).await {
            Ok(recorded) => recorded.into_iter().map(Ok).collect(),
            // Nothing of the group was stored: each text alone, so each
            // waiter hears its own outcome and one bad text fails no other.
            Err(_) if group.len() > 1 => {
                let mut alone = Vec::with_capacity(group.len());
                for sms in &texts {
                    alone.push(
                        record_inbound_group(&writer, &[*sms])
                            .await
                            .map(|mut r| r.remove(0)),
                    );
                }
                alone
            }
            Err(e) => vec![Err(e)],
        };
        for ((_, waiter), result) in group.drain(..).zip(results) {
            // A waiter that gave up (its request was dropped) still has its
            // text stored; Twilio's retry finds it a duplicate.
            let _ = waiter.send(result);
        }
    }
}

/// Stores `texts` in one IMMEDIATE transaction committed with FULL, or
/// none of them.
async fn record_inbound_group(
    writer: &SqlitePool,
    texts: &[&InboundSms],
) -> Result<Vec<Recorded>, StoreError> {
    let mut conn = writer.acquire().await?;
    sqlx::query("PRAGMA synchronous = FULL")
        .execute(&mut *conn)
        .await?;
    let recorded = async {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        let mut recorded = Vec::with_capacity(texts.len());
        for sms in texts {
            recorded.push(record_inbound_in(&mut tx, sms).await?);
        }
        tx.commit().await?;
        Ok::<_, StoreError>(recorded)
    }
    .await;
    // Back to NORMAL even when the insert failed; if this fails too the
    // connection merely stays on the safer setting.
    let _ = sqlx::query("PRAGMA synchronous = NORMAL")
        .execute(&mut *conn)
        .await;
    recorded
}

/// The inbound insert proper, inside the group's write transaction. A text
/// whose SID is already stored (in an earlier commit, or earlier in this
/// group) is a duplicate.
async fn record_inbound_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    sms: &InboundSms,
) -> Result<Recorded, StoreError> {
    if let Some(row) = sqlx::query("SELECT id, conversation_id FROM messages WHERE twilio_sid = ?")
        .bind(&sms.message_sid)
        .fetch_optional(&mut **tx)
        .await?
    {
        return Ok(Recorded::Duplicate(
            ConversationId(row.try_get("conversation_id")?),
            MessageId(row.try_get("id")?),
        ));
    }
    let now = Utc::now();
    // The no-op update on a known customer is there for RETURNING: the
    // customer's id in the same statement, one round trip fewer.
    let customer_id: i64 = sqlx::query_scalar(
        "INSERT INTO customers (business_id, phone, created_at) VALUES (?, ?, ?)
         ON CONFLICT (business_id, phone) DO UPDATE SET phone = excluded.phone
         RETURNING id",
    )
    .bind(&sms.business_id)
    .bind(sms.from.as_str())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let conversation_id: i64 = sqlx::query_scalar(
        "INSERT INTO conversations (customer_id, business_number, created_at, updated_at, business_id)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (customer_id, business_number) DO UPDATE SET updated_at = excluded.updated_at
         RETURNING id",
    )
    .bind(customer_id)
    .bind(sms.to.as_str())
    .bind(now)
    .bind(now)
    .bind(&sms.business_id)
    .fetch_one(&mut **tx)
    .await?;
    let message_id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (conversation_id, direction, kind, body, status, twilio_sid,
                               num_media, media_urls, params, created_at)
         VALUES (?, 'inbound', 'customer', ?, 'pending', ?, ?, ?, ?, ?)
         RETURNING id",
    )
    .bind(conversation_id)
    .bind(&sms.body)
    .bind(&sms.message_sid)
    .bind(sms.media.len() as i64)
    .bind(
        serde_json::to_string(&sms.media.iter().map(|m| m.url.as_str()).collect::<Vec<_>>())
            .unwrap_or_else(|_| "[]".into()),
    )
    .bind(sms.params.to_string())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    // The files and the jobs that fetch them commit with the text: a text
    // Twilio was told we stored never loses its photos.
    for (position, media) in sms.media.iter().enumerate() {
        let media_id: i64 = sqlx::query_scalar(
            "INSERT INTO media (message_id, conversation_id, position, url, content_type, status, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(message_id)
        .bind(conversation_id)
        .bind(position as i64)
        .bind(&media.url)
        .bind(&media.content_type)
        .bind(media.status.as_str())
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        if media.status == MediaStatus::Pending {
            let job = NewJob {
                kind: FETCH_MEDIA,
                dedupe_key: format!("media:{media_id}"),
                conversation_id: Some(ConversationId(conversation_id)),
                customer_id: Some(CustomerId(customer_id)),
                recipient: sms.from.as_str().to_string(),
                payload: serde_json::json!({ "media_id": media_id }),
                run_at: now,
                max_attempts: FETCH_MEDIA_ATTEMPTS,
            };
            insert_job(tx, &job, now).await?;
        }
    }
    Ok(Recorded::New(
        ConversationId(conversation_id),
        MessageId(message_id),
    ))
}

/// A stored outbound text with where it goes, read inside `tx`.
async fn outbound_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: MessageId,
) -> Result<OutboundSms, StoreError> {
    let row = sqlx::query(
        "SELECT m.conversation_id, m.body, m.kind, m.attempts, m.created_at, k.phone, c.business_number,
                c.customer_id,
                (SELECT MAX(i.created_at) FROM messages i
                  WHERE i.conversation_id = m.conversation_id AND i.direction = 'inbound') AS last_inbound_at,
                -- An opt-out in words is confirmed once, after the opt-out.
                k.opted_out_at IS NOT NULL AND m.kind <> 'opt_out_confirmation' AS opted_out
         FROM messages m
         JOIN conversations c ON c.id = m.conversation_id
         JOIN customers k ON k.id = c.customer_id
         WHERE m.id = ?",
    )
    .bind(id.0)
    .fetch_one(&mut **tx)
    .await?;
    Ok(OutboundSms {
        id,
        conversation_id: ConversationId(row.try_get("conversation_id")?),
        customer_id: CustomerId(row.try_get("customer_id")?),
        customer_opted_out: row.try_get("opted_out")?,
        to: parse_phone(row.try_get("phone")?)?,
        from: parse_phone(row.try_get("business_number")?)?,
        body: row.try_get("body")?,
        kind: row.try_get("kind")?,
        last_inbound_at: row.try_get("last_inbound_at")?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
    })
}

impl SqliteStore {
    /// The writer pool, for benchmarks and tests that set up data in bulk.
    pub fn writer_pool(&self) -> &SqlitePool {
        &self.writer
    }
}

fn parse_phone(raw: &str) -> Result<E164, StoreError> {
    E164::parse_address(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn message_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Message, StoreError> {
    let direction: String = row.try_get("direction")?;
    Ok(Message {
        id: MessageId(row.try_get("id")?),
        direction: match direction.as_str() {
            "inbound" => Direction::Inbound,
            "outbound" => Direction::Outbound,
            other => return Err(StoreError::Corrupt(format!("message direction `{other}`"))),
        },
        kind: row.try_get("kind")?,
        body: row.try_get("body")?,
        status: row.try_get("status")?,
        twilio_sid: row.try_get("twilio_sid")?,
        num_media: row.try_get("num_media")?,
        opt_out_type: row.try_get("opt_out_type")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Adds a turn's model requests to its customer's day.
async fn count_model_calls(conn: &mut sqlx::SqliteConnection, calls: &ModelCalls) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO model_calls (customer_id, day, calls) VALUES (?1, ?2, ?3)
         ON CONFLICT (customer_id, day) DO UPDATE SET calls = calls + excluded.calls",
    )
    .bind(calls.customer.0)
    .bind(calls.day.to_string())
    .bind(calls.calls as i64)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn record_inbound(&self, sms: &InboundSms) -> Result<Recorded, StoreError> {
        let (waiter, outcome) = tokio::sync::oneshot::channel();
        let closed = || StoreError::Database(sqlx::Error::PoolClosed);
        self.inbound
            .send((sms.clone(), waiter))
            .await
            .map_err(|_| closed())?;
        outcome.await.map_err(|_| closed())?
    }

    async fn claim_next_pending(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedConversation>, StoreError> {
        let now = now_ms();
        // Most wake-ups find nothing to claim; answer those from a reader
        // instead of queueing on the one writer.
        let anything: bool = sqlx::query_scalar(
            "SELECT EXISTS (
                 SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id
                 WHERE m.direction = 'inbound' AND m.status = 'pending'
                   AND (c.lease_until_ms IS NULL OR c.lease_until_ms < ?))",
        )
        .bind(now)
        .fetch_one(&self.reader)
        .await?;
        if !anything {
            return Ok(None);
        }
        let claimed: Option<(i64, String)> = sqlx::query_as(
            "UPDATE conversations SET lease_owner = ?1, lease_until_ms = ?2
             WHERE id = (
                 SELECT m.conversation_id FROM messages m
                 JOIN conversations c ON c.id = m.conversation_id
                 WHERE m.direction = 'inbound' AND m.status = 'pending'
                   AND (c.lease_until_ms IS NULL OR c.lease_until_ms < ?3)
                 ORDER BY m.id LIMIT 1)
             RETURNING id, business_id",
        )
        .bind(worker)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        Ok(claimed.map(|(id, business_id)| ClaimedConversation {
            id: ConversationId(id),
            business_id,
        }))
    }

    async fn claim(&self, id: ConversationId, worker: &str, lease: Duration) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE conversations SET lease_owner = ?1, lease_until_ms = ?2
             WHERE id = ?3 AND (lease_until_ms IS NULL OR lease_until_ms < ?4 OR lease_owner = ?1)",
        )
        .bind(worker)
        .bind(now + lease.as_millis() as i64)
        .bind(id.0)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, id: ConversationId, worker: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE conversations SET lease_owner = NULL, lease_until_ms = NULL WHERE id = ? AND lease_owner = ?",
        )
        .bind(id.0)
        .bind(worker)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Frees every lease and requeues texts that were mid-send when the
    /// previous process died. A requeued text may reach the customer twice
    /// if the crash fell between Twilio accepting it and us recording that;
    /// that window is one HTTP response long, and the alternative (never
    /// sending) leaves a customer unanswered.
    async fn recover_interrupted_work(&self) -> Result<Recovered, StoreError> {
        let leases_freed = sqlx::query(
            "UPDATE conversations SET lease_owner = NULL, lease_until_ms = NULL WHERE lease_owner IS NOT NULL",
        )
        .execute(&self.writer)
        .await?
        .rows_affected();
        let sends_requeued = sqlx::query(
            "UPDATE messages SET status = 'queued' WHERE direction = 'outbound' AND status = 'sending'",
        )
        .execute(&self.writer)
        .await?
        .rows_affected();
        let jobs_requeued = sqlx::query(
            "UPDATE jobs SET status = 'pending', locked_until_ms = NULL WHERE status = 'running'",
        )
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(Recovered {
            leases_freed,
            sends_requeued,
            jobs_requeued,
        })
    }

    async fn turn_input(&self, id: ConversationId, history_limit: usize) -> Result<TurnInput, StoreError> {
        // One read transaction: one WAL snapshot, so a text arriving
        // meanwhile is in neither `pending` nor `history` (not in one only).
        let mut tx = self.reader.begin().await?;
        // One round trip for the conversation, its state, and what the turn
        // needs to know about its past.
        let row = sqlx::query(
            "SELECT c.customer_id, c.business_number, k.phone, k.opted_out_at IS NOT NULL AS opted_out, c.state,
                    NOT EXISTS (SELECT 1 FROM messages WHERE conversation_id = c.id AND direction = 'outbound')
                        AS first_contact,
                    (SELECT MAX(created_at) FROM messages
                      WHERE conversation_id = c.id AND NOT (direction = 'inbound' AND status = 'pending'))
                        AS last_activity,
                    (SELECT json_extract(params, '$.ProfileName') FROM messages
                      WHERE conversation_id = c.id AND direction = 'inbound'
                        AND json_extract(params, '$.ProfileName') <> ''
                      ORDER BY id DESC LIMIT 1) AS profile_name
             FROM conversations c JOIN customers k ON k.id = c.customer_id WHERE c.id = ?",
        )
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("conversation"))?;
        let conversation = Conversation {
            id,
            customer_id: CustomerId(row.try_get("customer_id")?),
            customer_phone: parse_phone(row.try_get("phone")?)?,
            business_number: parse_phone(row.try_get("business_number")?)?,
            opted_out: row.try_get("opted_out")?,
            profile_name: row.try_get("profile_name")?,
        };
        let pending = sqlx::query(
            "SELECT id, direction, kind, body, status, twilio_sid, num_media, json_extract(params, '$.OptOutType') AS opt_out_type, created_at FROM messages
             WHERE conversation_id = ? AND direction = 'inbound' AND status = 'pending' ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        // Conversation order, not insertion order: a reply sorts right after
        // the last text it answers, before texts that arrived while it was
        // being written. Replies that never reached the customer are left
        // out; `unknown` ones probably did, so they stay.
        let history = sqlx::query(
            "SELECT id, direction, kind, body, status, twilio_sid, num_media, json_extract(params, '$.OptOutType') AS opt_out_type, created_at FROM (
                 SELECT *, COALESCE(reply_to_id, id) AS position FROM messages
                 WHERE conversation_id = ?
                   AND (direction = 'inbound' OR status IN ('queued', 'sending', 'sent', 'unknown'))
                 ORDER BY position DESC, id DESC LIMIT ?)
             ORDER BY position, id",
        )
        .bind(id.0)
        .bind(history_limit as i64)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let first_contact: bool = row.try_get("first_contact")?;
        let state_json: Option<String> = row.try_get("state")?;
        let state = match state_json {
            None => ConversationState::default(),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("conversation {} state: {e}", id.0)))?,
        };
        let last_activity: Option<DateTime<Utc>> = row.try_get("last_activity")?;
        let quotes = sqlx::query_scalar::<_, String>(
            "SELECT quote FROM (SELECT quote, created_at, rowid FROM quotes WHERE conversation_id = ?
                                ORDER BY created_at DESC, rowid DESC LIMIT 20)
             ORDER BY created_at, rowid",
        )
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|json| serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("quote: {e}"))))
        .collect::<Result<Vec<Quote>, _>>()?;
        let images = history_images(&mut tx, id, &history).await?;
        tx.commit().await?;
        Ok(TurnInput {
            conversation,
            pending,
            history,
            first_contact,
            state,
            last_activity,
            quotes,
            images,
        })
    }

    async fn finish_turn(
        &self,
        id: ConversationId,
        commit: TurnCommit,
    ) -> Result<Option<OutboundSms>, StoreError> {
        let TurnCommit {
            through,
            reply,
            state,
            new_quotes,
            alerts,
            jobs,
            cancel_jobs,
            model_calls,
        } = commit;
        let state_json = serde_json::to_string(&state)
            .map_err(|e| StoreError::Corrupt(format!("state does not serialize: {e}")))?;
        let now = Utc::now();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let answered = sqlx::query(
            "UPDATE messages SET status = 'handled'
             WHERE conversation_id = ? AND direction = 'inbound' AND status = 'pending' AND id <= ?",
        )
        .bind(id.0)
        .bind(through.0)
        .execute(&mut *tx)
        .await?;
        if answered.rows_affected() == 0 {
            // Another run of this turn (an expired lease, a crash rerun)
            // already committed it; its state and reply stand. Its model
            // calls were made all the same.
            tx.rollback().await?;
            if let Some(calls) = &model_calls {
                let mut conn = self.writer.acquire().await?;
                count_model_calls(&mut conn, calls).await?;
            }
            return Ok(None);
        }
        if let Some(calls) = &model_calls {
            count_model_calls(&mut tx, calls).await?;
        }
        for prefix in &cancel_jobs {
            sqlx::query(
                "UPDATE jobs SET status = 'cancelled', updated_at = ?
                 WHERE conversation_id = ? AND status IN ('pending', 'suspended') AND substr(dedupe_key, 1, ?) = ?",
            )
            .bind(now)
            .bind(id.0)
            .bind(prefix.len() as i64)
            .bind(prefix)
            .execute(&mut *tx)
            .await?;
        }
        for job in &jobs {
            insert_job(&mut tx, job, now).await?;
        }
        for alert in &alerts {
            sqlx::query("INSERT INTO alerts (kind, conversation_id, detail, created_at, business_id)
                         VALUES (?1, ?2, ?3, ?4, COALESCE((SELECT business_id FROM conversations WHERE id = ?2), 'default'))")
                .bind(alert.kind)
                .bind(id.0)
                .bind(&alert.detail)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE conversations
             SET state_changed_at = CASE WHEN state IS ?1 THEN state_changed_at ELSE ?2 END, state = ?1,
                 updated_at = ?2
             WHERE id = ?3",
        )
        .bind(&state_json)
        .bind(now)
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        for quote in &new_quotes {
            let json = serde_json::to_string(quote)
                .map_err(|e| StoreError::Corrupt(format!("quote does not serialize: {e}")))?;
            sqlx::query(
                "INSERT INTO quotes (id, conversation_id, total, quote, created_at, business_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, (SELECT business_id FROM conversations WHERE id = ?2))
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&quote.id)
            .bind(id.0)
            .bind(quote.total.amount().to_string())
            .bind(json)
            .bind(quote.created_at)
            .execute(&mut *tx)
            .await?;
        }
        let claimed = match reply {
            None => None,
            Some(draft) => {
                let inserted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO messages
                         (conversation_id, direction, kind, body, status, attempts, reply_to_id, created_at)
                     VALUES (?, 'outbound', ?, ?, 'sending', 1, ?, ?)
                     ON CONFLICT (reply_to_id) DO NOTHING
                     RETURNING id",
                )
                .bind(id.0)
                .bind(draft.kind)
                .bind(&draft.body)
                .bind(through.0)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                match inserted {
                    Some(message_id) => Some(outbound_in(&mut tx, MessageId(message_id)).await?),
                    None => None,
                }
            }
        };
        tx.commit().await?;
        Ok(claimed)
    }

    async fn claim_outbound(&self, id: MessageId) -> Result<Option<OutboundSms>, StoreError> {
        // Claim and read in one transaction: a failure leaves the text
        // queued, never stranded in `sending`.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let claimed = sqlx::query(
            "UPDATE messages SET status = 'sending', attempts = attempts + 1
             WHERE id = ? AND direction = 'outbound' AND status = 'queued'",
        )
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(None);
        }
        let sms = outbound_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Some(sms))
    }

    async fn undelivered(&self, proactive: bool) -> Result<Vec<MessageId>, StoreError> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE direction = 'outbound' AND status IN ('queued', 'sending')
               AND (? OR kind NOT IN ('reminder', 'follow_up')) ORDER BY id",
        )
        .bind(proactive)
        .fetch_all(&self.reader)
        .await?;
        Ok(ids.into_iter().map(MessageId).collect())
    }

    async fn record_delivery(&self, id: MessageId, delivery: &Delivery) -> Result<(), StoreError> {
        let (status, sid, error) = match delivery {
            Delivery::Sent { sid } => ("sent", Some(sid.as_str()), None),
            Delivery::OptedOut => ("opted_out", None, Some("Twilio 21610: recipient opted out")),
            Delivery::Failed { error } => ("failed", None, Some(error.as_str())),
            Delivery::Unknown { error } => ("unknown", None, Some(error.as_str())),
            Delivery::Withheld { reason } => ("failed", None, Some(reason.as_str())),
        };
        let sent_at = matches!(delivery, Delivery::Sent { .. }).then(Utc::now);
        sqlx::query(
            "UPDATE messages SET status = ?, twilio_sid = ?, last_error = ?, sent_at = ? WHERE id = ?",
        )
        .bind(status)
        .bind(sid)
        .bind(error)
        .bind(sent_at)
        .bind(id.0)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn set_opted_out(&self, customer: CustomerId, opted_out: bool) -> Result<(), StoreError> {
        // COALESCE keeps the first opt-out time when STOP is sent twice.
        sqlx::query(
            "UPDATE customers SET opted_out_at = CASE WHEN ? THEN COALESCE(opted_out_at, ?) END WHERE id = ?",
        )
        .bind(opted_out)
        .bind(Utc::now())
        .bind(customer.0)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn record_alert(
        &self,
        kind: &str,
        conversation: Option<ConversationId>,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO alerts (kind, conversation_id, detail, created_at, business_id)
                         VALUES (?1, ?2, ?3, ?4, COALESCE((SELECT business_id FROM conversations WHERE id = ?2), 'default'))")
            .bind(kind)
            .bind(conversation.map(|c| c.0))
            .bind(detail)
            .bind(Utc::now())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn flood_reading(
        &self,
        id: ConversationId,
        since: DateTime<Utc>,
        limit: usize,
        day: NaiveDate,
        day_start: DateTime<Utc>,
    ) -> Result<FloodReading, StoreError> {
        // Only the newest `limit + 1` texts are looked at: an index walk,
        // however long the flood.
        let row = sqlx::query(
            "SELECT
                 (SELECT COUNT(*) FROM (SELECT created_at FROM messages
                     WHERE conversation_id = ?1 AND direction = 'inbound'
                     ORDER BY id DESC LIMIT ?2) WHERE created_at >= ?3) AS recent,
                 (SELECT created_at FROM messages
                     WHERE conversation_id = ?1 AND direction = 'outbound'
                     ORDER BY id DESC LIMIT 1) AS last_reply,
                 (SELECT m.calls FROM model_calls m JOIN conversations c ON c.customer_id = m.customer_id
                     WHERE c.id = ?1 AND m.day = ?4) AS calls,
                 EXISTS (SELECT 1 FROM alerts
                     WHERE conversation_id = ?1 AND kind = 'flood_throttled' AND created_at >= ?5) AS alerted",
        )
        .bind(id.0)
        .bind(limit as i64 + 1)
        .bind(since)
        .bind(day.to_string())
        .bind(day_start)
        .fetch_one(&self.reader)
        .await?;
        Ok(FloodReading {
            recent_texts: row.try_get::<i64, _>("recent")? as usize,
            last_reply_at: row.try_get("last_reply")?,
            model_calls_today: row
                .try_get::<Option<i64>, _>("calls")?
                .unwrap_or(0)
                .clamp(0, u32::MAX as i64) as u32,
            alerted_today: row.try_get("alerted")?,
        })
    }

    async fn alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query("SELECT kind, conversation_id, detail, created_at FROM alerts ORDER BY id")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Alert {
                    kind: row.try_get("kind")?,
                    conversation_id: row
                        .try_get::<Option<i64>, _>("conversation_id")?
                        .map(ConversationId),
                    detail: row.try_get("detail")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn find_conversation(
        &self,
        customer: &E164,
        business_number: &E164,
    ) -> Result<Option<ConversationId>, StoreError> {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT c.id FROM conversations c JOIN customers k ON k.id = c.customer_id
             WHERE k.phone = ? AND c.business_number = ?",
        )
        .bind(customer.as_str())
        .bind(business_number.as_str())
        .fetch_optional(&self.reader)
        .await?;
        Ok(id.map(ConversationId))
    }

    async fn conversation_business(&self, id: ConversationId) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT business_id FROM conversations WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    async fn adopt_legacy_rows(
        &self,
        business_id: &str,
        numbers: Option<&[String]>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let numbers_json = numbers.map(|n| serde_json::to_string(n).unwrap_or_else(|_| "[]".into()));
        // Conversations first (by the number they were written to, unless
        // this business answers every number), then what hangs off them.
        let adopted = sqlx::query(
            "UPDATE conversations SET business_id = ?1
             WHERE business_id = 'default'
               AND (?2 IS NULL OR business_number IN (SELECT value FROM json_each(?2)))",
        )
        .bind(business_id)
        .bind(&numbers_json)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for statement in [
            "UPDATE quotes SET business_id = ?1 WHERE business_id = 'default'
               AND conversation_id IN (SELECT id FROM conversations WHERE business_id = ?1)",
            "UPDATE bookings SET business_id = ?1 WHERE business_id = 'default'
               AND conversation_id IN (SELECT id FROM conversations WHERE business_id = ?1)",
            "UPDATE slot_holds SET business_id = ?1 WHERE business_id = 'default'
               AND conversation_id IN (SELECT id FROM conversations WHERE business_id = ?1)",
            "UPDATE alerts SET business_id = ?1 WHERE business_id = 'default'
               AND conversation_id IN (SELECT id FROM conversations WHERE business_id = ?1)",
        ] {
            sqlx::query(statement).bind(business_id).execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE customers SET business_id = ?1 WHERE business_id = 'default'
               AND id IN (SELECT customer_id FROM conversations WHERE business_id = ?1)",
        )
        .bind(business_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET business_id = ?1 WHERE business_id = 'default'
               AND (conversation_id IN (SELECT id FROM conversations WHERE business_id = ?1)
                    OR customer_id IN (SELECT id FROM customers WHERE business_id = ?1)
                    OR (?2 IS NULL AND conversation_id IS NULL AND customer_id IS NULL))",
        )
        .bind(business_id)
        .bind(&numbers_json)
        .execute(&mut *tx)
        .await?;
        if numbers.is_none() {
            // One business answers every number: whatever is left is its.
            for statement in [
                "UPDATE alerts SET business_id = ?1 WHERE business_id = 'default'",
                "UPDATE customers SET business_id = ?1 WHERE business_id = 'default'",
            ] {
                sqlx::query(statement).bind(business_id).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(adopted)
    }

    async fn messages(&self, id: ConversationId) -> Result<Vec<Message>, StoreError> {
        sqlx::query(
            "SELECT id, direction, kind, body, status, twilio_sid, num_media, json_extract(params, '$.OptOutType') AS opt_out_type, created_at
             FROM messages WHERE conversation_id = ? ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(message_from_row)
        .collect()
    }

    async fn provider_bookings(
        &self,
        business: &str,
        provider: &str,
        range: Interval,
        except: Option<&str>,
    ) -> Result<Vec<Interval>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT start_ms, end_ms FROM bookings
             WHERE business_id = ? AND provider_id = ? AND start_ms < ? AND end_ms > ? AND id IS NOT ?
               AND (status = 'confirmed' OR (status = 'pending' AND updated_ms > ?))",
        )
        .bind(business)
        .bind(provider)
        .bind(range.end.timestamp_millis())
        .bind(range.start.timestamp_millis())
        .bind(except)
        .bind(Utc::now().timestamp_millis() - STALE_PENDING_MINUTES * 60_000)
        .fetch_all(&self.writer)
        .await?;
        Ok(rows.into_iter().map(|(s, e)| interval(s, e)).collect())
    }

    async fn holds_of_others(&self, id: ConversationId, now: DateTime<Utc>) -> Result<Vec<Hold>, StoreError> {
        let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT provider_id, start_ms, end_ms, blocked_start_ms, blocked_end_ms FROM slot_holds
             WHERE conversation_id != ?1 AND expires_ms > ?2
               AND business_id = (SELECT business_id FROM conversations WHERE id = ?1)",
        )
        .bind(id.0)
        .bind(now.timestamp_millis())
        .fetch_all(&self.writer)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(provider_id, s, e, bs, be)| Hold {
                provider_id,
                slot: interval(s, e),
                blocked: interval(bs, be),
            })
            .collect())
    }

    async fn hold(
        &self,
        id: ConversationId,
        wanted: &[Hold],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        except_booking: Option<&str>,
    ) -> Result<Vec<Hold>, StoreError> {
        let now_ms = now.timestamp_millis();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM slot_holds WHERE conversation_id = ? OR expires_ms <= ?")
            .bind(id.0)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let mut granted = Vec::with_capacity(wanted.len());
        for h in wanted {
            if hold_conflicts(&mut tx, id, &h.provider_id, h.slot, h.blocked, now_ms).await?
                || booking_overlaps(&mut tx, id, &h.provider_id, h.blocked, except_booking).await?
            {
                continue;
            }
            sqlx::query(
                "INSERT INTO slot_holds (conversation_id, provider_id, start_ms, end_ms, blocked_start_ms, blocked_end_ms, expires_ms,
                                         business_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, (SELECT business_id FROM conversations WHERE id = ?1))",
            )
            .bind(id.0)
            .bind(&h.provider_id)
            .bind(h.slot.start.timestamp_millis())
            .bind(h.slot.end.timestamp_millis())
            .bind(h.blocked.start.timestamp_millis())
            .bind(h.blocked.end.timestamp_millis())
            .bind(expires_at.timestamp_millis())
            .execute(&mut *tx)
            .await?;
            granted.push(h.clone());
        }
        tx.commit().await?;
        Ok(granted)
    }

    async fn reserve_booking(
        &self,
        b: &BookingRecord,
        blocked: Interval,
        now: DateTime<Utc>,
    ) -> Result<Reservation, StoreError> {
        let written = Utc::now();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let existing = sqlx::query(
            "SELECT id, conversation_id, provider_id, calendar_id, start_ms, end_ms, label, status FROM bookings WHERE id = ?",
        )
        .bind(&b.id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let record = booking_from_row(&row)?;
            tx.commit().await?;
            return Ok(Reservation::Reserved(record));
        }
        let now_ms = now.timestamp_millis();
        if booking_overlaps(&mut tx, b.conversation_id, &b.provider_id, blocked, None).await?
            || hold_conflicts(
                &mut tx,
                b.conversation_id,
                &b.provider_id,
                b.slot,
                blocked,
                now_ms,
            )
            .await?
        {
            tx.rollback().await?;
            return Ok(Reservation::Conflict);
        }
        sqlx::query(
            "INSERT INTO bookings (id, conversation_id, provider_id, calendar_id, start_ms, end_ms, label, status,
                                   created_at, updated_at, updated_ms, business_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10,
                     (SELECT business_id FROM conversations WHERE id = ?2))",
        )
        .bind(&b.id)
        .bind(b.conversation_id.0)
        .bind(&b.provider_id)
        .bind(&b.calendar_id)
        .bind(b.slot.start.timestamp_millis())
        .bind(b.slot.end.timestamp_millis())
        .bind(&b.label)
        .bind(written)
        .bind(written)
        .bind(written.timestamp_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Reservation::Reserved(BookingRecord {
            status: BookingStatus::Pending,
            ..b.clone()
        }))
    }

    async fn booking_generation(&self, id: ConversationId) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM bookings WHERE conversation_id = ? AND status = 'cancelled'",
        )
        .bind(id.0)
        .fetch_one(&self.writer)
        .await?;
        Ok(n as u32)
    }

    async fn update_booking(
        &self,
        id: &str,
        status: BookingStatus,
        moved_to: Option<(&str, &str, Interval, &str)>,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        match moved_to {
            None => {
                sqlx::query("UPDATE bookings SET status = ?, updated_at = ?, updated_ms = ? WHERE id = ?")
                    .bind(status.as_str())
                    .bind(now)
                    .bind(now.timestamp_millis())
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
            }
            Some((provider, calendar, slot, label)) => {
                sqlx::query(
                    "UPDATE bookings SET status = ?, provider_id = ?, calendar_id = ?, start_ms = ?, end_ms = ?,
                                         label = ?, updated_at = ?, updated_ms = ?
                     WHERE id = ?",
                )
                .bind(status.as_str())
                .bind(provider)
                .bind(calendar)
                .bind(slot.start.timestamp_millis())
                .bind(slot.end.timestamp_millis())
                .bind(label)
                .bind(now)
                .bind(now.timestamp_millis())
                .bind(id)
                .execute(&self.writer)
                .await?;
            }
        }
        Ok(())
    }

    async fn booking(&self, id: &str) -> Result<Option<BookingRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, conversation_id, provider_id, calendar_id, start_ms, end_ms, label, status FROM bookings WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(booking_from_row).transpose()
    }

    async fn bookings(&self) -> Result<Vec<BookingRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, conversation_id, provider_id, calendar_id, start_ms, end_ms, label, status FROM bookings ORDER BY rowid",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(booking_from_row).collect()
    }

    async fn enqueue_jobs(&self, jobs: &[NewJob]) -> Result<usize, StoreError> {
        let now = Utc::now();
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
        let rows = sqlx::query(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_until_ms = ?1, updated_at = ?2
             WHERE id IN (SELECT id FROM jobs WHERE status = 'pending' AND run_at_ms <= ?3 ORDER BY run_at_ms LIMIT ?4)
                -- A claim whose lease ran out: its worker died.
                OR id IN (SELECT id FROM jobs WHERE status = 'running' AND locked_until_ms < ?3 LIMIT ?4)
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

    async fn finish_job(&self, id: i64, outcome: &JobOutcome) -> Result<(), StoreError> {
        let now = Utc::now();
        let (status, run_at, error, result, uncount) = match outcome {
            JobOutcome::Done { result } => ("done", None, None, result.clone(), false),
            JobOutcome::Retry { at, error } => ("pending", Some(*at), Some(error.clone()), None, false),
            JobOutcome::Dead { error } => ("dead", None, Some(error.clone()), None, false),
            JobOutcome::Defer { at } => ("pending", Some(*at), None, None, true),
            JobOutcome::Cancelled { reason } => ("cancelled", None, Some(reason.clone()), None, false),
        };
        sqlx::query(
            "UPDATE jobs SET status = ?, run_at_ms = COALESCE(?, run_at_ms), last_error = COALESCE(?, last_error),
                             result = COALESCE(?, result), attempts = attempts - ?, locked_until_ms = NULL, updated_at = ?
             WHERE id = ?",
        )
        .bind(status)
        .bind(run_at.map(|t| t.timestamp_millis()))
        .bind(error)
        .bind(result)
        .bind(uncount as i64)
        .bind(now)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
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
                .bind(Utc::now())
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

    async fn queue_job_message(
        &self,
        id: ConversationId,
        job_id: i64,
        draft: OutboundDraft,
    ) -> Result<Option<OutboundSms>, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO messages (conversation_id, direction, kind, body, status, attempts, job_id, created_at)
             VALUES (?, 'outbound', ?, ?, 'sending', 1, ?, ?)
             ON CONFLICT (job_id) WHERE job_id IS NOT NULL DO NOTHING
             RETURNING id",
        )
        .bind(id.0)
        .bind(draft.kind)
        .bind(&draft.body)
        .bind(job_id)
        .bind(Utc::now())
        .fetch_optional(&mut *tx)
        .await?;
        let message_id = match inserted {
            Some(message_id) => Some(message_id),
            // This job's text exists: send it again only if it failed (a
            // retry), never if it was sent or may have been.
            None => {
                sqlx::query_scalar(
                    "UPDATE messages SET status = 'sending', attempts = attempts + 1
                 WHERE job_id = ? AND status IN ('failed', 'queued') RETURNING id",
                )
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        let sms = match message_id {
            Some(message_id) => Some(outbound_in(&mut tx, MessageId(message_id)).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(sms)
    }

    async fn last_inbound_at(&self, id: ConversationId) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(created_at) FROM messages WHERE conversation_id = ? AND direction = 'inbound'",
        )
        .bind(id.0)
        .fetch_one(&self.reader)
        .await?)
    }

    async fn message_media(&self, id: MessageId) -> Result<Vec<MediaItem>, StoreError> {
        sqlx::query(
            "SELECT id, message_id, conversation_id, position, url, content_type, status, size, last_error
             FROM media WHERE message_id = ? ORDER BY position",
        )
        .bind(id.0)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(media_from_row)
        .collect()
    }

    async fn media_item(&self, id: i64) -> Result<Option<MediaItem>, StoreError> {
        sqlx::query(
            "SELECT id, message_id, conversation_id, position, url, content_type, status, size, last_error
             FROM media WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(media_from_row)
        .transpose()
    }

    async fn record_media_fetch(&self, id: i64, fetch: &MediaFetch) -> Result<(), StoreError> {
        let (status, bytes, error) = match fetch {
            MediaFetch::Fetched(bytes) => (MediaStatus::Fetched, Some(bytes.as_slice()), None),
            MediaFetch::TooLarge => (MediaStatus::TooLarge, None, None),
            MediaFetch::Refused => (MediaStatus::Refused, None, None),
            MediaFetch::Failed(error) => (MediaStatus::Failed, None, Some(error.as_str())),
        };
        sqlx::query(
            "UPDATE media SET status = ?, bytes = ?, size = ?, last_error = ?, fetched_at = ?
             WHERE id = ? AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(bytes)
        .bind(bytes.map(|b| b.len() as i64))
        .bind(error)
        .bind(Utc::now())
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn conversation_photos(
        &self,
        id: ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredImage>, StoreError> {
        let rows = sqlx::query(
            "SELECT message_id, position, content_type, status, bytes FROM (
                 SELECT * FROM media
                 WHERE conversation_id = ? AND status IN ('fetched', 'pending') AND content_type LIKE 'image/%'
                 ORDER BY message_id DESC, position DESC LIMIT ?)
             ORDER BY message_id, position",
        )
        .bind(id.0)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredImage {
                    message_id: MessageId(row.try_get("message_id")?),
                    position: row.try_get("position")?,
                    content_type: row.try_get("content_type")?,
                    status: media_status(row)?,
                    data: row.try_get("bytes")?,
                })
            })
            .collect()
    }

    async fn apply_status_report(&self, report: &StatusReport) -> Result<ReceiptApplied, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let Some(row) = sqlx::query(
            "SELECT m.id, m.conversation_id, m.kind, m.delivery_status, c.customer_id, k.phone
             FROM messages m
             JOIN conversations c ON c.id = m.conversation_id
             JOIN customers k ON k.id = c.customer_id
             WHERE m.twilio_sid = ? AND m.direction = 'outbound'",
        )
        .bind(&report.message_sid)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(ReceiptApplied::UnknownMessage);
        };
        let id: i64 = row.try_get("id")?;
        let current = row
            .try_get::<Option<String>, _>("delivery_status")?
            .map(|raw| parse_delivery_status(&raw))
            .transpose()?;
        let advances = crate::domain::delivery::advances(current, report.status);
        let now = Utc::now();
        let new = sqlx::query(
            "INSERT INTO delivery_receipts (message_id, status, error_code, applied, received_at)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id, status) DO NOTHING",
        )
        .bind(id)
        .bind(report.status.as_str())
        .bind(report.error_code)
        .bind(advances)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !new {
            return Ok(ReceiptApplied::Repeated);
        }
        if !advances {
            tx.commit().await?;
            return Ok(ReceiptApplied::Late { current });
        }
        sqlx::query(
            "UPDATE messages SET delivery_status = ?, delivery_error_code = ?, delivery_updated_at = ?
             WHERE id = ?",
        )
        .bind(report.status.as_str())
        .bind(report.error_code)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ReceiptApplied::Advanced(ReceiptedText {
            id: MessageId(id),
            conversation_id: ConversationId(row.try_get("conversation_id")?),
            customer_id: CustomerId(row.try_get("customer_id")?),
            to: parse_phone(row.try_get("phone")?)?,
            kind: row.try_get("kind")?,
            status: report.status,
            error_code: report.error_code,
        }))
    }

    async fn job_text_deliveries(&self, job_ids: &[i64]) -> Result<Vec<TextDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT job_id, status, delivery_status, delivery_error_code FROM messages
             WHERE job_id IN (SELECT value FROM json_each(?)) ORDER BY job_id",
        )
        .bind(serde_json::to_string(job_ids).unwrap_or_else(|_| "[]".into()))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TextDelivery {
                    job_id: row.try_get("job_id")?,
                    send_status: row.try_get("status")?,
                    receipt: row
                        .try_get::<Option<String>, _>("delivery_status")?
                        .map(|raw| parse_delivery_status(&raw))
                        .transpose()?,
                    error_code: row.try_get("delivery_error_code")?,
                })
            })
            .collect()
    }

    async fn delivery_receipt(
        &self,
        id: MessageId,
    ) -> Result<Option<(DeliveryStatus, Option<i64>)>, StoreError> {
        let row: Option<(Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT delivery_status, delivery_error_code FROM messages WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&self.reader)
                .await?;
        match row {
            Some((Some(raw), code)) => Ok(Some((parse_delivery_status(&raw)?, code))),
            _ => Ok(None),
        }
    }
}

fn parse_delivery_status(raw: &str) -> Result<DeliveryStatus, StoreError> {
    DeliveryStatus::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("delivery status `{raw}`")))
}

fn interval(start_ms: i64, end_ms: i64) -> Interval {
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    Interval {
        start: at(start_ms),
        end: at(end_ms),
    }
}

fn booking_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<BookingRecord, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(BookingRecord {
        id: row.try_get("id")?,
        conversation_id: ConversationId(row.try_get("conversation_id")?),
        provider_id: row.try_get("provider_id")?,
        calendar_id: row.try_get("calendar_id")?,
        slot: interval(row.try_get("start_ms")?, row.try_get("end_ms")?),
        label: row.try_get("label")?,
        status: match status.as_str() {
            "pending" => BookingStatus::Pending,
            "confirmed" => BookingStatus::Confirmed,
            "cancelled" => BookingStatus::Cancelled,
            other => return Err(StoreError::Corrupt(format!("booking status `{other}`"))),
        },
    })
}

/// How many of a turn's images carry their bytes: the newest ones. Enough
/// to size a job from several angles, and it keeps a model request well
/// under the API's size limit (each image is at most 5 MB).
pub const TURN_IMAGES_WITH_DATA: usize = 4;

/// The images of the texts in `history`, oldest first; bytes for the newest
/// fetched few.
async fn history_images(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: ConversationId,
    history: &[Message],
) -> Result<Vec<StoredImage>, StoreError> {
    let Some(first) = history.iter().filter(|m| m.num_media > 0).map(|m| m.id.0).min() else {
        return Ok(Vec::new());
    };
    let in_history: std::collections::HashSet<i64> = history.iter().map(|m| m.id.0).collect();
    let rows = sqlx::query(
        "SELECT id, message_id, position, content_type, status FROM media
         WHERE conversation_id = ? AND message_id >= ? AND content_type LIKE 'image/%'
         ORDER BY message_id, position",
    )
    .bind(id.0)
    .bind(first)
    .fetch_all(&mut **tx)
    .await?;
    let mut images = Vec::new();
    let mut media_ids = Vec::new();
    for row in &rows {
        let message_id: i64 = row.try_get("message_id")?;
        if !in_history.contains(&message_id) {
            continue;
        }
        media_ids.push(row.try_get::<i64, _>("id")?);
        images.push(StoredImage {
            message_id: MessageId(message_id),
            position: row.try_get("position")?,
            content_type: row.try_get("content_type")?,
            status: media_status(row)?,
            data: None,
        });
    }
    let mut with_data = 0;
    for (image, media_id) in images.iter_mut().zip(&media_ids).rev() {
        if with_data == TURN_IMAGES_WITH_DATA {
            break;
        }
        if image.status == MediaStatus::Fetched {
            image.data = sqlx::query_scalar("SELECT bytes FROM media WHERE id = ?")
                .bind(media_id)
                .fetch_one(&mut **tx)
                .await?;
            with_data += 1;
        }
    }
    Ok(images)
}

fn media_status(row: &sqlx::sqlite::SqliteRow) -> Result<MediaStatus, StoreError> {
    let status: String = row.try_get("status")?;
    MediaStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("media status `{status}`")))
}

fn media_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<MediaItem, StoreError> {
    Ok(MediaItem {
        id: row.try_get("id")?,
        message_id: MessageId(row.try_get("message_id")?),
        conversation_id: ConversationId(row.try_get("conversation_id")?),
        position: row.try_get("position")?,
        url: row.try_get("url")?,
        content_type: row.try_get("content_type")?,
        status: media_status(row)?,
        size: row.try_get("size")?,
        last_error: row.try_get("last_error")?,
    })
}

/// Inserts a job unless its dedupe key exists; true if it was new.
async fn insert_job(
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

/// Whether a live hold of a conversation other than `id` conflicts with a
/// job of `provider` in `slot` blocking `blocked`: either one's slot
/// overlaps what the other blocks.
async fn hold_conflicts(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: ConversationId,
    provider: &str,
    slot: Interval,
    blocked: Interval,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM slot_holds
         WHERE provider_id = ?1 AND conversation_id != ?2 AND expires_ms > ?3
           AND ((start_ms < ?4 AND end_ms > ?5) OR (blocked_start_ms < ?6 AND blocked_end_ms > ?7))
           AND business_id = (SELECT business_id FROM conversations WHERE id = ?2)",
    )
    .bind(provider)
    .bind(id.0)
    .bind(now_ms)
    .bind(blocked.end.timestamp_millis())
    .bind(blocked.start.timestamp_millis())
    .bind(slot.end.timestamp_millis())
    .bind(slot.start.timestamp_millis())
    .fetch_one(&mut **tx)
    .await?;
    Ok(n > 0)
}

/// Whether a live (confirmed, or recently pending) booking of `provider`
/// other than `except` overlaps `blocked`.
async fn booking_overlaps(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    conversation: ConversationId,
    provider: &str,
    blocked: Interval,
    except: Option<&str>,
) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM bookings
         WHERE provider_id = ? AND start_ms < ? AND end_ms > ? AND id IS NOT ?
           AND (status = 'confirmed' OR (status = 'pending' AND updated_ms > ?))
           AND business_id = (SELECT business_id FROM conversations WHERE id = ?)",
    )
    .bind(provider)
    .bind(blocked.end.timestamp_millis())
    .bind(blocked.start.timestamp_millis())
    .bind(except)
    // `updated_ms` is written by the clock, so staleness is judged by it.
    .bind(Utc::now().timestamp_millis() - STALE_PENDING_MINUTES * 60_000)
    .bind(conversation.0)
    .fetch_one(&mut **tx)
    .await?;
    Ok(n > 0)
}
