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
impl OwnerAlerts for PgStore {
    async fn record_alert(
        &self,
        kind: &AlertKind,
        conversation: Option<ConversationId>,
        detail: &str,
    ) -> Result<(), StoreError> {
        Err(not_yet("OwnerAlerts::record_alert"))
    }

    async fn alerts(&self) -> Result<Vec<Alert>, StoreError> {
        Err(not_yet("OwnerAlerts::alerts"))
    }
}
