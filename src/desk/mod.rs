//! The front desk's operations, each written once: issue a quote, offer
//! openings, book, reschedule, cancel, hand off; and the owner's side: take
//! over, hand back, reply. The Claude tools, the guided flow and the engine
//! call these (and the owner's console will), and each words the typed
//! result its own way: a tool result for the model, a text for the
//! customer.
//!
//! An operation is given what it works on: the business's configuration as
//! the turn started, the store or the scheduler, and the time. Within a
//! turn it changes only the turn's [`Turn`] (state, new quotes, alerts),
//! which the caller commits with its reply; the owner's operations, which
//! happen outside any turn, commit their own change.

pub mod approval;
mod owner;

use chrono::{DateTime, Utc};

use crate::calendar::CalendarError;
use crate::config::business::BusinessConfig;
use crate::domain::availability::DateFilter;
use crate::domain::conversation::{
    Booking, CancelledBy, ConversationState, Event, HandoffReason, OfferedSlot, TransitionError, transition,
};
use crate::domain::money::Money;
use crate::domain::quote::{Quote, QuoteError, price};
use crate::domain::when;
use crate::scheduling::{Offer, Scheduler, SchedulingError};
use crate::store::AlertKind;
use crate::store::{Conversation, StoreError};

pub use owner::{
    BookingChange, BookingChanged, FollowUp, OWNER_REPLY, OwnerReplied, change_booking, hand_back,
    schedule_owner_reply, send_owner_reply, take_over,
};

/// Something the owner must hear about, raised by an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerAlert {
    pub kind: AlertKind,
    pub detail: String,
}

/// One turn's working copy of the conversation: what operations read, and
/// the changes they make, committed by the caller with the turn's reply.
pub struct Turn<'a> {
    pub business: &'a BusinessConfig,
    pub conversation: &'a Conversation,
    pub now: DateTime<Utc>,
    pub state: &'a mut ConversationState,
    pub new_quotes: &'a mut Vec<Quote>,
    pub alerts: &'a mut Vec<OwnerAlert>,
}

/// Why an operation did nothing. The state, quotes and alerts are left as
/// they were, except that a failed calendar or store has already raised its
/// owner alert.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    /// The conversation's state does not allow it now.
    #[error("{0}")]
    NotAllowed(String),
    /// The job lacks something a quote needs; the customer can say it.
    #[error("{0}")]
    Incomplete(QuoteError),
    /// The catalog cannot price the job as recorded.
    #[error("{0}")]
    CannotPrice(QuoteError),
    /// No opening with this number is on offer; `offered` lists those that are.
    #[error("opening {id} was not offered")]
    NotOffered { id: u8, offered: Vec<u8> },
    #[error("the job address is missing")]
    AddressMissing,
    /// A web chat visitor has not proved a phone number yet (a texted code
    /// typed back): the desk books no web customer without one.
    #[error("the web visitor's phone number is not verified")]
    PhoneUnverified,
    /// The opening picked is the time the booking being moved already has.
    #[error("already booked for {0}")]
    AlreadyBookedFor(String),
    /// The calendar could not do it (`Taken`: someone else has the opening).
    #[error(transparent)]
    Scheduling(#[from] SchedulingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A conversation the owner's console named is not in the store.
    #[error("no such conversation")]
    UnknownConversation,
    /// Owner texts are never sent to a customer who opted out.
    #[error("the customer has opted out of texts")]
    OptedOut,
    /// A turn is answering the conversation right now: try again shortly.
    #[error("the assistant is answering this conversation right now; try again in a moment")]
    Busy,
    #[error("the text is empty")]
    EmptyText,
    /// The held reply was already approved, edited, rejected or timed out.
    #[error("this reply was already dealt with (approved, edited, rejected or timed out)")]
    NotHeld,
    /// The owner's wording states what the conversation's facts do not;
    /// each reason in words.
    #[error("the reply cannot be sent: {}", .0.join("; "))]
    Guardrail(Vec<String>),
}

impl From<TransitionError> for DeskError {
    fn from(e: TransitionError) -> Self {
        DeskError::NotAllowed(e.to_string())
    }
}

