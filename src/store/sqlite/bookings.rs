//! Bookings and holds on SQLite.

use super::*;

#[async_trait]
impl BookingStore for SqliteStore {
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
        .bind(self.stale_pending_before_ms())
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
        let stale_before_ms = self.stale_pending_before_ms();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM slot_holds WHERE conversation_id = ? OR expires_ms <= ?")
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
        let written = self.now();
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
        let now = self.now();
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
    stale_before_ms: i64,
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
    // `updated_ms` is written by the store's clock, so staleness is judged by it.
    .bind(stale_before_ms)
    .bind(conversation.0)
    .fetch_one(&mut **tx)
    .await?;
    Ok(n > 0)
}
