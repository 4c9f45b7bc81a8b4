//! Web chat sessions on SQLite.

use super::*;
use crate::store::webchat::{PendingCode, WebChatStore, WebSession};

fn session_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<WebSession, StoreError> {
    let address: String = row.try_get("address")?;
    let address = E164::parse_address(&address).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let phone = |column: &str| -> Result<Option<E164>, StoreError> {
        let raw: Option<String> = row.try_get(column)?;
        raw.map(|p| E164::parse(&p).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    };
    let code_phone = phone("code_phone")?;
    let code_hash: Option<String> = row.try_get("code_hash")?;
    let expires_ms: Option<i64> = row.try_get("code_expires_ms")?;
    let code = match (code_phone, code_hash, expires_ms) {
        (Some(phone), Some(code_hash), Some(ms)) => Some(PendingCode {
            phone,
            code_hash,
            expires_at: DateTime::<Utc>::from_timestamp_millis(ms)
                .ok_or_else(|| StoreError::Corrupt(format!("code expiry {ms}")))?,
            attempts: row.try_get("code_attempts")?,
        }),
        _ => None,
    };
    let linked: Option<i64> = row.try_get("linked_conversation_id")?;
    Ok(WebSession {
        secret: row.try_get("token_hash")?,
        business_id: row.try_get("business_id")?,
        address,
        created_at: row.try_get("created_at")?,
        code,
        codes_sent: row.try_get("codes_sent")?,
        verified_phone: phone("verified_phone")?,
        linked_conversation: linked.map(ConversationId),
    })
}

macro_rules! select_sessions {
    ($where:literal) => {
        concat!(
            "SELECT token_hash, business_id, address, created_at, code_phone, code_hash, code_expires_ms, ",
            "code_attempts, codes_sent, verified_phone, linked_conversation_id FROM webchat_sessions WHERE ",
            $where
        )
    };
}

#[async_trait]
impl WebChatStore for SqliteStore {
    async fn create_web_session(
        &self,
        token_hash: &str,
        business_id: &str,
        address: &E164,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO webchat_sessions (token_hash, business_id, address, created_at) VALUES (?1, ?2, ?3, ?4)")
            .bind(token_hash)
            .bind(business_id)
            .bind(address.as_str())
            .bind(self.now())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn web_session(&self, token_hash: &str) -> Result<Option<WebSession>, StoreError> {
        let row = sqlx::query(select_sessions!("token_hash = ?1"))
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn web_session_of(&self, address: &E164) -> Result<Option<WebSession>, StoreError> {
        let row = sqlx::query(select_sessions!("address = ?1"))
            .bind(address.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn web_sessions_linked_to(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<WebSession>, StoreError> {
        let rows = sqlx::query(select_sessions!(
            "linked_conversation_id = ?1 ORDER BY created_at"
        ))
        .bind(conversation.0)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn web_code_sent(&self, address: &E164, code: &PendingCode) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE webchat_sessions
             SET code_phone = ?2, code_hash = ?3, code_expires_ms = ?4, code_attempts = 0,
                 codes_sent = codes_sent + 1
             WHERE address = ?1",
        )
        .bind(address.as_str())
        .bind(code.phone.as_str())
        .bind(&code.code_hash)
        .bind(code.expires_at.timestamp_millis())
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("web chat session"));
        }
        Ok(())
    }

    async fn web_code_failed(&self, address: &E164) -> Result<i64, StoreError> {
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE webchat_sessions SET code_attempts = code_attempts + 1
             WHERE address = ?1 RETURNING code_attempts",
        )
        .bind(address.as_str())
        .fetch_optional(&self.writer)
        .await?;
        attempts.ok_or(StoreError::NotFound("web chat session"))
    }

    async fn web_phone_verified(
        &self,
        address: &E164,
        phone: &E164,
        linked: ConversationId,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webchat_sessions
             SET verified_phone = ?2, verified_at = ?3, linked_conversation_id = ?4,
                 code_phone = NULL, code_hash = NULL, code_expires_ms = NULL, code_attempts = 0
             WHERE address = ?1",
        )
        .bind(address.as_str())
        .bind(phone.as_str())
        .bind(self.now())
        .bind(linked.0)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
