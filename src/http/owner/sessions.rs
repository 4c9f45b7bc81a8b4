//! tower-sessions' `SessionStore` over our own database (the `sessions`
//! table), so a restart does not log the owner out and several instances
//! on one database share sessions. tower-sessions-sqlx-store would bring a
//! second sqlx.

use std::sync::Arc;

use async_trait::async_trait;
use tower_sessions::cookie::time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::store::console::{ConsoleStore, StoredSession};

#[derive(Clone)]
pub struct DbSessionStore {
    console: Arc<dyn ConsoleStore>,
}

impl std::fmt::Debug for DbSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbSessionStore")
    }
}

impl DbSessionStore {
    pub fn new(console: Arc<dyn ConsoleStore>) -> Self {
        Self { console }
    }
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn stored(record: &Record) -> session_store::Result<StoredSession> {
    Ok(StoredSession {
        data: serde_json::to_string(&record.data).map_err(|e| session_store::Error::Encode(e.to_string()))?,
        expires_at: record.expiry_date.unix_timestamp(),
    })
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let session = stored(record)?;
        // A session is created at a login or a first visit, rarely enough
        // to sweep out expired ones here instead of in a task of its own.
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.console.delete_expired_sessions(now).await.map_err(backend)?;
        // 128 random bits collide practically never; if they do, draw again
        // rather than overwrite someone else's session.
        while !self
            .console
            .create_session(&record.id.to_string(), &session)
            .await
            .map_err(backend)?
        {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.console
            .save_session(&record.id.to_string(), &stored(record)?)
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let Some(found) = self
            .console
            .load_session(&id.to_string(), now)
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        Ok(Some(Record {
            id: *id,
            data: serde_json::from_str(&found.data)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?,
            expiry_date: OffsetDateTime::from_unix_timestamp(found.expires_at)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.console
            .delete_session(&id.to_string())
            .await
            .map_err(backend)
    }
}
