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
impl ConversationStore for PgStore {
    async fn record_inbound(&self, inbound: &InboundMessage) -> Result<Recorded, StoreError> {
        Err(not_yet("ConversationStore::record_inbound"))
    }

    async fn claim_next_pending(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedConversation>, StoreError> {
        Err(not_yet("ConversationStore::claim_next_pending"))
    }

    async fn claim(&self, id: ConversationId, worker: &str, lease: Duration) -> Result<bool, StoreError> {
        Err(not_yet("ConversationStore::claim"))
    }

    async fn release(&self, id: ConversationId, worker: &str) -> Result<(), StoreError> {
        Err(not_yet("ConversationStore::release"))
    }

    async fn turn_input(&self, id: ConversationId, history_limit: usize) -> Result<TurnInput, StoreError> {
        Err(not_yet("ConversationStore::turn_input"))
    }

    async fn finish_turn(
        &self,
        id: ConversationId,
        commit: TurnCommit,
    ) -> Result<Option<OutboundMessage>, StoreError> {
        Err(not_yet("ConversationStore::finish_turn"))
    }

    async fn set_opted_out(&self, customer: CustomerId, opted_out: bool) -> Result<(), StoreError> {
        Err(not_yet("ConversationStore::set_opted_out"))
    }

    async fn turn_input_with_flood(
        &self,
        id: ConversationId,
        history_limit: usize,
        window: &FloodWindow,
    ) -> Result<(TurnInput, FloodReading), StoreError> {
        Err(not_yet("ConversationStore::turn_input_with_flood"))
    }

    async fn find_conversation(
        &self,
        customer: &E164,
        business_number: &E164,
    ) -> Result<Option<ConversationId>, StoreError> {
        Err(not_yet("ConversationStore::find_conversation"))
    }

    async fn conversation_business(&self, id: ConversationId) -> Result<Option<String>, StoreError> {
        Err(not_yet("ConversationStore::conversation_business"))
    }

    async fn messages(&self, id: ConversationId) -> Result<Vec<Message>, StoreError> {
        Err(not_yet("ConversationStore::messages"))
    }

    async fn last_inbound_at(&self, id: ConversationId) -> Result<Option<DateTime<Utc>>, StoreError> {
        Err(not_yet("ConversationStore::last_inbound_at"))
    }

    async fn commit_owner_action(
        &self,
        id: ConversationId,
        commit: &OwnerCommit,
    ) -> Result<Option<MessageId>, StoreError> {
        Err(not_yet("ConversationStore::commit_owner_action"))
    }

    async fn owner_conversation(
        &self,
        business_id: &str,
        owner_phone: &E164,
        business_number: &E164,
    ) -> Result<ConversationId, StoreError> {
        Err(not_yet("ConversationStore::owner_conversation"))
    }
}
