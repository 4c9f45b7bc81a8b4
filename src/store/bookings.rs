//! The booking port: bookings and the openings held while on offer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ConversationId, StoreError};
use crate::domain::availability::Interval;

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

/// Bookings and the openings held while they are offered: the atomic
/// checks that keep a crew from being booked twice.
#[async_trait]
pub trait BookingStore: Send + Sync + 'static {
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
}
