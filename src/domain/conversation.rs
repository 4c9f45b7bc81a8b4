//! The conversation state machine.
//!
//! ```text
//!   INTAKE ──quote──▶ QUOTED ──offer slots──▶ SCHEDULING ──book──▶ BOOKED
//!     ▲  ◀─details changed─┘  ◀──details changed──┘  ◀──reschedule──┘
//!     │                                                    │ cancel / done
//!     └──── start over ◀── CLOSED / CANCELLED ◀────────────┘
//!   any active state ──hand off──▶ HANDED OFF;  any ──STOP──▶ OPTED OUT ──START──▶ back
//! ```
//!
//! Each state carries its data, transitions are a pure function of (state,
//! event), and an event the state does not allow is a typed error. The state
//! also decides which tools Claude may call in it.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::quote::{JobSpec, JunkJob, MaidJob, Quote, QuoteError, Selected};
use crate::domain::business_kind::BusinessKind;

/// What we know about the job so far. Every field may still be missing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct JobDetails {
    /// Junk removal: a size tier id from business.toml.
    pub size: Option<String>,
    /// Junk removal: items with their own labour.
    pub items: Vec<Selected>,
    pub bedrooms: Option<u32>,
    pub bathrooms: Option<Decimal>,
    pub square_feet: Option<u32>,
    pub clean_type: Option<String>,
    pub modifiers: Vec<Selected>,
    pub discounts: Vec<String>,
    /// The guided flow asked about extras (an empty list is an answer).
    pub extras_answered: bool,
    /// Counted extras whose quantity the customer gave.
    pub quantities_answered: Vec<String>,
    /// Other guided questions answered where no field shows it: a "no" to
    /// the items that need extra hands (`labour_items`) or to a discount
    /// (`discount:<id>`).
    pub answered: Vec<String>,
    pub address: Option<String>,
    pub customer_name: Option<String>,
    pub notes: Option<String>,
    /// The phone number a web chat visitor proved is theirs (a code texted
    /// to it came back): set only by `Event::PhoneVerified`, never by the
    /// model's details, and required before a web visitor books.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_phone: Option<crate::domain::phone::E164>,
}

/// A change to the job details: what is `Some` replaces what was there.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JobUpdate {
    pub size: Option<String>,
    pub items: Option<Vec<Selected>>,
    pub bedrooms: Option<u32>,
    pub bathrooms: Option<Decimal>,
    pub square_feet: Option<u32>,
    pub clean_type: Option<String>,
    pub modifiers: Option<Vec<Selected>>,
    pub discounts: Option<Vec<String>>,
    pub address: Option<String>,
    pub customer_name: Option<String>,
    pub notes: Option<String>,
    /// Sets how many of one chosen extra.
    pub quantity_of: Option<Selected>,
    /// Marks a guided question answered (see `JobDetails::answered`).
    pub answered: Option<String>,
}

impl JobUpdate {
    pub fn is_empty(&self) -> bool {
        self == &JobUpdate::default()
    }

    /// Whether it changes anything the price depends on.
    pub fn affects_price(&self) -> bool {
        self.size.is_some()
            || self.items.is_some()
            || self.bedrooms.is_some()
            || self.bathrooms.is_some()
            || self.square_feet.is_some()
            || self.clean_type.is_some()
            || self.modifiers.is_some()
            || self.discounts.is_some()
            || self.quantity_of.is_some()
    }
}

impl JobDetails {
    pub fn apply(&mut self, update: JobUpdate) {
        let JobUpdate {
            size,
            items,
            bedrooms,
            bathrooms,
            square_feet,
            clean_type,
            modifiers,
            discounts,
            address,
            customer_name,
            notes,
            quantity_of,
            answered,
        } = update;
        if size.is_some() {
            self.size = size;
        }
        if let Some(items) = items {
            self.items = items;
        }
        if bedrooms.is_some() {
            self.bedrooms = bedrooms;
        }
        if bathrooms.is_some() {
            self.bathrooms = bathrooms;
        }
        if square_feet.is_some() {
            self.square_feet = square_feet;
        }
        if clean_type.is_some() {
            self.clean_type = clean_type;
        }
        if let Some(modifiers) = modifiers {
            self.modifiers = modifiers;
            self.extras_answered = true;
        }
        if let Some(discounts) = discounts {
            self.discounts = discounts;
        }
        if address.is_some() {
            self.address = address;
        }
        if customer_name.is_some() {
            self.customer_name = customer_name;
        }
        if notes.is_some() {
            self.notes = notes;
        }
        if let Some(Selected { id, quantity }) = quantity_of {
            if let Some(m) = self.modifiers.iter_mut().find(|m| m.id == id) {
                m.quantity = quantity;
            }
            if !self.quantities_answered.contains(&id) {
                self.quantities_answered.push(id);
            }
        }
        if let Some(question) = answered
            && !self.answered.contains(&question)
        {
            self.answered.push(question);
        }
    }

    /// The job in the quote engine's terms, or what is still missing.
    pub fn to_spec(&self, kind: BusinessKind) -> Result<JobSpec, QuoteError> {
        match kind {
            BusinessKind::JunkRemoval => {
                if self.size.is_none() && self.items.is_empty() {
                    return Err(QuoteError::Incomplete(
                        "the job size (how much needs to go) or the items",
                    ));
                }
                Ok(JobSpec::Junk(JunkJob {
                    tier: self.size.clone(),
                    items: self.items.clone(),
                    labour: None,
                    modifiers: self.modifiers.clone(),
                    discounts: self.discounts.clone(),
                }))
            }
            BusinessKind::Maid => {
                let clean_type = self
                    .clean_type
                    .clone()
                    .ok_or(QuoteError::Incomplete("the type of clean"))?;
                if self.bedrooms.is_none() && self.bathrooms.is_none() && self.square_feet.is_none() {
                    return Err(QuoteError::Incomplete("the number of bedrooms and bathrooms"));
                }
                Ok(JobSpec::Maid(MaidJob {
                    bedrooms: self.bedrooms.unwrap_or(0),
                    bathrooms: self.bathrooms.unwrap_or_default(),
                    square_feet: self.square_feet,
                    clean_type,
                    labour: None,
                    modifiers: self.modifiers.clone(),
                    discounts: self.discounts.clone(),
                }))
            }
        }
    }
}

