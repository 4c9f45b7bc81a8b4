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
impl Approvals for PgStore {
    async fn held_reply(&self, id: ConversationId) -> Result<Option<HeldReply>, StoreError> {
        Err(not_yet("Approvals::held_reply"))
    }

    async fn release_held(
        &self,
        id: ConversationId,
        message: MessageId,
        body: Option<&str>,
        settles: &Settles,
    ) -> Result<Option<OutboundMessage>, StoreError> {
        Err(not_yet("Approvals::release_held"))
    }

    async fn defer_held(
        &self,
        id: ConversationId,
        message: MessageId,
        body: Option<&str>,
        job: &NewJob,
        settles: &Settles,
    ) -> Result<bool, StoreError> {
        Err(not_yet("Approvals::defer_held"))
    }

    async fn discard_held(
        &self,
        id: ConversationId,
        message: MessageId,
        outcome: HeldOutcome,
        state: Option<&ConversationState>,
        settles: &Settles,
    ) -> Result<bool, StoreError> {
        Err(not_yet("Approvals::discard_held"))
    }
}
