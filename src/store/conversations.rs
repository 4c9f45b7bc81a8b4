//! The conversation port: texts in, leases, a turn's input and commit.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::{
    ConversationId, CustomerId, InboundMedia, MessageId, MessageKind, NewAlert, NewJob, OutboundDraft,
    OutboundMessage, StoreError, StoredImage,
};
use crate::domain::conversation::ConversationState;
use crate::domain::phone::E164;
use crate::domain::quote::Quote;

/// A customer's message as its channel delivered it, already validated and
/// parsed into channel-neutral fields.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    /// The business the text was sent to (routed by its `To`).
    pub business_id: String,
    /// The message's id on its channel: the idempotency key of a webhook
    /// delivered more than once.
    pub channel_message_id: String,
    pub from: E164,
    pub to: E164,
    pub body: String,
    /// The files attached, in the order the channel listed them; at most 10.
    pub media: Vec<InboundMedia>,
    /// Every parameter of the webhook, kept for the record; the store
    /// never reads it.
    pub params: serde_json::Value,
    /// The keyword the provider itself acted on (its own opt-out handling:
    /// `STOP`, `START`, ...), when it reported one.
    pub opt_out_keyword: Option<String>,
    /// The name the customer's profile on the channel shows, if it sends
    /// one (WhatsApp).
    pub profile_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New(ConversationId, MessageId),
    /// The channel message id was seen before: a webhook retry. Nothing changed.
    Duplicate(ConversationId, MessageId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: MessageId,
    pub direction: Direction,
    pub kind: MessageKind,
    pub body: String,
    pub status: String,
    pub channel_message_id: Option<String>,
    pub num_media: i64,
    /// The keyword the provider acted on for this text, when it set one.
    pub opt_out_keyword: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: ConversationId,
    pub customer_id: CustomerId,
    pub customer_phone: E164,
    pub business_number: E164,
    pub opted_out: bool,
    /// The name the customer's profile on the channel shows (WhatsApp), as
    /// last sent; untrusted, so only ever a fallback for a name they type.
    pub profile_name: Option<String>,
}

/// What a turn works from: the texts not yet answered, recent history
/// (which includes them, oldest first), the conversation's state, and the
/// quotes already given.
#[derive(Debug, Clone)]
pub struct TurnInput {
    pub conversation: Conversation,
    pub pending: Vec<Message>,
    pub history: Vec<Message>,
    /// No reply has ever been sent in this conversation.
    pub first_contact: bool,
    pub state: ConversationState,
    /// When the conversation last moved before these texts.
    pub last_activity: Option<DateTime<Utc>>,
    /// Quotes given in this conversation, newest last.
    pub quotes: Vec<Quote>,
    /// The images of `history`'s texts, in order; the bytes of the newest
    /// few fetched ones only.
    pub images: Vec<StoredImage>,
}

impl TurnInput {
    /// The customer's unanswered texts, joined.
    pub fn pending_text(&self) -> String {
        self.pending
            .iter()
            .map(|m| m.body.trim())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Everything a turn decided, committed at once.
#[derive(Debug, Clone)]
pub struct TurnCommit {
    /// The last inbound text this turn answers.
    pub through: MessageId,
    pub reply: Option<OutboundDraft>,
    /// The turn's reply when it waits for the owner's approval: stored
    /// `held` as the answer to `through` (and `reply`, if any, is then the
    /// holding text, sent now).
    pub held: Option<OutboundDraft>,
    pub state: ConversationState,
    pub new_quotes: Vec<Quote>,
    /// Owner alerts the turn raised: stored with it, so a rerun after a
    /// crash neither loses nor repeats them.
    pub alerts: Vec<NewAlert>,
    /// Proactive work the turn scheduled (reminders, emails, a follow-up).
    pub jobs: Vec<NewJob>,
    /// Pending jobs of this conversation whose dedupe key starts with one
    /// of these are cancelled (a moved booking's reminders, say).
    pub cancel_jobs: Vec<String>,
    /// Model requests the turn made, added to the customer's day; counted
    /// even by a rerun that finds the turn already committed.
    pub model_calls: Option<ModelCalls>,
    /// The reply was already delivered on a call (spoken), under this id:
    /// it is stored `sent` in the same commit, so nothing (a crash before
    /// a later write, the recovery of interrupted sends, another instance
    /// taking over stale sends) can text it. `None` for a text turn.
    pub spoken: Option<String>,
}

/// What the owner changed outside a turn, committed as one: the state,
/// and what the change sets in motion (quotes an offer priced, alerts, the
/// booking's reminders and emails, a text to the customer).
#[derive(Debug, Clone)]
pub struct OwnerCommit {
    pub state: ConversationState,
    pub text: Option<OutboundDraft>,
    pub new_quotes: Vec<Quote>,
    pub alerts: Vec<NewAlert>,
    pub jobs: Vec<NewJob>,
    /// Pending jobs of this conversation whose dedupe key starts with one
    /// of these are cancelled.
    pub cancel_jobs: Vec<String>,
    /// The conversation's open alerts of these kinds are resolved by the
    /// owner: the action answers them.
    pub resolve_alerts: Vec<super::AlertKind>,
}

impl OwnerCommit {
    /// Only the state changes.
    pub fn state(state: ConversationState) -> Self {
        Self {
            state,
            text: None,
            new_quotes: Vec::new(),
            alerts: Vec::new(),
            jobs: Vec::new(),
            cancel_jobs: Vec::new(),
            resolve_alerts: Vec::new(),
        }
    }
}

/// Model requests one turn cost a customer, on a day of the business, and
/// the tokens they spent: added to the customer's day and stored as the
/// turn's usage (`turn_usage`) in the turn's own commit, even by a rerun
/// that finds the turn already committed (its requests were made all the
/// same). One write per turn fewer than a usage row of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelCalls {
    pub customer: CustomerId,
    pub day: NaiveDate,
    pub calls: u32,
    pub tokens: crate::store::TokenCounts,
}

/// How hard a conversation's sender is texting, for flood throttling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodReading {
    /// Texts the customer sent in this conversation since the `since` asked
    /// about, counted up to one more than the limit asked about.
    pub recent_texts: usize,
    /// When we last replied in this conversation.
    pub last_reply_at: Option<DateTime<Utc>>,
    /// Model calls the customer cost on the day asked about.
    pub model_calls_today: u32,
    /// A `flood_throttled` alert about this conversation was stored since
    /// the day's start.
    pub alerted_today: bool,
}

