//! `ConsoleStore` on Postgres: the same reads and the few writes as
//! SQLite's, in Postgres's SQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use crate::store::console::{
    ConsoleAlert, ConsoleBooking, ConsoleStore, ConversationDetail, InboxFilter, InboxQuery, InboxRow,
    JobChange, MediaBytes, StoredSession, ThreadMedia, ThreadMessage,
};
use crate::store::{ConversationId, Direction, JobStatus, MessageId, StoreError};

/// The customer's name wherever the state keeps it (an opted-out
/// conversation keeps the job in the state it left).
const NAME_SQL: &str =
    "COALESCE(c.state #>> '{job,customer_name}', c.state #>> '{previous,job,customer_name}')";

fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms}")))
}

fn direction(raw: &str) -> Result<Direction, StoreError> {
    match raw {
        "inbound" => Ok(Direction::Inbound),
        "outbound" => Ok(Direction::Outbound),
        other => Err(StoreError::Corrupt(format!("message direction `{other}`"))),
    }
}

/// `%`, `_` and the escape itself match literally in a LIKE pattern.
fn like_pattern(raw: &str) -> String {
    let mut out = String::from("%");
    for c in raw.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn booking_from_row(row: &PgRow) -> Result<ConsoleBooking, StoreError> {
    Ok(ConsoleBooking {
        id: row.try_get("id")?,
        business_id: row.try_get("business_id")?,
        conversation_id: ConversationId(row.try_get("conversation_id")?),
        provider_id: row.try_get("provider_id")?,
        start: from_ms(row.try_get("start_ms")?)?,
        end: from_ms(row.try_get("end_ms")?)?,
        label: row.try_get("label")?,
        status: row.try_get("status")?,
        updated_at: from_ms(row.try_get("updated_ms")?)?,
        open_alerts: row.try_get("open_alerts")?,
        customer_address: row.try_get("phone")?,
        state_json: row.try_get("state")?,
    })
}

const BOOKING_COLUMNS: &str = "b.id, b.business_id, b.conversation_id, b.provider_id, b.start_ms, b.end_ms,
                               b.label, b.status, b.updated_ms, k.phone, c.state::TEXT AS state,
                               (SELECT COUNT(*) FROM alerts a
                                WHERE a.conversation_id = b.conversation_id AND a.resolved_at IS NULL) AS open_alerts";

/// The inbox's search, read once: a name (case-insensitive, anywhere in
/// it) or the digits of a number (anywhere in the stored address).
struct Search {
    name_pattern: Option<String>,
    digits: Option<String>,
}

impl Search {
    fn of(raw: Option<&str>) -> Self {
        let search = raw.map(str::trim).filter(|s| !s.is_empty());
        // A number is searched by its digits, however it was typed.
        let digits: String = search
            .map(|s| s.chars().filter(char::is_ascii_digit).collect())
            .unwrap_or_default();
        // Digits and phone punctuation only is a number: no name is read,
        // which spares a JSON read of every conversation's state.
        let is_number = !digits.is_empty()
            && search.is_some_and(|s| s.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c)));
        Self {
            name_pattern: search.filter(|_| !is_number).map(like_pattern),
            digits: (!digits.is_empty()).then_some(digits),
        }
    }
}

/// One walk of the inbox: the conversations that need the owner
/// (`pinned`), or the rest, newest activity first, down the index in that
/// order. `$1` business, `$2` the ids a search found (NULL: no search),
/// `$3` limit (NULL: all), `$4` offset.
fn inbox_walk(filter: InboxFilter, pinned: bool, searching: bool) -> String {
    let filter = match filter {
        InboxFilter::All | InboxFilter::NeedsYou => "TRUE",
        InboxFilter::Quoted => "c.state_tag = 'quoted'",
        InboxFilter::Scheduling => "c.state_tag = 'scheduling'",
        // Also a booking held through a hand-off or an opt-out
        // (`ConversationState::standing_booking`).
        InboxFilter::Booked => {
            "(c.state_tag = 'booked' OR (c.state_tag IN ('handed_off', 'opted_out') AND \
             (c.state->'booked' IS NOT NULL OR c.state->'previous'->>'state' = 'booked' \
              OR c.state->'previous'->'booked' IS NOT NULL)))"
        }
        InboxFilter::OptedOut => "(k.opted_out_at IS NOT NULL OR c.state_tag = 'opted_out')",
    };
    // Two texts rather than one with `$2 IS NULL OR ...`, so that each is
    // planned for what it is: a walk that stops at the page's end, or a
    // few rows fetched by id and sorted.
    let search = if searching {
        "c.id = ANY($2)"
    } else {
        "$2::BIGINT[] IS NULL"
    };
    format!(
        "SELECT c.id FROM conversations c JOIN customers k ON k.id = c.customer_id
         WHERE c.id {} (SELECT id FROM conversations WHERE state_tag = 'handed_off'
                        UNION SELECT conversation_id FROM alerts
                              WHERE resolved_at IS NULL AND conversation_id IS NOT NULL
                        UNION SELECT conversation_id FROM messages
                              WHERE direction = 'outbound' AND status = 'held')
           AND ($1::TEXT IS NULL OR c.business_id = $1)
           AND {filter}
           AND {search}
         ORDER BY c.last_message_id DESC NULLS LAST, c.id DESC
         LIMIT $3 OFFSET $4",
        if pinned { "IN" } else { "NOT IN" }
    )
}

