//! Media on Postgres.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use crate::store::{
    ConversationId, MediaFetch, MediaItem, MediaStatus, MediaStore, MessageId, StoreError, StoredImage,
};

/// The columns `media_from_row` reads (`position` is INTEGER in the table,
/// `i64` in the domain).
const MEDIA_COLUMNS: &str = "id, message_id, conversation_id, position::BIGINT AS position, url, content_type, status, size, last_error";

#[async_trait]
impl MediaStore for PgStore {
    async fn message_media(&self, id: MessageId) -> Result<Vec<MediaItem>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MEDIA_COLUMNS} FROM media WHERE message_id = $1 ORDER BY position"
        )))
        .bind(id.0)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(media_from_row)
        .collect()
    }

    async fn media_item(&self, id: i64) -> Result<Option<MediaItem>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MEDIA_COLUMNS} FROM media WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(media_from_row)
        .transpose()
    }

    async fn record_media_fetch(&self, id: i64, fetch: &MediaFetch) -> Result<(), StoreError> {
        let (status, bytes, error) = match fetch {
            MediaFetch::Fetched(bytes) => (MediaStatus::Fetched, Some(bytes.as_slice()), None),
            MediaFetch::TooLarge => (MediaStatus::TooLarge, None, None),
            MediaFetch::Refused => (MediaStatus::Refused, None, None),
            MediaFetch::Failed(error) => (MediaStatus::Failed, None, Some(error.as_str())),
        };
        sqlx::query(
            "UPDATE media SET status = $1, bytes = $2, size = $3, last_error = $4, fetched_at = $5
             WHERE id = $6 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(bytes)
        .bind(bytes.map(|b| b.len() as i64))
        .bind(error)
        .bind(self.now())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn conversation_photos(
        &self,
        id: ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredImage>, StoreError> {
        let rows = sqlx::query(
            "SELECT message_id, position, content_type, status, bytes FROM (
                 SELECT message_id, position::BIGINT AS position, content_type, status, bytes FROM media
                 WHERE conversation_id = $1 AND status IN ('fetched', 'pending') AND content_type LIKE 'image/%'
                 ORDER BY message_id DESC, position DESC LIMIT $2) newest
             ORDER BY message_id, position",
        )
        .bind(id.0)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredImage {
                    message_id: MessageId(row.try_get("message_id")?),
                    position: row.try_get("position")?,
                    content_type: row.try_get("content_type")?,
                    status: media_status(row)?,
                    data: row.try_get("bytes")?,
                })
            })
            .collect()
    }
}

fn media_status(row: &PgRow) -> Result<MediaStatus, StoreError> {
    let status: String = row.try_get("status")?;
    MediaStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("media status `{status}`")))
}

fn media_from_row(row: &PgRow) -> Result<MediaItem, StoreError> {
    Ok(MediaItem {
        id: row.try_get("id")?,
        message_id: MessageId(row.try_get("message_id")?),
        conversation_id: ConversationId(row.try_get("conversation_id")?),
        position: row.try_get("position")?,
        url: row.try_get("url")?,
        content_type: row.try_get("content_type")?,
        status: media_status(row)?,
        size: row.try_get("size")?,
        last_error: row.try_get("last_error")?,
    })
}