/// What a flood reading looks at: the conversation's texts since `since`
/// (at most `limit + 1` counted), its last reply, and the customer's model
/// calls and flood alert on `day`, which starts at `day_start`.
#[derive(Debug, Clone)]
pub struct FloodWindow {
    pub since: DateTime<Utc>,
    pub limit: usize,
    pub day: NaiveDate,
    pub day_start: DateTime<Utc>,
}

/// A conversation claimed for a turn, with its business: the claim reads
/// it in the same statement, so picking the business's engine costs no
/// read of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedConversation {
    pub id: ConversationId,
    pub business_id: String,
    /// Another conversation was waiting too, as the claim saw it: claim
    /// again. When false the next claim can wait for a wake-up (a text
    /// stored, a turn finished) or the poll, instead of asking at once and
    /// finding nothing, which was a round trip per text.
    pub more: bool,
}

/// A customer's side of the desk: texts in, who answers next (leases),
/// what a turn works from and what it decided, consent, and flood readings.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// Stores an inbound text, creating its customer and conversation on
    /// first contact. Idempotent on the channel message id.
    async fn record_inbound(&self, inbound: &InboundMessage) -> Result<Recorded, StoreError>;

    /// Claims the conversation that has waited longest for an answer and
    /// is not leased by anyone, for `lease`.
    async fn claim_next_pending(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedConversation>, StoreError>;

    /// Claims one conversation (for `textdesk chat`), if nobody holds it.
    async fn claim(&self, id: ConversationId, worker: &str, lease: Duration) -> Result<bool, StoreError>;

    /// Gives up `worker`'s lease on `id` (a no-op if it is not theirs),
    /// and says whether the conversation has inbound texts waiting: those
    /// that arrived while it was held, which nobody could claim then. True
    /// also when the lease was not theirs (it is someone else's to answer,
    /// but a wake-up costs one claim and losing one costs a text).
    async fn release(&self, id: ConversationId, worker: &str) -> Result<bool, StoreError>;

    async fn turn_input(&self, id: ConversationId, history_limit: usize) -> Result<TurnInput, StoreError>;

    /// Ends a turn atomically: every inbound text up to `through` is
    /// resolved, the new state and quotes are saved, and the reply, if any,
    /// is stored already claimed for sending (so the caller sends it without
    /// another round trip; after a crash it is requeued). Running it twice
    /// for the same `through` stores one reply; a run that finds its texts
    /// already answered changes nothing and gets `None`.
    async fn finish_turn(
        &self,
        id: ConversationId,
        commit: TurnCommit,
    ) -> Result<Option<OutboundMessage>, StoreError>;

    async fn set_opted_out(&self, customer: CustomerId, opted_out: bool) -> Result<(), StoreError>;

    /// A turn's input and what flood throttling needs to know about its
    /// conversation (see [`FloodWindow`]), in one read: one snapshot, and
    /// one round trip to the database.
    async fn turn_input_with_flood(
        &self,
        id: ConversationId,
        history_limit: usize,
        window: &FloodWindow,
    ) -> Result<(TurnInput, FloodReading), StoreError>;

    async fn find_conversation(
        &self,
        customer: &E164,
        business_number: &E164,
    ) -> Result<Option<ConversationId>, StoreError>;

    /// The business a conversation belongs to.
    async fn conversation_business(&self, id: ConversationId) -> Result<Option<String>, StoreError>;

    /// Every message of a conversation, oldest first.
    async fn messages(&self, id: ConversationId) -> Result<Vec<Message>, StoreError>;

    /// When the customer last texted in this conversation.
    async fn last_inbound_at(&self, id: ConversationId) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Sets a conversation's state outside a turn (the owner took it over,
    /// handed it back, moved or cancelled the booking) with what that sets
    /// in motion and, with `text`, queues a text to the customer; one
    /// transaction. The caller holds the conversation's lease, so no turn
    /// commits in between.
    async fn commit_owner_action(
        &self,
        id: ConversationId,
        commit: &OwnerCommit,
    ) -> Result<Option<MessageId>, StoreError>;

    /// The conversation between a business's number and its owner's phone,
    /// made on first use: the owner's alert texts are stored (and their
    /// STOP honoured) like any other text.
    async fn owner_conversation(
        &self,
        business_id: &str,
        owner_phone: &E164,
        business_number: &E164,
    ) -> Result<ConversationId, StoreError>;
}
