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
impl Outbox for PgStore {
    async fn claim_outbound(&self, id: MessageId) -> Result<Option<OutboundMessage>, StoreError> {
        Err(not_yet("Outbox::claim_outbound"))
    }

    async fn undelivered(&self, proactive: bool) -> Result<Vec<MessageId>, StoreError> {
        Err(not_yet("Outbox::undelivered"))
    }

    async fn record_delivery(&self, id: MessageId, delivery: &Delivery) -> Result<(), StoreError> {
        Err(not_yet("Outbox::record_delivery"))
    }

    async fn queue_job_message(
        &self,
        id: ConversationId,
        job_id: i64,
        draft: OutboundDraft,
    ) -> Result<Option<OutboundMessage>, StoreError> {
        Err(not_yet("Outbox::queue_job_message"))
    }

    async fn apply_status_report(&self, report: &StatusReport) -> Result<ReceiptApplied, StoreError> {
        Err(not_yet("Outbox::apply_status_report"))
    }

    async fn job_text_deliveries(&self, job_ids: &[i64]) -> Result<Vec<TextDelivery>, StoreError> {
        Err(not_yet("Outbox::job_text_deliveries"))
    }

    async fn delivery_receipt(
        &self,
        id: MessageId,
    ) -> Result<Option<(DeliveryStatus, Option<i64>)>, StoreError> {
        Err(not_yet("Outbox::delivery_receipt"))
    }
}
