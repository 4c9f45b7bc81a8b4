//! What a job does, typed: one variant per kind of job, each with its
//! fields, so the runner matches on a variant instead of reading JSON by
//! key.
//!
//! The `jobs` table keeps the kind and the payload in two columns (`kind`,
//! `payload`), and rows written by earlier releases must still run. So the
//! enum is tagged adjacently: the `kind` column is the tag, the `payload`
//! column the variant's content, and both keep the names and fields they
//! had when each was a JSON object read by key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::money::Money;
use crate::domain::reminders::ReminderKind;
use crate::email::Email;
use crate::store::{ConversationId, CustomerId, Job, NewJob};

/// Job kinds, as stored in the `kind` column.
pub const REMINDER: &str = "reminder";
pub const FOLLOW_UP: &str = "quote_follow_up";
pub const EMAIL: &str = "email";
pub const DEFERRED_REPLY: &str = "deferred_reply";
pub const APPROVAL_TIMEOUT: &str = "approval_timeout";
pub const OWNER_REPLY: &str = "owner_reply";
pub const OWNER_TEXT: &str = "owner_text";
pub const VERIFICATION_CODE: &str = "verification_code";
pub const BOOKING_NOTICE: &str = "booking_notice";
/// Planned by the store itself, in the inbound text's own transaction.
pub use crate::store::FETCH_MEDIA;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload")]
pub enum JobPayload {
    #[serde(rename = "reminder")]
    Reminder(BookingReminder),
    #[serde(rename = "quote_follow_up")]
    FollowUp(QuoteFollowUp),
    /// Every email, the crew's and the owner's alike: rows of both were
    /// stored under one kind, and they are sent alike.
    #[serde(rename = "email")]
    Email(Email),
    /// A reply held back by quiet hours.
    #[serde(rename = "deferred_reply")]
    DeferredReply(DeferredReply),
    #[serde(rename = "fetch_media")]
    FetchMedia(FetchMedia),
    /// The end of the owner's time to act on a held reply.
    #[serde(rename = "approval_timeout")]
    ApprovalTimeout(ApprovalTimeout),
    /// A text the owner wrote in the console, to go out when quiet hours end.
    #[serde(rename = "owner_reply")]
    OwnerReply(DeferredReply),
    /// An alert told to the owner by text, on the owner's own phone.
    #[serde(rename = "owner_text")]
    OwnerText(OwnerText),
    /// The code a web chat visitor asked for, texted to the number they
    /// typed (from the business's number, in that number's SMS
    /// conversation).
    #[serde(rename = "verification_code")]
    VerificationCode(VerificationCode),
    /// The customer's news of a booking the owner moved or cancelled from
    /// the console during quiet hours, to go out when they end.
    #[serde(rename = "booking_notice")]
    BookingNotice(BookingNotice),
}

/// Every job kind, as stored: the `textdesk_jobs` gauge reports each, zero
/// included. `JobPayload::kind` is the match that names them.
pub const ALL_KINDS: [&str; 10] = [
    REMINDER,
    FOLLOW_UP,
    EMAIL,
    DEFERRED_REPLY,
    FETCH_MEDIA,
    APPROVAL_TIMEOUT,
    OWNER_REPLY,
    OWNER_TEXT,
    VERIFICATION_CODE,
    BOOKING_NOTICE,
];

/// What the owner's change did to the booking the notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingChangeNotice {
    /// Moved to `start`: the text is the booking's confirmation.
    Moved,
    Cancelled,
}

impl BookingChangeNotice {
    /// The kind of the text that tells it: a move is a confirmation.
    pub fn message_kind(self) -> crate::store::MessageKind {
        match self {
            BookingChangeNotice::Moved => crate::store::MessageKind::Confirmation,
            BookingChangeNotice::Cancelled => crate::store::MessageKind::Cancellation,
        }
    }
}

/// A text telling the customer of the owner's change to a booking. It is
/// sent only while the change still stands: the booking `booking_id` still
/// confirmed at `start` (moved), or still cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingNotice {
    pub booking_id: String,
    pub start: DateTime<Utc>,
    pub change: BookingChangeNotice,
    pub body: String,
}

