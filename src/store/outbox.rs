//! The outbox port: texts out, and what their channel says became of them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ConversationId, CustomerId, MessageId, MessageKind, StoreError};
use crate::domain::delivery::{self, DeliveryStatus};
use crate::domain::phone::E164;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundDraft {
    pub kind: MessageKind,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct OutboundMessage {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub customer_id: CustomerId,
    pub customer_opted_out: bool,
    pub to: E164,
    pub from: E164,
    pub body: String,
    /// The message's kind (reply, reminder, confirmation, ...): which
    /// template stands in for it outside WhatsApp's window.
    pub kind: MessageKind,
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
        channel_message_id: String,
    },
    /// The provider refused: the recipient has opted out. Never retried.
    OptedOut,
    Failed {
        error: String,
    },
    /// The request may or may not have reached the provider (a timeout). Not
    /// retried, so the customer is never texted twice; the owner is alerted.
    Unknown {
        error: String,
    },
    /// Not sent, and never retried, because the channel forbids it now
    /// (WhatsApp free-form text outside the 24-hour window with no template
    /// for it, or the provider refusing it as such). The owner is alerted.
    Withheld {
        reason: String,
    },
}

impl Delivery {
    /// What the text's row stores of it, on either backend: its status, the
    /// channel's id for it, and the error.
    pub(crate) fn columns(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self {
            Delivery::Sent { channel_message_id } => ("sent", Some(channel_message_id.as_str()), None),
            Delivery::OptedOut => ("opted_out", None, Some("the recipient has opted out")),
            Delivery::Failed { error } => ("failed", None, Some(error.as_str())),
            Delivery::Unknown { error } => ("unknown", None, Some(error.as_str())),
            Delivery::Withheld { reason } => ("failed", None, Some(reason.as_str())),
        }
    }
}

/// A delivery receipt: one of the channel's status callbacks, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub channel_message_id: String,
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
    /// The message kind: reminder, confirmation, reply, ...
    pub kind: MessageKind,
    pub status: DeliveryStatus,
    pub error_code: Option<i64>,
}

/// What a receipt did.
#[derive(Debug, Clone)]
pub enum ReceiptApplied {
    /// No text of ours has this channel message id: nothing changed.
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
    /// The latest receipt from the channel, if any came.
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

/// Texts on their way out: claimed exactly once for sending, their send
/// recorded, and the channel's delivery receipts applied forward only.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Moves a queued text to `sending` and returns it; `None` if another
    /// task already took it or it is no longer queued.
    async fn claim_outbound(&self, id: MessageId) -> Result<Option<OutboundMessage>, StoreError>;

    /// Texts left queued or mid-send (after a crash), oldest first; without
    /// `proactive`, leaving out reminders and follow-ups (quiet hours).
    async fn undelivered(&self, proactive: bool) -> Result<Vec<MessageId>, StoreError>;

    async fn record_delivery(&self, id: MessageId, delivery: &Delivery) -> Result<(), StoreError>;

    /// Records a turn's reply's send and gives up `worker`'s lease on
    /// `conversation` in one commit, where the two would take two: the send
    /// is a turn's last step, so the lease has nothing left to guard, and
    /// giving it up no earlier keeps the conversation's replies in order.
    /// Says what [`super::ConversationStore::release`] says: whether texts
    /// wait (true also when the lease was no longer `worker`'s).
    async fn record_delivery_and_release(
        &self,
        id: MessageId,
        delivery: &Delivery,
        conversation: ConversationId,
        worker: &str,
    ) -> Result<bool, StoreError>;

    /// Stores the text a job sends, claimed for sending; `None` if this job
    /// already has its text.
    async fn queue_job_message(
        &self,
        id: ConversationId,
        job_id: i64,
        draft: OutboundDraft,
    ) -> Result<Option<OutboundMessage>, StoreError>;

    /// Applies a delivery receipt to the text with its channel message id, forward only
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
}