/// A concrete opening offered to the customer, by id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OfferedSlot {
    /// 1, 2, 3: what the customer answers with.
    pub id: u8,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// "Tue Mar 10, 8-10am", in the business's time zone.
    pub label: String,
    pub crew: String,
    /// The price at this opening when it differs from the conversation's
    /// quote (a weekend or same-day surcharge): booking it books this quote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<Quote>,
}

impl OfferedSlot {
    /// "2) Sat Dec 5, 9-11am ($385)": the opening as listed again, with its
    /// own total where it differs from `base`, so a list repeated later
    /// states the same price the offer did.
    pub fn numbered(&self, base: &Quote) -> String {
        match self.quote.as_ref().filter(|q| q.total != base.total) {
            Some(own) => format!("{}) {} ({})", self.id, self.label, own.total),
            None => format!("{}) {}", self.id, self.label),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Booking {
    pub id: String,
    pub slot: OfferedSlot,
    pub calendar_event_id: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HandoffReason {
    CustomerAskedForPerson,
    Complaint,
    CannotPrice,
    Other,
    /// The owner took the conversation from the assistant.
    OwnerTookOver,
}

impl HandoffReason {
    /// Why, as the owner reads it in an alert.
    pub fn in_words(self) -> &'static str {
        match self {
            HandoffReason::CustomerAskedForPerson => "the customer asked for a person",
            HandoffReason::Complaint => "a complaint",
            HandoffReason::CannotPrice => "a job the price list cannot price",
            HandoffReason::Other => "the assistant needs you",
            HandoffReason::OwnerTookOver => "you took over",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Silence long enough that the next text is a new job.
    Expired,
    /// The booked job's time has passed.
    Completed,
    /// The customer cancelled the booking.
    CancelledByCustomer,
    /// The owner cancelled the booking (from the console).
    CancelledByOwner,
}

/// Who cancelled a booking: the owner must not read "the customer
/// cancelled" about their own cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelledBy {
    Customer,
    Owner,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Intake {
    pub job: JobDetails,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quoted {
    pub job: JobDetails,
    pub quote: Quote,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scheduling {
    pub job: JobDetails,
    pub quote: Quote,
    pub offered: Vec<OfferedSlot>,
    /// The booking being moved, when this is a reschedule.
    #[serde(default)]
    pub rescheduling: Option<Booking>,
    /// The opening (its number in `offered`) a web visitor picked before
    /// verifying a phone number: booked as soon as the code is typed back,
    /// so they need not pick again. Gone when other openings are offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picked: Option<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Booked {
    pub job: JobDetails,
    pub quote: Quote,
    pub booking: Booking,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HandedOff {
    pub reason: HandoffReason,
    pub summary: String,
    pub at: DateTime<Utc>,
    pub job: JobDetails,
    /// The booking that stood when the owner took over: it still stands
    /// (on the crew's calendar, with its reminders), the owner may cancel
    /// it, and handing back returns to it. A move under way when handed
    /// off is dropped; the booking stays as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booked: Option<Box<Booked>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OptedOut {
    /// Where START takes the customer back to.
    pub previous: Box<ConversationState>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Closed {
    pub reason: CloseReason,
    pub at: DateTime<Utc>,
    /// The job as it was when it closed: the owner still needs the
    /// customer's name and address after a cancel (absent in states stored
    /// before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobDetails>,
    /// The last price the customer was given, for the same reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<Quote>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConversationState {
    Intake(Intake),
    Quoted(Quoted),
    Scheduling(Scheduling),
    Booked(Booked),
    HandedOff(HandedOff),
    Cancelled(Closed),
    OptedOut(OptedOut),
    Closed(Closed),
}

impl Default for ConversationState {
    fn default() -> Self {
        ConversationState::Intake(Intake::default())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    DetailsRecorded(JobUpdate),
    QuoteIssued(Quote),
    /// The quote's validity ran out: price again from the same details.
    QuoteExpired,
    SlotsOffered(Vec<OfferedSlot>),
    SlotBooked(Booking),
    RescheduleRequested,
    /// Drop a reschedule in progress: the booking stays as it was.
    KeepBooking,
    BookingCancelled {
        at: DateTime<Utc>,
        by: CancelledBy,
    },
    HandOff {
        reason: HandoffReason,
        summary: String,
        at: DateTime<Utc>,
    },
    OptOut {
        at: DateTime<Utc>,
    },
    OptIn,
    Expire {
        at: DateTime<Utc>,
    },
    Complete {
        at: DateTime<Utc>,
    },
    StartOver,
    /// The owner gives a handed-off conversation back to the assistant.
    HandBack,
    /// A web chat visitor typed back the code texted to this number.
    PhoneVerified(crate::domain::phone::E164),
    /// A web chat visitor picked an offered opening before verifying a
    /// number: kept, to book once they have.
    OpeningPicked(u8),
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::DetailsRecorded(_) => "details_recorded",
            Event::QuoteIssued(_) => "quote_issued",
            Event::QuoteExpired => "quote_expired",
            Event::SlotsOffered(_) => "slots_offered",
            Event::SlotBooked(_) => "slot_booked",
            Event::RescheduleRequested => "reschedule_requested",
            Event::KeepBooking => "keep_booking",
            Event::BookingCancelled { .. } => "booking_cancelled",
            Event::HandOff { .. } => "hand_off",
            Event::OptOut { .. } => "opt_out",
            Event::OptIn => "opt_in",
            Event::Expire { .. } => "expire",
            Event::Complete { .. } => "complete",
            Event::StartOver => "start_over",
            Event::HandBack => "hand_back",
            Event::PhoneVerified(_) => "phone_verified",
            Event::OpeningPicked(_) => "opening_picked",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("`{event}` is not possible while the conversation is {state}")]
pub struct TransitionError {
    pub state: &'static str,
    pub event: &'static str,
}

/// Tool names, stable across logs and tests.
pub mod tool {
    pub const RECORD_JOB_DETAILS: &str = "record_job_details";
    pub const GET_QUOTE: &str = "get_quote";
    pub const ESCALATE_TO_OWNER: &str = "escalate_to_owner";
    pub const GET_AVAILABLE_SLOTS: &str = "get_available_slots";
    pub const BOOK_SLOT: &str = "book_slot";
    pub const RESCHEDULE_BOOKING: &str = "reschedule_booking";
    pub const CANCEL_BOOKING: &str = "cancel_booking";

    pub const ALL: [&str; 7] = [
        RECORD_JOB_DETAILS,
        GET_QUOTE,
        ESCALATE_TO_OWNER,
        GET_AVAILABLE_SLOTS,
        BOOK_SLOT,
        RESCHEDULE_BOOKING,
        CANCEL_BOOKING,
    ];
}

impl ConversationState {
    /// Upper-case name, as in logs and the prompt.
    pub fn name(&self) -> &'static str {
        match self {
            ConversationState::Intake(_) => "INTAKE",
            ConversationState::Quoted(_) => "QUOTED",
            ConversationState::Scheduling(_) => "SCHEDULING",
            ConversationState::Booked(_) => "BOOKED",
            ConversationState::HandedOff(_) => "HANDED_OFF",
            ConversationState::Cancelled(_) => "CANCELLED",
            ConversationState::OptedOut(_) => "OPTED_OUT",
            ConversationState::Closed(_) => "CLOSED",
        }
    }

    /// The job as known in this state, if it has one.
    pub fn job(&self) -> Option<&JobDetails> {
        match self {
            ConversationState::Intake(s) => Some(&s.job),
            ConversationState::Quoted(s) => Some(&s.job),
            ConversationState::Scheduling(s) => Some(&s.job),
            ConversationState::Booked(s) => Some(&s.job),
            ConversationState::HandedOff(s) => Some(&s.job),
            ConversationState::OptedOut(s) => s.previous.job(),
            ConversationState::Cancelled(s) | ConversationState::Closed(s) => s.job.as_ref(),
        }
    }

    /// The last price the customer was given in this job (a booked
    /// opening's own price), also after it closed.
    pub fn last_quote(&self) -> Option<&Quote> {
        match self {
            ConversationState::Quoted(s) => Some(&s.quote),
            ConversationState::Scheduling(s) => Some(&s.quote),
            ConversationState::Booked(s) => Some(s.booking.slot.quote.as_ref().unwrap_or(&s.quote)),
            ConversationState::OptedOut(s) => s.previous.last_quote(),
            ConversationState::Cancelled(s) | ConversationState::Closed(s) => s.quote.as_ref(),
            ConversationState::HandedOff(h) => h
                .booked
                .as_deref()
                .map(|b| b.booking.slot.quote.as_ref().unwrap_or(&b.quote)),
            ConversationState::Intake(_) => None,
        }
    }

    /// Gives the job a customer name when it has none: the name a channel
    /// knows (a WhatsApp profile) stands in until the customer types one.
    /// Control characters are dropped and the name is kept short, since the
    /// customer chose it and it reaches the crew's email.
    pub fn name_customer_if_unknown(&mut self, name: &str) {
        let clean: String = name
            .chars()
            .filter(|c| !c.is_control())
            .take(60)
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if clean.is_empty() {
            return;
        }
        let job = match self {
            ConversationState::Intake(s) => &mut s.job,
            ConversationState::Quoted(s) => &mut s.job,
            ConversationState::Scheduling(s) => &mut s.job,
            ConversationState::Booked(s) => &mut s.job,
            ConversationState::HandedOff(s) => {
                // Also the booking's job, which handing back returns to.
                if let Some(booked) = s.booked.as_deref_mut()
                    && booked.job.customer_name.is_none()
                {
                    booked.job.customer_name = Some(clean.clone());
                }
                &mut s.job
            }
            ConversationState::OptedOut(s) => return s.previous.name_customer_if_unknown(&clean),
            ConversationState::Cancelled(_) | ConversationState::Closed(_) => return,
        };
        if job.customer_name.is_none() {
            job.customer_name = Some(clean);
        }
    }

    /// The booking that stands in this state, if any: booked, being moved,
    /// held through a hand-off, or through an opt-out.
    pub fn standing_booking(&self) -> Option<&Booking> {
        match self {
            ConversationState::Booked(b) => Some(&b.booking),
            ConversationState::Scheduling(s) => s.rescheduling.as_ref(),
            ConversationState::HandedOff(h) => h.booked.as_ref().map(|b| &b.booking),
            ConversationState::OptedOut(s) => s.previous.standing_booking(),
            _ => None,
        }
    }

    /// The current quote, if the state carries one.
    pub fn quote(&self) -> Option<&Quote> {
        match self {
            ConversationState::Quoted(s) => Some(&s.quote),
            ConversationState::Scheduling(s) => Some(&s.quote),
            ConversationState::Booked(s) => Some(&s.quote),
            ConversationState::OptedOut(s) => s.previous.quote(),
            _ => None,
        }
    }

    /// Whether the assistant answers texts in this state at all.
    pub fn bot_answers(&self) -> bool {
        !matches!(
            self,
            ConversationState::HandedOff(_) | ConversationState::OptedOut(_)
        )
    }

    /// The tools Claude may call in this state. Scheduling tools are listed
    /// where they belong; a tool is offered only if it is also registered.
    pub fn allowed_tools(&self) -> &'static [&'static str] {
        use tool::*;
        match self {
            ConversationState::Intake(_) => &[RECORD_JOB_DETAILS, GET_QUOTE, ESCALATE_TO_OWNER],
            ConversationState::Quoted(_) => &[
                RECORD_JOB_DETAILS,
                GET_QUOTE,
                GET_AVAILABLE_SLOTS,
                ESCALATE_TO_OWNER,
            ],
            // Moving a booking: the job and price are settled; the booking
            // can still be kept or cancelled.
            ConversationState::Scheduling(s) if s.rescheduling.is_some() => &[
                GET_AVAILABLE_SLOTS,
                BOOK_SLOT,
                RESCHEDULE_BOOKING,
                CANCEL_BOOKING,
                ESCALATE_TO_OWNER,
            ],
            ConversationState::Scheduling(_) => &[
                RECORD_JOB_DETAILS,
                GET_QUOTE,
                GET_AVAILABLE_SLOTS,
                BOOK_SLOT,
                ESCALATE_TO_OWNER,
            ],
            ConversationState::Booked(_) => &[RESCHEDULE_BOOKING, CANCEL_BOOKING, ESCALATE_TO_OWNER],
            ConversationState::HandedOff(_)
            | ConversationState::Cancelled(_)
            | ConversationState::OptedOut(_)
            | ConversationState::Closed(_) => &[],
        }
    }

    fn active_job(self) -> Option<JobDetails> {
        match self {
            ConversationState::Intake(s) => Some(s.job),
            ConversationState::Quoted(s) => Some(s.job),
            ConversationState::Scheduling(s) => Some(s.job),
            ConversationState::Booked(s) => Some(s.job),
            _ => None,
        }
    }
}

/// The one place the conversation changes state.
pub fn transition(state: ConversationState, event: Event) -> Result<ConversationState, TransitionError> {
    use ConversationState as S;
    let illegal = |state: &S, event: &Event| TransitionError {
        state: state.name(),
        event: event.name(),
    };
    // While a booking is being moved, the job and its price are settled:
    // anything that would drop the booking from the state is refused.
    if let S::Scheduling(s) = &state
        && s.rescheduling.is_some()
    {
        let refused = match &event {
            Event::DetailsRecorded(update) => update.affects_price(),
            Event::QuoteIssued(_) | Event::QuoteExpired | Event::Expire { .. } => true,
            _ => false,
        };
        if refused {
            return Err(illegal(&state, &event));
        }
    }
    fn cancel_reason(by: CancelledBy) -> CloseReason {
        match by {
            CancelledBy::Customer => CloseReason::CancelledByCustomer,
            CancelledBy::Owner => CloseReason::CancelledByOwner,
        }
    }
    match (state, event) {
        // A verified number belongs to the job in every state that has one
        // open; it changes nothing else.
        (S::Intake(mut s), Event::PhoneVerified(phone)) => {
            s.job.verified_phone = Some(phone);
            Ok(S::Intake(s))
        }
        (S::Quoted(mut s), Event::PhoneVerified(phone)) => {
            s.job.verified_phone = Some(phone);
            Ok(S::Quoted(s))
        }
        (S::Scheduling(mut s), Event::PhoneVerified(phone)) => {
            s.job.verified_phone = Some(phone);
            Ok(S::Scheduling(s))
        }
        (S::Booked(mut s), Event::PhoneVerified(phone)) => {
            s.job.verified_phone = Some(phone);
            Ok(S::Booked(s))
        }
        (S::Scheduling(s), Event::KeepBooking) if s.rescheduling.is_some() => {
            let booking = s.rescheduling.expect("checked");
            Ok(S::Booked(Booked {
                job: s.job,
                quote: s.quote,
                booking,
            }))
        }
        (S::Scheduling(s), Event::BookingCancelled { at, by }) if s.rescheduling.is_some() => {
            let booking = s.rescheduling.expect("checked");
            Ok(S::Cancelled(Closed {
                reason: cancel_reason(by),
                at,
                job: Some(s.job),
                quote: Some(booking.slot.quote.unwrap_or(s.quote)),
            }))
        }
        // Details: recorded in INTAKE; in QUOTED or SCHEDULING a change that
        // affects the price voids the quote and goes back to INTAKE.
        (S::Intake(mut s), Event::DetailsRecorded(update)) => {
            s.job.apply(update);
            Ok(S::Intake(s))
        }
        (S::Quoted(mut s), Event::DetailsRecorded(update)) => {
            let requote = update.affects_price();
            s.job.apply(update);
            Ok(if requote {
                S::Intake(Intake { job: s.job })
            } else {
                S::Quoted(s)
            })
        }
        (S::Scheduling(mut s), Event::DetailsRecorded(update)) => {
            let requote = update.affects_price();
            s.job.apply(update);
            Ok(if requote {
                S::Intake(Intake { job: s.job })
            } else {
                S::Scheduling(s)
            })
        }

        (S::Intake(s), Event::QuoteIssued(quote)) => Ok(S::Quoted(Quoted { job: s.job, quote })),
        (S::Quoted(s), Event::QuoteIssued(quote)) => Ok(S::Quoted(Quoted { job: s.job, quote })),
        (S::Scheduling(s), Event::QuoteIssued(quote)) => Ok(S::Quoted(Quoted { job: s.job, quote })),

        (S::Quoted(s), Event::QuoteExpired) => Ok(S::Intake(Intake { job: s.job })),
        (S::Scheduling(s), Event::QuoteExpired) => Ok(S::Intake(Intake { job: s.job })),

        (S::Quoted(s), Event::SlotsOffered(offered)) => Ok(S::Scheduling(Scheduling {
            job: s.job,
            quote: s.quote,
            offered,
            rescheduling: None,
            picked: None,
        })),
        // A pick names a number in the list it was made from.
        (S::Scheduling(s), Event::SlotsOffered(offered)) => Ok(S::Scheduling(Scheduling {
            offered,
            picked: None,
            ..s
        })),
        (S::Scheduling(mut s), Event::OpeningPicked(id)) if s.offered.iter().any(|o| o.id == id) => {
            s.picked = Some(id);
            Ok(S::Scheduling(s))
        }
        // The booked price is the opening's own, when it has one.
        (S::Scheduling(s), Event::SlotBooked(booking)) => Ok(S::Booked(Booked {
            job: s.job,
            quote: booking.slot.quote.clone().unwrap_or(s.quote),
            booking,
        })),
        (S::Booked(s), Event::RescheduleRequested) => Ok(S::Scheduling(Scheduling {
            job: s.job,
            quote: s.quote,
            offered: Vec::new(),
            rescheduling: Some(s.booking),
            picked: None,
        })),
        (S::Booked(s), Event::BookingCancelled { at, by }) => Ok(S::Cancelled(Closed {
            reason: cancel_reason(by),
            at,
            job: Some(s.job),
            quote: Some(s.booking.slot.quote.unwrap_or(s.quote)),
        })),
        (S::Booked(s), Event::Complete { at }) => Ok(S::Closed(Closed {
            reason: CloseReason::Completed,
            at,
            job: Some(s.job),
            quote: Some(s.booking.slot.quote.unwrap_or(s.quote)),
        })),

        (
            state @ (S::Intake(_) | S::Quoted(_) | S::Scheduling(_) | S::Booked(_)),
            Event::HandOff { reason, summary, at },
        ) => {
            let booked = match &state {
                S::Booked(b) => Some(Box::new(b.clone())),
                S::Scheduling(s) => s.rescheduling.clone().map(|booking| {
                    Box::new(Booked {
                        job: s.job.clone(),
                        quote: s.quote.clone(),
                        booking,
                    })
                }),
                _ => None,
            };
            Ok(S::HandedOff(HandedOff {
                reason,
                summary,
                at,
                job: state.active_job().unwrap_or_default(),
                booked,
            }))
        }
        // The owner cancels the booking while they have the conversation:
        // they keep it.
        (S::HandedOff(mut h), Event::BookingCancelled { .. }) if h.booked.is_some() => {
            h.booked = None;
            Ok(S::HandedOff(h))
        }
        (state @ (S::Intake(_) | S::Quoted(_) | S::Scheduling(_)), Event::Expire { at }) => {
            Ok(S::Closed(Closed {
                reason: CloseReason::Expired,
                at,
                quote: state.last_quote().cloned(),
                job: state.active_job(),
            }))
        }

        (S::OptedOut(s), Event::OptOut { .. }) => Ok(S::OptedOut(s)),
        // The owner cancels the booking of a customer who opted out (they
        // called): START then returns them to the cancelled job.
        (S::OptedOut(s), event @ Event::BookingCancelled { .. })
            if s.previous.standing_booking().is_some() =>
        {
            Ok(S::OptedOut(OptedOut {
                previous: Box::new(transition(*s.previous, event)?),
                at: s.at,
            }))
        }
        (state, Event::OptOut { at }) => Ok(S::OptedOut(OptedOut {
            previous: Box::new(state),
            at,
        })),
        (S::OptedOut(s), Event::OptIn) => Ok(*s.previous),

        // Not over a booking held through a hand-off: it is on the calendar.
        (S::HandedOff(h), Event::StartOver) if h.booked.is_some() => {
            Err(illegal(&S::HandedOff(h), &Event::StartOver))
        }
        (S::Closed(_) | S::Cancelled(_) | S::HandedOff(_), Event::StartOver) => Ok(S::default()),
        // The job described so far stays; the assistant prices it again,
        // since what the owner said meanwhile is not in any quote.
        // A booking stands through the hand-off: back to it.
        (S::HandedOff(h), Event::HandBack) => Ok(match h.booked {
            Some(booked) => S::Booked(*booked),
            None => S::Intake(Intake { job: h.job }),
        }),

        (state, event) => Err(illegal(&state, &event)),
    }
}

/// How long silence lasts before a conversation is closed, and a hand-off
/// before the bot answers again. From business.toml [conversation].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub idle_days: u32,
    pub handoff_days: u32,
}

/// Where a customer who texts again lands: their booking, their open quote,
/// or a new job. `last_activity` is when the conversation last moved.
pub fn on_customer_text(
    state: ConversationState,
    now: DateTime<Utc>,
    last_activity: Option<DateTime<Utc>>,
    lifetimes: Lifetimes,
) -> ConversationState {
    use ConversationState as S;
    let idle = last_activity.is_some_and(|t| now - t >= Duration::days(i64::from(lifetimes.idle_days)));
    let step = |state: S, event: Event| transition(state.clone(), event).unwrap_or(state);
    match state {
        // A job whose time has passed is done; the text is about a new one.
        S::Booked(ref b) if b.booking.slot.end <= now => {
            step(step(state, Event::Complete { at: now }), Event::StartOver)
        }
        S::Booked(_) => state,
        // A booking being moved is still a booking: it does not expire.
        S::Scheduling(ref s) if s.rescheduling.is_some() => state,
        S::Intake(_) | S::Quoted(_) | S::Scheduling(_) if idle => {
            step(step(state, Event::Expire { at: now }), Event::StartOver)
        }
        // An expired quote is priced again from the same details.
        S::Quoted(ref q) if q.quote.is_expired(now) => step(state, Event::QuoteExpired),
        S::Scheduling(ref q) if q.quote.is_expired(now) => step(state, Event::QuoteExpired),
        // A lapsed hand-off with a booking returns to the booking; without
        // one, the text is about a new job.
        S::HandedOff(ref h) if now - h.at >= Duration::days(i64::from(lifetimes.handoff_days)) => {
            let back = if h.booked.is_some() {
                Event::HandBack
            } else {
                Event::StartOver
            };
            on_customer_text(step(state, back), now, None, lifetimes)
        }
        S::Closed(_) | S::Cancelled(_) => step(state, Event::StartOver),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::quote::{PricingConfig, price};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 18, 0, 0).unwrap()
    }

    fn quote() -> Quote {
        let job = JobDetails {
            size: Some("half_truck".into()),
            ..JobDetails::default()
        };
        price(
            &PricingConfig::default(),
            &job.to_spec(BusinessKind::JunkRemoval).unwrap(),
            "q1".into(),
            now(),
        )
        .unwrap()
    }

    fn slot(id: u8, days: i64) -> OfferedSlot {
        OfferedSlot {
            id,
            start: now() + Duration::days(days),
            end: now() + Duration::days(days) + Duration::hours(2),
            label: format!("slot {id}"),
            crew: "crew-1".into(),
            quote: None,
        }
    }

    fn job() -> JobDetails {
        JobDetails {
            size: Some("half_truck".into()),
            ..JobDetails::default()
        }
    }

    fn booking(days: i64) -> Booking {
        Booking {
            id: "b1".into(),
            slot: slot(1, days),
            calendar_event_id: "ev1".into(),
        }
    }

    fn states() -> Vec<ConversationState> {
        use ConversationState as S;
        let closed = Closed {
            reason: CloseReason::Expired,
            at: now(),
            job: None,
            quote: None,
        };
        vec![
            S::Intake(Intake { job: job() }),
            S::Quoted(Quoted {
                job: job(),
                quote: quote(),
            }),
            S::Scheduling(Scheduling {
                job: job(),
                quote: quote(),
                offered: vec![slot(1, 2)],
                rescheduling: None,
                picked: None,
            }),
            S::Scheduling(Scheduling {
                job: job(),
                quote: quote(),
                offered: vec![slot(2, 3)],
                rescheduling: Some(booking(2)),
                picked: None,
            }),
            S::Booked(Booked {
                job: job(),
                quote: quote(),
                booking: booking(2),
            }),
            S::HandedOff(HandedOff {
                reason: HandoffReason::Complaint,
                summary: "unhappy".into(),
                at: now(),
                job: job(),
                booked: None,
            }),
            S::Cancelled(closed.clone()),
            S::OptedOut(OptedOut {
                previous: Box::new(S::Quoted(Quoted {
                    job: job(),
                    quote: quote(),
                })),
                at: now(),
            }),
            S::Closed(closed),
            // A booking held through a hand-off, and through an opt-out.
            S::HandedOff(HandedOff {
                reason: HandoffReason::OwnerTookOver,
                summary: "The owner is answering.".into(),
                at: now(),
                job: job(),
                booked: Some(Box::new(booked())),
            }),
            S::OptedOut(OptedOut {
                previous: Box::new(S::Booked(booked())),
                at: now(),
            }),
        ]
    }

    fn booked() -> Booked {
        Booked {
            job: job(),
            quote: quote(),
            booking: booking(2),
        }
    }

    fn events() -> Vec<Event> {
        vec![
            Event::DetailsRecorded(JobUpdate {
                size: Some("full_truck".into()),
                ..JobUpdate::default()
            }),
            Event::QuoteIssued(quote()),
            Event::QuoteExpired,
            Event::SlotsOffered(vec![slot(1, 2), slot(2, 3)]),
            Event::SlotBooked(booking(2)),
            Event::RescheduleRequested,
            Event::KeepBooking,
            Event::BookingCancelled {
                at: now(),
                by: CancelledBy::Customer,
            },
            Event::HandOff {
                reason: HandoffReason::CustomerAskedForPerson,
                summary: "wants a person".into(),
                at: now(),
            },
            Event::OptOut { at: now() },
            Event::OptIn,
            Event::Expire { at: now() },
            Event::Complete { at: now() },
            Event::StartOver,
            Event::HandBack,
            Event::OpeningPicked(1),
        ]
    }

    /// Every state against every event: the resulting state's name, or "-"
    /// for a typed error.
    #[test]
    fn a_channel_name_fills_in_only_a_missing_name() {
        let mut state = ConversationState::default();
        state.name_customer_if_unknown("  Dana\u{0007}  Wu ");
        assert_eq!(state.job().unwrap().customer_name.as_deref(), Some("Dana Wu"));
        state.name_customer_if_unknown("Someone Else");
        assert_eq!(state.job().unwrap().customer_name.as_deref(), Some("Dana Wu"));
        let mut unnamed = ConversationState::default();
        unnamed.name_customer_if_unknown(" \u{0007} ");
        assert_eq!(unnamed.job().unwrap().customer_name, None);
    }

    #[test]
    fn a_verified_phone_is_kept_with_the_job_and_only_where_a_job_is_open() {
        let phone = crate::domain::phone::E164::parse("+15035551234").unwrap();
        for state in states() {
            let name = state.name();
            match transition(state, Event::PhoneVerified(phone.clone())) {
                Ok(next) => {
                    assert_eq!(next.name(), name, "the state does not move");
                    assert_eq!(
                        next.job().and_then(|j| j.verified_phone.clone()),
                        Some(phone.clone())
                    );
                }
                Err(e) => assert!(
                    matches!(name, "HANDED_OFF" | "CANCELLED" | "OPTED_OUT" | "CLOSED"),
                    "{name}: {e}"
                ),
            }
        }
    }

    #[test]
    fn a_pick_before_verification_is_kept_until_the_list_changes() {
        let ConversationState::Scheduling(offered) = &states()[2] else {
            panic!("the third state is SCHEDULING");
        };
        let state = ConversationState::Scheduling(Scheduling {
            offered: vec![slot(1, 2), slot(2, 3)],
            ..offered.clone()
        });
        let picked = transition(state, Event::OpeningPicked(2)).unwrap();
        let picked_of = |s: &ConversationState| match s {
            ConversationState::Scheduling(s) => s.picked,
            _ => None,
        };
        assert_eq!(picked_of(&picked), Some(2));
        // Verifying the number keeps it (that is when it is booked).
        let phone = crate::domain::phone::E164::parse("+15035551234").unwrap();
        let verified = transition(picked.clone(), Event::PhoneVerified(phone)).unwrap();
        assert_eq!(picked_of(&verified), Some(2));
        // A new list: the number meant an opening of the old one.
        let reoffered = transition(picked.clone(), Event::SlotsOffered(vec![slot(2, 5)])).unwrap();
        assert_eq!(picked_of(&reoffered), None);
        // A number that was not offered is not a pick.
        assert!(transition(picked, Event::OpeningPicked(7)).is_err());
    }

    #[test]
    fn transition_table() {
        #[rustfmt::skip]
        let expected: [[&str; 16]; 11] = [
            //            details     quote     q.expired  offer         book      resched       keep      cancel       handoff       optout      optin     expire    complete  startover  handback  picked (1)
            /* INTAKE */  ["INTAKE",  "QUOTED", "-",       "-",          "-",      "-",          "-",      "-",         "HANDED_OFF", "OPTED_OUT", "-",     "CLOSED", "-",      "-", "-", "-"],
            /* QUOTED */  ["INTAKE",  "QUOTED", "INTAKE",  "SCHEDULING", "-",      "-",          "-",      "-",         "HANDED_OFF", "OPTED_OUT", "-",     "CLOSED", "-",      "-", "-", "-"],
            /* SCHED  */  ["INTAKE",  "QUOTED", "INTAKE",  "SCHEDULING", "BOOKED", "-",          "-",      "-",         "HANDED_OFF", "OPTED_OUT", "-",     "CLOSED", "-",      "-", "-", "SCHEDULING"],
            /* MOVING */  ["-",       "-",      "-",       "SCHEDULING", "BOOKED", "-",          "BOOKED", "CANCELLED", "HANDED_OFF", "OPTED_OUT", "-",     "-",      "-",      "-", "-", "-"],
            /* BOOKED */  ["-",       "-",      "-",       "-",          "-",      "SCHEDULING", "-",      "CANCELLED", "HANDED_OFF", "OPTED_OUT", "-",     "-",      "CLOSED", "-", "-", "-"],
            /* HANDED */  ["-",       "-",      "-",       "-",          "-",      "-",          "-",      "-",         "-",          "OPTED_OUT", "-",     "-",      "-",      "INTAKE", "INTAKE", "-"],
            /* CANCEL */  ["-",       "-",      "-",       "-",          "-",      "-",          "-",      "-",         "-",          "OPTED_OUT", "-",     "-",      "-",      "INTAKE", "-", "-"],
            /* OPTOUT */  ["-",       "-",      "-",       "-",          "-",      "-",          "-",      "-",         "-",          "OPTED_OUT", "QUOTED", "-",     "-",      "-", "-", "-"],
            /* CLOSED */  ["-",       "-",      "-",       "-",          "-",      "-",          "-",      "-",         "-",          "OPTED_OUT", "-",     "-",      "-",      "INTAKE", "-", "-"],
            /* HND+BK */  ["-",       "-",      "-",       "-",          "-",      "-",          "-",      "HANDED_OFF", "-",         "OPTED_OUT", "-",     "-",      "-",      "-", "BOOKED", "-"],
            /* OPT+BK */  ["-",       "-",      "-",       "-",          "-",      "-",          "-",      "OPTED_OUT", "-",          "OPTED_OUT", "BOOKED", "-",     "-",      "-", "-", "-"],
        ];
        let states = states();
        let events = events();
        assert_eq!(states.len(), 11);
        assert_eq!(events.len(), 16);
        for (row, state) in states.iter().enumerate() {
            for (col, event) in events.iter().enumerate() {
                let got = match transition(state.clone(), event.clone()) {
                    Ok(next) => next.name(),
                    Err(e) => {
                        assert_eq!((e.state, e.event), (state.name(), event.name()));
                        "-"
                    }
                };
                assert_eq!(got, expected[row][col], "{} + {}", state.name(), event.name());
            }
        }
    }

    #[test]
    fn a_booking_stands_through_a_hand_off_and_comes_back_with_the_conversation() {
        let hand_off = || Event::HandOff {
            reason: HandoffReason::OwnerTookOver,
            summary: "The owner is answering.".into(),
            at: now(),
        };
        let booked = ConversationState::Booked(booked());
        let handed = transition(booked.clone(), hand_off()).unwrap();
        assert!(!handed.bot_answers());
        assert_eq!(handed.standing_booking(), Some(&booking(2)));
        // The console still shows the price; a name given meanwhile comes
        // back with the booking.
        assert_eq!(handed.last_quote().map(|q| q.total), Some(quote().total));
        let mut named = handed.clone();
        named.name_customer_if_unknown("Dana Wu");
        let ConversationState::Booked(back) = transition(named, Event::HandBack).unwrap() else {
            panic!("not back to the booking");
        };
        assert_eq!(back.job.customer_name.as_deref(), Some("Dana Wu"));
        assert_eq!(transition(handed.clone(), Event::HandBack).unwrap(), booked);

        // A move under way is dropped: the booking stands as it was.
        let moving = transition(booked.clone(), Event::RescheduleRequested).unwrap();
        let handed_moving = transition(moving, hand_off()).unwrap();
        assert_eq!(transition(handed_moving, Event::HandBack).unwrap(), booked);

        // A hand-off that lapsed returns to the booking too, not a new job.
        let lifetimes = Lifetimes {
            idle_days: 30,
            handoff_days: 1,
        };
        let later = now() + Duration::hours(25);
        assert_eq!(
            on_customer_text(handed.clone(), later, Some(now()), lifetimes),
            booked
        );
        // Unless the job's time has passed meanwhile: then a new job.
        let long_after = booking(2).slot.end + Duration::days(3);
        assert_eq!(
            on_customer_text(handed.clone(), long_after, Some(now()), lifetimes),
            ConversationState::default()
        );

        // The owner cancels it and keeps the conversation; handing back
        // then starts from the job, unbooked.
        let cancelled = transition(
            handed,
            Event::BookingCancelled {
                at: now(),
                by: CancelledBy::Owner,
            },
        )
        .unwrap();
        assert_eq!(cancelled.name(), "HANDED_OFF");
        assert_eq!(cancelled.standing_booking(), None);
        assert_eq!(
            transition(cancelled, Event::HandBack).unwrap(),
            ConversationState::Intake(Intake { job: job() })
        );

        // A hand-off stored before the booking was kept reads as unbooked.
        let stored = serde_json::json!({"state": "handed_off", "reason": "complaint",
            "summary": "unhappy", "at": now(), "job": job()});
        let read: ConversationState = serde_json::from_value(stored).unwrap();
        assert_eq!(read.standing_booking(), None);
        assert_eq!(read.name(), "HANDED_OFF");
    }

    #[test]
    fn a_hand_back_keeps_the_job_and_the_assistant_answers_again() {
        let handed = transition(
            ConversationState::Intake(Intake { job: job() }),
            Event::HandOff {
                reason: HandoffReason::OwnerTookOver,
                summary: "The owner is answering.".into(),
                at: now(),
            },
        )
        .unwrap();
        assert!(!handed.bot_answers());
        let back = transition(handed, Event::HandBack).unwrap();
        assert_eq!(back, ConversationState::Intake(Intake { job: job() }));
        assert!(back.bot_answers());
    }

    #[test]
    fn data_moves_with_the_state() {
        let intake = ConversationState::Intake(Intake { job: job() });
        let quoted = transition(intake, Event::QuoteIssued(quote())).unwrap();
        assert_eq!(quoted.quote().unwrap().id, "q1");
        let scheduling = transition(quoted, Event::SlotsOffered(vec![slot(1, 2), slot(2, 3)])).unwrap();
        let ConversationState::Scheduling(s) = &scheduling else {
            panic!()
        };
        assert_eq!(s.offered.len(), 2);
        let booked = transition(scheduling, Event::SlotBooked(booking(2))).unwrap();
        assert_eq!(booked.quote().unwrap().id, "q1");
        // A rescheduled booking offers nothing yet: old slot ids stop working.
        let rescheduling = transition(booked, Event::RescheduleRequested).unwrap();
        let ConversationState::Scheduling(s) = &rescheduling else {
            panic!()
        };
        assert!(s.offered.is_empty());
        // A name or address does not void the quote; a size does.
        let quoted = transition(
            ConversationState::Intake(Intake { job: job() }),
            Event::QuoteIssued(quote()),
        )
        .unwrap();
        let named = transition(
            quoted,
            Event::DetailsRecorded(JobUpdate {
                customer_name: Some("Dana".into()),
                ..JobUpdate::default()
            }),
        )
        .unwrap();
        assert_eq!(named.name(), "QUOTED");
        assert_eq!(named.job().unwrap().customer_name.as_deref(), Some("Dana"));
        // STOP and START return the customer where they were.
        let out = transition(named.clone(), Event::OptOut { at: now() }).unwrap();
        assert!(!out.bot_answers());
        assert_eq!(transition(out, Event::OptIn).unwrap(), named);
    }

    #[test]
    fn tools_follow_the_state() {
        let names: Vec<(&str, &[&str])> = states().iter().map(|s| (s.name(), s.allowed_tools())).collect();
        assert_eq!(
            names[0].1,
            &["record_job_details", "get_quote", "escalate_to_owner"]
        );
        assert!(names[1].1.contains(&"get_available_slots") && !names[1].1.contains(&"book_slot"));
        assert!(names[2].1.contains(&"book_slot"));
        assert!(names[3].1.contains(&"cancel_booking") && !names[3].1.contains(&"get_quote"));
        assert_eq!(
            names[4].1,
            &["reschedule_booking", "cancel_booking", "escalate_to_owner"]
        );
        for (name, tools) in &names[5..] {
            assert!(tools.is_empty(), "{name}");
        }
    }

    #[test]
    fn a_returning_customer_lands_somewhere_sensible() {
        let lifetimes = Lifetimes {
            idle_days: 30,
            handoff_days: 7,
        };
        let [
            intake,
            quoted,
            scheduling,
            moving,
            booked,
            handed_off,
            cancelled,
            opted_out,
            closed,
        ] = <[ConversationState; 9]>::try_from(states()[..9].to_vec()).unwrap();
        let yesterday = Some(now() - Duration::days(1));
        let long_ago = Some(now() - Duration::days(45));
        let land =
            |s: &ConversationState, at: DateTime<Utc>, last| on_customer_text(s.clone(), at, last, lifetimes);

        // Recent: stay put.
        assert_eq!(land(&quoted, now(), yesterday), quoted);
        assert_eq!(land(&booked, now(), yesterday), booked);
        // Weeks of silence: a new job.
        assert_eq!(land(&quoted, now(), long_ago), ConversationState::default());
        assert_eq!(land(&intake, now(), long_ago), ConversationState::default());
        // An upcoming booking survives silence; a past one is done.
        assert_eq!(land(&booked, now(), long_ago), booked);
        assert_eq!(
            land(&booked, now() + Duration::days(3), yesterday),
            ConversationState::default()
        );
        // An expired quote is priced again from the same details.
        let requote = land(&scheduling, now() + Duration::days(8), yesterday);
        assert_eq!(requote, ConversationState::Intake(Intake { job: job() }));
        // Hand-offs last a week; finished conversations start over.
        assert_eq!(
            land(&handed_off, now() + Duration::days(2), yesterday),
            handed_off
        );
        assert_eq!(
            land(&handed_off, now() + Duration::days(8), yesterday),
            ConversationState::default()
        );
        assert_eq!(land(&cancelled, now(), yesterday), ConversationState::default());
        assert_eq!(land(&closed, now(), yesterday), ConversationState::default());
        assert_eq!(land(&opted_out, now(), long_ago), opted_out);
        // A booking being moved neither expires with its quote nor idles out.
        assert_eq!(land(&moving, now() + Duration::days(8), long_ago), moving);
    }

    #[test]
    fn state_round_trips_through_json() {
        for state in states() {
            let json = serde_json::to_string(&state).unwrap();
            let back: ConversationState = serde_json::from_str(&json).unwrap();
            assert_eq!(back, state);
        }
    }

    #[test]
    fn a_cancel_keeps_the_job_and_its_price_and_says_who_cancelled() {
        let booked = ConversationState::Booked(Booked {
            job: JobDetails {
                customer_name: Some("Dana".into()),
                ..job()
            },
            quote: quote(),
            booking: booking(3),
        });
        for (by, reason) in [
            (CancelledBy::Customer, CloseReason::CancelledByCustomer),
            (CancelledBy::Owner, CloseReason::CancelledByOwner),
        ] {
            let cancelled = transition(booked.clone(), Event::BookingCancelled { at: now(), by }).unwrap();
            let ConversationState::Cancelled(closed) = &cancelled else {
                panic!("{cancelled:?}");
            };
            assert_eq!(closed.reason, reason);
            assert_eq!(cancelled.job().unwrap().customer_name.as_deref(), Some("Dana"));
            assert_eq!(cancelled.last_quote(), Some(&quote()));
        }
    }
}