/// A booking made (or moved): what the customer is told.
#[derive(Debug, Clone)]
pub struct Booked {
    pub booking: Booking,
    pub slot: OfferedSlot,
    /// The opening's own total when it has one, else the quote's.
    pub total: Money,
}

impl Turn<'_> {
    /// Moves the conversation through the state machine, or leaves it.
    pub fn apply(&mut self, event: Event) -> Result<(), TransitionError> {
        let next = transition(self.state.clone(), event)?;
        if next.name() != self.state.name() {
            tracing::info!(
                from = self.state.name(),
                to = next.name(),
                "conversation state changed"
            );
        }
        *self.state = next;
        Ok(())
    }

    fn alert(&mut self, kind: AlertKind, detail: String) {
        self.alerts.push(OwnerAlert { kind, detail });
    }

    fn customer(&self) -> String {
        self.conversation.customer_phone.masked().to_string()
    }

    /// Raises the owner alert a calendar failure calls for; `Taken` needs
    /// none: the customer picks again.
    fn scheduling_failed(&mut self, e: SchedulingError) -> DeskError {
        self.calendar_failed(e, None)
    }

    /// As `scheduling_failed`, for `cancelling` this booking: the alert
    /// says it still stands.
    fn calendar_failed(&mut self, e: SchedulingError, cancelling: Option<&Booking>) -> DeskError {
        let customer = self.customer();
        if let Some(booking) = cancelling
            && !matches!(e, SchedulingError::Taken(_))
        {
            let kind = match &e {
                SchedulingError::Calendar(CalendarError::CredentialsRevoked(_)) => {
                    AlertKind::CalendarCredentials
                }
                SchedulingError::Incomplete(_) => AlertKind::BookingIncomplete,
                _ => AlertKind::CalendarUnavailable,
            };
            self.alert(
                kind,
                format!(
                    "Could not cancel customer {customer}'s booking for {}: {e}. It still stands on the crew's calendar: \
                     cancel it again, or remove it from the calendar by hand.",
                    booking.slot.label
                ),
            );
            return DeskError::Scheduling(e);
        }
        match &e {
            SchedulingError::Taken(_) => {}
            SchedulingError::Incomplete(why) => self.alert(
                AlertKind::BookingIncomplete,
                format!("A booking for customer {customer} needs a look: {why}"),
            ),
            SchedulingError::Calendar(CalendarError::CredentialsRevoked(why)) => self.alert(
                AlertKind::CalendarCredentials,
                format!(
                    "Google Calendar refused textdesk's credentials ({why}). Renew the service account key \
                     (GOOGLE_APPLICATION_CREDENTIALS). Customer {customer} could not be scheduled."
                ),
            ),
            other => self.alert(
                AlertKind::CalendarUnavailable,
                format!("Could not schedule customer {customer}: {other}. Please text them to set a time."),
            ),
        }
        DeskError::Scheduling(e)
    }
}

/// A fresh quote id.
pub fn new_quote_id() -> String {
    format!(
        "Q{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16].to_uppercase()
    )
}

/// Prices the job recorded so far with the owner's catalog and makes it
/// the conversation's quote.
pub fn issue_quote(turn: &mut Turn<'_>) -> Result<Quote, DeskError> {
    let job = turn.state.job().cloned().unwrap_or_default();
    let spec = job
        .to_spec(turn.business.business.kind)
        .map_err(DeskError::Incomplete)?;
    let quote =
        price(&turn.business.pricing, &spec, new_quote_id(), turn.now).map_err(DeskError::CannotPrice)?;
    turn.apply(Event::QuoteIssued(quote.clone()))?;
    turn.new_quotes.push(quote.clone());
    tracing::info!(quote = %quote.id, total = %quote.total, "quote issued");
    Ok(quote)
}

/// The customer's words about when ("next Tuesday afternoon"), read in the
/// business's zone: the dates to look at, and how to say what was looked for.
pub fn read_preference(
    business: &BusinessConfig,
    now: DateTime<Utc>,
    words: Option<&str>,
) -> (DateFilter, String) {
    let today = now.with_timezone(&business.business.timezone).date_naive();
    when::resolve(words.unwrap_or(""), today)
}

