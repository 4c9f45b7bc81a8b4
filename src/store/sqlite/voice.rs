//! The calls port on SQLite.

use super::*;

#[async_trait]
impl CallRecords for SqliteStore {
    async fn cut_spoken_reply(&self, id: MessageId, heard: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE messages SET body = ? WHERE id = ? AND direction = 'outbound'")
            .bind(heard)
            .bind(id.0)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
