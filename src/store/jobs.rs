//! The job queue port.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ConversationId, CustomerId, JobClaim, StoreError};

/// A job to enqueue. `dedupe_key` names its effect: enqueuing the same key
/// twice is a no-op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub kind: &'static str,
    pub dedupe_key: String,
    pub conversation_id: Option<ConversationId>,
    pub customer_id: Option<CustomerId>,
    pub recipient: String,
    pub payload: serde_json::Value,
    pub run_at: DateTime<Utc>,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Running,
    Done,
    Dead,
    Cancelled,
    Suspended,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "dead" => JobStatus::Dead,
            "cancelled" => JobStatus::Cancelled,
            "suspended" => JobStatus::Suspended,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub dedupe_key: String,
    pub conversation_id: Option<ConversationId>,
    pub customer_id: Option<CustomerId>,
    pub recipient: String,
    pub payload: serde_json::Value,
    pub run_at: DateTime<Utc>,
    pub status: JobStatus,
    pub attempts: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub business_id: String,
}

/// How a claimed job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Done {
        result: Option<String>,
    },
    /// Failed; run again at `at`.
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    /// Failed for good: dead-lettered for the owner.
    Dead {
        error: String,
    },
    /// Not due after all (quiet hours): run at `at`, no attempt counted.
    Defer {
        at: DateTime<Utc>,
    },
    /// No longer wanted (the booking moved, the customer replied).
    Cancelled {
        reason: String,
    },
}

/// How an outcome is written to its job's row.
pub(crate) struct OutcomeRow {
    pub status: &'static str,
    /// When it runs next (epoch ms), if again.
    pub run_at_ms: Option<i64>,
    pub error: Option<String>,
    pub result: Option<String>,
    /// The attempt is given back (quiet hours deferred it).
    pub uncount: bool,
}

impl JobOutcome {
    pub(crate) fn row(&self) -> OutcomeRow {
        let row = |status, run_at: Option<DateTime<Utc>>, error: Option<&String>, result: Option<&String>| {
            OutcomeRow {
                status,
                run_at_ms: run_at.map(|t| t.timestamp_millis()),
                error: error.cloned(),
                result: result.cloned(),
                uncount: false,
            }
        };
        match self {
            JobOutcome::Done { result } => row("done", None, None, result.as_ref()),
            JobOutcome::Retry { at, error } => row("pending", Some(*at), Some(error), None),
            JobOutcome::Dead { error } => row("dead", None, Some(error), None),
            JobOutcome::Defer { at } => OutcomeRow {
                uncount: true,
                ..row("pending", Some(*at), None, None)
            },
            JobOutcome::Cancelled { reason } => row("cancelled", None, Some(reason), None),
        }
    }
}

/// Proactive work (reminders, emails, media fetches): enqueued by effect,
/// claimed under a lease, finished, suspended per customer, listed.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Enqueues jobs; a dedupe key already known is skipped. Returns how
    /// many were new.
    async fn enqueue_jobs(&self, jobs: &[NewJob]) -> Result<usize, StoreError>;

    /// Claims up to `limit` due pending jobs for `lease`, oldest due first.
    async fn claim_due_jobs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError>;

    /// Records how the job ended, if `claim` still holds it: the job is
    /// still running under that claim (not taken over after its lease ran
    /// out, nor handed back by a restart's recovery). False when the claim
    /// was lost: nothing is recorded, and the claim that replaced it
    /// records its own outcome.
    async fn finish_job(&self, claim: JobClaim, outcome: &JobOutcome) -> Result<bool, StoreError> {
        let recorded = self.finish_jobs(&[(claim, outcome.clone())]).await?;
        Ok(recorded.first() == Some(&true))
    }

    /// As `finish_job` for each of several claims, in one statement (one
    /// transaction on SQLite): whether each outcome was recorded, in order.
    async fn finish_jobs(&self, outcomes: &[(JobClaim, JobOutcome)]) -> Result<Vec<bool>, StoreError>;

    /// Stops a customer's pending jobs (STOP), or starts them again (START).
    async fn suspend_jobs(&self, customer: CustomerId, suspended: bool) -> Result<u64, StoreError>;

    /// Jobs in these states, soonest first.
    async fn jobs(&self, statuses: &[JobStatus], limit: usize) -> Result<Vec<Job>, StoreError>;

    /// A conversation's pending (or suspended) jobs of one kind, soonest
    /// first.
    async fn pending_jobs_of(&self, conversation: ConversationId, kind: &str)
    -> Result<Vec<Job>, StoreError>;
}
