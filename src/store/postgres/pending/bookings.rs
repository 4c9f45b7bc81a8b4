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
impl BookingStore for PgStore {
    async fn provider_bookings(
        &self,
        business: &str,
        provider: &str,
        range: Interval,
        except: Option<&str>,
    ) -> Result<Vec<Interval>, StoreError> {
        Err(not_yet("BookingStore::provider_bookings"))
    }

    async fn holds_of_others(&self, id: ConversationId, now: DateTime<Utc>) -> Result<Vec<Hold>, StoreError> {
        Err(not_yet("BookingStore::holds_of_others"))
    }

    async fn hold(
        &self,
        id: ConversationId,
        wanted: &[Hold],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        except_booking: Option<&str>,
    ) -> Result<Vec<Hold>, StoreError> {
        Err(not_yet("BookingStore::hold"))
    }

    async fn reserve_booking(
        &self,
        booking: &BookingRecord,
        blocked: Interval,
        now: DateTime<Utc>,
    ) -> Result<Reservation, StoreError> {
        Err(not_yet("BookingStore::reserve_booking"))
    }

    async fn booking_generation(&self, id: ConversationId) -> Result<u32, StoreError> {
        Err(not_yet("BookingStore::booking_generation"))
    }

    async fn update_booking(
        &self,
        id: &str,
        status: BookingStatus,
        moved_to: Option<(&str, &str, Interval, &str)>,
    ) -> Result<(), StoreError> {
        Err(not_yet("BookingStore::update_booking"))
    }

    async fn booking(&self, id: &str) -> Result<Option<BookingRecord>, StoreError> {
        Err(not_yet("BookingStore::booking"))
    }

    async fn bookings(&self) -> Result<Vec<BookingRecord>, StoreError> {
        Err(not_yet("BookingStore::bookings"))
    }
}