/// A web chat visitor's verification code, texted to `phone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationCode {
    pub business_id: String,
    pub phone: crate::domain::phone::E164,
    pub body: String,
}

/// A text reminding the customer of their booking; sent only if the
/// booking still stands at `start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingReminder {
    pub booking_id: String,
    pub reminder: ReminderKind,
    pub start: DateTime<Utc>,
    pub label: String,
    pub total: Money,
}

/// One nudge on a quote the customer has not answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteFollowUp {
    pub quote_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferredReply {
    pub body: String,
}

/// A text to the owner's phone (`[business] owner_phone`) from the
/// business's number. It names its business, because an alert about the
/// whole installation belongs to no conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerText {
    pub business_id: String,
    pub body: String,
    /// The conversation the alert is about: the text links to its page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<i64>,
}

/// Fetches one customer's photo (a `media` row) into the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchMedia {
    pub media_id: i64,
}

/// When it runs, the held reply answering customer text `answers` (if
/// still held) expires unsent and the conversation goes to the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalTimeout {
    pub answers: i64,
    /// `approval_timeout_minutes` when it was held, for the owner's alert.
    pub minutes: u32,
}

/// A stored job whose payload cannot be read: the job is dead, never
/// retried (it would fail the same way) and never a panic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a `{kind}` job's payload cannot be read: {reason}")]
pub struct PayloadError {
    pub kind: String,
    pub reason: String,
}

/// Where a job belongs and when it runs. What it does, and so its kind,
/// is its payload.
#[derive(Debug, Clone)]
pub struct JobTarget {
    /// Names the job's effect: a second job with the same key is not queued.
    pub dedupe_key: String,
    pub conversation_id: Option<ConversationId>,
    pub customer_id: Option<CustomerId>,
    pub recipient: String,
    pub run_at: DateTime<Utc>,
    pub max_attempts: u32,
}

