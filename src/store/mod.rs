//! Durable state, behind a trait in domain terms.
//!
//! Callers speak of customers, conversations, messages and alerts, never of
//! SQL, so a Postgres backend can be added beside [`sqlite::SqliteStore`]
//! without touching them. Every method that the webhook or the worker may
//! repeat (after a Twilio retry or a crash) is idempotent.

pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::availability::Interval;
use crate::domain::conversation::ConversationState;
use crate::domain::delivery::{self, DeliveryStatus};
use crate::domain::phone::E164;
use crate::domain::quote::Quote;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomerId(pub i64);

/// A conversation claimed for a turn, with its business: the claim reads
/// it in the same statement, so picking the business's engine costs no
/// read of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedConversation {
    pub id: ConversationId,
    pub business_id: String,
}

/// A text as Twilio delivered it, already validated and parsed.
#[derive(Debug, Clone)]
pub struct InboundSms {
    /// The business the text was sent to (routed by its `To`).
    pub business_id: String,
    pub message_sid: String,
    pub from: E164,
    pub to: E164,
    pub body: String,
    /// `MediaUrl{N}` and `MediaContentType{N}`, N from 0, at most 10.
    pub media: Vec<InboundMedia>,
    /// Every parameter of the webhook, kept for the record.
    pub params: serde_json::Value,
}

/// The job kind that fetches one pending media file (payload: `media_id`).
/// Enqueued by `record_inbound` in the text's own transaction.
pub const FETCH_MEDIA: &str = "fetch_media";

/// Attempts a media fetch gets before it is given up (and the owner told).
pub const FETCH_MEDIA_ATTEMPTS: u32 = 5;

/// One file attached to an inbound message, and what is to be done with it
/// (decided at the edge, where the provider's base URL is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMedia {
    pub url: String,
    pub content_type: String,
    pub status: MediaStatus,
}

/// Where a media file stands. Only `Pending` files are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaStatus {
    /// An image waiting for its `fetch_media` job.
    Pending,
    Fetched,
    /// Stopped at the size limit: never retried.
    TooLarge,
    /// Every attempt failed.
    Failed,
    /// Not an image: recorded, never fetched.
    NotFetched,
    /// The URL is not the provider's: recorded, never fetched.
    Refused,
}

impl MediaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaStatus::Pending => "pending",
            MediaStatus::Fetched => "fetched",
            MediaStatus::TooLarge => "too_large",
            MediaStatus::Failed => "failed",
            MediaStatus::NotFetched => "not_fetched",
            MediaStatus::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => MediaStatus::Pending,
            "fetched" => MediaStatus::Fetched,
            "too_large" => MediaStatus::TooLarge,
            "failed" => MediaStatus::Failed,
            "not_fetched" => MediaStatus::NotFetched,
            "refused" => MediaStatus::Refused,
            _ => return None,
        })
    }
}

/// A stored media file, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaItem {
    pub id: i64,
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub position: i64,
    pub url: String,
    pub content_type: String,
    pub status: MediaStatus,
    pub size: Option<i64>,
    pub last_error: Option<String>,
}

/// How a fetch ended, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaFetch {
    Fetched(Vec<u8>),
    TooLarge,
    Refused,
    Failed(String),
}

/// An image of a conversation: in a turn's history (for the model) or
/// attached to an email. `data` is absent while the image is not fetched,
/// or when it was left out to bound the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub message_id: MessageId,
    pub position: i64,
    pub content_type: String,
    pub status: MediaStatus,
    pub data: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New(ConversationId, MessageId),
    /// The MessageSid was seen before: a webhook retry. Nothing changed.
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
    pub kind: String,
    pub body: String,
    pub status: String,
    pub twilio_sid: Option<String>,
    pub num_media: i64,
    /// Twilio's `OptOutType` for this text, when Advanced Opt-Out set one.
    pub opt_out_type: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: ConversationId,
    pub customer_id: CustomerId,
    pub customer_phone: E164,
    pub business_number: E164,
    pub opted_out: bool,
    /// The name the customer's WhatsApp profile shows (`ProfileName`), as
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
}

