//! The conversation port on SQLite.

use super::*;

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
        let now = self.now_ms();
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
                    (SELECT profile_name FROM messages
                      WHERE conversation_id = c.id AND direction = 'inbound'
                        AND profile_name <> ''
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
            "SELECT id, direction, kind, body, status, channel_message_id, num_media, opt_out_keyword, created_at FROM messages
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
            "SELECT id, direction, kind, body, status, channel_message_id, num_media, opt_out_keyword, created_at FROM (
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
        } = commit;
        let state_json = serde_json::to_string(&state)
            .map_err(|e| StoreError::Corrupt(format!("state does not serialize: {e}")))?;
        let now = self.now();
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
        set_in_motion(&mut tx, id, &cancel_jobs, &jobs, &alerts, now).await?;
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
        insert_quotes(&mut tx, id, &new_quotes).await?;
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
        // The held reply, when there is one, is the answer to `through`;
        // the text sent now is then only the holding text.
        let reply_to = held.is_none().then_some(through.0);
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
                .bind(draft.kind.as_str())
                .bind(&draft.body)
                .bind(reply_to)
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

/// What a commit sets in motion beside its state: jobs cancelled and
/// queued, and the owner's alerts.
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
            Err(_) if group.len() > 1 => {
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
            Err(e) => vec![Err(e)],
        };
        for ((_, waiter), result) in group.drain(..).zip(results) {
            // A waiter that gave up (its request was dropped) still has its
            // text stored; the channel's retry finds it a duplicate.
            let _ = waiter.send(result);
        }
    }
}

/// Stores `texts` in one IMMEDIATE transaction committed with FULL, or
/// none of them.
async fn record_inbound_group(
    writer: &SqlitePool,
    texts: &[&InboundMessage],
    now: DateTime<Utc>,
) -> Result<Vec<Recorded>, StoreError> {
    let mut conn = writer.acquire().await?;
    sqlx::query("PRAGMA synchronous = FULL")
        .execute(&mut *conn)
        .await?;
    let recorded = async {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        let mut recorded = Vec::with_capacity(texts.len());
        for inbound in texts {
            recorded.push(record_inbound_in(&mut tx, inbound, now).await?);
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
/// whose id is already stored (in an earlier commit, or earlier in this
/// group) is a duplicate.
async fn record_inbound_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    inbound: &InboundMessage,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    if let Some(row) = sqlx::query("SELECT id, conversation_id FROM messages WHERE channel_message_id = ?")
        .bind(&inbound.channel_message_id)
        .fetch_optional(&mut **tx)
        .await?
    {
        return Ok(Recorded::Duplicate(
            ConversationId(row.try_get("conversation_id")?),
            MessageId(row.try_get("id")?),
        ));
    }
    // The no-op update on a known customer is there for RETURNING: the
    // customer's id in the same statement, one round trip fewer.
    let customer_id: i64 = sqlx::query_scalar(
        "INSERT INTO customers (business_id, phone, created_at) VALUES (?, ?, ?)
         ON CONFLICT (business_id, phone) DO UPDATE SET phone = excluded.phone
         RETURNING id",
    )
    .bind(&inbound.business_id)
    .bind(inbound.from.as_str())
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
    .bind(inbound.to.as_str())
    .bind(now)
    .bind(now)
    .bind(&inbound.business_id)
    .fetch_one(&mut **tx)
    .await?;
    let message_id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (conversation_id, direction, kind, body, status, channel_message_id,
                               num_media, media_urls, params, opt_out_keyword, profile_name, created_at)
         VALUES (?, 'inbound', 'customer', ?, 'pending', ?, ?, ?, ?, ?, ?, ?)
         RETURNING id",
    )
    .bind(conversation_id)
    .bind(&inbound.body)
    .bind(&inbound.channel_message_id)
    .bind(inbound.media.len() as i64)
    .bind(
        serde_json::to_string(&inbound.media.iter().map(|m| m.url.as_str()).collect::<Vec<_>>())
            .unwrap_or_else(|_| "[]".into()),
    )
    .bind(inbound.params.to_string())
    .bind(&inbound.opt_out_keyword)
    .bind(&inbound.profile_name)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
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
