//! The conversation port on SQLite.

use super::usage::stored;
use super::*;

/// `finish_turn`'s statements, as macros so that each combination is one
/// `&'static str` (one cached list of prepared statements); see
/// [`finish_turn_sql`]. ?1 the conversation, ?2 the last text answered, ?3
/// now, ?4 the state; ?5-?6 the reply's kind and body; ?7-?9 the model
/// calls' customer, day and count; ?10-?13 their input, cache-read,
/// cache-write and output tokens.
///
/// Numbered so that every statement uses the low numbers: sqlx binds a
/// statement's unused numbers below its highest from the arguments no
/// earlier statement of the list used, and stops binding the statement
/// (leaving even its used numbers NULL) once those run out.
///
/// The state is set only while texts up to ?2 are pending, and then the
/// row it returns says they were: a rerun of a committed turn changes
/// nothing but its model calls.
macro_rules! finish_turn_state {
    () => {
        "UPDATE conversations
             SET state_changed_at = CASE WHEN state IS ?4 THEN state_changed_at ELSE ?3 END, state = ?4,
                 updated_at = ?3
             WHERE id = ?1 AND EXISTS (SELECT 1 FROM messages
                 WHERE conversation_id = ?1 AND direction = 'inbound' AND status = 'pending' AND id <= ?2)
             RETURNING 'answered' AS part;"
    };
}

/// Stores the reply already claimed (one per text it answers, and only
/// while those texts are pending), returning `outbound_in`'s columns.
macro_rules! finish_turn_reply {
    () => {
        "INSERT INTO messages
                 (conversation_id, direction, kind, body, status, attempts, reply_to_id, created_at)
             SELECT ?1, 'outbound', ?5, ?6, 'sending', 1, ?2, ?3
             WHERE EXISTS (SELECT 1 FROM messages
                 WHERE conversation_id = ?1 AND direction = 'inbound' AND status = 'pending' AND id <= ?2)
             ON CONFLICT (reply_to_id) DO NOTHING
             RETURNING 'reply' AS part, id, conversation_id, body, kind, attempts, created_at,
                 (SELECT k.phone FROM conversations c JOIN customers k ON k.id = c.customer_id
                   WHERE c.id = messages.conversation_id) AS phone,
                 (SELECT business_number FROM conversations c
                   WHERE c.id = messages.conversation_id) AS business_number,
                 (SELECT customer_id FROM conversations c
                   WHERE c.id = messages.conversation_id) AS customer_id,
                 (SELECT MAX(i.created_at) FROM messages i
                   WHERE i.conversation_id = messages.conversation_id AND i.direction = 'inbound')
                     AS last_inbound_at,
                 -- As in `outbound_in`.
                 (SELECT k.opted_out_at IS NOT NULL FROM conversations c
                    JOIN customers k ON k.id = c.customer_id WHERE c.id = messages.conversation_id)
                   AND kind NOT IN ('opt_out_confirmation', 'help') AS opted_out;"
    };
}

/// The texts up to ?2 answered (after the statements that ask whether
/// they were pending).
macro_rules! finish_turn_answered {
    () => {
        "UPDATE messages SET status = 'handled'
             WHERE conversation_id = ?1 AND direction = 'inbound' AND status = 'pending' AND id <= ?2;"
    };
}

/// Adds the turn's model calls to the customer's day and stores its usage,
/// answered or not: they were made all the same.
macro_rules! finish_turn_count_model_calls {
    () => {
        "INSERT INTO model_calls (customer_id, day, calls) VALUES (?7, ?8, ?9)
             ON CONFLICT (customer_id, day) DO UPDATE SET calls = calls + excluded.calls;
         INSERT INTO turn_usage (conversation_id, through_message_id, model_calls, input_tokens,
                                 cache_read_tokens, cache_write_tokens, output_tokens, created_at)
             VALUES (?1, ?2, ?9, ?10, ?11, ?12, ?13, ?3);"
    };
}

