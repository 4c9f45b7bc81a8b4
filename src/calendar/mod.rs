//! Crew calendars: where busy time comes from and where bookings go.
//!
//! [`google::GoogleCalendar`] reads freebusy and writes events through
//! google-calendar3; [`LocalCalendar`] is the embedded default, with
//! textdesk's own bookings table as the calendar.

pub mod google;

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::availability::Interval;

/// One calendar's busy time, or why it is not known. Unknown is never free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    Known(Vec<Interval>),
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarEvent {
    /// Deterministic: a retried insert is recognized as a duplicate.
    pub id: String,
    pub summary: String,
    pub description: String,
    pub location: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The provider, invited when their calendar is not the one written.
    pub attendee_email: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    /// Down, slow, or answering 5xx. Worth retrying later.
    #[error("calendar unavailable: {0}")]
    Unavailable(String),
    /// The service account's grant is expired or revoked: the owner must act.
    #[error("calendar credentials rejected: {0}")]
    CredentialsRevoked(String),
    /// A request the calendar refused (bad calendar id, no access).
    #[error("calendar refused the request: {0}")]
    Rejected(String),
}

#[async_trait]
pub trait Calendar: Send + Sync + 'static {
    /// Busy time of each calendar over `range`.
    async fn busy(
        &self,
        calendars: &[String],
        range: Interval,
    ) -> Result<HashMap<String, Busy>, CalendarError>;

    /// Creates the event; an event with this id already existing is success.
    async fn insert_event(&self, calendar: &str, event: &CalendarEvent) -> Result<(), CalendarError>;

    /// Moves an existing event to `event`'s times, with its new text.
    async fn move_event(&self, calendar: &str, event: &CalendarEvent) -> Result<(), CalendarError>;

    /// Removes the event; one already gone is success.
    async fn delete_event(&self, calendar: &str, event_id: &str) -> Result<(), CalendarError>;

    /// Where a person can open the event, if this calendar has a page for
    /// it. The local bookings table has none.
    fn event_link(&self, _calendar: &str, _event_id: &str) -> Option<String> {
        None
    }
}

/// The embedded default: a provider's calendar is just their rows in the
/// bookings table. The scheduler adds those to every calendar's busy time
/// itself, so this calendar has nothing else to report and nothing to write.
pub struct LocalCalendar;

#[async_trait]
impl Calendar for LocalCalendar {
    async fn busy(
        &self,
        calendars: &[String],
        _range: Interval,
    ) -> Result<HashMap<String, Busy>, CalendarError> {
        Ok(calendars
            .iter()
            .map(|c| (c.clone(), Busy::Known(Vec::new())))
            .collect())
    }

    async fn insert_event(&self, _calendar: &str, _event: &CalendarEvent) -> Result<(), CalendarError> {
        Ok(())
    }

    async fn move_event(&self, _calendar: &str, _event: &CalendarEvent) -> Result<(), CalendarError> {
        Ok(())
    }

    async fn delete_event(&self, _calendar: &str, _event_id: &str) -> Result<(), CalendarError> {
        Ok(())
    }
}
