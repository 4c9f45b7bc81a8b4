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
impl JobQueue for PgStore {
    async fn enqueue_jobs(&self, jobs: &[NewJob]) -> Result<usize, StoreError> {
        Err(not_yet("JobQueue::enqueue_jobs"))
    }

    async fn claim_due_jobs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError> {
        Err(not_yet("JobQueue::claim_due_jobs"))
    }

    async fn finish_job(&self, id: i64, outcome: &JobOutcome) -> Result<(), StoreError> {
        Err(not_yet("JobQueue::finish_job"))
    }

    async fn suspend_jobs(&self, customer: CustomerId, suspended: bool) -> Result<u64, StoreError> {
        Err(not_yet("JobQueue::suspend_jobs"))
    }

    async fn jobs(&self, statuses: &[JobStatus], limit: usize) -> Result<Vec<Job>, StoreError> {
        Err(not_yet("JobQueue::jobs"))
    }

    async fn pending_jobs_of(
        &self,
        conversation: ConversationId,
        kind: &str,
    ) -> Result<Vec<Job>, StoreError> {
        Err(not_yet("JobQueue::pending_jobs_of"))
    }
}
