//! The calls port on Postgres.

use async_trait::async_trait;

use super::PgStore;
use crate::store::{CallRecords, MessageId, StoreError};

#[async_trait]
impl CallRecords for PgStore {
    async fn cut_spoken_reply(&self, id: MessageId, heard: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE messages SET body = $1 WHERE id = $2 AND direction = 'outbound'")
            .bind(heard)
            .bind(id.0)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