/// `finish_turn`'s statements for a turn with or without model calls and
/// a reply; `whole` wraps them in their own BEGIN IMMEDIATE and COMMIT,
/// for a turn that writes nothing else (the common case: the whole commit
/// is then one round trip to the writer's thread).
fn finish_turn_sql(model_calls: bool, reply: bool, whole: bool) -> &'static str {
    macro_rules! list {
        ($($part:expr),*) => {
            if whole {
                concat!("BEGIN IMMEDIATE;", $($part,)* "COMMIT;")
            } else {
                concat!($($part),*)
            }
        };
    }
    match (model_calls, reply) {
        (false, false) => list!(finish_turn_state!(), finish_turn_answered!()),
        (true, false) => list!(
            finish_turn_state!(),
            finish_turn_answered!(),
            finish_turn_count_model_calls!()
        ),
        (false, true) => list!(
            finish_turn_state!(),
            finish_turn_reply!(),
            finish_turn_answered!()
        ),
        (true, true) => list!(
            finish_turn_state!(),
            finish_turn_reply!(),
            finish_turn_answered!(),
            finish_turn_count_model_calls!()
        ),
    }
}

/// What `finish_turn_sql`'s statements returned: whether the turn's texts
/// were still pending, and its reply as stored.
fn finish_turn_rows(rows: &[sqlx::sqlite::SqliteRow]) -> Result<(bool, Option<OutboundMessage>), StoreError> {
    let mut answered = false;
    let mut claimed = None;
    for row in rows {
        match row.try_get::<&str, _>("part")? {
            "answered" => answered = true,
            _ => claimed = Some(outbound_from_row(MessageId(row.try_get("id")?), row)?),
        }
    }
    Ok((answered, claimed))
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn record_inbound(&self, inbound: &InboundMessage) -> Result<Recorded, StoreError> {
        let (waiter, outcome) = tokio::sync::oneshot::channel();
        let closed = || StoreError::Database(sqlx::Error::PoolClosed);
        self.inbound
            .send((inbound.clone(), waiter))
            .await
            .map_err(|_| closed())?;
        outcome.await.map_err(|_| closed())?
    }

    async fn claim_next_pending(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedConversation>, StoreError> {
        use std::sync::atomic::Ordering;
        let now = self.now_ms();
        // Most wake-ups of an idle desk find nothing to claim; answer those
        // from a reader instead of queueing on the one writer. Under load,
        // when the last claim saw more work waiting, that question is a
        // round trip answered "yes" nearly every time: skip it.
        if !self.last_claim_found_work.load(Ordering::Relaxed) && !self.anything_to_claim(now).await? {
            return Ok(None);
        }
        let claimed: Option<(i64, String, bool)> = sqlx::query_as(
            "UPDATE conversations SET lease_owner = ?1, lease_until_ms = ?2
             WHERE id = (
                 SELECT m.conversation_id FROM messages m
                 JOIN conversations c ON c.id = m.conversation_id
                 WHERE m.direction = 'inbound' AND m.status = 'pending'
                   AND (c.lease_until_ms IS NULL OR c.lease_until_ms < ?3)
                 ORDER BY m.id LIMIT 1)
             RETURNING id, business_id,
                 -- Evaluated after the update (SQLite's RETURNING), so the
                 -- row just claimed already carries its lease and is left
                 -- out by the lease test itself.
                 EXISTS (SELECT 1 FROM messages m
                     JOIN conversations c ON c.id = m.conversation_id
                     WHERE m.direction = 'inbound' AND m.status = 'pending'
                       AND (c.lease_until_ms IS NULL OR c.lease_until_ms < ?3)) AS more",
        )
        .bind(worker)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        self.last_claim_found_work.store(
            claimed.as_ref().is_some_and(|(_, _, more)| *more),
            Ordering::Relaxed,
        );
        Ok(claimed.map(|(id, business_id, more)| ClaimedConversation {
            id: ConversationId(id),
            business_id,
            more,
        }))
    }

    async fn claim(&self, id: ConversationId, worker: &str, lease: Duration) -> Result<bool, StoreError> {
        let now = self.now_ms();
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

    async fn release(&self, id: ConversationId, worker: &str) -> Result<bool, StoreError> {
        let waiting: Option<bool> = sqlx::query_scalar(
            "UPDATE conversations SET lease_owner = NULL, lease_until_ms = NULL WHERE id = ?1 AND lease_owner = ?2
             RETURNING EXISTS (SELECT 1 FROM messages WHERE conversation_id = ?1
                               AND direction = 'inbound' AND status = 'pending')",
        )
        .bind(id.0)
        .bind(worker)
        .fetch_optional(&self.writer)
        .await?;
        Ok(waiting.unwrap_or(true))
    }

    async fn turn_input(&self, id: ConversationId, history_limit: usize) -> Result<TurnInput, StoreError> {
        // The flood columns cost a few index lookups; nobody reads them here.
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
        let state_json = serde_json::to_string(&state)
            .map_err(|e| StoreError::Corrupt(format!("state does not serialize: {e}")))?;
        let now = self.now();
        let only_core = new_quotes.is_empty()
            && alerts.is_empty()
            && jobs.is_empty()
            && cancel_jobs.is_empty()
            && held.is_none()
            && spoken.is_none();
        // With a held reply, the reply (the holding text, if any) is
        // written after it, answering nothing: see below.
        let sql = finish_turn_sql(
            model_calls.is_some(),
            reply.is_some() && held.is_none(),
            only_core,
        );
        let query = sqlx::query(sql)
            .bind(id.0)
            .bind(through.0)
            .bind(now)
            .bind(&state_json)
            .bind(reply.as_ref().map(|r| r.kind.as_str()))
            .bind(reply.as_ref().map(|r| r.body.as_str()))
            .bind(model_calls.as_ref().map(|c| c.customer.0))
            .bind(model_calls.as_ref().map(|c| c.day.to_string()))
            .bind(model_calls.as_ref().map(|c| c.calls as i64))
            .bind(model_calls.as_ref().map(|c| stored(c.tokens.input)))
            .bind(model_calls.as_ref().map(|c| stored(c.tokens.cache_read)))
            .bind(model_calls.as_ref().map(|c| stored(c.tokens.cache_write)))
            .bind(model_calls.as_ref().map(|c| stored(c.tokens.output)));
        // `fetch_all`, not `fetch_optional`: sqlx stops a statement list at
        // the first row when asked for one, and the rest must run.
        if only_core {
            let mut conn = WholeTransaction::acquire(&self.writer).await?;
            let rows = query.fetch_all(conn.connection()).await?;
            conn.committed();
            return Ok(finish_turn_rows(&rows)?.1);
        }
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let (answered, claimed) = finish_turn_rows(&query.fetch_all(&mut *tx).await?)?;
        if !answered {
            // Another run of this turn (an expired lease, a crash rerun)
            // already committed it; its state and reply stand, and only
            // its model calls are added.
            tx.commit().await?;
            return Ok(None);
        }
        set_in_motion(&mut tx, id, &cancel_jobs, &jobs, &alerts, now).await?;
        insert_quotes(&mut tx, id, &new_quotes).await?;
        if let (Some(sid), Some(reply), None) = (&spoken, &claimed, &held) {
            // Spoken on a call: delivered, in the commit that stores it.
            sqlx::query(
                "UPDATE messages SET status = 'sent', channel_message_id = ?, sent_at = ? WHERE id = ?",
            )
            .bind(sid)
            .bind(now)
            .bind(reply.id.0)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(draft) = &held {
            sqlx::query(
                "INSERT INTO messages
                     (conversation_id, direction, kind, body, status, attempts, reply_to_id, created_at)
                 VALUES (?, 'outbound', ?, ?, 'held', 0, ?, ?)
                 ON CONFLICT (reply_to_id) DO NOTHING",
            )
            .bind(id.0)
            .bind(draft.kind.as_str())
            .bind(&draft.body)
            .bind(through.0)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // A held reply is the answer to `through`; the text sent now is
        // then only the holding text, which answers nothing.
        let claimed = match (held.is_some(), reply) {
            (true, Some(draft)) => {
                let inserted: i64 = sqlx::query_scalar(
                    "INSERT INTO messages
                         (conversation_id, direction, kind, body, status, attempts, reply_to_id, created_at)
                     VALUES (?, 'outbound', ?, ?, 'sending', 1, NULL, ?)
                     RETURNING id",
                )
                .bind(id.0)
                .bind(draft.kind.as_str())
                .bind(&draft.body)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                Some(outbound_in(&mut tx, MessageId(inserted)).await?)
            }
            _ => claimed,
        };
        tx.commit().await?;
        Ok(claimed)
    }

    async fn set_opted_out(&self, customer: CustomerId, opted_out: bool) -> Result<(), StoreError> {
        // COALESCE keeps the first opt-out time when STOP is sent twice.
        sqlx::query(
            "UPDATE customers SET opted_out_at = CASE WHEN ? THEN COALESCE(opted_out_at, ?) END WHERE id = ?",
        )
        .bind(opted_out)
        .bind(self.now())
        .bind(customer.0)
        .execute(&self.writer)
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

    async fn messages(&self, id: ConversationId) -> Result<Vec<Message>, StoreError> {
        sqlx::query(
            "SELECT id, direction, kind, body, status, channel_message_id, num_media, opt_out_keyword, created_at
             FROM messages WHERE conversation_id = ? ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(message_from_row)
        .collect()
    }

    async fn last_inbound_at(&self, id: ConversationId) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(created_at) FROM messages WHERE conversation_id = ? AND direction = 'inbound'",
        )
        .bind(id.0)
        .fetch_one(&self.reader)
        .await?)
    }

    async fn commit_owner_action(
        &self,
        id: ConversationId,
        commit: &OwnerCommit,
    ) -> Result<Option<MessageId>, StoreError> {
        let state_json = serde_json::to_string(&commit.state)
            .map_err(|e| StoreError::Corrupt(format!("state does not serialize: {e}")))?;
        let now = self.now();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let updated = sqlx::query(
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
                     VALUES (?, 'outbound', ?, ?, 'queued', 0, ?)
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
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let customer_id: i64 = sqlx::query_scalar(
            "INSERT INTO customers (business_id, phone, created_at) VALUES (?, ?, ?)
             ON CONFLICT (business_id, phone) DO UPDATE SET phone = excluded.phone
             RETURNING id",
        )
        .bind(business_id)
        .bind(owner_phone.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let conversation_id: i64 = sqlx::query_scalar(
            "INSERT INTO conversations (customer_id, business_number, created_at, updated_at, business_id)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (customer_id, business_number) DO UPDATE SET business_number = excluded.business_number
             RETURNING id",
        )
        .bind(customer_id)
        .bind(business_number.as_str())
        .bind(now)
        .bind(now)
        .bind(business_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ConversationId(conversation_id))
    }
}

/// Resolves the conversation's open alerts of `kinds`, as the owner's.
pub(super) async fn resolve_alerts(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: ConversationId,
    kinds: &[AlertKind],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for kind in kinds {
        sqlx::query(
            "UPDATE alerts SET resolved_at = ?, resolved_by = 'owner'
             WHERE conversation_id = ? AND kind = ? AND resolved_at IS NULL",
        )
        .bind(now)
        .bind(id.0)
        .bind(kind.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// What a commit sets in motion beside its state: jobs cancelled and
/// queued, and the owner's alerts.
pub(super) async fn set_in_motion(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: ConversationId,
    cancel_jobs: &[String],
    jobs: &[NewJob],
    alerts: &[NewAlert],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for prefix in cancel_jobs {
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled', updated_at = ?
             WHERE conversation_id = ? AND status IN ('pending', 'suspended') AND substr(dedupe_key, 1, ?) = ?",
        )
        .bind(now)
        .bind(id.0)
        .bind(prefix.len() as i64)
        .bind(prefix)
        .execute(&mut **tx)
        .await?;
    }
    for job in jobs {
        insert_job(tx, job, now).await?;
    }
    for alert in alerts {
        sqlx::query("INSERT INTO alerts (kind, conversation_id, detail, created_at, business_id)
                     VALUES (?1, ?2, ?3, ?4, COALESCE((SELECT business_id FROM conversations WHERE id = ?2), 'default'))")
            .bind(alert.kind.as_str())
            .bind(id.0)
            .bind(&alert.detail)
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn insert_quotes(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: ConversationId,
    quotes: &[Quote],
) -> Result<(), StoreError> {
    for quote in quotes {
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
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl SqliteStore {
    /// Whether any conversation has a text waiting and no live lease.
    async fn anything_to_claim(&self, now_ms: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (
                 SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id
                 WHERE m.direction = 'inbound' AND m.status = 'pending'
                   AND (c.lease_until_ms IS NULL OR c.lease_until_ms < ?))",
        )
        .bind(now_ms)
        .fetch_one(&self.reader)
        .await?)
    }

    /// A turn's input and flood reading in one statement. A statement is
    /// its own snapshot, so a text arriving meanwhile is in neither
    /// `pending` nor `history` (not in one only), with no BEGIN and COMMIT
    /// round trips; the lists come back as JSON arrays in the one row,
    /// because sqlx hands every row across from the connection's thread on
    /// its own (each round trip to that thread costs two thread switches,
    /// which dominated the server's CPU at 500 texts a second).
    async fn read_turn(
        &self,
        id: ConversationId,
        history_limit: usize,
        window: &FloodWindow,
    ) -> Result<(TurnInput, FloodReading), StoreError> {
        // Messages are `json_array(id, direction, kind, body, status,
        // channel_message_id, num_media, opt_out_keyword, created_at)`.
        // `history` is in conversation order, not insertion order: a reply
        // sorts right after the last text it answers, before texts that
        // arrived while it was being written. Replies that never reached the
        // customer are left out; `unknown` ones probably did, so they stay.
        // The flood reading looks only at the newest `limit + 1` texts: an
        // index walk, however long the flood. `LIMIT +?`, not `LIMIT ?`:
        // SQLite plans a bare bound LIMIT for its value, and so recompiles
        // the statement every time the value is bound again, i.e. on every
        // turn (the profile's `sqlite3Reprepare`); an expression it does not.
        let row = sqlx::query(
            "SELECT c.customer_id, c.business_number, k.phone, k.opted_out_at IS NOT NULL AS opted_out, c.state,
                    NOT EXISTS (SELECT 1 FROM messages WHERE conversation_id = ?1 AND direction = 'outbound')
                        AS first_contact,
                    (SELECT MAX(created_at) FROM messages
                      WHERE conversation_id = ?1 AND NOT (direction = 'inbound' AND status = 'pending'))
                        AS last_activity,
                    (SELECT profile_name FROM messages
                      WHERE conversation_id = ?1 AND direction = 'inbound'
                        AND profile_name <> ''
                      ORDER BY id DESC LIMIT 1) AS profile_name,
                    (SELECT json_group_array(json_array(id, direction, kind, body, status, channel_message_id,
                                                        num_media, opt_out_keyword, created_at) ORDER BY id)
                       FROM messages
                      WHERE conversation_id = ?1 AND direction = 'inbound' AND status = 'pending') AS pending,
                    (SELECT json_group_array(json_array(id, direction, kind, body, status, channel_message_id,
                                                        num_media, opt_out_keyword, created_at)
                                             ORDER BY position, id)
                       FROM (SELECT *, COALESCE(reply_to_id, id) AS position FROM messages
                              WHERE conversation_id = ?1
                                AND (direction = 'inbound' OR status IN ('queued', 'sending', 'sent', 'unknown'))
                              ORDER BY position DESC, id DESC LIMIT +?2)) AS history,
                    (SELECT json_group_array(json(quote) ORDER BY created_at, seq)
                       FROM (SELECT quote, created_at, rowid AS seq FROM quotes WHERE conversation_id = ?1
                              ORDER BY created_at DESC, rowid DESC LIMIT 20)) AS quotes,
                    (SELECT COUNT(*) FROM (SELECT created_at FROM messages
                        WHERE conversation_id = ?1 AND direction = 'inbound'
                        ORDER BY id DESC LIMIT +?3) WHERE created_at >= ?4) AS recent,
                    (SELECT created_at FROM messages
                        WHERE conversation_id = ?1 AND direction = 'outbound'
                        ORDER BY id DESC LIMIT 1) AS last_reply,
                    (SELECT m.calls FROM model_calls m
                        WHERE m.customer_id = c.customer_id AND m.day = ?5) AS calls,
                    EXISTS (SELECT 1 FROM alerts
                        WHERE conversation_id = ?1 AND kind = 'flood_throttled' AND created_at >= ?6) AS alerted
             FROM conversations c JOIN customers k ON k.id = c.customer_id WHERE c.id = ?1",
        )
        .bind(id.0)
        .bind(history_limit as i64)
        .bind(window.limit as i64 + 1)
        .bind(window.since)
        .bind(window.day.to_string())
        .bind(window.day_start)
        .fetch_optional(&self.reader)
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
        let pending = crate::store::message_json::messages_from_json(row.try_get("pending")?)?;
        let history = crate::store::message_json::messages_from_json(row.try_get("history")?)?;
        let state = match row.try_get::<Option<String>, _>("state")? {
            None => ConversationState::default(),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("conversation {} state: {e}", id.0)))?,
        };
        let quotes: Vec<Quote> = serde_json::from_str(row.try_get("quotes")?)
            .map_err(|e| StoreError::Corrupt(format!("quote: {e}")))?;
        // Only texts with media need a second read: their images' rows can
        // only have been added or fetched since, never removed.
        let images = if history.iter().any(|m| m.num_media > 0) {
            let mut conn = self.reader.acquire().await?;
            history_images(&mut conn, id, &history).await?
        } else {
            Vec::new()
        };
        let reading = FloodReading {
            recent_texts: row.try_get::<i64, _>("recent")? as usize,
            last_reply_at: row.try_get("last_reply")?,
            model_calls_today: row
                .try_get::<Option<i64>, _>("calls")?
                .unwrap_or(0)
                .clamp(0, u32::MAX as i64) as u32,
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

/// Group commit for inbound texts. Each must be durable (a FULL commit,
/// one fsync of the WAL) before the channel hears 200, and an fsync takes
/// milliseconds on a real disk: one per text would let the fsyncs alone
/// fill the single writer at a few hundred texts a second. Texts that
/// arrive while a commit is in progress are stored together in the next
/// one, under one fsync; every waiter hears only after the commit holding
/// its text. Alone, a text commits at once, as before.
pub(super) async fn commit_inbound_in_groups(
    writer: SqlitePool,
    clock: Arc<dyn Clock>,
    mut queue: tokio::sync::mpsc::Receiver<InboundWaiter>,
) {
    let mut group: Vec<InboundWaiter> = Vec::with_capacity(MAX_INBOUND_GROUP);
    while queue.recv_many(&mut group, MAX_INBOUND_GROUP).await > 0 {
        let texts: Vec<&InboundMessage> = group.iter().map(|(inbound, _)| inbound).collect();
        let now = clock.now();
        let results = match record_inbound_group(&writer, &texts, now).await {
            Ok(recorded) => recorded.into_iter().map(Ok).collect(),
            // Nothing of the group was stored: each text alone, so each
            // waiter hears its own outcome and one bad text fails no other.
            // Not when the database itself is unavailable (locked past the
            // busy timeout): every text alone would wait that long again,
            // and the webhooks would time out instead of answering 503.
            Err(e) if group.len() > 1 && !database_unavailable(&e) => {
                let mut alone = Vec::with_capacity(group.len());
                for inbound in &texts {
                    alone.push(
                        record_inbound_group(&writer, &[*inbound], now)
                            .await
                            .map(|mut r| r.remove(0)),
                    );
                }
                alone
            }
            Err(e) if group.len() > 1 => {
                let reason = e.to_string();
                let mut failed = vec![Err(e)];
                // The same failure for the others (sqlx's errors do not
                // clone): the database was busy for all of them.
                failed.extend((1..group.len()).map(|_| {
                    Err(StoreError::Database(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::ResourceBusy,
                        reason.clone(),
                    ))))
                }));
                failed
            }
            Err(e) => vec![Err(e)],
        };
        for ((_, waiter), result) in group.drain(..).zip(results) {
            // A waiter that gave up (its request was dropped) still has its
            // text stored; the channel's retry finds it a duplicate.
            let _ = waiter.send(result);
        }
    }
}

/// The database could not be written at all (busy or locked past the busy
/// timeout, the pool exhausted, the file unreadable), as opposed to one
/// text that would fail however it was stored.
fn database_unavailable(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => {
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
            db.code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| matches!(c & 0xff, 5 | 6))
        }
        StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => {
            true
        }
        _ => false,
    }
}

/// One text's insert, in one round trip: the duplicate check, then the
/// customer, the conversation and the text, each written only if the text
/// is new. A duplicate's row comes back from the first statement
/// (`duplicate` 1), a new text's from the last (`duplicate` 0). A macro,
/// so that [`record_lone_text`] can wrap it at compile time.
macro_rules! record_text {
    () => {
        "
    SELECT id, conversation_id, NULL AS customer_id, 1 AS duplicate FROM messages
      WHERE channel_message_id = ?3;
     INSERT INTO customers (business_id, phone, created_at)
     SELECT ?1, ?2, ?4 WHERE NOT EXISTS (SELECT 1 FROM messages WHERE channel_message_id = ?3)
     ON CONFLICT (business_id, phone) DO NOTHING;
     INSERT INTO conversations (customer_id, business_number, created_at, updated_at, business_id)
     SELECT k.id, ?5, ?4, ?4, ?1 FROM customers k
      WHERE k.business_id = ?1 AND k.phone = ?2
        AND NOT EXISTS (SELECT 1 FROM messages WHERE channel_message_id = ?3)
     ON CONFLICT (customer_id, business_number) DO UPDATE SET updated_at = excluded.updated_at;
     INSERT INTO messages (conversation_id, direction, kind, body, status, channel_message_id,
                           num_media, media_urls, params, opt_out_keyword, profile_name, created_at)
     SELECT c.id, 'inbound', 'customer', ?6, 'pending', ?3, ?7, ?8, ?9, ?10, ?11, ?4
       FROM conversations c JOIN customers k ON k.id = c.customer_id
      WHERE k.business_id = ?1 AND k.phone = ?2 AND c.business_number = ?5
        AND NOT EXISTS (SELECT 1 FROM messages WHERE channel_message_id = ?3)
     RETURNING id, conversation_id,
         (SELECT customer_id FROM conversations WHERE id = messages.conversation_id) AS customer_id,
         0 AS duplicate;"
    };
}
const RECORD_TEXT: &str = record_text!();

/// Stores `texts` in one IMMEDIATE transaction committed with FULL, or
/// none of them.
async fn record_inbound_group(
    writer: &SqlitePool,
    texts: &[&InboundMessage],
    now: DateTime<Utc>,
) -> Result<Vec<Recorded>, StoreError> {
    if let [inbound] = texts
        && inbound.media.is_empty()
    {
        return Ok(vec![record_lone_text(writer, inbound, now).await?]);
    }
    let mut conn = writer.acquire().await?;
    let recorded = async {
        // FULL for this commit, set in the BEGIN's own round trip.
        let mut tx =
            sqlx::Connection::begin_with(&mut *conn, "PRAGMA synchronous = FULL; BEGIN IMMEDIATE").await?;
        let mut recorded = Vec::with_capacity(texts.len());
        for inbound in texts {
            recorded.push(record_inbound_in(&mut tx, inbound, now).await?);
        }
        tx.commit().await?;
        Ok::<_, StoreError>(recorded)
    }
    .await;
    // Back to NORMAL even when the insert failed (or its BEGIN did); if
    // this fails too the connection merely stays on the safer setting.
    let _ = sqlx::query("PRAGMA synchronous = NORMAL")
        .execute(&mut *conn)
        .await;
    recorded
}

/// A group of one text without media, the usual case below a few hundred
/// texts a second: the durable setting, the transaction, the insert, the
/// commit and the setting back in one round trip to the writer's thread
/// (four in the general path). If the list stops half way the connection
/// is closed, which rolls the transaction back and drops the FULL setting
/// with it (a new connection opens on NORMAL).
async fn record_lone_text(
    writer: &SqlitePool,
    inbound: &InboundMessage,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    const LONE_TEXT: &str = concat!(
        "PRAGMA synchronous = FULL; BEGIN IMMEDIATE;",
        record_text!(),
        "COMMIT; PRAGMA synchronous = NORMAL;"
    );
    let mut conn = WholeTransaction::acquire(writer).await?;
    let rows = bind_text(sqlx::query(LONE_TEXT), inbound, now)
        .fetch_all(conn.connection())
        .await?;
    conn.committed();
    let row = rows
        .into_iter()
        .next()
        .ok_or(StoreError::NotFound("the stored text"))?;
    recorded_from_row(&row)
}

/// [`RECORD_TEXT`]'s parameters, from `inbound`.
fn bind_text<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    inbound: &'q InboundMessage,
    now: DateTime<Utc>,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    query
        .bind(&inbound.business_id)
        .bind(inbound.from.as_str())
        .bind(&inbound.channel_message_id)
        .bind(now)
        .bind(inbound.to.as_str())
        .bind(&inbound.body)
        .bind(inbound.media.len() as i64)
        .bind(
            serde_json::to_string(&inbound.media.iter().map(|m| m.url.as_str()).collect::<Vec<_>>())
                .unwrap_or_else(|_| "[]".into()),
        )
        .bind(inbound.params.to_string())
        .bind(&inbound.opt_out_keyword)
        .bind(&inbound.profile_name)
}

/// What [`RECORD_TEXT`]'s row says: the text's ids, and whether it was a
/// duplicate. A new text's row also holds its `customer_id`.
fn recorded_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Recorded, StoreError> {
    let ids = (
        ConversationId(row.try_get("conversation_id")?),
        MessageId(row.try_get("id")?),
    );
    Ok(if row.try_get::<bool, _>("duplicate")? {
        Recorded::Duplicate(ids.0, ids.1)
    } else {
        Recorded::New(ids.0, ids.1)
    })
}

/// The inbound insert proper, inside the group's write transaction. A text
/// whose id is already stored (in an earlier commit, or earlier in this
/// group) is a duplicate.
async fn record_inbound_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    inbound: &InboundMessage,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    let row = bind_text(sqlx::query(RECORD_TEXT), inbound, now)
        // `fetch_all`: sqlx stops a statement list at the first row when
        // asked for one, and a new text's row comes from the last statement.
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .next()
        .ok_or(StoreError::NotFound("the stored text"))?;
    let recorded = recorded_from_row(&row)?;
    let Recorded::New(ConversationId(conversation_id), MessageId(message_id)) = recorded else {
        return Ok(recorded);
    };
    let customer_id: i64 = row.try_get("customer_id")?;
    // The files and the jobs that fetch them commit with the text: a text
    // the channel was told we stored never loses its photos.
    for (position, media) in inbound.media.iter().enumerate() {
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
                recipient: inbound.from.as_str().to_string(),
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

fn message_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Message, StoreError> {
    Ok(Message {
        id: MessageId(row.try_get("id")?),
        direction: direction(row.try_get("direction")?)?,
        kind: MessageKind::parse(row.try_get("kind")?),
        body: row.try_get("body")?,
        status: row.try_get("status")?,
        channel_message_id: row.try_get("channel_message_id")?,
        num_media: row.try_get("num_media")?,
        opt_out_keyword: row.try_get("opt_out_keyword")?,
        created_at: row.try_get("created_at")?,
    })
}
