//! Placeholder: every method of this port answers "not implemented" on
//! Postgres until the real one replaces this file. Delete the file (and its
//! `mod` line in `pending/mod.rs`) when you implement the port.

#![allow(unused_imports, unused_variables)]

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::super::PgStore;
use super::not_yet;
use crate::config::fragments::Fragment;
use crate::domain::availability::Interval;
use crate::domain::conversation::ConversationState;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::phone::E164;
use crate::store::console::*;
use crate::store::*;

#[async_trait]
impl ConsoleStore for PgStore {
    async fn owner_password_hash(&self) -> Result<Option<String>, StoreError> {
        Err(not_yet("ConsoleStore::owner_password_hash"))
    }

    async fn set_owner_password_hash(&self, hash: &str) -> Result<(), StoreError> {
        Err(not_yet("ConsoleStore::set_owner_password_hash"))
    }

    async fn load_session(&self, id: &str, now_unix: i64) -> Result<Option<StoredSession>, StoreError> {
        Err(not_yet("ConsoleStore::load_session"))
    }

    async fn create_session(&self, id: &str, session: &StoredSession) -> Result<bool, StoreError> {
        Err(not_yet("ConsoleStore::create_session"))
    }

    async fn save_session(&self, id: &str, session: &StoredSession) -> Result<(), StoreError> {
        Err(not_yet("ConsoleStore::save_session"))
    }

    async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        Err(not_yet("ConsoleStore::delete_session"))
    }

    async fn delete_expired_sessions(&self, now_unix: i64) -> Result<u64, StoreError> {
        Err(not_yet("ConsoleStore::delete_expired_sessions"))
    }

    async fn inbox(&self, query: &InboxQuery) -> Result<Vec<InboxRow>, StoreError> {
        Err(not_yet("ConsoleStore::inbox"))
    }

    async fn conversation_detail(
        &self,
        id: ConversationId,
    ) -> Result<Option<ConversationDetail>, StoreError> {
        Err(not_yet("ConsoleStore::conversation_detail"))
    }

    async fn mark_read(&self, id: ConversationId, last_id: MessageId) -> Result<(), StoreError> {
        Err(not_yet("ConsoleStore::mark_read"))
    }

    async fn media_bytes(&self, id: i64) -> Result<Option<MediaBytes>, StoreError> {
        Err(not_yet("ConsoleStore::media_bytes"))
    }

    async fn bookings_between(
        &self,
        business_id: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ConsoleBooking>, StoreError> {
        Err(not_yet("ConsoleStore::bookings_between"))
    }

    async fn console_alerts(
        &self,
        business_id: Option<&str>,
        open: bool,
        limit: usize,
    ) -> Result<Vec<ConsoleAlert>, StoreError> {
        Err(not_yet("ConsoleStore::console_alerts"))
    }

    async fn open_alert_count(&self, business_id: Option<&str>) -> Result<i64, StoreError> {
        Err(not_yet("ConsoleStore::open_alert_count"))
    }

    async fn resolve_alert(&self, id: i64, by: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        Err(not_yet("ConsoleStore::resolve_alert"))
    }

    async fn retry_dead_job(&self, id: i64, now: DateTime<Utc>) -> Result<JobChange, StoreError> {
        Err(not_yet("ConsoleStore::retry_dead_job"))
    }

    async fn cancel_pending_job(&self, id: i64, now: DateTime<Utc>) -> Result<JobChange, StoreError> {
        Err(not_yet("ConsoleStore::cancel_pending_job"))
    }
}