impl JobPayload {
    /// The `kind` column: the variant's tag.
    pub fn kind(&self) -> &'static str {
        match self {
            JobPayload::Reminder(_) => REMINDER,
            JobPayload::FollowUp(_) => FOLLOW_UP,
            JobPayload::Email(_) => EMAIL,
            JobPayload::DeferredReply(_) => DEFERRED_REPLY,
            JobPayload::FetchMedia(_) => FETCH_MEDIA,
            JobPayload::ApprovalTimeout(_) => APPROVAL_TIMEOUT,
            JobPayload::OwnerReply(_) => OWNER_REPLY,
            JobPayload::OwnerText(_) => OWNER_TEXT,
            JobPayload::VerificationCode(_) => VERIFICATION_CODE,
            JobPayload::BookingNotice(_) => BOOKING_NOTICE,
        }
    }

    /// The `payload` column: the variant's content alone.
    pub fn to_stored(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut tagged)) => tagged.remove("payload").unwrap_or_default(),
            // Cannot happen for these types; a null payload would make the
            // job dead with a clear error rather than lose the turn.
            _ => serde_json::Value::Null,
        }
    }

    /// Reads a job back from its two columns.
    pub fn from_stored(kind: &str, payload: &serde_json::Value) -> Result<Self, PayloadError> {
        let tagged = serde_json::json!({ "kind": kind, "payload": payload });
        serde_json::from_value(tagged).map_err(|e| PayloadError {
            kind: kind.to_string(),
            reason: e.to_string(),
        })
    }

    /// The payload of a claimed job.
    pub fn of(job: &Job) -> Result<Self, PayloadError> {
        Self::from_stored(&job.kind, &job.payload)
    }

    /// The job to enqueue: this payload, for `target`.
    pub fn job(&self, target: JobTarget) -> NewJob {
        NewJob {
            kind: self.kind(),
            dedupe_key: target.dedupe_key,
            conversation_id: target.conversation_id,
            customer_id: target.customer_id,
            recipient: target.recipient,
            payload: self.to_stored(),
            run_at: target.run_at,
            max_attempts: target.max_attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    /// Payloads exactly as the previous release wrote them (`json!` by key
    /// in `plan.rs`, `turns.rs` and the store), one per kind.
    fn stored_by_the_previous_release() -> Vec<(&'static str, serde_json::Value)> {
        vec![
            (
                "reminder",
                json!({"booking_id": "td5f2c", "reminder": "day_before",
                       "start": "2031-03-10T17:00:00Z", "label": "Mon Mar 10, 10am", "total": "350"}),
            ),
            (
                "reminder",
                json!({"booking_id": "td5f2c", "reminder": "morning_of",
                                "start": "2031-03-10T17:00:00Z", "label": "Mon Mar 10, 10am",
                                "total": "412.50"}),
            ),
            ("quote_follow_up", json!({"quote_id": "Q7KX2"})),
            ("deferred_reply", json!({"body": "Your total is $350."})),
            ("fetch_media", json!({"media_id": 42})),
            // An email from before `date` and `attach_photos` existed.
            (
                "email",
                json!({"to": ["crew1@example.com"], "subject": "New booking", "html": "<p>x</p>",
                             "text": "x"}),
            ),
            (
                "email",
                json!({"to": ["owner@example.com"], "subject": "A customer needs you",
                             "html": "<p>y</p>", "text": "y", "date": "2026-11-28T17:05:09Z",
                             "attach_photos": true}),
            ),
        ]
    }

    #[test]
    fn every_shape_the_previous_release_stored_still_reads() {
        for (kind, payload) in stored_by_the_previous_release() {
            let read =
                JobPayload::from_stored(kind, &payload).unwrap_or_else(|e| panic!("{kind} {payload}: {e}"));
            assert_eq!(read.kind(), kind);
            let written = read.to_stored();
            assert_eq!(JobPayload::from_stored(kind, &written).unwrap(), read, "{kind}");
            // Written back the same way (only an undated email gains
            // `"date": null`), so the previous release could still run a
            // job this one queued.
            let mut undated = payload.clone();
            if kind == EMAIL && undated.get("date").is_none() {
                undated["date"] = serde_json::Value::Null;
            }
            assert_eq!(written, undated, "{kind}");
        }
    }

    #[test]
    fn a_reminder_reads_into_typed_fields() {
        let (kind, payload) = &stored_by_the_previous_release()[0];
        let JobPayload::Reminder(reminder) = JobPayload::from_stored(kind, payload).unwrap() else {
            panic!("not a reminder");
        };
        assert_eq!(reminder.booking_id, "td5f2c");
        assert_eq!(reminder.reminder, ReminderKind::DayBefore);
        assert_eq!(
            reminder.start,
            Utc.with_ymd_and_hms(2031, 3, 10, 17, 0, 0).unwrap()
        );
        assert_eq!(reminder.total, "350".parse::<Money>().unwrap());
    }

    #[test]
    fn the_stores_media_job_is_the_fetch_media_variant() {
        let payload = JobPayload::FetchMedia(FetchMedia { media_id: 3 });
        assert_eq!(payload.kind(), crate::store::FETCH_MEDIA);
        // The store writes this shape itself, inside the inbound transaction.
        assert_eq!(payload.to_stored(), json!({ "media_id": 3 }));
    }

    #[test]
    fn a_payload_that_does_not_fit_its_kind_is_an_error_naming_both() {
        let missing = JobPayload::from_stored("reminder", &json!({"booking_id": "td1"})).unwrap_err();
        assert_eq!(missing.kind, "reminder");
        assert!(
            missing
                .to_string()
                .starts_with("a `reminder` job's payload cannot be read: "),
            "{missing}"
        );
        assert!(
            missing.reason.contains("reminder") || missing.reason.contains("start"),
            "{missing}"
        );

        let wrong_type = JobPayload::from_stored("fetch_media", &json!({"media_id": "seven"})).unwrap_err();
        assert!(wrong_type.reason.contains("invalid type"), "{wrong_type}");

        let unknown_reminder = json!({"booking_id": "td1", "reminder": "week_before",
                                      "start": "2031-03-10T17:00:00Z", "label": "x", "total": "1"});
        assert!(JobPayload::from_stored("reminder", &unknown_reminder).is_err());

        let unknown = JobPayload::from_stored("carrier_pigeon", &json!({})).unwrap_err();
        assert!(unknown.reason.contains("unknown variant"), "{unknown}");
        assert!(JobPayload::from_stored("email", &serde_json::Value::Null).is_err());
    }

    /// One payload of every variant: the match below stops compiling when a
    /// variant is added, so the new kind cannot miss `ALL_KINDS` (and the
    /// gauge) unnoticed.
    fn one_of_each() -> Vec<JobPayload> {
        let at = Utc.with_ymd_and_hms(2031, 3, 9, 17, 0, 0).unwrap();
        let text = DeferredReply { body: "x".into() };
        let all = vec![
            JobPayload::Reminder(BookingReminder {
                booking_id: "b".into(),
                reminder: ReminderKind::DayBefore,
                start: at,
                label: "x".into(),
                total: "1".parse().unwrap(),
            }),
            JobPayload::FollowUp(QuoteFollowUp { quote_id: "q".into() }),
            JobPayload::Email(
                serde_json::from_value(
                    json!({"to": ["a@example.com"], "subject": "s", "html": "h", "text": "t"}),
                )
                .unwrap(),
            ),
            JobPayload::DeferredReply(text.clone()),
            JobPayload::FetchMedia(FetchMedia { media_id: 1 }),
            JobPayload::ApprovalTimeout(ApprovalTimeout {
                answers: 1,
                minutes: 5,
            }),
            JobPayload::OwnerReply(text),
            JobPayload::OwnerText(OwnerText {
                business_id: "default".into(),
                body: "x".into(),
                conversation_id: None,
            }),
            JobPayload::VerificationCode(VerificationCode {
                business_id: "default".into(),
                phone: crate::domain::phone::E164::parse("+15035551234").unwrap(),
                body: "x".into(),
            }),
            JobPayload::BookingNotice(BookingNotice {
                booking_id: "b".into(),
                start: at,
                change: BookingChangeNotice::Cancelled,
                body: "x".into(),
            }),
        ];
        for payload in &all {
            match payload {
                JobPayload::Reminder(_)
                | JobPayload::FollowUp(_)
                | JobPayload::Email(_)
                | JobPayload::DeferredReply(_)
                | JobPayload::FetchMedia(_)
                | JobPayload::ApprovalTimeout(_)
                | JobPayload::OwnerReply(_)
                | JobPayload::OwnerText(_)
                | JobPayload::VerificationCode(_)
                | JobPayload::BookingNotice(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_kind_is_listed_once_and_reads_back() {
        let all = one_of_each();
        let mut kinds: Vec<&str> = all.iter().map(JobPayload::kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let mut listed = ALL_KINDS.to_vec();
        listed.sort_unstable();
        assert_eq!(kinds, listed);
        for payload in all {
            let read = JobPayload::from_stored(payload.kind(), &payload.to_stored()).unwrap();
            assert_eq!(read, payload);
        }
    }

    #[test]
    fn a_job_takes_its_kind_from_the_payload() {
        let at = Utc.with_ymd_and_hms(2031, 3, 9, 17, 0, 0).unwrap();
        let payload = JobPayload::FollowUp(QuoteFollowUp {
            quote_id: "Q1".into(),
        });
        let job = payload.job(JobTarget {
            dedupe_key: "followup:Q1:9".into(),
            conversation_id: Some(ConversationId(4)),
            customer_id: Some(CustomerId(2)),
            recipient: "+15035551234".into(),
            run_at: at,
            max_attempts: 5,
        });
        assert_eq!(job.kind, FOLLOW_UP);
        assert_eq!(job.payload, json!({"quote_id": "Q1"}));
        assert_eq!(job.dedupe_key, "followup:Q1:9");
        assert_eq!(job.run_at, at);
        assert_eq!(JobPayload::from_stored(job.kind, &job.payload).unwrap(), payload);
    }
}
