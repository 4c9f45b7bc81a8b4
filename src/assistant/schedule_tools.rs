//! `get_available_slots`, `book_slot`, `reschedule_booking`,
//! `cancel_booking`. The model passes the customer's words ("next Tuesday
//! afternoon") through and picks slots by the ids it was offered; dates and
//! times come only from code.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::tools::{OwnerAlert, Tool, ToolContext, ToolError, ToolRegistry};
use crate::calendar::CalendarError;
use crate::config::business::BusinessConfig;
use crate::domain::conversation::{ConversationState, Event, OfferedSlot, tool};
use crate::domain::when;
use crate::scheduling::{Offer, Scheduler, SchedulingError};
use crate::store::AlertKind;

pub fn register(registry: &mut ToolRegistry, scheduler: Arc<Scheduler>, business: Arc<BusinessConfig>) {
    registry.register(Arc::new(GetAvailableSlots {
        scheduler: scheduler.clone(),
        business: business.clone(),
    }));
    registry.register(Arc::new(BookSlot {
        scheduler: scheduler.clone(),
        business: business.clone(),
    }));
    registry.register(Arc::new(RescheduleBooking {
        scheduler: scheduler.clone(),
        business,
    }));
    registry.register(Arc::new(CancelBooking { scheduler }));
}

/// A calendar failure as the model should handle it, with the owner told.
fn calendar_failure(ctx: &mut ToolContext<'_>, e: SchedulingError) -> ToolError {
    let customer = ctx.turn.conversation.customer_phone.masked().to_string();
    match e {
        SchedulingError::Incomplete(why) => {
            ctx.alerts.push(OwnerAlert {
                kind: AlertKind::BookingIncomplete,
                detail: format!("A booking for customer {customer} needs a look: {why}"),
            });
            ToolError::Failed(
                "the booking could not be confirmed. Tell the customer the owner will text them to confirm the time."
                    .into(),
            )
        }
        SchedulingError::Taken(why) => ToolError::InvalidInput(format!(
            "that opening is no longer available ({why}). Call get_available_slots and offer new times."
        )),
        SchedulingError::Calendar(CalendarError::CredentialsRevoked(why)) => {
            ctx.alerts.push(OwnerAlert {
                kind: AlertKind::CalendarCredentials,
                detail: format!(
                    "Google Calendar refused textdesk's credentials ({why}). Renew the service account key \
                     (GOOGLE_APPLICATION_CREDENTIALS). Customer {customer} could not be scheduled."
                ),
            });
            ToolError::Failed(
                "the calendar is unavailable. Tell the customer the owner will text them to set a time; do not offer times."
                    .into(),
            )
        }
        other => {
            ctx.alerts.push(OwnerAlert {
                kind: AlertKind::CalendarUnavailable,
                detail: format!(
                    "Could not schedule customer {customer}: {other}. Please text them to set a time."
                ),
            });
            ToolError::Failed(
                "the calendar is unavailable. Tell the customer the owner will text them to set a time; do not offer times."
                    .into(),
            )
        }
    }
}

