//! Offers and bookings: the availability engine applied to real calendars.
//!
//! Double bookings are ours to prevent (Google Calendar accepts overlapping
//! events happily), so:
//! - offered openings are held for the customer who was offered them, and
//!   for no one else: checking other customers' holds and writing ours is
//!   one step, under the per-crew lock and in one IMMEDIATE transaction;
//! - bookings of one crew are serialized by a lock per crew, and every rule
//!   is checked again at booking time against fresh busy time;
//! - a booking is recorded (`pending`) before its calendar event is written,
//!   under a deterministic id that is also the event id, so a retry after a
//!   timeout finds its own earlier attempt instead of making a second one;
//! - the conversation becomes BOOKED only after the event exists;
//! - an opening with a date-dependent surcharge (weekend, same day, after
//!   hours) is offered with its own quote and booked at that price, never
//!   at one the customer was not shown.
//!
//! The per-crew lock is in-process: one process serves a SQLite database.
//! A Postgres backend would take the same lock in the database.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sha1::{Digest, Sha1};

use crate::calendar::{Busy, Calendar, CalendarError, CalendarEvent};
use crate::config::business::{BusinessConfig, ProviderConfig};
use crate::domain::availability::{self, DateFilter, Interval, Opening, ProviderBusy, SlotQuery};
use crate::domain::conversation::{Booking, JobDetails, OfferedSlot};
use crate::domain::quote::{self, OpeningTime, Quote, hours_to_minutes};
use crate::store::{
    BookingRecord, BookingStatus, BookingStore, Conversation, ConversationId, Hold, Reservation, StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum SchedulingError {
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The opening went to someone else, or no longer meets the rules.
    #[error("that opening is no longer available: {0}")]
    Taken(String),
    /// A booking whose event may exist but could not be confirmed or
    /// cleaned up: the owner must look.
    #[error("{0}")]
    Incomplete(String),
}

/// Openings offered to a customer.
#[derive(Debug, Clone)]
pub struct Offer {
    pub slots: Vec<OfferedSlot>,
    /// Said when the customer's preference had nothing and the earliest
    /// openings are offered instead.
    pub note: Option<String>,
    /// Per slot, its price when that differs from the quote's total
    /// ("$385 with weekend service"); `None` where the quote stands.
    pub prices: Vec<Option<String>>,
}

impl Offer {
    /// "1) Tue Nov 24, 8-10am" on a line each, with the price where an
    /// opening has its own: "2) Sat Nov 28, 9-11am ($385 with weekend service)".
    pub fn numbered(&self) -> String {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| match self.prices.get(i).and_then(Option::as_deref) {
                Some(price) => format!("{}) {} ({price})", s.id, s.label),
                None => format!("{}) {}", s.id, s.label),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The quotes openings carry: quotes of this conversation from now on,
    /// so the prices the offer states are ones our code produced.
    pub fn quotes(&self) -> impl Iterator<Item = &Quote> {
        self.slots.iter().filter_map(|s| s.quote.as_ref())
    }
}

/// How many times an offer picks again around openings another customer
/// was granted while it looked; after the last, it offers what it holds.
/// Offers in one process take turns (see `offer`), so a refusal means
/// another instance granted that very opening between this offer's read
/// and its hold; each attempt costs two statements. An offer runs out only
/// when other instances win this many times in a row, which a queue of
/// their own customers racing with it could do at three.
const OFFER_ATTEMPTS: u32 = 16;

/// The long-lived half of scheduling: the store, the calendar, and each
/// business's crew locks. It holds no configuration: a turn schedules
/// through [`Scheduler::for_business`], on the configuration it started with.
pub struct Scheduler {
    store: Arc<dyn BookingStore>,
    calendar: Arc<dyn Calendar>,
    locks: std::sync::Mutex<HashMap<String, CrewLocks>>,
}

/// One lock per crew of a business, kept by the [`Scheduler`] across
/// reloads, so a booking on the old configuration and one on the new are
/// still serialized.
pub type CrewLocks = Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

/// Offers and bookings for one business, on one configuration.
pub struct BusinessScheduler<'a> {
    store: &'a dyn BookingStore,
    calendar: &'a dyn Calendar,
    business: &'a BusinessConfig,
    locks: CrewLocks,
}

/// `td` + 40 hex digits: valid as a Google event id ([a-v0-9], 5-1024).
pub fn booking_id(
    conversation: ConversationId,
    provider: &str,
    start: DateTime<Utc>,
    generation: u32,
) -> String {
    let mut hash = Sha1::new();
    hash.update(format!("{}|{provider}|{}|{generation}", conversation.0, start.timestamp()).as_bytes());
    let digest = hash.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("td{hex}")
}

impl Scheduler {
    pub fn new(store: Arc<dyn BookingStore>, calendar: Arc<dyn Calendar>) -> Self {
        Self {
            store,
            calendar,
            locks: Default::default(),
        }
    }

    /// Scheduling for `business`: its crews, hours and prices as
    /// configured, its crews' locks whatever the configuration.
    pub fn for_business<'a>(&'a self, business: &'a BusinessConfig) -> BusinessScheduler<'a> {
        let locks = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(business.business.id.clone())
            .or_default()
            .clone();
        BusinessScheduler {
            store: self.store.as_ref(),
            calendar: self.calendar.as_ref(),
            business,
            locks,
        }
    }
}

impl BusinessScheduler<'_> {
    /// Where the crew can open a booking's calendar event, when their
    /// calendar has a page for it (Google does; the local table does not).
    pub fn event_link(&self, booking: &crate::domain::conversation::Booking) -> Option<String> {
        let provider = self.provider(&booking.slot.crew)?;
        self.calendar
            .event_link(provider.calendar(), &booking.calendar_event_id)
    }

    fn lock_for(&self, provider: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .expect("lock map is never poisoned: no panics while held");
        locks.entry(provider.to_string()).or_default().clone()
    }

    fn duration(quote: &Quote) -> Duration {
        Duration::minutes(hours_to_minutes(quote.hours).max(15))
    }

    fn provider(&self, id: &str) -> Option<&ProviderConfig> {
        self.business.providers.iter().find(|p| p.id == id)
    }

    /// Busy time per provider over `range`: the calendar, our own bookings,
    /// and other customers' holds. Providers whose calendar is unknown are
    /// left out, never treated as free.
    async fn busy_for(
        &self,
        providers: &[&ProviderConfig],
        range: Interval,
        conversation: ConversationId,
        except_booking: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ProviderBusy>, SchedulingError> {
        let calendars: Vec<String> = providers.iter().map(|p| p.calendar().to_string()).collect();
        let from_calendar = self.calendar.busy(&calendars, range).await?;
        let holds = self.store.holds_of_others(conversation, now).await?;
        // The booking being moved shows on its calendar as busy; it must not
        // block its own new time.
        let moving = match except_booking {
            Some(id) => self.store.booking(id).await?.map(|b| (b.calendar_id, b.slot)),
            None => None,
        };
        let mut out = Vec::new();
        for p in providers {
            let mut busy = match from_calendar.get(p.calendar()) {
                Some(Busy::Known(busy)) => busy.clone(),
                Some(Busy::Unknown(reason)) => {
                    tracing::warn!(provider = %p.id, %reason, "crew calendar unknown; not offering it");
                    continue;
                }
                None => continue,
            };
            if let Some((calendar, slot)) = &moving
                && calendar == p.calendar()
            {
                busy.retain(|b| b != slot);
            }
            // Our own bookings count even before Google shows them.
            busy.extend(
                self.store
                    .provider_bookings(&self.business.business.id, &p.id, range, except_booking)
                    .await?,
            );
            busy.extend(holds.iter().filter(|h| h.provider_id == p.id).map(|h| h.slot));
            out.push(ProviderBusy {
                provider: p.id.clone(),
                busy,
            });
        }
        if out.is_empty() && !providers.is_empty() {
            return Err(CalendarError::Unavailable("no crew calendar could be read".into()).into());
        }
        Ok(out)
    }

    /// Finds openings for the quoted job, preferring `filter`, and holds them
    /// for this conversation. Holds are exclusive: an opening is on offer to
    /// one customer at a time, so only openings this conversation was granted
    /// are offered. When rescheduling, the booking's current time is never
    /// offered as a new one, though the booking does not block its
    /// neighbours.
    #[tracing::instrument(name = "offer_slots", skip_all, fields(conversation = conversation.0))]
    pub async fn offer(
        &self,
        conversation: ConversationId,
        quote: &Quote,
        filter: &DateFilter,
        rescheduling: Option<&Booking>,
        now: DateTime<Utc>,
    ) -> Result<Offer, SchedulingError> {
        let schedule = &self.business.schedule;
        let tz = self.business.business.timezone;
        let range = Interval {
            start: now,
            end: now
                .checked_add_signed(Duration::days(i64::from(schedule.horizon_days) + 1))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        };
        let providers: Vec<&ProviderConfig> = self.business.providers.iter().collect();
        let moving = rescheduling.map(|b| b.id.as_str());
        // A booking being moved does not block its own new time.
        let mut busy = self
            .busy_for(&providers, range, conversation, moving, now)
            .await?;
        let duration = Self::duration(quote);
        let expires_at = now + Duration::minutes(i64::from(schedule.hold_minutes));
        let mut attempts_left = OFFER_ATTEMPTS;
        // Offers in this process pick and hold one at a time per crew (the
        // locks a booking takes, in name order), each reading the holds
        // granted while it waited: twenty customers told at once that their
        // pick was taken are each offered another opening, rather than all
        // wanting the same one and running out of attempts. Only another
        // instance, between this read and the hold, can still take one.
        let crews: BTreeSet<&str> = providers.iter().map(|p| p.id.as_str()).collect();
        let locks: Vec<_> = crews.into_iter().map(|c| self.lock_for(c)).collect();
        let mut guards = Vec::with_capacity(locks.len());
        for lock in &locks {
            guards.push(lock.lock().await);
        }
        let (picked, note) = loop {
            attempts_left -= 1;
            let holds = self.store.holds_of_others(conversation, now).await?;
            for p in &mut busy {
                p.busy.extend(
                    holds
                        .iter()
                        .filter(|h| h.provider_id == p.provider)
                        .map(|h| h.slot),
                );
            }
            let (picked, note) = self.pick(&busy, duration, filter, rescheduling, now);
            let wanted: Vec<Hold> = picked
                .iter()
                .map(|o| Hold {
                    provider_id: o.provider.clone(),
                    slot: Interval {
                        start: o.start,
                        end: o.end,
                    },
                    blocked: schedule.blocked_interval(o.start, duration),
                })
                .collect();
            // Under this process's crew locks (held above); the store takes
            // the database's for other instances.
            let granted = self
                .store
                .hold(conversation, &wanted, expires_at, now, moving)
                .await?;
            if granted.len() == wanted.len() || attempts_left == 0 {
                let picked: Vec<Opening> = picked
                    .into_iter()
                    .filter(|o| {
                        granted
                            .iter()
                            .any(|h| h.provider_id == o.provider && h.slot.start == o.start)
                    })
                    .collect();
                break (picked, note);
            }
            // Another instance's customer was granted these a moment ago:
            // they are busy now, and the next pick goes around them.
            for refused in wanted.iter().filter(|w| !granted.contains(w)) {
                if let Some(p) = busy.iter_mut().find(|p| p.provider == refused.provider_id) {
                    p.busy.push(refused.slot);
                }
            }
        };
        drop(guards);
        let mut slots = Vec::with_capacity(picked.len());
        let mut prices = Vec::with_capacity(picked.len());
        for (i, o) in picked.iter().enumerate() {
            let own = self.opening_quote(quote, o.start, now);
            prices.push(own.as_ref().filter(|q| q.total != quote.total).map(|q| {
                let surcharges =
                    quote::date_surcharges(&self.business.pricing, &self.opening_time(o.start, now));
                if surcharges.is_empty() {
                    q.total.to_string()
                } else {
                    format!("{} with {}", q.total, surcharges.join(" and ").to_lowercase())
                }
            }));
            slots.push(OfferedSlot {
                id: (i + 1) as u8,
                start: o.start,
                end: o.end,
                label: availability::label(o, tz),
                crew: o.provider.clone(),
                quote: own,
            });
        }
        Ok(Offer { slots, note, prices })
    }

    /// An opening's start as the business's clock reads it, today being
    /// `now` in the business's zone.
    fn opening_time(&self, start: DateTime<Utc>, now: DateTime<Utc>) -> OpeningTime {
        let tz = self.business.business.timezone;
        OpeningTime {
            local_start: start.with_timezone(&tz).naive_local(),
            today: now.with_timezone(&tz).date_naive(),
            after_hours_from: self.business.schedule.after_hours_from,
        }
    }

    /// The quote for the job at an opening starting at `start`, when its
    /// date-dependent surcharges make it differ from `quote`.
    pub fn opening_quote(&self, quote: &Quote, start: DateTime<Utc>, now: DateTime<Utc>) -> Option<Quote> {
        let at = self.opening_time(start, now);
        quote::price_for_opening(&self.business.pricing, quote, &at).unwrap_or_else(|e| {
            // The quote priced this job a moment ago, so this cannot fail
            // unless the catalog changed under it: the quote stands.
            tracing::warn!(error = %e, "could not price the job for an opening; the quote stands");
            None
        })
    }

    /// The openings to offer from `busy`, and the note that goes with them.
    fn pick(
        &self,
        busy: &[ProviderBusy],
        duration: Duration,
        filter: &DateFilter,
        rescheduling: Option<&Booking>,
        now: DateTime<Utc>,
    ) -> (Vec<Opening>, Option<String>) {
        let schedule = &self.business.schedule;
        let tz = self.business.business.timezone;
        // The customer is moving off this time: the same time again, with
        // any crew, is not a new opening.
        let not_current = |openings: Vec<Opening>| -> Vec<Opening> {
            match rescheduling {
                Some(b) => openings.into_iter().filter(|o| o.start != b.slot.start).collect(),
                None => openings,
            }
        };
        let mut query = SlotQuery {
            now,
            duration,
            filter: filter.clone(),
        };
        let mut openings = not_current(schedule.openings(tz, busy, &query));
        let mut note = None;
        // "Saturday" said on a Saturday whose openings are gone (notice, a
        // full day) means the coming one: the same day a week on, before
        // falling back to whatever is earliest.
        if openings.is_empty()
            && let (Some(from), Some(to)) = (filter.from, filter.to)
            && from == to
        {
            let week_on = from + Duration::days(7);
            query.filter = DateFilter {
                from: Some(week_on),
                to: Some(week_on),
                part: filter.part,
            };
            openings = not_current(schedule.openings(tz, busy, &query));
            if !openings.is_empty() {
                note = Some("Nothing is open that day; these are the openings a week later.".to_string());
            }
        }
        if openings.is_empty() && !filter.is_empty() {
            query.filter = DateFilter::default();
            openings = not_current(schedule.openings(tz, busy, &query));
            note = Some("Nothing is open then; these are the earliest openings.".to_string());
        }
        (schedule.offers(&openings, tz), note)
    }

    fn event(
        &self,
        id: &str,
        conversation: &Conversation,
        job: &JobDetails,
        quote: &Quote,
        slot: &OfferedSlot,
    ) -> CalendarEvent {
        let kind = match self.business.business.kind {
            crate::config::business::BusinessKind::JunkRemoval => "Junk removal",
            crate::config::business::BusinessKind::Maid => "Cleaning",
        };
        let who = job.customer_name.clone().unwrap_or_else(|| "customer".into());
        let basis = quote.assumptions.first().cloned().unwrap_or_default();
        let description = format!(
            "{kind} for {who}\nPhone: {}\nAddress: {}\nArrival: {}\n\n{basis}\nQuote {}:\n{}\n{}",
            conversation.customer_phone.as_str(),
            job.address.as_deref().unwrap_or("(not given)"),
            slot.label,
            quote.id,
            quote.breakdown(),
            job.notes
                .as_deref()
                .map(|n| format!("\nNotes: {n}"))
                .unwrap_or_default(),
        );
        let provider = self.provider(&slot.crew);
        CalendarEvent {
            id: id.to_string(),
            summary: format!("{kind}: {who} ({})", quote.total),
            description,
            location: job.address.clone(),
            start: slot.start,
            end: slot.end,
            // The provider gets the event on their own calendar, or, when
            // the crew's calendar is not theirs, as an invited attendee.
            attendee_email: provider
                .filter(|p| p.email.as_deref() != Some(p.calendar()))
                .and_then(|p| p.email.clone()),
        }
    }

    /// Books an offered slot, or moves `replacing` to it. Idempotent: a
    /// rerun for the same slot returns the booking it made.
    #[tracing::instrument(name = "book_slot", skip_all, fields(conversation = conversation.id.0, crew = %slot.crew))]
    pub async fn book(
        &self,
        conversation: &Conversation,
        job: &JobDetails,
        quote: &Quote,
        slot: &OfferedSlot,
        replacing: Option<&Booking>,
        now: DateTime<Utc>,
    ) -> Result<Booking, SchedulingError> {
        let provider = self
            .provider(&slot.crew)
            .ok_or_else(|| SchedulingError::Taken(format!("crew `{}` is no longer listed", slot.crew)))?
            .clone();
        let base_quote = quote;
        let quote = slot.quote.as_ref().unwrap_or(base_quote);
        let lock = self.lock_for(&provider.id);
        let _serialized = lock.lock().await;

        let id = match replacing {
            Some(old) => old.id.clone(),
            // The generation changes with every cancellation, so an id (and
            // the calendar event id Google keeps reserved) is never reused.
            None => booking_id(
                conversation.id,
                &provider.id,
                slot.start,
                self.store.booking_generation(conversation.id).await?,
            ),
        };
        let interval = Interval {
            start: slot.start,
            end: slot.end,
        };
        let booked = || Booking {
            id: id.clone(),
            slot: slot.clone(),
            calendar_event_id: id.clone(),
        };
        let existing = self.store.booking(&id).await?;
        let same_slot = |e: &BookingRecord| e.slot.start == slot.start && e.provider_id == provider.id;
        if let Some(e) = &existing
            && e.status == BookingStatus::Confirmed
            && same_slot(e)
        {
            return Ok(booked());
        }
        // A pending record for this very slot means an earlier attempt
        // passed every check and may already have written the event, which
        // would now look busy: finish that attempt instead of re-checking.
        let resuming = existing
            .as_ref()
            .is_some_and(|e| e.status == BookingStatus::Pending && same_slot(e));
        let schedule = &self.business.schedule;
        let duration = slot.end - slot.start - Duration::minutes(i64::from(schedule.arrival_window_minutes));
        let blocked = schedule.blocked_interval(slot.start, duration);
        if !resuming {
            // The booked price is the one the customer was shown for this
            // opening. Should it differ now (a same-day rate once midnight
            // has passed), the opening is offered again with its new price.
            let current = self
                .opening_quote(base_quote, slot.start, now)
                .map_or(base_quote.total, |q| q.total);
            if current != quote.total {
                return Err(SchedulingError::Taken(format!(
                    "its price is now {current}, not {}",
                    quote.total
                )));
            }
            let busy = self
                .busy_for(
                    &[&provider],
                    blocked,
                    conversation.id,
                    replacing.map(|b| b.id.as_str()),
                    now,
                )
                .await?;
            let Some(provider_busy) = busy.first() else {
                return Err(CalendarError::Unavailable(format!(
                    "the calendar of `{}` could not be read",
                    provider.id
                ))
                .into());
            };
            schedule
                .check_slot(
                    self.business.business.timezone,
                    provider_busy,
                    slot.start,
                    duration,
                    now,
                )
                .map_err(|problem| SchedulingError::Taken(problem.to_string()))?;
        }

        let event = self.event(&id, conversation, job, quote, slot);
        match replacing {
            None => {
                let record = BookingRecord {
                    id: id.clone(),
                    conversation_id: conversation.id,
                    provider_id: provider.id.clone(),
                    calendar_id: provider.calendar().to_string(),
                    slot: interval,
                    label: slot.label.clone(),
                    status: BookingStatus::Pending,
                };
                match self.store.reserve_booking(&record, blocked, now).await? {
                    Reservation::Conflict => {
                        crate::meters::booking_conflict();
                        return Err(SchedulingError::Taken(
                            "another booking took it a moment ago".into(),
                        ));
                    }
                    Reservation::Reserved(r) if r.status == BookingStatus::Cancelled || !same_slot(&r) => {
                        return Err(SchedulingError::Taken("that booking was already closed".into()));
                    }
                    Reservation::Reserved(_) => {}
                }
                if let Err(e) = self.insert_with_retry(provider.calendar(), &event).await {
                    // No booking without its event, and no event without its
                    // booking: cancel only once the event is known gone.
                    return match self.calendar.delete_event(provider.calendar(), &id).await {
                        Ok(()) => {
                            self.store
                                .update_booking(&id, BookingStatus::Cancelled, None)
                                .await?;
                            Err(e.into())
                        }
                        Err(cleanup) => Err(SchedulingError::Incomplete(format!(
                            "booking {id} on {} may have an event but could not be confirmed ({e}; cleanup: {cleanup})",
                            slot.label
                        ))),
                    };
                }
            }
            Some(old) => {
                let before = self
                    .store
                    .booking(&old.id)
                    .await?
                    .ok_or(StoreError::NotFound("booking"))?;
                // Record the new time first (pending): a crash after the
                // calendar moves can then be resumed, never lost.
                if !resuming {
                    self.store
                        .update_booking(
                            &id,
                            BookingStatus::Pending,
                            Some((&provider.id, provider.calendar(), interval, &slot.label)),
                        )
                        .await?;
                }
                let moved = if before.calendar_id == provider.calendar() {
                    self.calendar.move_event(provider.calendar(), &event).await
                } else {
                    match self.insert_with_retry(provider.calendar(), &event).await {
                        Ok(()) => self.calendar.delete_event(&before.calendar_id, &id).await,
                        Err(e) => Err(e),
                    }
                };
                if let Err(e) = moved {
                    // Back to the old time, which is still on the calendar.
                    self.store
                        .update_booking(
                            &id,
                            BookingStatus::Confirmed,
                            Some((
                                &before.provider_id,
                                &before.calendar_id,
                                before.slot,
                                &before.label,
                            )),
                        )
                        .await?;
                    return Err(e.into());
                }
            }
        }
        self.store
            .update_booking(&id, BookingStatus::Confirmed, None)
            .await?;
        // The opening is booked: the conversation's other holds go back.
        self.store.hold(conversation.id, &[], now, now, None).await?;
        tracing::info!(booking = %id, when = %slot.label, "booked");
        Ok(booked())
    }

    /// One retry on a timeout or outage: the same event id makes a second
    /// insert after a lost answer a harmless duplicate.
    async fn insert_with_retry(&self, calendar: &str, event: &CalendarEvent) -> Result<(), CalendarError> {
        match self.calendar.insert_event(calendar, event).await {
            Err(CalendarError::Unavailable(reason)) => {
                tracing::warn!(%reason, "event insert failed; retrying with the same id");
                self.calendar.insert_event(calendar, event).await
            }
            other => other,
        }
    }

    /// Cancels a booking: the event is removed, the booking marked cancelled.
    #[tracing::instrument(name = "cancel_booking", skip_all, fields(booking = %booking.id))]
    pub async fn cancel(&self, booking: &Booking) -> Result<(), SchedulingError> {
        let record = self
            .store
            .booking(&booking.id)
            .await?
            .ok_or(StoreError::NotFound("booking"))?;
        let lock = self.lock_for(&record.provider_id);
        let _serialized = lock.lock().await;
        self.calendar
            .delete_event(&record.calendar_id, &record.id)
            .await?;
        self.store
            .update_booking(&record.id, BookingStatus::Cancelled, None)
            .await?;
        Ok(())
    }
}