/// Model requests one turn cost a customer, on a day of the business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelCalls {
    pub customer: CustomerId,
    pub day: NaiveDate,
    pub calls: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundDraft {
    pub kind: &'static str,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct OutboundSms {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub customer_id: CustomerId,
    pub customer_opted_out: bool,
    pub to: E164,
    pub from: E164,
    pub body: String,
    /// The message's kind (`reply`, `reminder`, `confirmation`, ...): which
    /// template stands in for it outside WhatsApp's window.
    pub kind: String,
    /// When the customer last wrote in this conversation; WhatsApp's
    /// free-form window runs from it.
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// Claims so far, this one included: more than one means an earlier
    /// attempt was interrupted and may have reached the provider.
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent {
        sid: String,
    },
    /// Twilio 21610: the recipient has opted out. Never retried.
    OptedOut,
    Failed {
        error: String,
    },
    /// The request may or may not have reached Twilio (a timeout). Not
    /// retried, so the customer is never texted twice; the owner is alerted.
    Unknown {
        error: String,
    },
    /// Not sent, and never retried, because the channel forbids it now
    /// (WhatsApp free-form text outside the 24-hour window with no template
    /// for it, or Twilio's 63016). The owner is alerted.
    Withheld {
        reason: String,
    },
}

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

/// What a restart found unfinished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    pub leases_freed: u64,
    pub sends_requeued: u64,
    pub jobs_requeued: u64,
}

#[derive(Debug, Clone)]
pub struct Alert {
    pub kind: String,
    pub conversation_id: Option<ConversationId>,
    pub detail: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingStatus {
    Pending,
    Confirmed,
    Cancelled,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Pending => "pending",
            BookingStatus::Confirmed => "confirmed",
            BookingStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingRecord {
    /// Deterministic, and the calendar event's id.
    pub id: String,
    pub conversation_id: ConversationId,
    pub provider_id: String,
    pub calendar_id: String,
    pub slot: Interval,
    pub label: String,
    pub status: BookingStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Stored now, or already there under this id (a rerun).
    Reserved(BookingRecord),
    /// Another live booking of the crew overlaps.
    Conflict,
}

/// A pending booking older than this was abandoned (a crash between the
/// record and the event) and no longer blocks its slot.
pub const STALE_PENDING_MINUTES: i64 = 15;

/// An opening held for one conversation until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub provider_id: String,
    /// The opening as offered: arrival through the end of the job.
    pub slot: Interval,
    /// What a job in `slot` keeps the crew from: the slot with buffers.
    pub blocked: Interval,
}

/// A delivery receipt: one of Twilio's status callbacks, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub message_sid: String,
    pub status: DeliveryStatus,
    pub error_code: Option<i64>,
}

/// An outbound text a receipt moved forward, with whom it was for.
#[derive(Debug, Clone)]
pub struct ReceiptedText {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub customer_id: CustomerId,
    pub to: E164,
    /// The message kind: `reminder`, `confirmation`, `reply`, ...
    pub kind: String,
    pub status: DeliveryStatus,
    pub error_code: Option<i64>,
}

/// What a receipt did.
#[derive(Debug, Clone)]
pub enum ReceiptApplied {
    /// No text of ours has this SID: nothing changed.
    UnknownMessage,
    /// This status was already received for this text: nothing changed.
    Repeated,
    /// Arrived after a later status (callbacks come out of order): kept
    /// for the record, the text's status unchanged.
    Late { current: Option<DeliveryStatus> },
    /// The text's delivery status moved forward to the receipt's.
    Advanced(ReceiptedText),
}

/// What became of the text a job sent, for the owner's job list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextDelivery {
    pub job_id: i64,
    /// Our own send state: sent, failed, opted_out, unknown, ...
    pub send_status: String,
    /// The latest receipt from Twilio, if any came.
    pub receipt: Option<DeliveryStatus>,
    pub error_code: Option<i64>,
}

