//! The approval port: replies held for the owner, and the owner's decision
//! on them. A held reply is a message of the outbox that no sender picks
//! up; each decision moves it out of `held` exactly once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    AlertKind, ConversationId, MessageId, MessageKind, NewAlert, NewJob, OutboundMessage, StoreError,
};
use crate::domain::conversation::ConversationState;

/// A reply waiting for the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldReply {
    pub id: MessageId,
    pub kind: MessageKind,
    pub body: String,
    /// The last customer text it answers.
    pub reply_to: MessageId,
    pub created_at: DateTime<Utc>,
}

/// What a decision on a held reply also settles, in its transaction: the
/// owner's alerts it answers and the jobs it makes moot (the timeout).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settles {
    /// The conversation's open alerts of these kinds, resolved by the owner.
    pub resolve_alerts: Vec<AlertKind>,
    /// Pending jobs of the conversation whose dedupe key starts with one of
    /// these are cancelled.
    pub cancel_jobs: Vec<String>,
    /// Alerts the decision raises (a timeout tells the owner), stored with
    /// it: a crash cannot keep the decision and lose the alert.
    pub raise_alerts: Vec<NewAlert>,
    /// Jobs queued with it: the raised alerts' email and text to the owner.
    pub jobs: Vec<NewJob>,
}

/// What became of a held reply that is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldOutcome {
    /// The owner rejected it.
    Rejected,
    /// No one acted within the approval timeout.
    Expired,
}

impl HeldOutcome {
    /// The message status it leaves.
    pub fn status(self) -> &'static str {
        match self {
            HeldOutcome::Rejected => "rejected",
            HeldOutcome::Expired => "expired",
        }
    }
}

/// Statuses of our texts that never reached the customer by our choice:
/// a turn's history leaves them out, since the customer never read them.
/// (`deferred`: approved in quiet hours; its job sends it as a text of its
/// own, which the history shows once sent.)
pub const UNSENT_BY_DECISION: [&str; 4] = ["held", "rejected", "expired", "deferred"];

#[async_trait]
pub trait Approvals: Send + Sync + 'static {
    /// The conversation's held reply, if one waits (one at most).
    async fn held_reply(&self, id: ConversationId) -> Result<Option<HeldReply>, StoreError>;

    /// Releases a held reply for sending, with `body` in place of the
    /// drafted text when the owner edited it: stored already claimed, as a
    /// turn's reply is. `None` if it is no longer held (already decided).
    async fn release_held(
        &self,
        id: ConversationId,
        message: MessageId,
        body: Option<&str>,
        settles: &Settles,
    ) -> Result<Option<OutboundMessage>, StoreError>;

    /// Approves a held reply (with `body` when edited) to go out later:
    /// it becomes `deferred` and `job` (the text, at the next allowed
    /// moment) is queued in the same transaction. False if it was no
    /// longer held.
    async fn defer_held(
        &self,
        id: ConversationId,
        message: MessageId,
        body: Option<&str>,
        job: &NewJob,
        settles: &Settles,
    ) -> Result<bool, StoreError>;

    /// Ends a held reply unsent and, with `state`, sets the conversation's
    /// state in the same transaction. False if it was no longer held.
    async fn discard_held(
        &self,
        id: ConversationId,
        message: MessageId,
        outcome: HeldOutcome,
        state: Option<&ConversationState>,
        settles: &Settles,
    ) -> Result<bool, StoreError>;
}
