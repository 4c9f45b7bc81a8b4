//! The outbox port on Postgres.
//!
//! A text moves to `sending` under a send lease (`send_lease_until_ms`, see
//! [`PgStore::with_send_lease`]): the instance that claimed it is sending it until
//! then. A claim takes a queued text, or a `sending` one whose lease has
//! passed (its sender died mid-send; the attempt count it carries makes
//! the dispatcher ask the channel whether it went out before sending it
//! again). Rows are taken with `FOR UPDATE SKIP LOCKED`, so two instances
//! claiming the same text never both get it.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::rows::parse_phone;
use crate::domain::delivery::DeliveryStatus;
use crate::store::*;

/// A recorded send's update of its text (parameters 1-5: status, channel
/// id, error, sent at, the text's id), optionally with a FROM item (the
/// no-fsync setting).
macro_rules! record_delivery {
    ($($from:expr)?) => {
        concat!(
            "UPDATE messages SET status = $1, channel_message_id = $2, last_error = $3, sent_at = $4,
                                 send_lease_until_ms = NULL",
            $(" FROM ", $from,)?
            " WHERE id = $5"
        )
    };
}

/// A stored outbound text with where it goes, read inside `tx`.
pub(super) async fn outbound_in(
    tx: &mut sqlx::PgConnection,
    id: MessageId,
) -> Result<OutboundMessage, StoreError> {
    let row = sqlx::query(
        "SELECT m.conversation_id, m.body, m.kind, m.attempts, m.created_at, k.phone, c.business_number,
                c.customer_id,
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
    .fetch_one(&mut *tx)
    .await?;
    outbound_from_row(id, &row)
}

pub(super) fn outbound_from_row(id: MessageId, row: &PgRow) -> Result<OutboundMessage, StoreError> {
    Ok(OutboundMessage {
        id,
        conversation_id: ConversationId(row.try_get("conversation_id")?),
        customer_id: CustomerId(row.try_get("customer_id")?),
        customer_opted_out: row.try_get("opted_out")?,
        to: parse_phone(row.try_get("phone")?)?,
        from: parse_phone(row.try_get("business_number")?)?,
        body: row.try_get("body")?,
        kind: MessageKind::parse(row.try_get("kind")?),
        last_inbound_at: row.try_get("last_inbound_at")?,
        attempts: row.try_get::<i32, _>("attempts")? as i64,
        created_at: row.try_get("created_at")?,
    })
}

fn parse_delivery_status(raw: &str) -> Result<DeliveryStatus, StoreError> {
    DeliveryStatus::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("delivery status `{raw}`")))
}

