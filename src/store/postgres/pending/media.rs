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
impl MediaStore for PgStore {
    async fn message_media(&self, id: MessageId) -> Result<Vec<MediaItem>, StoreError> {
        Err(not_yet("MediaStore::message_media"))
    }

    async fn media_item(&self, id: i64) -> Result<Option<MediaItem>, StoreError> {
        Err(not_yet("MediaStore::media_item"))
    }

    async fn record_media_fetch(&self, id: i64, fetch: &MediaFetch) -> Result<(), StoreError> {
        Err(not_yet("MediaStore::record_media_fetch"))
    }

    async fn conversation_photos(
        &self,
        id: ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredImage>, StoreError> {
        Err(not_yet("MediaStore::conversation_photos"))
    }
}