/// The offered slots as the model reads them.
pub fn offer_text(offer: &Offer, looked_for: &str) -> String {
    if offer.slots.is_empty() {
        return format!(
            "No openings ({looked_for}) within the booking horizon. Tell the customer the owner will text them \
             to find a time."
        );
    }
    let list = offer.numbered();
    let note = offer
        .note
        .as_deref()
        .map(|n| format!("{n}\n"))
        .unwrap_or_default();
    format!(
        "Looked for: {looked_for}.\n{note}Openings:\n{list}\nOffer these exactly as written, by number, with any \
         price shown beside one (that opening's own total). When the customer picks one (\"2\", \"the Tuesday \
         one\"), call book_slot with its number. Do not offer other times."
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotsInput {
    preference: Option<String>,
}

async fn offer_slots(
    scheduler: &Scheduler,
    business: &BusinessConfig,
    ctx: &mut ToolContext<'_>,
    preference: Option<&str>,
) -> Result<String, ToolError> {
    let quote = ctx
        .state
        .quote()
        .cloned()
        .ok_or_else(|| ToolError::NotAllowed("there is no quote yet: get_quote first".into()))?;
    let today = ctx.now.with_timezone(&business.business.timezone).date_naive();
    let (filter, looked_for) = when::resolve(preference.unwrap_or(""), today);
    let rescheduling = match &ctx.state {
        ConversationState::Scheduling(s) => s.rescheduling.clone(),
        _ => None,
    };
    let offer = match scheduler
        .offer(
            ctx.turn.conversation.id,
            &quote,
            &filter,
            rescheduling.as_ref(),
            ctx.now,
        )
        .await
    {
        Ok(offer) => offer,
        Err(e) => return Err(calendar_failure(ctx, e)),
    };
    if offer.slots.is_empty() {
        ctx.alerts.push(OwnerAlert {
            kind: AlertKind::NoOpenings,
            detail: format!(
                "No openings for customer {} ({looked_for}). Please text them to find a time.",
                ctx.turn.conversation.customer_phone.masked()
            ),
        });
    }
    ctx.apply(Event::SlotsOffered(offer.slots.clone()))?;
    // An opening with its own price (a weekend rate) carries a quote of
    // this conversation: the price the offer states is ours.
    for quote in offer.quotes() {
        if !ctx.new_quotes.iter().any(|q| q.id == quote.id) {
            ctx.new_quotes.push(quote.clone());
        }
    }
    Ok(offer_text(&offer, &looked_for))
}

pub struct GetAvailableSlots {
    pub scheduler: Arc<Scheduler>,
    pub business: Arc<BusinessConfig>,
}

#[async_trait]
impl Tool for GetAvailableSlots {
    fn name(&self) -> &'static str {
        tool::GET_AVAILABLE_SLOTS
    }

    fn description(&self) -> String {
        "Find real openings for the quoted job on the crews' calendars. Pass the customer's own words about \
         when they want it (\"next Tuesday afternoon\", \"this weekend\"); do not convert them to dates yourself. \
         Returns numbered openings; offer exactly those."
            .into()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "preference": {"type": "string", "description": "The customer's words about when, verbatim. Omit for the earliest openings."}
            },
            "additionalProperties": false
        })
    }

    async fn call(&self, ctx: &mut ToolContext<'_>, input: Value) -> Result<String, ToolError> {
        let input: SlotsInput =
            serde_json::from_value(input).map_err(|e| ToolError::InvalidInput(e.to_string()))?;
        offer_slots(&self.scheduler, &self.business, ctx, input.preference.as_deref()).await
    }
}

pub struct BookSlot {
    pub scheduler: Arc<Scheduler>,
    pub business: Arc<BusinessConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BookInput {
    slot_id: u8,
}

/// The offered slot with this id, or an error the model can act on.
pub fn offered(state: &ConversationState, id: u8) -> Result<OfferedSlot, ToolError> {
    let ConversationState::Scheduling(s) = state else {
        return Err(ToolError::NotAllowed(
            "no openings have been offered: call get_available_slots".into(),
        ));
    };
    s.offered.iter().find(|o| o.id == id).cloned().ok_or_else(|| {
        let ids: Vec<String> = s.offered.iter().map(|o| o.id.to_string()).collect();
        ToolError::InvalidInput(if ids.is_empty() {
            "no openings are on offer now: call get_available_slots".into()
        } else {
            format!(
                "slot {id} was not offered in this conversation; offered: {}",
                ids.join(", ")
            )
        })
    })
}

#[async_trait]
impl Tool for BookSlot {
    fn name(&self) -> &'static str {
        tool::BOOK_SLOT
    }