#[async_trait]
impl Outbox for PgStore {
    async fn claim_outbound(&self, id: MessageId) -> Result<Option<OutboundMessage>, StoreError> {
        let now = self.now_ms();
        // Claim and read in one transaction: a failure leaves the text as
        // it was, never stranded in `sending` without a lease.
        let mut tx = self.pool.begin().await?;
        let claimed: Option<i64> = sqlx::query_scalar(
            "UPDATE messages SET status = 'sending', attempts = attempts + 1, send_lease_until_ms = $2
             WHERE id = (SELECT id FROM messages
                          WHERE id = $1 AND direction = 'outbound'
                            AND (status = 'queued'
                                 -- Left mid-send by an instance whose send lease ran out.
                                 OR (status = 'sending' AND COALESCE(send_lease_until_ms, 0) < $3))
                          FOR UPDATE SKIP LOCKED)
             RETURNING id",
        )
        .bind(id.0)
        .bind(self.send_lease_until(now))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if claimed.is_none() {
            return Ok(None);
        }
        let outbound = outbound_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Some(outbound))
    }

    async fn undelivered(&self, proactive: bool) -> Result<Vec<MessageId>, StoreError> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE direction = 'outbound' AND status IN ('queued', 'sending')
               AND ($1 OR kind NOT IN ('reminder', 'follow_up')) ORDER BY id",
        )
        .bind(proactive)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(MessageId).collect())
    }

    async fn record_delivery(&self, id: MessageId, delivery: &Delivery) -> Result<(), StoreError> {
        let (status, sid, error) = delivery.columns();
        let sent = matches!(delivery, Delivery::Sent { .. });
        // A send recorded as sent need not wait for the disk: lost with a
        // crash of the server, the text is still `sending`, and recovery
        // finds it in the channel's list. Every other outcome (a failure,
        // an unknown outcome that must never be sent again) does.
        const RECORD: &str = record_delivery!();
        const RECORD_SENT: &str = record_delivery!(async_commit!());
        let mut conn = self.hot.take(&self.pool).await?;
        let done = sqlx::query(if sent { RECORD_SENT } else { RECORD })
            .bind(status)
            .bind(sid)
            .bind(error)
            .bind(sent.then(|| self.now()))
            .bind(id.0)
            .execute(&mut *conn)
            .await;
        conn.finished(done)?;
        Ok(())
    }

    async fn record_delivery_and_release(
        &self,
        id: MessageId,
        delivery: &Delivery,
        conversation: ConversationId,
        worker: &str,
    ) -> Result<bool, StoreError> {
        // One statement and round trip where the two took two. Its commit
        // waits for the disk as the delivery's own would (the release never
        // needs to: a lost release only lets the lease expire).
        macro_rules! record_and_release {
            ($($from:expr)?) => {
                concat!(
                    "WITH recorded AS (",
                    record_delivery!($($from)?),
                    " RETURNING 1),
                     released AS (
                         UPDATE conversations SET lease_owner = NULL, lease_until_ms = NULL
                         WHERE id = $6 AND lease_owner = $7 RETURNING 1)
                     SELECT NOT EXISTS (SELECT 1 FROM released)
                            OR EXISTS (SELECT 1 FROM messages WHERE conversation_id = $6
                                       AND direction = 'inbound' AND status = 'pending')"
                )
            };
        }
        const RECORD: &str = record_and_release!();
        const RECORD_SENT: &str = record_and_release!(async_commit!());
        let (status, sid, error) = delivery.columns();
        let sent = matches!(delivery, Delivery::Sent { .. });
        let mut conn = self.hot.take(&self.pool).await?;
        let waiting = sqlx::query_scalar(if sent { RECORD_SENT } else { RECORD })
            .bind(status)
            .bind(sid)
            .bind(error)
            .bind(sent.then(|| self.now()))
            .bind(id.0)
            .bind(conversation.0)
            .bind(worker)
            .fetch_one(&mut *conn)
            .await;
        Ok(conn.finished(waiting)?)
    }

    async fn queue_job_message(
        &self,
        id: ConversationId,
        job_id: i64,
        draft: OutboundDraft,
    ) -> Result<Option<OutboundMessage>, StoreError> {
        let now = self.now();
        let lease = self.send_lease_until(self.now_ms());
        let mut tx = self.pool.begin().await?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO messages (conversation_id, direction, kind, body, status, attempts, job_id, created_at,
                                   send_lease_until_ms)
             VALUES ($1, 'outbound', $2, $3, 'sending', 1, $4, $5, $6)
             ON CONFLICT (job_id) WHERE job_id IS NOT NULL DO NOTHING
             RETURNING id",
        )
        .bind(id.0)
        .bind(draft.kind.as_str())
        .bind(&draft.body)
        .bind(job_id)
        .bind(now)
        .bind(lease)
        .fetch_optional(&mut *tx)
        .await?;
        let message_id = match inserted {
            Some(message_id) => Some(message_id),
            // This job's text exists: send it again only if it failed (a
            // retry), never if it was sent or may have been.
            None => sqlx::query_scalar(
                "UPDATE messages SET status = 'sending', attempts = attempts + 1, send_lease_until_ms = $2
                     WHERE job_id = $1 AND status IN ('failed', 'queued') RETURNING id",
            )
            .bind(job_id)
            .bind(lease)
            .fetch_optional(&mut *tx)
            .await?,
        };
        let outbound = match message_id {
            Some(message_id) => Some(outbound_in(&mut tx, MessageId(message_id)).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(outbound)
    }

    async fn apply_status_report(&self, report: &StatusReport) -> Result<ReceiptApplied, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The text's row is locked until commit: two receipts for one text
        // (callbacks race) are applied one after the other, each judged
        // against the status the other left.
        let Some(row) = sqlx::query(
            "SELECT m.id, m.conversation_id, m.kind, m.delivery_status, c.customer_id, k.phone
             FROM messages m
             JOIN conversations c ON c.id = m.conversation_id
             JOIN customers k ON k.id = c.customer_id
             WHERE m.channel_message_id = $1 AND m.direction = 'outbound'
             FOR UPDATE OF m",
        )
        .bind(&report.channel_message_id)
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
        let now = self.now();
        let error_code = report
            .error_code
            .map(|c| c.clamp(i32::MIN as i64, i32::MAX as i64) as i32);
        let new = sqlx::query(
            "INSERT INTO delivery_receipts (message_id, status, error_code, applied, received_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_id, status) DO NOTHING",
        )
        .bind(id)
        .bind(report.status.as_str())
        .bind(error_code)
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
            "UPDATE messages SET delivery_status = $1, delivery_error_code = $2, delivery_updated_at = $3
             WHERE id = $4",
        )
        .bind(report.status.as_str())
        .bind(error_code)
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
            kind: MessageKind::parse(row.try_get("kind")?),
            status: report.status,
            error_code: report.error_code,
        }))
    }

    async fn job_text_deliveries(&self, job_ids: &[i64]) -> Result<Vec<TextDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT job_id, status, delivery_status, delivery_error_code FROM messages
             WHERE job_id = ANY($1) ORDER BY job_id",
        )
        .bind(job_ids)
        .fetch_all(&self.pool)
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
                    error_code: row
                        .try_get::<Option<i32>, _>("delivery_error_code")?
                        .map(i64::from),
                })
            })
            .collect()
    }

    async fn delivery_receipt(
        &self,
        id: MessageId,
    ) -> Result<Option<(DeliveryStatus, Option<i64>)>, StoreError> {
        let row: Option<(Option<String>, Option<i32>)> =
            sqlx::query_as("SELECT delivery_status, delivery_error_code FROM messages WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some((Some(raw), code)) => Ok(Some((parse_delivery_status(&raw)?, code.map(i64::from)))),
            _ => Ok(None),
        }
    }
}