/// Finds openings for the quoted job (preferring `filter`), holds them for
/// this customer and offers them, replacing any offered before. An empty
/// offer is still an offer (nothing stays on offer) and the owner is told.
/// A booking being moved is never offered its own time.
pub async fn offer_openings(
    turn: &mut Turn<'_>,
    scheduler: &Scheduler,
    filter: &DateFilter,
    looked_for: &str,
) -> Result<Offer, DeskError> {
    let quote = turn
        .state
        .quote()
        .cloned()
        .ok_or_else(|| DeskError::NotAllowed("there is no quote yet: get_quote first".into()))?;
    let rescheduling = match &*turn.state {
        ConversationState::Scheduling(s) => s.rescheduling.clone(),
        _ => None,
    };
    let mut offer = match scheduler
        .for_business(turn.business)
        .offer(
            turn.conversation.id,
            &quote,
            filter,
            rescheduling.as_ref(),
            turn.now,
        )
        .await
    {
        Ok(offer) => offer,
        Err(e) => return Err(turn.scheduling_failed(e)),
    };
    if let Some(current) = &rescheduling {
        without_start(&mut offer, current.slot.start);
    }
    if offer.slots.is_empty() {
        let asked = if looked_for.is_empty() {
            String::new()
        } else {
            format!(" ({looked_for})")
        };
        let customer = turn.customer();
        turn.alert(
            AlertKind::NoOpenings,
            format!("No openings for customer {customer}{asked}. Please text them to find a time."),
        );
    }
    turn.apply(Event::SlotsOffered(offer.slots.clone()))?;
    // An opening with its own price (a weekend rate) carries a quote of
    // this conversation: the price the offer states is ours.
    for quote in offer.quotes() {
        if !turn.new_quotes.iter().any(|q| q.id == quote.id) {
            turn.new_quotes.push(quote.clone());
        }
    }
    Ok(offer)
}

/// Drops the opening at `start` and numbers the rest again from 1, keeping
/// each opening's price beside it.
fn without_start(offer: &mut Offer, start: DateTime<Utc>) {
    if offer.slots.iter().all(|s| s.start != start) {
        return;
    }
    let mut prices = std::mem::take(&mut offer.prices).into_iter();
    let kept: Vec<(OfferedSlot, Option<String>)> = std::mem::take(&mut offer.slots)
        .into_iter()
        .map(|slot| (slot, prices.next().flatten()))
        .filter(|(slot, _)| slot.start != start)
        .collect();
    for (i, (mut slot, price)) in kept.into_iter().enumerate() {
        slot.id = (i + 1) as u8;
        offer.slots.push(slot);
        offer.prices.push(price);
    }
}

/// The opening on offer with this number.
pub fn offered_slot(state: &ConversationState, id: u8) -> Result<OfferedSlot, DeskError> {
    let ConversationState::Scheduling(s) = state else {
        return Err(DeskError::NotAllowed(
            "no openings have been offered: call get_available_slots".into(),
        ));
    };
    s.offered
        .iter()
        .find(|o| o.id == id)
        .cloned()
        .ok_or_else(|| DeskError::NotOffered {
            id,
            offered: s.offered.iter().map(|o| o.id).collect(),
        })
}

