//! The outbox port on SQLite.

use super::*;

/// A recorded send's update of its text (parameters 1-5: status, channel
/// id, error, sent at, the text's id), for the statements that record one.
macro_rules! record_delivery {
    () => {
        "UPDATE messages SET status = ?1, channel_message_id = ?2, last_error = ?3, sent_at = ?4 WHERE id = ?5"
    };
}

/// A stored outbound text with where it goes, read inside `tx`.
pub(super) async fn outbound_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
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
         WHERE m.id = ?",
    )
    .bind(id.0)
    .fetch_one(&mut **tx)
    .await?;
    outbound_from_row(id, &row)
}

/// An outbound text from a row with `outbound_in`'s columns.
pub(super) fn outbound_from_row(
    id: MessageId,
    row: &sqlx::sqlite::SqliteRow,
) -> Result<OutboundMessage, StoreError> {
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
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn claim_outbound(&self, id: MessageId) -> Result<Option<OutboundMessage>, StoreError> {
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
        let outbound = outbound_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Some(outbound))
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
        let (status, sid, error) = delivery.columns();
        let sent_at = matches!(delivery, Delivery::Sent { .. }).then(|| self.now());
        sqlx::query(concat!(record_delivery!(), ";"))
            .bind(status)
            .bind(sid)
            .bind(error)
            .bind(sent_at)
            .bind(id.0)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn record_delivery_and_release(
        &self,
        id: MessageId,
        delivery: &Delivery,
        conversation: ConversationId,
        worker: &str,
    ) -> Result<bool, StoreError> {
        // One statement list and one commit where the two took two (no CPU
        // saving could be measured on SQLite: BENCHMARKS.md).
        const RECORD_AND_RELEASE: &str = concat!(
            "BEGIN IMMEDIATE;",
            record_delivery!(),
            ";
             UPDATE conversations SET lease_owner = NULL, lease_until_ms = NULL WHERE id = ?6 AND lease_owner = ?7
             RETURNING EXISTS (SELECT 1 FROM messages WHERE conversation_id = ?6
                               AND direction = 'inbound' AND status = 'pending');
             COMMIT;"
        );
        let (status, sid, error) = delivery.columns();
        let sent_at = matches!(delivery, Delivery::Sent { .. }).then(|| self.now());
        let mut conn = WholeTransaction::acquire(&self.writer).await?;
        // `fetch_all`: asked for one row, sqlx would stop the list before
        // its COMMIT.
        let rows = sqlx::query(RECORD_AND_RELEASE)
            .bind(status)
            .bind(sid)
            .bind(error)
            .bind(sent_at)
            .bind(id.0)
            .bind(conversation.0)
            .bind(worker)
            .fetch_all(conn.connection())
            .await?;
        conn.committed();
        match rows.first() {
            Some(row) => Ok(row.try_get::<bool, _>(0)?),
            None => Ok(true),
        }
    }

    async fn queue_job_message(
        &self,
        id: ConversationId,
        job_id: i64,
        draft: OutboundDraft,
    ) -> Result<Option<OutboundMessage>, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO messages (conversation_id, direction, kind, body, status, attempts, job_id, created_at)
             VALUES (?, 'outbound', ?, ?, 'sending', 1, ?, ?)
             ON CONFLICT (job_id) WHERE job_id IS NOT NULL DO NOTHING
             RETURNING id",
        )
        .bind(id.0)
        .bind(draft.kind.as_str())
        .bind(&draft.body)
        .bind(job_id)
        .bind(self.now())
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
        let outbound = match message_id {
            Some(message_id) => Some(outbound_in(&mut tx, MessageId(message_id)).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(outbound)
    }

    async fn apply_status_report(&self, report: &StatusReport) -> Result<ReceiptApplied, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let Some(row) = sqlx::query(
            "SELECT m.id, m.conversation_id, m.kind, m.delivery_status, c.customer_id, k.phone
             FROM messages m
             JOIN conversations c ON c.id = m.conversation_id
             JOIN customers k ON k.id = c.customer_id
             WHERE m.channel_message_id = ? AND m.direction = 'outbound'",
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
            kind: MessageKind::parse(row.try_get("kind")?),
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