    fn description(&self) -> String {
        "Book one of the openings offered in this conversation, by its number. Needs the job's address \
         (record it first). Never send a date or time."
            .into()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"slot_id": {"type": "integer", "minimum": 1, "description": "The number of an offered opening."}},
            "required": ["slot_id"],
            "additionalProperties": false
        })
    }

    async fn call(&self, ctx: &mut ToolContext<'_>, input: Value) -> Result<String, ToolError> {
        let input: BookInput =
            serde_json::from_value(input).map_err(|e| ToolError::InvalidInput(e.to_string()))?;
        let slot = offered(&ctx.state, input.slot_id)?;
        let ConversationState::Scheduling(scheduling) = ctx.state.clone() else {
            unreachable!("offered() checked the state");
        };
        if scheduling
            .job
            .address
            .as_deref()
            .is_none_or(|a| a.trim().is_empty())
        {
            return Err(ToolError::InvalidInput(
                "the job address is missing: ask the customer for it, record_job_details, then book".into(),
            ));
        }
        let booking = match self
            .scheduler
            .book(
                &ctx.turn.conversation,
                &scheduling.job,
                &scheduling.quote,
                &slot,
                scheduling.rescheduling.as_ref(),
                ctx.now,
            )
            .await
        {
            Ok(b) => b,
            Err(e) => return Err(calendar_failure(ctx, e)),
        };
        ctx.apply(Event::SlotBooked(booking))?;
        let total = slot.quote.as_ref().unwrap_or(&scheduling.quote).total;
        Ok(format!(
            "Booked: {} for {total}. Confirm it to the customer with the day, time and price. If they need to \
             change it later, they can just text us; never ask them to reply CANCEL or STOP.",
            slot.label
        ))
    }
}

pub struct RescheduleBooking {
    pub scheduler: Arc<Scheduler>,
    pub business: Arc<BusinessConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RescheduleInput {
    preference: Option<String>,
    #[serde(default)]
    keep_current_time: bool,
}

#[async_trait]
impl Tool for RescheduleBooking {
    fn name(&self) -> &'static str {
        tool::RESCHEDULE_BOOKING
    }

    fn description(&self) -> String {
        "The customer wants a different time for their booking: offers new openings (their words about when, \
         verbatim). The booking stays as it is until they pick a new one with book_slot. If they decide to \
         keep the time they have, call this with keep_current_time."
            .into()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "preference": {"type": "string"},
                "keep_current_time": {"type": "boolean", "description": "Drop the reschedule; keep the booking as it is."}
            },
            "additionalProperties": false
        })
    }

    async fn call(&self, ctx: &mut ToolContext<'_>, input: Value) -> Result<String, ToolError> {
        let input: RescheduleInput =
            serde_json::from_value(input).map_err(|e| ToolError::InvalidInput(e.to_string()))?;
        let moving = matches!(&ctx.state, ConversationState::Scheduling(s) if s.rescheduling.is_some());
        if input.keep_current_time {
            if !moving {
                return Err(ToolError::NotAllowed("no reschedule is in progress".into()));
            }
            ctx.apply(Event::KeepBooking)?;
            return Ok(
                "The booking stays as it was. Tell the customer their original time still stands.".into(),
            );
        }
        if !moving {
            ctx.apply(Event::RescheduleRequested)?;
        }
        offer_slots(&self.scheduler, &self.business, ctx, input.preference.as_deref()).await
    }
}

pub struct CancelBooking {
    pub scheduler: Arc<Scheduler>,
}

#[async_trait]
impl Tool for CancelBooking {
    fn name(&self) -> &'static str {
        tool::CANCEL_BOOKING
    }

    fn description(&self) -> String {
        "Cancel the customer's booking, when they clearly ask to. Removes it from the crew's calendar.".into()
    }

    fn input_schema(&self) -> Value {
        json!({"type": "object", "properties": {"reason": {"type": "string"}}, "additionalProperties": false})
    }

    async fn call(&self, ctx: &mut ToolContext<'_>, _input: Value) -> Result<String, ToolError> {
        let booking = match &ctx.state {
            ConversationState::Booked(b) => b.booking.clone(),
            ConversationState::Scheduling(s) if s.rescheduling.is_some() => {
                s.rescheduling.clone().expect("checked")
            }
            _ => return Err(ToolError::NotAllowed("there is no booking to cancel".into())),
        };
        if let Err(e) = self.scheduler.cancel(&booking).await {
            return Err(calendar_failure(ctx, e));
        }
        ctx.apply(Event::BookingCancelled { at: ctx.now })?;
        ctx.alerts.push(OwnerAlert {
            kind: AlertKind::BookingCancelled,
            detail: format!(
                "Customer {} cancelled {}.",
                ctx.turn.conversation.customer_phone.masked(),
                booking.slot.label
            ),
        });
        Ok("Cancelled and removed from the calendar. Tell the customer it's cancelled and they can text any time \
            to book again. Never tell them to reply CANCEL or STOP."
            .into())
    }
}
