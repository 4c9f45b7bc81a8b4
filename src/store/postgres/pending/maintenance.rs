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
impl Maintenance for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Err(not_yet("Maintenance::ping"))
    }

    async fn recover_interrupted_work(&self) -> Result<Recovered, StoreError> {
        Err(not_yet("Maintenance::recover_interrupted_work"))
    }

    async fn adopt_legacy_rows(
        &self,
        business_id: &str,
        numbers: Option<&[String]>,
    ) -> Result<u64, StoreError> {
        Err(not_yet("Maintenance::adopt_legacy_rows"))
    }

    async fn businesses_with_conversations(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Err(not_yet("Maintenance::businesses_with_conversations"))
    }
}
