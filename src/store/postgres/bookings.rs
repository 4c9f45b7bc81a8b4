//! Bookings and holds on Postgres.
//!
//! Several instances share the database, so the check "is the crew free?"
//! and the write that takes the time must not interleave with another
//! instance's. SQLite gets that from its single writer (`BEGIN
//! IMMEDIATE`); here every write that re-checks a crew's free time takes
//! the crew's transaction-scoped advisory lock first ([`lock_crews`]), then
//! reads (a fresh snapshot per statement under READ COMMITTED, so it sees
//! what the lock's previous holder committed) and writes, and the lock is
//! released by the commit or rollback.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use crate::domain::availability::Interval;
use crate::store::{
    BookingRecord, BookingStatus, BookingStore, ConversationId, Hold, Reservation, STALE_PENDING_MINUTES,
    StoreError,
};

/// The first key of every crew lock (`pg_advisory_xact_lock(int4, int4)`):
/// "td" in ASCII. The two-key form lives apart from the one-key (bigint)
/// locks, such as the migrator's, so they never collide.
const CREW_LOCK_SPACE: i32 = 0x7464;

fn interval(start_ms: i64, end_ms: i64) -> Interval {
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    Interval {
        start: at(start_ms),
        end: at(end_ms),
    }
}

impl PgStore {
    /// A pending booking last written before this was abandoned.
    fn stale_pending_before_ms(&self) -> i64 {
        self.now_ms() - STALE_PENDING_MINUTES * 60_000
    }
}