/// Books the offered opening with this number (or moves the booking being
/// rescheduled to it), at the price it was offered at.
pub async fn book(turn: &mut Turn<'_>, scheduler: &Scheduler, slot_id: u8) -> Result<Booked, DeskError> {
    let slot = offered_slot(turn.state, slot_id)?;
    let ConversationState::Scheduling(scheduling) = turn.state.clone() else {
        unreachable!("offered_slot checked the state");
    };
    if scheduling
        .job
        .address
        .as_deref()
        .is_none_or(|a| a.trim().is_empty())
    {
        return Err(DeskError::AddressMissing);
    }
    if turn.conversation.customer_phone.is_web() && scheduling.job.verified_phone.is_none() {
        // Kept, so the code typed back books it (`Engine::web_verification`)
        // instead of asking the visitor to pick again.
        turn.apply(Event::OpeningPicked(slot_id))?;
        return Err(DeskError::PhoneUnverified);
    }
    if let Some(current) = &scheduling.rescheduling
        && current.slot.start == slot.start
    {
        return Err(DeskError::AlreadyBookedFor(current.slot.label.clone()));
    }
    let booking = match scheduler
        .for_business(turn.business)
        .book(
            turn.conversation,
            &scheduling.job,
            &scheduling.quote,
            &slot,
            scheduling.rescheduling.as_ref(),
            turn.now,
        )
        .await
    {
        Ok(booking) => booking,
        Err(e) => return Err(turn.scheduling_failed(e)),
    };
    turn.apply(Event::SlotBooked(booking.clone()))?;
    let total = slot.quote.as_ref().unwrap_or(&scheduling.quote).total;
    Ok(Booked { booking, slot, total })
}

/// Starts moving the booking (if not already under way) and offers new
/// openings; the booking stands until one is booked.
pub async fn reschedule(
    turn: &mut Turn<'_>,
    scheduler: &Scheduler,
    filter: &DateFilter,
    looked_for: &str,
) -> Result<Offer, DeskError> {
    let moving = matches!(&*turn.state, ConversationState::Scheduling(s) if s.rescheduling.is_some());
    if !moving {
        turn.apply(Event::RescheduleRequested)?;
    }
    offer_openings(turn, scheduler, filter, looked_for).await
}

/// Drops a reschedule in progress: the booking stays as it was.
pub fn keep_booking(turn: &mut Turn<'_>) -> Result<Booking, DeskError> {
    let ConversationState::Scheduling(s) = &*turn.state else {
        return Err(DeskError::NotAllowed("no reschedule is in progress".into()));
    };
    let Some(kept) = s.rescheduling.clone() else {
        return Err(DeskError::NotAllowed("no reschedule is in progress".into()));
    };
    turn.apply(Event::KeepBooking)?;
    Ok(kept)
}

/// Cancels the customer's booking (also one being moved) and removes it
/// from the crew's calendar; the owner is told when the customer did it.
/// The conversation keeps the job and its price, and says who cancelled.
pub async fn cancel(
    turn: &mut Turn<'_>,
    scheduler: &Scheduler,
    by: CancelledBy,
) -> Result<Booking, DeskError> {
    // Also one held through a hand-off or an opt-out: the owner cancels
    // those (the customer cannot: the assistant is not answering).
    let Some(booking) = turn.state.standing_booking().cloned() else {
        return Err(DeskError::NotAllowed("there is no booking to cancel".into()));
    };
    if let Err(e) = scheduler.for_business(turn.business).cancel(&booking).await {
        return Err(turn.calendar_failed(e, Some(&booking)));
    }
    turn.apply(Event::BookingCancelled { at: turn.now, by })?;
    // The owner did this: "the customer cancelled" is not news to them.
    if by == CancelledBy::Customer {
        let customer = turn.customer();
        turn.alert(
            AlertKind::BookingCancelled,
            format!("Customer {customer} cancelled {}.", booking.slot.label),
        );
    }
    Ok(booking)
}

/// Hands the conversation to the owner, who is told why; the assistant
/// stays silent until the owner hands it back (or the hand-off lapses).
pub fn hand_off(turn: &mut Turn<'_>, reason: HandoffReason, summary: &str) -> Result<(), DeskError> {
    let summary = summary.trim();
    if summary.is_empty() {
        return Err(DeskError::NotAllowed(
            "a hand-off must say what the customer needs".into(),
        ));
    }
    turn.apply(Event::HandOff {
        reason,
        summary: summary.to_string(),
        at: turn.now,
    })?;
    let customer = turn.customer();
    turn.alert(
        AlertKind::Handoff,
        format!(
            "Handed to you ({}): customer {customer}. {summary}",
            reason.in_words()
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests;