impl TextDelivery {
    /// "delivered", "undelivered: the number is a landline ...", or our own
    /// send state while no receipt has come.
    pub fn summary(&self) -> String {
        match self.receipt {
            Some(status) if status.is_failure() => {
                format!(
                    "{}: {}",
                    status.as_str(),
                    delivery::describe_error(self.error_code)
                )
            }
            Some(status) => status.as_str().to_string(),
            None => self.send_status.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("no such {0}")]
    NotFound(&'static str),
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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores an inbound text, creating its customer and conversation on
    /// first contact. Idempotent on the MessageSid.
    async fn record_inbound(&self, sms: &InboundSms) -> Result<Recorded, StoreError>;

    /// Claims the conversation that has waited longest for an answer and
    /// is not leased by anyone, for `lease`.
    async fn claim_next_pending(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedConversation>, StoreError>;

    /// Claims one conversation (for `textdesk chat`), if nobody holds it.
    async fn claim(&self, id: ConversationId, worker: &str, lease: Duration) -> Result<bool, StoreError>;

    async fn release(&self, id: ConversationId, worker: &str) -> Result<(), StoreError>;

    /// Frees every lease and requeues texts left mid-send. Called at start
    /// by the process that is the only one serving its database (always true
    /// of SQLite), so turns interrupted by a crash run again at once.
    async fn recover_interrupted_work(&self) -> Result<Recovered, StoreError>;

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
    ) -> Result<Option<OutboundSms>, StoreError>;

    /// Moves a queued text to `sending` and returns it; `None` if another
    /// task already took it or it is no longer queued.
    async fn claim_outbound(&self, id: MessageId) -> Result<Option<OutboundSms>, StoreError>;

    /// Texts left queued or mid-send (after a crash), oldest first; without
    /// `proactive`, leaving out reminders and follow-ups (quiet hours).
    async fn undelivered(&self, proactive: bool) -> Result<Vec<MessageId>, StoreError>;

    async fn record_delivery(&self, id: MessageId, delivery: &Delivery) -> Result<(), StoreError>;

    async fn set_opted_out(&self, customer: CustomerId, opted_out: bool) -> Result<(), StoreError>;

    async fn record_alert(
        &self,
        kind: &str,
        conversation: Option<ConversationId>,
        detail: &str,
    ) -> Result<(), StoreError>;

    async fn alerts(&self) -> Result<Vec<Alert>, StoreError>;

    /// What flood throttling needs to know about a conversation, in one
    /// read: its texts since `since` (at most `limit + 1` counted), its
    /// last reply, and the customer's model calls and flood alert on `day`
    /// (which starts at `day_start`).
    async fn flood_reading(
        &self,
        id: ConversationId,
        since: DateTime<Utc>,
        limit: usize,
        day: NaiveDate,
        day_start: DateTime<Utc>,
    ) -> Result<FloodReading, StoreError>;

    async fn find_conversation(
        &self,
        customer: &E164,
        business_number: &E164,
    ) -> Result<Option<ConversationId>, StoreError>;

    /// Every message of a conversation, oldest first.
    /// The business a conversation belongs to.
    async fn conversation_business(&self, id: ConversationId) -> Result<Option<String>, StoreError>;

    /// Gives rows written before businesses existed (business `default`)
    /// to `business_id`: those of conversations with one of `numbers`, or
    /// all of them when `numbers` is `None` (one business answers every
    /// number). Returns how many conversations it adopted.
    async fn adopt_legacy_rows(
        &self,
        business_id: &str,
        numbers: Option<&[String]>,
    ) -> Result<u64, StoreError>;

    async fn messages(&self, id: ConversationId) -> Result<Vec<Message>, StoreError>;

    /// A provider's booked (pending or confirmed) job intervals overlapping
    /// `range`, leaving out booking `except`.
    async fn provider_bookings(
        &self,
        business: &str,
        provider: &str,
        range: Interval,
        except: Option<&str>,
    ) -> Result<Vec<Interval>, StoreError>;

    /// Openings held, unexpired at `now`, for conversations other than `id`.
    async fn holds_of_others(&self, id: ConversationId, now: DateTime<Utc>) -> Result<Vec<Hold>, StoreError>;

    /// In one IMMEDIATE transaction: drops the conversation's holds (and
    /// expired ones), then holds each of `wanted` that conflicts with no live
    /// booking of its provider (other than `except_booking`, the one being
    /// moved) and no live hold of another conversation, and returns those
    /// granted, in order. A hold conflicts with another when either's slot
    /// overlaps what the other blocks, so two granted holds can both be
    /// booked. An empty `wanted` releases the conversation's holds.
    async fn hold(
        &self,
        id: ConversationId,
        wanted: &[Hold],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        except_booking: Option<&str>,
    ) -> Result<Vec<Hold>, StoreError>;

    /// In one transaction: returns the booking with this id if it exists;
    /// otherwise, unless another live booking of the provider overlaps
    /// `blocked`, or a live hold of another conversation conflicts with it
    /// (as between holds), stores this one as pending. The check and the
    /// insert are atomic, so two processes cannot both take a slot.
    async fn reserve_booking(
        &self,
        booking: &BookingRecord,
        blocked: Interval,
        now: DateTime<Utc>,
    ) -> Result<Reservation, StoreError>;

    /// How many of the conversation's bookings were cancelled: part of a new
    /// booking's id, so an id is never reused after a cancellation.
    async fn booking_generation(&self, id: ConversationId) -> Result<u32, StoreError>;

    /// Moves a booking to a new status, and optionally new times.
    async fn update_booking(
        &self,
        id: &str,
        status: BookingStatus,
        moved_to: Option<(&str, &str, Interval, &str)>,
    ) -> Result<(), StoreError>;

    async fn booking(&self, id: &str) -> Result<Option<BookingRecord>, StoreError>;

    /// Every booking, oldest first (for the owner's tools and tests).
    async fn bookings(&self) -> Result<Vec<BookingRecord>, StoreError>;

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

    async fn finish_job(&self, id: i64, outcome: &JobOutcome) -> Result<(), StoreError>;

    /// Stops a customer's pending jobs (STOP), or starts them again (START).
    async fn suspend_jobs(&self, customer: CustomerId, suspended: bool) -> Result<u64, StoreError>;

    /// Jobs in these states, soonest first.
    async fn jobs(&self, statuses: &[JobStatus], limit: usize) -> Result<Vec<Job>, StoreError>;

    /// Stores the text a job sends, claimed for sending; `None` if this job
    /// already has its text.
    async fn queue_job_message(
        &self,
        id: ConversationId,
        job_id: i64,
        draft: OutboundDraft,
    ) -> Result<Option<OutboundSms>, StoreError>;

    /// When the customer last texted in this conversation.
    async fn last_inbound_at(&self, id: ConversationId) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Applies a delivery receipt to the text with its SID, forward only
    /// (see `domain::delivery::advances`); each (text, status) once.
    async fn apply_status_report(&self, report: &StatusReport) -> Result<ReceiptApplied, StoreError>;

    /// What became of the texts these jobs sent (jobs without a text are
    /// left out).
    async fn job_text_deliveries(&self, job_ids: &[i64]) -> Result<Vec<TextDelivery>, StoreError>;

    /// A text's latest delivery receipt and its error code, if any came.
    async fn delivery_receipt(
        &self,
        id: MessageId,
    ) -> Result<Option<(DeliveryStatus, Option<i64>)>, StoreError>;
    /// Every media file of a message, in `MediaUrl{N}` order.
    async fn message_media(&self, id: MessageId) -> Result<Vec<MediaItem>, StoreError>;

    async fn media_item(&self, id: i64) -> Result<Option<MediaItem>, StoreError>;

    /// Records how a fetch ended; a file no longer pending is left as it is,
    /// so a rerun job cannot overwrite a result.
    async fn record_media_fetch(&self, id: i64, fetch: &MediaFetch) -> Result<(), StoreError>;

    /// The conversation's fetched images with their bytes, and those still
    /// pending without, oldest first; at most `limit` (the newest ones).
    async fn conversation_photos(
        &self,
        id: ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredImage>, StoreError>;
}