impl PgStore {
    /// The conversations a search finds, of any business: by the digits in
    /// the customer's address (a scan of the small customers table), or by
    /// the name in the state (case-insensitive), or either when both were
    /// typed. `None` when there is no search.
    async fn inbox_search(&self, search: &Search) -> Result<Option<Vec<i64>>, StoreError> {
        if search.digits.is_none() && search.name_pattern.is_none() {
            return Ok(None);
        }
        let mut ids: Vec<i64> = Vec::new();
        if let Some(digits) = &search.digits {
            ids.extend(
                sqlx::query_scalar::<_, i64>(
                    // The customers first (one scan of a narrow table),
                    // then their conversations through the customer index.
                    "SELECT c.id FROM conversations c
                     WHERE c.customer_id = ANY(ARRAY(SELECT id FROM customers WHERE position($1 IN phone) > 0))",
                )
                .bind(digits)
                .fetch_all(self.pool())
                .await?,
            );
        }
        if let Some(pattern) = &search.name_pattern {
            ids.extend(
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                    "SELECT c.id FROM conversations c WHERE {NAME_SQL} ILIKE $1 ESCAPE '\\'"
                )))
                .bind(pattern)
                .fetch_all(self.pool())
                .await?,
            );
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(Some(ids))
    }
}

#[async_trait]
impl ConsoleStore for PgStore {
    async fn owner_password_hash(&self) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT password_hash FROM owner_credentials WHERE id = 1")
                .fetch_optional(self.pool())
                .await?,
        )
    }

    async fn set_owner_password_hash(&self, hash: &str) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO owner_credentials (id, password_hash, updated_at) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
        )
        .bind(hash)
        .bind(self.now())
        .execute(&mut *tx)
        .await?;
        // A new password logs every browser out: whoever knew the old one
        // keeps no way in.
        sqlx::query("DELETE FROM sessions").execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load_session(&self, id: &str, now_unix: i64) -> Result<Option<StoredSession>, StoreError> {
        let row = sqlx::query("SELECT data, expires_at FROM sessions WHERE id = $1 AND expires_at > $2")
            .bind(id)
            .bind(now_unix)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| {
            Ok(StoredSession {
                data: row.try_get("data")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    async fn create_session(&self, id: &str, session: &StoredSession) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(&session.data)
        .bind(session.expires_at)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn save_session(&self, id: &str, session: &StoredSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
        )
        .bind(id)
        .bind(&session.data)
        .bind(session.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now_unix: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_unix)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    async fn inbox(&self, query: &InboxQuery) -> Result<Vec<InboxRow>, StoreError> {
        // Two walks instead of one sort of every conversation: the few that
        // need the owner (all of them, newest first), then the rest down the
        // activity index, stopping at the page's end.
        let search = Search::of(query.search.as_deref());
        let found_by_search = self.inbox_search(&search).await?;
        if found_by_search.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let searching = found_by_search.is_some();
        let mut ids: Vec<i64> = Vec::new();
        let mut offset = query.offset;
        let mut limit = query.limit;
        for pinned in [true, false] {
            if limit == 0 || (!pinned && query.filter == InboxFilter::NeedsYou) {
                break;
            }
            // Built only from the constant fragments above: no input is spliced in.
            let found: Vec<i64> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(inbox_walk(query.filter, pinned, searching)))
                    .bind(query.business_id.as_deref())
                    .bind(found_by_search.as_deref())
                    .bind(Some(i64::try_from(limit).unwrap_or(i64::MAX)))
                    .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                    .fetch_all(self.pool())
                    .await?;
            if pinned && offset > 0 {
                // The pinned rows this page skipped or showed come off the
                // rest's offset: count them all (page one needs no count).
                let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM ({}) pinned",
                    inbox_walk(query.filter, true, searching)
                )))
                .bind(query.business_id.as_deref())
                .bind(found_by_search.as_deref())
                .bind(None::<i64>)
                .bind(0i64)
                .fetch_one(self.pool())
                .await?;
                offset = offset.saturating_sub(usize::try_from(total).unwrap_or(0));
            }
            limit -= found.len().min(limit);
            ids.extend(found);
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT c.id, c.business_id, k.phone, k.opted_out_at IS NOT NULL AS opted_out,
                    COALESCE(c.state_tag, 'intake') AS state_name,
                    {NAME_SQL} AS customer_name,
                    (c.state_tag IS NOT DISTINCT FROM 'handed_off'
                     OR EXISTS (SELECT 1 FROM alerts a
                                WHERE a.conversation_id = c.id AND a.resolved_at IS NULL)
                     OR EXISTS (SELECT 1 FROM messages h
                                WHERE h.conversation_id = c.id AND h.direction = 'outbound'
                                  AND h.status = 'held')) AS needs_you,
                    COALESCE(c.last_inbound_id, 0) > COALESCE(r.last_read_id, 0) AS unread,
                    m.body, m.direction, m.created_at
             FROM conversations c
             JOIN customers k ON k.id = c.customer_id
             LEFT JOIN console_reads r ON r.conversation_id = c.id
             LEFT JOIN messages m ON m.id = c.last_message_id
             WHERE c.id = ANY($1)"
        )))
        .bind(&ids)
        .fetch_all(self.pool())
        .await?;
        let mut found = rows
            .iter()
            .map(|row| {
                Ok(InboxRow {
                    id: ConversationId(row.try_get("id")?),
                    business_id: row.try_get("business_id")?,
                    customer_address: row.try_get("phone")?,
                    customer_name: row.try_get("customer_name")?,
                    state: row.try_get("state_name")?,
                    opted_out: row.try_get("opted_out")?,
                    needs_you: row.try_get("needs_you")?,
                    last_text: row.try_get("body")?,
                    last_direction: row
                        .try_get::<Option<String>, _>("direction")?
                        .as_deref()
                        .map(direction)
                        .transpose()?,
                    last_at: row.try_get("created_at")?,
                    unread: row.try_get("unread")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let position: std::collections::HashMap<i64, usize> =
            ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        found.sort_by_key(|row| position.get(&row.id.0).copied().unwrap_or(usize::MAX));
        Ok(found)
    }

    async fn conversation_detail(
        &self,
        id: ConversationId,
    ) -> Result<Option<ConversationDetail>, StoreError> {
        let Some(head) = sqlx::query(
            "SELECT c.business_id, c.business_number, c.state::TEXT AS state, k.phone,
                    k.opted_out_at IS NOT NULL AS opted_out,
                    (SELECT COUNT(*) FROM alerts a WHERE a.conversation_id = c.id AND a.resolved_at IS NULL) AS open_alerts,
                    COALESCE((SELECT last_read_id FROM console_reads WHERE conversation_id = c.id), 0) AS last_read_id
             FROM conversations c JOIN customers k ON k.id = c.customer_id WHERE c.id = $1",
        )
        .bind(id.0)
        .fetch_optional(self.pool())
        .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT id, direction, kind, body, status, delivery_status,
                    delivery_error_code::BIGINT AS delivery_error_code, created_at
             FROM messages WHERE conversation_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(self.pool())
        .await?;
        let mut messages = rows
            .iter()
            .map(|row| {
                Ok(ThreadMessage {
                    id: MessageId(row.try_get("id")?),
                    direction: direction(row.try_get("direction")?)?,
                    kind: row.try_get("kind")?,
                    body: row.try_get("body")?,
                    status: row.try_get("status")?,
                    delivery_status: row.try_get("delivery_status")?,
                    delivery_error_code: row.try_get("delivery_error_code")?,
                    created_at: row.try_get("created_at")?,
                    media: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let media = sqlx::query(
            "SELECT id, message_id, content_type, status FROM media WHERE conversation_id = $1
             ORDER BY message_id, position",
        )
        .bind(id.0)
        .fetch_all(self.pool())
        .await?;
        for row in &media {
            let message_id = MessageId(row.try_get("message_id")?);
            if let Ok(i) = messages.binary_search_by_key(&message_id, |m| m.id) {
                messages[i].media.push(ThreadMedia {
                    id: row.try_get("id")?,
                    content_type: row.try_get("content_type")?,
                    status: row.try_get("status")?,
                });
            }
        }
        let bookings = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BOOKING_COLUMNS} FROM bookings b
             JOIN conversations c ON c.id = b.conversation_id JOIN customers k ON k.id = c.customer_id
             WHERE b.conversation_id = $1 ORDER BY b.start_ms"
        )))
        .bind(id.0)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(booking_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ConversationDetail {
            id,
            business_id: head.try_get("business_id")?,
            customer_address: head.try_get("phone")?,
            business_number: head.try_get("business_number")?,
            opted_out: head.try_get("opted_out")?,
            open_alerts: head.try_get("open_alerts")?,
            last_read_id: head.try_get("last_read_id")?,
            state_json: head.try_get("state")?,
            messages,
            bookings,
        }))
    }

    async fn mark_read(&self, id: ConversationId, last_id: MessageId) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_reads (conversation_id, last_read_id) VALUES ($1, $2)
             ON CONFLICT (conversation_id)
             DO UPDATE SET last_read_id = GREATEST(console_reads.last_read_id, excluded.last_read_id)",
        )
        .bind(id.0)
        .bind(last_id.0)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn media_bytes(&self, id: i64) -> Result<Option<MediaBytes>, StoreError> {
        let row = sqlx::query(
            "SELECT conversation_id, content_type, bytes FROM media WHERE id = $1 AND bytes IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(MediaBytes {
                conversation_id: ConversationId(row.try_get("conversation_id")?),
                content_type: row.try_get("content_type")?,
                bytes: row.try_get("bytes")?,
            })
        })
        .transpose()
    }

    async fn bookings_between(
        &self,
        business_id: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ConsoleBooking>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BOOKING_COLUMNS} FROM bookings b
             JOIN conversations c ON c.id = b.conversation_id JOIN customers k ON k.id = c.customer_id
             WHERE b.status <> 'cancelled' AND b.start_ms >= $1 AND b.start_ms < $2
               AND ($3::TEXT IS NULL OR b.business_id = $3)
             ORDER BY b.business_id, b.provider_id, b.start_ms"
        )))
        .bind(from.timestamp_millis())
        .bind(to.timestamp_millis())
        .bind(business_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(booking_from_row)
        .collect()
    }

    async fn console_alerts(
        &self,
        business_id: Option<&str>,
        open: bool,
        limit: usize,
    ) -> Result<Vec<ConsoleAlert>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT a.id, a.kind, a.business_id, a.conversation_id, a.detail, a.created_at, a.resolved_at,
                    k.phone, {NAME_SQL} AS customer_name
             FROM alerts a
             LEFT JOIN conversations c ON c.id = a.conversation_id
             LEFT JOIN customers k ON k.id = c.customer_id
             WHERE ($1::TEXT IS NULL OR a.business_id = $1) AND (a.resolved_at IS NULL) = $2
             ORDER BY a.id DESC LIMIT $3"
        )))
        .bind(business_id)
        .bind(open)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ConsoleAlert {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    business_id: row.try_get("business_id")?,
                    conversation_id: row
                        .try_get::<Option<i64>, _>("conversation_id")?
                        .map(ConversationId),
                    detail: row.try_get("detail")?,
                    created_at: row.try_get("created_at")?,
                    resolved_at: row.try_get("resolved_at")?,
                    customer_address: row.try_get("phone")?,
                    customer_name: row.try_get("customer_name")?,
                })
            })
            .collect()
    }

    async fn open_alert_count(&self, business_id: Option<&str>) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM alerts WHERE resolved_at IS NULL AND ($1::TEXT IS NULL OR business_id = $1)",
        )
        .bind(business_id)
        .fetch_one(self.pool())
        .await?)
    }

    async fn resolve_alert(&self, id: i64, by: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE alerts SET resolved_at = $1, resolved_by = $2 WHERE id = $3 AND resolved_at IS NULL",
        )
        .bind(at)
        .bind(by)
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1)
    }

    async fn retry_dead_job(&self, id: i64, now: DateTime<Utc>) -> Result<JobChange, StoreError> {
        let mut tx = self.pool().begin().await?;
        let changed = sqlx::query(
            "UPDATE jobs SET status = 'pending', attempts = 0, run_at_ms = $1, locked_until_ms = NULL, updated_at = $2
             WHERE id = $3 AND status = 'dead'",
        )
        .bind(now.timestamp_millis())
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let outcome = job_change(&mut tx, id, changed).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn cancel_pending_job(&self, id: i64, now: DateTime<Utc>) -> Result<JobChange, StoreError> {
        let mut tx = self.pool().begin().await?;
        let changed = sqlx::query(
            "UPDATE jobs SET status = 'cancelled', last_error = 'cancelled by the owner', updated_at = $1
             WHERE id = $2 AND status IN ('pending', 'suspended')",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let outcome = job_change(&mut tx, id, changed).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

/// What a guarded status change did, and why not when it did nothing.
async fn job_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: i64,
    changed: u64,
) -> Result<JobChange, StoreError> {
    if changed == 1 {
        return Ok(JobChange::Changed);
    }
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    match status {
        None => Ok(JobChange::NotFound),
        Some(raw) => Ok(JobChange::NotApplicable(
            JobStatus::parse(&raw).ok_or_else(|| StoreError::Corrupt(format!("job status `{raw}`")))?,
        )),
    }
}
