//! `record_job_details`, `get_quote`, `escalate_to_owner`: the tools of
//! INTAKE and QUOTED. The model maps the customer's words onto the owner's
//! catalog; the engine, not the model, turns that into hours, crew and price.

use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};

use super::tools::{Tool, ToolContext, ToolError};
use crate::config::business::{BusinessConfig, BusinessKind};
use crate::desk;
use crate::domain::conversation::{ConversationState, Event, HandoffReason, JobDetails, JobUpdate, tool};
use crate::domain::quote::{Quote, Selected};

/// Registers the intake tools.
pub fn register(registry: &mut super::tools::ToolRegistry) {
    registry.register(Arc::new(RecordJobDetails));
    registry.register(Arc::new(GetQuote));
    registry.register(Arc::new(EscalateToOwner));
}

fn id_list<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> (Vec<String>, String) {
    let mut ids = Vec::new();
    let mut described = Vec::new();
    for (id, label) in entries {
        ids.push(id.to_string());
        described.push(format!("{id} = {label}"));
    }
    (ids, described.join("; "))
}

fn selection_schema(ids: &[String], description: String) -> Value {
    json!({
        "type": "array",
        "description": description,
        "items": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "enum": ids},
                "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY, "description": "How many; default 1."}
            },
            "required": ["id"],
            "additionalProperties": false
        }
    })
}

pub struct RecordJobDetails;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectionInput {
    id: String,
    quantity: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordInput {
    size: Option<String>,
    items: Option<Vec<SelectionInput>>,
    bedrooms: Option<u32>,
    bathrooms: Option<Decimal>,
    square_feet: Option<u32>,
    clean_type: Option<String>,
    modifiers: Option<Vec<SelectionInput>>,
    discounts: Option<Vec<String>>,
    address: Option<String>,
    customer_name: Option<String>,
    notes: Option<String>,
}

fn check_ids<'a>(
    what: &str,
    given: Option<Vec<SelectionInput>>,
    known: impl Iterator<Item = &'a str> + Clone,
) -> Result<Option<Vec<Selected>>, ToolError> {
    let Some(given) = given else { return Ok(None) };
    let mut out = Vec::new();
    for s in given {
        if !known.clone().any(|k| k == s.id) {
            return Err(ToolError::InvalidInput(format!(
                "unknown {what} `{}`; use one of: {}. If nothing fits, ask the customer or escalate_to_owner.",
                s.id,
                known.clone().collect::<Vec<_>>().join(", ")
            )));
        }
        let quantity = s.quantity.unwrap_or(1);
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            return Err(ToolError::InvalidInput(format!(
                "quantity of `{}` must be from 1 to {MAX_QUANTITY}",
                s.id
            )));
        }
        out.retain(|o: &Selected| o.id != s.id);
        out.push(Selected { id: s.id, quantity });
    }
    Ok(Some(out))
}

const MAX_QUANTITY: u32 = 50;
const MAX_ROOMS: u32 = 20;
const MAX_SQUARE_FEET: u32 = 20_000;

fn trimmed(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The job as the model should see it, and what a quote still needs.
pub fn describe_job(job: &JobDetails, business: &BusinessConfig) -> String {
    let pricing = &business.pricing;
    fn label<'a>(id: &str, mut list: impl Iterator<Item = (&'a str, &'a str)>) -> String {
        list.find(|(i, _)| *i == id)
            .map(|(_, l)| l.to_string())
            .unwrap_or_else(|| id.to_string())
    }
    let mut parts = Vec::new();
    if let Some(size) = &job.size {
        parts.push(format!(
            "size: {}",
            label(
                size,
                pricing
                    .junk
                    .tiers
                    .iter()
                    .map(|t| (t.id.as_str(), t.label.as_str()))
            )
        ));
    }
    for item in &job.items {
        parts.push(format!("item: {} x {}", item.quantity, item.id));
    }
    if let Some(b) = job.bedrooms {
        parts.push(format!("bedrooms: {b}"));
    }
    if let Some(b) = job.bathrooms {
        parts.push(format!("bathrooms: {}", b.normalize()));
    }
    if let Some(s) = job.square_feet {
        parts.push(format!("square feet: {s}"));
    }
    if let Some(c) = &job.clean_type {
        parts.push(format!(
            "clean: {}",
            label(
                c,
                pricing
                    .maid
                    .clean_types
                    .iter()
                    .map(|t| (t.id.as_str(), t.label.as_str()))
            )
        ));
    }
    for m in &job.modifiers {
        parts.push(format!("extra: {} x {}", m.quantity, m.id));
    }
    for d in &job.discounts {
        parts.push(format!("discount: {d}"));
    }
    if let Some(a) = &job.address {
        parts.push(format!("address: {a}"));
    }
    if let Some(n) = &job.customer_name {
        parts.push(format!("name: {n}"));
    }
    let so_far = if parts.is_empty() {
        "nothing yet".to_string()
    } else {
        parts.join("; ")
    };
    let next = match job.to_spec(business.business.kind) {
        Ok(_) => "Enough to quote: call get_quote.".to_string(),
        Err(e) => format!(
            "Still needed for a quote: {}.",
            e.to_string().trim_start_matches("not enough to price: ")
        ),
    };
    format!("Job so far: {so_far}. {next}")
}

