//! `get_available_slots`, `book_slot`, `reschedule_booking`,
//! `cancel_booking`. The model passes the customer's words ("next Tuesday
//! afternoon") through and picks slots by the ids it was offered; dates and
//! times come only from code.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::tools::{Tool, ToolContext, ToolError, ToolRegistry};
use crate::config::business::BusinessConfig;
use crate::desk;
use crate::domain::conversation::{CancelledBy, tool};
use crate::scheduling::{Offer, Scheduler};

pub fn register(registry: &mut ToolRegistry, scheduler: Arc<Scheduler>) {
    registry.register(Arc::new(GetAvailableSlots {
        scheduler: scheduler.clone(),
    }));
    registry.register(Arc::new(BookSlot {
        scheduler: scheduler.clone(),
    }));
    registry.register(Arc::new(RescheduleBooking {
        scheduler: scheduler.clone(),
    }));
    registry.register(Arc::new(CancelBooking { scheduler }));
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
    ctx: &mut ToolContext<'_>,
    preference: Option<&str>,
    reschedule: bool,
) -> Result<String, ToolError> {
    let (filter, looked_for) = desk::read_preference(ctx.business, ctx.now, preference);
    let mut turn = ctx.desk();
    let offer = if reschedule {
        desk::reschedule(&mut turn, scheduler, &filter, &looked_for).await?
    } else {
        desk::offer_openings(&mut turn, scheduler, &filter, &looked_for).await?
    };
    Ok(offer_text(&offer, &looked_for))
}

pub struct GetAvailableSlots {
    pub scheduler: Arc<Scheduler>,
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

    fn input_schema(&self, _business: &BusinessConfig) -> Value {
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
        offer_slots(&self.scheduler, ctx, input.preference.as_deref(), false).await
    }
}

pub struct BookSlot {
    pub scheduler: Arc<Scheduler>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BookInput {
    slot_id: u8,
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

    fn input_schema(&self, _business: &BusinessConfig) -> Value {
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
        let booked = desk::book(&mut ctx.desk(), &self.scheduler, input.slot_id).await?;
        let (label, total) = (&booked.slot.label, booked.total);
        Ok(format!(
            "Booked: {label} for {total}. Confirm it to the customer with the day, time and price. If they need to \
             change it later, they can just text us; never ask them to reply CANCEL or STOP."
        ))
    }
}

pub struct RescheduleBooking {
    pub scheduler: Arc<Scheduler>,
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

    fn input_schema(&self, _business: &BusinessConfig) -> Value {
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
        if input.keep_current_time {
            desk::keep_booking(&mut ctx.desk())?;
            return Ok(
                "The booking stays as it was. Tell the customer their original time still stands.".into(),
            );
        }
        offer_slots(&self.scheduler, ctx, input.preference.as_deref(), true).await
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

    fn input_schema(&self, _business: &BusinessConfig) -> Value {
        json!({"type": "object", "properties": {"reason": {"type": "string"}}, "additionalProperties": false})
    }

    async fn call(&self, ctx: &mut ToolContext<'_>, _input: Value) -> Result<String, ToolError> {
        desk::cancel(&mut ctx.desk(), &self.scheduler, CancelledBy::Customer).await?;
        Ok("Cancelled and removed from the calendar. Tell the customer it's cancelled and they can text any time \
            to book again. Never tell them to reply CANCEL or STOP."
            .into())
    }
}
