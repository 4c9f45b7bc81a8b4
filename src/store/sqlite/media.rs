//! Media on SQLite.

use super::*;

/// The images of the texts in `history`, oldest first; bytes for the newest
/// fetched few.
pub(super) async fn history_images(
    conn: &mut sqlx::SqliteConnection,
    id: ConversationId,
    history: &[Message],
) -> Result<Vec<StoredImage>, StoreError> {
    let Some(first) = history.iter().filter(|m| m.num_media > 0).map(|m| m.id.0).min() else {
        return Ok(Vec::new());
    };
    let in_history: std::collections::HashSet<i64> = history.iter().map(|m| m.id.0).collect();
    let rows = sqlx::query(
        "SELECT id, message_id, position, content_type, status FROM media
         WHERE conversation_id = ? AND message_id >= ? AND content_type LIKE 'image/%'
         ORDER BY message_id, position",
    )
    .bind(id.0)
    .bind(first)
    .fetch_all(&mut *conn)
    .await?;
    let mut images = Vec::new();
    let mut media_ids = Vec::new();
    for row in &rows {
        let message_id: i64 = row.try_get("message_id")?;
        if !in_history.contains(&message_id) {
            continue;
        }
        media_ids.push(row.try_get::<i64, _>("id")?);
        images.push(StoredImage {
            message_id: MessageId(message_id),
            position: row.try_get("position")?,
            content_type: row.try_get("content_type")?,
            status: media_status(row)?,
            data: None,
        });
    }
    let mut with_data = 0;
    for (image, media_id) in images.iter_mut().zip(&media_ids).rev() {
        if with_data == TURN_IMAGES_WITH_DATA {
            break;
        }
        if image.status == MediaStatus::Fetched {
            image.data = sqlx::query_scalar("SELECT bytes FROM media WHERE id = ?")
                .bind(media_id)
                .fetch_one(&mut *conn)
                .await?;
            with_data += 1;
        }
    }
    Ok(images)
}

#[async_trait]
impl MediaStore for SqliteStore {
    async fn message_media(&self, id: MessageId) -> Result<Vec<MediaItem>, StoreError> {
        sqlx::query(
            "SELECT id, message_id, conversation_id, position, url, content_type, status, size, last_error
             FROM media WHERE message_id = ? ORDER BY position",
        )
        .bind(id.0)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(media_from_row)
        .collect()
    }

    async fn media_item(&self, id: i64) -> Result<Option<MediaItem>, StoreError> {
        sqlx::query(
            "SELECT id, message_id, conversation_id, position, url, content_type, status, size, last_error
             FROM media WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.reader)
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
            "UPDATE media SET status = ?, bytes = ?, size = ?, last_error = ?, fetched_at = ?
             WHERE id = ? AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(bytes)
        .bind(bytes.map(|b| b.len() as i64))
        .bind(error)
        .bind(self.now())
        .bind(id)
        .execute(&self.writer)
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
                 SELECT * FROM media
                 WHERE conversation_id = ? AND status IN ('fetched', 'pending') AND content_type LIKE 'image/%'
                 ORDER BY message_id DESC, position DESC LIMIT ?)
             ORDER BY message_id, position",
        )
        .bind(id.0)
        .bind(limit as i64)
        .fetch_all(&self.reader)
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

fn media_status(row: &sqlx::sqlite::SqliteRow) -> Result<MediaStatus, StoreError> {
    let status: String = row.try_get("status")?;
    MediaStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("media status `{status}`")))
}

fn media_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<MediaItem, StoreError> {
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

/// How many of a turn's images carry their bytes: the newest ones. Enough
/// to size a job from several angles, and it keeps a model request well
/// under the API's size limit (each image is at most 5 MB).
pub const TURN_IMAGES_WITH_DATA: usize = 4;