#[async_trait]
impl Tool for RecordJobDetails {
    fn name(&self) -> &'static str {
        tool::RECORD_JOB_DETAILS
    }

    fn description(&self) -> String {
        "Save what the customer has told you about the job, mapped onto the business's catalog. \
         Send only what is new or changed; fields you leave out keep their values. Never guess: \
         if the customer's words do not clearly match a catalog entry, ask them."
            .into()
    }

    fn input_schema(&self, business: &BusinessConfig) -> Value {
        let pricing = &business.pricing;
        let mut properties = serde_json::Map::new();
        match business.business.kind {
            BusinessKind::JunkRemoval => {
                let (ids, described) = id_list(
                    pricing
                        .junk
                        .tiers
                        .iter()
                        .map(|t| (t.id.as_str(), t.label.as_str())),
                );
                properties.insert(
                    "size".into(),
                    json!({"type": "string", "enum": ids, "description": format!("How much needs to go: {described}.")}),
                );
                if !pricing.junk.items.is_empty() {
                    let (ids, described) = id_list(
                        pricing
                            .junk
                            .items
                            .iter()
                            .map(|t| (t.id.as_str(), t.label.as_str())),
                    );
                    properties.insert(
                        "items".into(),
                        selection_schema(
                            &ids,
                            format!("Large items that take labour of their own: {described}."),
                        ),
                    );
                }
            }
            BusinessKind::Maid => {
                let (ids, described) = id_list(
                    pricing
                        .maid
                        .clean_types
                        .iter()
                        .map(|t| (t.id.as_str(), t.label.as_str())),
                );
                properties.insert(
                    "bedrooms".into(),
                    json!({"type": "integer", "minimum": 0, "maximum": MAX_ROOMS}),
                );
                properties.insert(
                    "bathrooms".into(),
                    json!({"type": "number", "minimum": 0, "maximum": MAX_ROOMS, "multipleOf": 0.5}),
                );
                properties.insert(
                    "square_feet".into(),
                    json!({"type": "integer", "minimum": 100, "maximum": MAX_SQUARE_FEET}),
                );
                properties.insert(
                    "clean_type".into(),
                    json!({"type": "string", "enum": ids, "description": format!("Kind of clean: {described}.")}),
                );
            }
        }
        // Weekend, same-day and after-hours surcharges follow from the
        // opening chosen; they are never the model's to select.
        if pricing.modifiers.iter().any(|m| !m.depends_on_date()) {
            let (ids, described) = id_list(
                pricing
                    .modifiers
                    .iter()
                    .filter(|m| !m.depends_on_date())
                    .map(|m| (m.id.as_str(), m.label.as_str())),
            );
            properties.insert(
                "modifiers".into(),
                selection_schema(
                    &ids,
                    format!("Extras that apply, with how many: {described}. Send the full list."),
                ),
            );
        }
        if !pricing.discounts.is_empty() {
            let labels: Vec<String> = pricing.discounts.iter().map(|d| d.described(pricing)).collect();
            let (ids, described) = id_list(
                pricing
                    .discounts
                    .iter()
                    .zip(&labels)
                    .map(|(d, label)| (d.id.as_str(), label.as_str())),
            );
            properties.insert(
                "discounts".into(),
                json!({"type": "array", "items": {"type": "string", "enum": ids},
                       "description": format!("Only if the customer says they qualify: {described}.")}),
            );
        }
        properties.insert(
            "address".into(),
            json!({"type": "string", "description": "Where the job is."}),
        );
        properties.insert("customer_name".into(), json!({"type": "string"}));
        properties.insert(
            "notes".into(),
            json!({"type": "string", "description": "Anything the crew should know."}),
        );
        json!({"type": "object", "properties": properties, "additionalProperties": false})
    }

    async fn call(&self, ctx: &mut ToolContext<'_>, input: Value) -> Result<String, ToolError> {
        let input: RecordInput =
            serde_json::from_value(input).map_err(|e| ToolError::InvalidInput(e.to_string()))?;
        // The configuration outlives the context: copy the reference out.
        let business = ctx.business;
        let pricing = &business.pricing;
        let kind = business.business.kind;
        let junk_fields = input.size.is_some() || input.items.is_some();
        let maid_fields = input.bedrooms.is_some()
            || input.bathrooms.is_some()
            || input.square_feet.is_some()
            || input.clean_type.is_some();
        match kind {
            BusinessKind::JunkRemoval if maid_fields => {
                return Err(ToolError::InvalidInput(
                    "this is a junk removal business: bedrooms, bathrooms, square_feet and clean_type do not apply".into(),
                ));
            }
            BusinessKind::Maid if junk_fields => {
                return Err(ToolError::InvalidInput(
                    "this is a cleaning business: size and items do not apply".into(),
                ));
            }
            _ => {}
        }
        if let Some(size) = &input.size
            && !pricing.junk.tiers.iter().any(|t| &t.id == size)
        {
            return Err(ToolError::InvalidInput(format!(
                "unknown size `{size}`; use one of: {}",
                pricing
                    .junk
                    .tiers
                    .iter()
                    .map(|t| t.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(clean) = &input.clean_type
            && !pricing.maid.clean_types.iter().any(|c| &c.id == clean)
        {
            return Err(ToolError::InvalidInput(format!(
                "unknown clean_type `{clean}`; use one of: {}",
                pricing
                    .maid
                    .clean_types
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(b) = input.bathrooms
            && (b.is_sign_negative() || b > Decimal::from(MAX_ROOMS) || !(b * Decimal::TWO).fract().is_zero())
        {
            return Err(ToolError::InvalidInput(format!(
                "bathrooms must be a whole or half number from 0 to {MAX_ROOMS}, like 2 or 1.5"
            )));
        }
        if input.bedrooms.is_some_and(|b| b > MAX_ROOMS) {
            return Err(ToolError::InvalidInput(format!(
                "bedrooms must be from 0 to {MAX_ROOMS}"
            )));
        }
        if input
            .square_feet
            .is_some_and(|s| !(100..=MAX_SQUARE_FEET).contains(&s))
        {
            return Err(ToolError::InvalidInput(format!(
                "square_feet must be from 100 to {MAX_SQUARE_FEET}"
            )));
        }
        let items = check_ids(
            "item",
            input.items,
            pricing.junk.items.iter().map(|i| i.id.as_str()),
        )?;
        let modifiers = check_ids(
            "modifier",
            input.modifiers,
            pricing
                .modifiers
                .iter()
                .filter(|m| !m.depends_on_date())
                .map(|m| m.id.as_str()),
        )?;
        // A discount counts once, however often the customer asks for it.
        let discounts = input.discounts.map(|mut d| {
            let mut seen = std::collections::HashSet::new();
            d.retain(|x| seen.insert(x.clone()));
            d
        });
        if let Some(discounts) = &discounts
            && let Some(unknown) = discounts
                .iter()
                .find(|d| !pricing.discounts.iter().any(|k| &k.id == *d))
        {
            return Err(ToolError::InvalidInput(format!(
                "unknown discount `{unknown}`; use one of: {}",
                pricing
                    .discounts
                    .iter()
                    .map(|d| d.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let update = JobUpdate {
            size: input.size,
            items,
            bedrooms: input.bedrooms,
            bathrooms: input.bathrooms,
            square_feet: input.square_feet,
            clean_type: input.clean_type,
            modifiers,
            discounts,
            address: trimmed(input.address),
            customer_name: trimmed(input.customer_name),
            notes: trimmed(input.notes),
            quantity_of: None,
            answered: None,
        };
        if update.is_empty() {
            return Err(ToolError::InvalidInput(
                "nothing to record: send at least one field".into(),
            ));
        }
        let voids_quote = update.affects_price() && ctx.state.quote().is_some();
        ctx.apply(Event::DetailsRecorded(update))?;
        let job = ctx.state.job().cloned().unwrap_or_default();
        // The job just became complete (or changed its price): the quote
        // comes with this result, issued by the desk's one use case, so the
        // model answers in its next call instead of calling get_quote.
        if matches!(ctx.state, ConversationState::Intake(_)) && job.to_spec(kind).is_ok() {
            match desk::issue_quote(&mut ctx.desk()) {
                Ok(quote) => {
                    let summary = describe_job(&job, business);
                    let so_far = summary.split(" Enough to quote").next().unwrap_or(&summary);
                    let changed = if voids_quote {
                        " The earlier quote no longer applies; this one replaces it."
                    } else {
                        ""
                    };
                    return Ok(format!(
                        "Recorded. {so_far}{changed} Priced by the business's own rules; this is the current quote:\n{}",
                        quote_for_model(&quote, business)
                    ));
                }
                Err(e) => {
                    // Recorded all the same; the model hears why no price.
                    let why = ToolError::from(e);
                    tracing::info!(error = %why, "recorded a complete job that could not be quoted");
                    return Ok(format!(
                        "Recorded. {} But it could not be priced: {why}",
                        describe_job(&job, business)
                    ));
                }
            }
        }
        let mut out = format!("Recorded. {}", describe_job(&job, business));
        if voids_quote {
            out.push_str(" The earlier quote no longer applies: call get_quote for a new one.");
        }
        Ok(out)
    }
}

pub struct GetQuote;

/// A quote as the model reads it.
pub fn quote_for_model(quote: &Quote, business: &BusinessConfig) -> String {
    let valid = quote.expires_at.with_timezone(&business.business.timezone);
    format!(
        "Quote {} (valid until {}): total {}.\nBreakdown:\n{}\nAssumptions: {}\n\
         Tell the customer the total and what it is based on, using exactly these amounts.",
        quote.id,
        valid.format("%a %b %-d"),
        quote.total,
        quote.breakdown(),
        quote.assumptions.join(" ")
    )
}

#[async_trait]
impl Tool for GetQuote {
    fn name(&self) -> &'static str {
        tool::GET_QUOTE
    }

    fn description(&self) -> String {
        "Price the job recorded so far with the business's own rules. The only source of prices: \
         quote the total it returns, never a number of your own."
            .into()
    }

    fn input_schema(&self, _business: &BusinessConfig) -> Value {
        json!({"type": "object", "properties": {}, "additionalProperties": false})
    }

    async fn call(&self, ctx: &mut ToolContext<'_>, _input: Value) -> Result<String, ToolError> {
        // Already quoted in this turn (record_job_details returns the quote,
        // and may run in the same response): the same quote again, not a
        // second one for the same job.
        if let ConversationState::Quoted(q) = &ctx.state
            && ctx.new_quotes.iter().any(|n| n.id == q.quote.id)
        {
            return Ok(quote_for_model(&q.quote, ctx.business));
        }
        let quote = desk::issue_quote(&mut ctx.desk())?;
        Ok(quote_for_model(&quote, ctx.business))
    }
}

pub struct EscalateToOwner;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalateInput {
    reason: HandoffReason,
    summary: String,
}

#[async_trait]
impl Tool for EscalateToOwner {
    fn name(&self) -> &'static str {
        tool::ESCALATE_TO_OWNER
    }

    fn description(&self) -> String {
        "Hand the conversation to the owner: when the customer asks for a person, complains, or \
         wants a job the catalog cannot price. After this the assistant stops answering them."
            .into()
    }

    fn input_schema(&self, _business: &BusinessConfig) -> Value {
        json!({
            "type": "object",
            "properties": {
                "reason": {"type": "string", "enum": ["customer_asked_for_person", "complaint", "cannot_price", "other"]},
                "summary": {"type": "string", "description": "One or two sentences for the owner: who, what, what they need."}
            },
            "required": ["reason", "summary"],
            "additionalProperties": false
        })
    }

    async fn call(&self, ctx: &mut ToolContext<'_>, input: Value) -> Result<String, ToolError> {
        let input: EscalateInput =
            serde_json::from_value(input).map_err(|e| ToolError::InvalidInput(e.to_string()))?;
        if input.reason == HandoffReason::OwnerTookOver {
            return Err(ToolError::InvalidInput(
                "reason must be one of: customer_asked_for_person, complaint, cannot_price, other".into(),
            ));
        }
        if input.summary.trim().is_empty() {
            return Err(ToolError::InvalidInput(
                "summary must say what the customer needs".into(),
            ));
        }
        desk::hand_off(&mut ctx.desk(), input.reason, &input.summary)?;
        Ok(
            "Handed off to the owner. Tell the customer, in one short sentence, that the owner will \
            text them soon. Do not promise a time or a price."
                .into(),
        )
    }
}
