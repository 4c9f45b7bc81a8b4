//! Owner alerts on Postgres.

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::store::*;

#[async_trait]
impl OwnerAlerts for PgStore {
    async fn record_alert(
        &self,
        kind: &AlertKind,
        conversation: Option<ConversationId>,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alerts (kind, conversation_id, detail, created_at, business_id)
             VALUES ($1, $2, $3, $4, COALESCE((SELECT business_id FROM conversations WHERE id = $2), 'default'))",
        )
        .bind(kind.as_str())
        .bind(conversation.map(|c| c.0))
        .bind(detail)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query("SELECT kind, conversation_id, detail, created_at FROM alerts ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Alert {
                    kind: AlertKind::parse(row.try_get("kind")?),
                    conversation_id: row
                        .try_get::<Option<i64>, _>("conversation_id")?
                        .map(ConversationId),
                    detail: row.try_get("detail")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}