impl PgStore {
    /// Takes the crew lock of `provider` of `business` on `conn`, held until
    /// its transaction ends (call it inside one). Another transaction that
    /// wants the same crew waits here until this one commits or rolls back.
    /// Public so that a test can hold a crew's lock as another instance
    /// would.
    pub async fn lock_crew(
        conn: &mut sqlx::PgConnection,
        business: &str,
        provider: &str,
    ) -> Result<(), StoreError> {
        // The key is the business and the crew, hashed: two crews sharing
        // one only wait for each other, never book over each other.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2 || chr(31) || $3))")
            .bind(CREW_LOCK_SPACE)
            .bind(business)
            .bind(provider)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// Takes the crew lock of each of `providers` of the conversation's
/// business for the rest of the transaction, in sorted order so that two
/// transactions wanting the same crews cannot deadlock.
async fn lock_crews(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    conversation: ConversationId,
    providers: &[&str],
) -> Result<(), StoreError> {
    let mut providers: Vec<&str> = providers.to_vec();
    providers.sort_unstable();
    providers.dedup();
    if providers.is_empty() {
        return Ok(());
    }
    let business: String = sqlx::query_scalar(
        "SELECT COALESCE((SELECT business_id FROM conversations WHERE id = $1), 'default')",
    )
    .bind(conversation.0)
    .fetch_one(&mut **tx)
    .await?;
    for provider in providers {
        PgStore::lock_crew(tx, &business, provider).await?;
    }
    Ok(())
}

#[async_trait]
impl BookingStore for PgStore {
    async fn provider_bookings(
        &self,
        business: &str,
        provider: &str,
        range: Interval,
        except: Option<&str>,
    ) -> Result<Vec<Interval>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT start_ms, end_ms FROM bookings
             WHERE business_id = $1 AND provider_id = $2 AND start_ms < $3 AND end_ms > $4
               AND id IS DISTINCT FROM $5::text AND status <> 'cancelled'
               AND (status = 'confirmed' OR (status = 'pending' AND updated_ms > $6))",
        )
        .bind(business)
        .bind(provider)
        .bind(range.end.timestamp_millis())
        .bind(range.start.timestamp_millis())
        .bind(except)
        .bind(self.stale_pending_before_ms())
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(s, e)| interval(s, e)).collect())
    }

    async fn holds_of_others(&self, id: ConversationId, now: DateTime<Utc>) -> Result<Vec<Hold>, StoreError> {
        let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT provider_id, start_ms, end_ms, blocked_start_ms, blocked_end_ms FROM slot_holds
             WHERE conversation_id <> $1 AND expires_ms > $2
               AND business_id = (SELECT business_id FROM conversations WHERE id = $1)",
        )
        .bind(id.0)
        .bind(now.timestamp_millis())
        .fetch_all(self.pool())
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
        let stale_before_ms = self.stale_pending_before_ms();
        let mut tx = self.pool().begin().await?;
        // Every crew this hold checks, locked before anything is read or
        // deleted (see `lock_crews` on the order).
        let providers: Vec<&str> = wanted.iter().map(|h| h.provider_id.as_str()).collect();
        lock_crews(&mut tx, id, &providers).await?;
        // The conversation's holds and every expired one, as on SQLite;
        // rows locked in one order, so that two holds for different crews
        // that both clear an expired row cannot deadlock.
        sqlx::query(
            "DELETE FROM slot_holds WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM slot_holds WHERE conversation_id = $1 OR expires_ms <= $2
                 ORDER BY conversation_id, provider_id, start_ms, expires_ms FOR UPDATE))",
        )
        .bind(id.0)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let mut granted = Vec::with_capacity(wanted.len());
        for h in wanted {
            if hold_conflicts(&mut tx, id, &h.provider_id, h.slot, h.blocked, now_ms).await?
                || booking_overlaps(
                    &mut tx,
                    id,
                    &h.provider_id,
                    h.blocked,
                    except_booking,
                    stale_before_ms,
                )
                .await?
            {
                continue;
            }
            sqlx::query(
                "INSERT INTO slot_holds (conversation_id, provider_id, start_ms, end_ms, blocked_start_ms, blocked_end_ms,
                                         expires_ms, business_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7,
                         COALESCE((SELECT business_id FROM conversations WHERE id = $1), 'default'))",
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
        let written = self.now();
        let mut tx = self.pool().begin().await?;
        // The crew's lock, held to the commit: the existence check, the
        // overlap checks and the insert below see every booking another
        // instance committed before us, and none can commit in between.
        lock_crews(&mut tx, b.conversation_id, &[b.provider_id.as_str()]).await?;
        let existing = sqlx::query(
            "SELECT id, conversation_id, provider_id, calendar_id, start_ms, end_ms, label, status
             FROM bookings WHERE id = $1",
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
        if booking_overlaps(
            &mut tx,
            b.conversation_id,
            &b.provider_id,
            blocked,
            None,
            self.stale_pending_before_ms(),
        )
        .await?
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8, $9,
                     COALESCE((SELECT business_id FROM conversations WHERE id = $2), 'default'))",
        )
        .bind(&b.id)
        .bind(b.conversation_id.0)
        .bind(&b.provider_id)
        .bind(&b.calendar_id)
        .bind(b.slot.start.timestamp_millis())
        .bind(b.slot.end.timestamp_millis())
        .bind(&b.label)
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
            "SELECT COUNT(*) FROM bookings WHERE conversation_id = $1 AND status = 'cancelled'",
        )
        .bind(id.0)
        .fetch_one(self.pool())
        .await?;
        Ok(n as u32)
    }

    async fn update_booking(
        &self,
        id: &str,
        status: BookingStatus,
        moved_to: Option<(&str, &str, Interval, &str)>,
    ) -> Result<(), StoreError> {
        let now = self.now();
        match moved_to {
            None => {
                sqlx::query(
                    "UPDATE bookings SET status = $1, updated_at = $2, updated_ms = $3 WHERE id = $4",
                )
                .bind(status.as_str())
                .bind(now)
                .bind(now.timestamp_millis())
                .bind(id)
                .execute(self.pool())
                .await?;
            }
            Some((provider, calendar, slot, label)) => {
                let mut tx = self.pool().begin().await?;
                // A move writes into the new crew's time: under its lock, so
                // a reservation checking that crew sees all of it or none.
                let conversation: Option<i64> =
                    sqlx::query_scalar("SELECT conversation_id FROM bookings WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(conversation) = conversation {
                    lock_crews(&mut tx, ConversationId(conversation), &[provider]).await?;
                }
                sqlx::query(
                    "UPDATE bookings SET status = $1, provider_id = $2, calendar_id = $3, start_ms = $4, end_ms = $5,
                                         label = $6, updated_at = $7, updated_ms = $8
                     WHERE id = $9",
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
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    async fn booking(&self, id: &str) -> Result<Option<BookingRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, conversation_id, provider_id, calendar_id, start_ms, end_ms, label, status
             FROM bookings WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(booking_from_row).transpose()
    }

    async fn bookings(&self) -> Result<Vec<BookingRecord>, StoreError> {
        // Oldest first: in the order they were inserted.
        let rows = sqlx::query(
            "SELECT id, conversation_id, provider_id, calendar_id, start_ms, end_ms, label, status
             FROM bookings ORDER BY seq",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(booking_from_row).collect()
    }
}

fn booking_from_row(row: &PgRow) -> Result<BookingRecord, StoreError> {
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

/// Whether a live hold of a conversation other than `id` conflicts with a
/// job of `provider` in `slot` blocking `blocked`: either one's slot
/// overlaps what the other blocks.
async fn hold_conflicts(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: ConversationId,
    provider: &str,
    slot: Interval,
    blocked: Interval,
    now_ms: i64,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM slot_holds
         WHERE provider_id = $1 AND conversation_id <> $2 AND expires_ms > $3
           AND ((start_ms < $4 AND end_ms > $5) OR (blocked_start_ms < $6 AND blocked_end_ms > $7))
           AND business_id = COALESCE((SELECT business_id FROM conversations WHERE id = $2), 'default'))",
    )
    .bind(provider)
    .bind(id.0)
    .bind(now_ms)
    .bind(blocked.end.timestamp_millis())
    .bind(blocked.start.timestamp_millis())
    .bind(slot.end.timestamp_millis())
    .bind(slot.start.timestamp_millis())
    .fetch_one(&mut **tx)
    .await?)
}

/// Whether a live (confirmed, or recently pending) booking of `provider`
/// other than `except` overlaps `blocked`.
async fn booking_overlaps(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    conversation: ConversationId,
    provider: &str,
    blocked: Interval,
    except: Option<&str>,
    stale_before_ms: i64,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM bookings
         WHERE business_id = COALESCE((SELECT business_id FROM conversations WHERE id = $1), 'default')
           AND provider_id = $2 AND start_ms < $3 AND end_ms > $4
           AND id IS DISTINCT FROM $5::text AND status <> 'cancelled'
           -- `updated_ms` is written by the store's clock, so staleness is judged by it.
           AND (status = 'confirmed' OR (status = 'pending' AND updated_ms > $6)))",
    )
    .bind(conversation.0)
    .bind(provider)
    .bind(blocked.end.timestamp_millis())
    .bind(blocked.start.timestamp_millis())
    .bind(except)
    .bind(stale_before_ms)
    .fetch_one(&mut **tx)
    .await?)
}
