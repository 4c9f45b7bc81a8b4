//! What the owner's console reads and the few records it keeps itself
//! (the owner's password, sessions, what the owner has read, resolved
//! alerts), as a port of its own beside `Store`.
//!
//! Everything that changes a conversation (take over, reply, reschedule)
//! goes through the desk layer, never through here: the console is not a
//! second implementation of the assistant's operations.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ConversationId, Direction, JobStatus, MessageId, StoreError};

/// The inbox's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InboxFilter {
    /// Handed off, or with an open alert.
    NeedsYou,
    Quoted,
    Scheduling,
    Booked,
    OptedOut,
    #[default]
    All,
}

impl InboxFilter {
    pub const ALL: [InboxFilter; 6] = [
        InboxFilter::All,
        InboxFilter::NeedsYou,
        InboxFilter::Quoted,
        InboxFilter::Scheduling,
        InboxFilter::Booked,
        InboxFilter::OptedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InboxFilter::NeedsYou => "needs_you",
            InboxFilter::Quoted => "quoted",
            InboxFilter::Scheduling => "scheduling",
            InboxFilter::Booked => "booked",
            InboxFilter::OptedOut => "opted_out",
            InboxFilter::All => "all",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            InboxFilter::NeedsYou => "Needs you",
            InboxFilter::Quoted => "Quoted",
            InboxFilter::Scheduling => "Scheduling",
            InboxFilter::Booked => "Booked",
            InboxFilter::OptedOut => "Opted out",
            InboxFilter::All => "All",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == raw)
    }
}

#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    /// `None`: every business's conversations.
    pub business_id: Option<String>,
    pub filter: InboxFilter,
    /// A name, or digits of a number.
    pub search: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

/// One conversation as the inbox lists it.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub id: ConversationId,
    pub business_id: String,
    /// The address as stored (`+1...`, or `whatsapp:+1...`): the owner sees
    /// it whole.
    pub customer_address: String,
    pub customer_name: Option<String>,
    /// The state's tag as stored (`intake`, `handed_off`, ...).
    pub state: String,
    pub opted_out: bool,
    pub needs_you: bool,
    pub last_text: Option<String>,
    pub last_direction: Option<Direction>,
    pub last_at: Option<DateTime<Utc>>,
    /// A customer text came after the owner last opened it.
    pub unread: bool,
}

/// A conversation with its whole thread, for its page.
#[derive(Debug, Clone)]
pub struct ConversationDetail {
    pub id: ConversationId,
    pub business_id: String,
    pub customer_address: String,
    pub business_number: String,
    pub opted_out: bool,
    pub open_alerts: i64,
    /// The newest message the owner had seen before this visit (0: none).
    pub last_read_id: i64,
    /// The stored state as JSON (`None` before the first turn).
    pub state_json: Option<String>,
    pub messages: Vec<ThreadMessage>,
    pub bookings: Vec<ConsoleBooking>,
}

#[derive(Debug, Clone)]
pub struct ThreadMessage {
    pub id: MessageId,
    pub direction: Direction,
    pub kind: String,
    pub body: String,
    /// Our own send state.
    pub status: String,
    /// The channel's, from its delivery receipts.
    pub delivery_status: Option<String>,
    pub delivery_error_code: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub media: Vec<ThreadMedia>,
}

#[derive(Debug, Clone)]
pub struct ThreadMedia {
    pub id: i64,
    pub content_type: String,
    pub status: String,
}

/// A stored photo's bytes, served to the owner only.
#[derive(Debug, Clone)]
pub struct MediaBytes {
    pub conversation_id: ConversationId,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A booking as the schedule and the conversation page show it.
#[derive(Debug, Clone)]
pub struct ConsoleBooking {
    pub id: String,
    pub business_id: String,
    pub conversation_id: ConversationId,
    pub provider_id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub label: String,
    /// `pending`, `confirmed` or `cancelled`.
    pub status: String,
    pub updated_at: DateTime<Utc>,
    /// Open alerts on the booking's conversation (a failed calendar write,
    /// say).
    pub open_alerts: i64,
    pub customer_address: String,
    /// The conversation's state as JSON: name, address and price.
    pub state_json: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ConsoleAlert {
    pub id: i64,
    pub kind: String,
    pub business_id: String,
    pub conversation_id: Option<ConversationId>,
    pub detail: String,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub customer_address: Option<String>,
    pub customer_name: Option<String>,
}

/// A tower-sessions record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub data: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// How a console action on a job went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobChange {
    Changed,
    /// The job is not in a state the action applies to (any more).
    NotApplicable(JobStatus),
    NotFound,
}

#[async_trait]
pub trait ConsoleStore: Send + Sync + 'static {
    async fn owner_password_hash(&self) -> Result<Option<String>, StoreError>;
    async fn set_owner_password_hash(&self, hash: &str) -> Result<(), StoreError>;

    async fn load_session(&self, id: &str, now_unix: i64) -> Result<Option<StoredSession>, StoreError>;
    /// Inserts a new session; false if the id exists (the caller draws again).
    async fn create_session(&self, id: &str, session: &StoredSession) -> Result<bool, StoreError>;
    async fn save_session(&self, id: &str, session: &StoredSession) -> Result<(), StoreError>;
    async fn delete_session(&self, id: &str) -> Result<(), StoreError>;
    /// Drops sessions that expired before `now_unix`.
    async fn delete_expired_sessions(&self, now_unix: i64) -> Result<u64, StoreError>;

    async fn inbox(&self, query: &InboxQuery) -> Result<Vec<InboxRow>, StoreError>;
    async fn conversation_detail(&self, id: ConversationId)
    -> Result<Option<ConversationDetail>, StoreError>;
    /// The owner has seen the thread up to `last_id`.
    async fn mark_read(&self, id: ConversationId, last_id: MessageId) -> Result<(), StoreError>;
    async fn media_bytes(&self, id: i64) -> Result<Option<MediaBytes>, StoreError>;

    /// Live bookings (pending or confirmed) starting in `[from, to)`.
    async fn bookings_between(
        &self,
        business_id: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ConsoleBooking>, StoreError>;

    async fn console_alerts(
        &self,
        business_id: Option<&str>,
        open: bool,
        limit: usize,
    ) -> Result<Vec<ConsoleAlert>, StoreError>;
    async fn open_alert_count(&self, business_id: Option<&str>) -> Result<i64, StoreError>;
    /// False if there is no such alert or it was already resolved.
    async fn resolve_alert(&self, id: i64, by: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// A dead job runs again now, with its attempts counted afresh.
    async fn retry_dead_job(&self, id: i64, now: DateTime<Utc>) -> Result<JobChange, StoreError>;
    /// A pending (or suspended) job will not run.
    async fn cancel_pending_job(&self, id: i64, now: DateTime<Utc>) -> Result<JobChange, StoreError>;
}
