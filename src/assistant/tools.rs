//! The tools Claude may call, and what happens when it calls one badly.
//!
//! The conversation state decides which tools are legal: a call to any
//! other is refused. The model is offered every tool (`all_definitions`),
//! the same list in every state so the prompt cache holds, and is told in
//! the turn's context which ones it may call now. Whatever the model sends, a
//! call ends in a `tool_result`: a bad or forbidden input is an `is_error`
//! result whose text tells the model what to fix, never a panic and never a
//! silent success.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::anthropic::ToolDefinition;
use crate::config::business::BusinessConfig;
use crate::desk::{self, DeskError};
use crate::domain::conversation::{ConversationState, Event, tool};
use crate::domain::quote::Quote;
use crate::scheduling::SchedulingError;
use crate::store::TurnInput;

pub use crate::desk::OwnerAlert;

/// What a tool may read and change during a turn. Changes are kept here and
/// committed with the turn's reply, all at once.
pub struct ToolContext<'a> {
    pub turn: &'a TurnInput,
    pub business: &'a BusinessConfig,
    pub now: DateTime<Utc>,
    pub state: ConversationState,
    pub new_quotes: Vec<Quote>,
    pub alerts: Vec<OwnerAlert>,
}

impl ToolContext<'_> {
    /// The turn as the desk's operations take it.
    pub fn desk(&mut self) -> desk::Turn<'_> {
        desk::Turn {
            business: self.business,
            conversation: &self.turn.conversation,
            now: self.now,
            state: &mut self.state,
            new_quotes: &mut self.new_quotes,
            alerts: &mut self.alerts,
        }
    }

    /// Moves the conversation through the state machine.
    pub fn apply(&mut self, event: Event) -> Result<(), ToolError> {
        self.desk()
            .apply(event)
            .map_err(|e| ToolError::NotAllowed(e.to_string()))
    }

    /// Every quote of this conversation, older ones first.
    pub fn quotes(&self) -> impl Iterator<Item = &Quote> {
        self.turn.quotes.iter().chain(self.new_quotes.iter())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ToolError {
    /// The input does not match the schema or the facts; the model can fix it.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The tool is not allowed now (e.g. in this conversation state).
    #[error("not allowed now: {0}")]
    NotAllowed(String),
    /// The tool could not do its work (a service down); not the model's fault.
    #[error("failed: {0}")]
    Failed(String),
}

/// What the model reads when the desk refused: what to fix, or what to
/// tell the customer.
impl From<DeskError> for ToolError {
    fn from(e: DeskError) -> Self {
        match e {
            DeskError::NotAllowed(why) => ToolError::NotAllowed(why),
            DeskError::Incomplete(why) => {
                ToolError::InvalidInput(format!("{why}. Ask the customer, then record_job_details."))
            }
            DeskError::CannotPrice(why) => ToolError::InvalidInput(why.to_string()),
            DeskError::NotOffered { offered, .. } if offered.is_empty() => {
                ToolError::InvalidInput("no openings are on offer now: call get_available_slots".into())
            }
            DeskError::NotOffered { id, offered } => ToolError::InvalidInput(format!(
                "slot {id} was not offered in this conversation; offered: {}",
                offered.iter().map(u8::to_string).collect::<Vec<_>>().join(", ")
            )),
            DeskError::AddressMissing => ToolError::InvalidInput(
                "the job address is missing: ask the customer for it, record_job_details, then book".into(),
            ),
            DeskError::PhoneUnverified => ToolError::InvalidInput(
                "not booked: this web chat visitor has not verified a phone number. Ask them to type their \
                 mobile number in the chat; a code is texted to it, and once they type the code back, book again"
                    .into(),
            ),
            DeskError::AlreadyBookedFor(label) => ToolError::InvalidInput(format!(
                "the customer is already booked for {label}: book another opening, or call reschedule_booking \
                 with keep_current_time"
            )),
            DeskError::Scheduling(SchedulingError::Taken(why)) => ToolError::InvalidInput(format!(
                "that opening is no longer available ({why}). Call get_available_slots and offer new times."
            )),
            DeskError::Scheduling(SchedulingError::Incomplete(_)) => ToolError::Failed(
                "the booking could not be confirmed. Tell the customer the owner will text them to confirm the time."
                    .into(),
            ),
            DeskError::Scheduling(_) => ToolError::Failed(
                "the calendar is unavailable. Tell the customer the owner will text them to set a time; do not offer times."
                    .into(),
            ),
            other => ToolError::Failed(other.to_string()),
        }
    }
}

#[async_trait]
pub trait Tool: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn description(&self) -> String;
    /// JSON Schema of the input object, for this business (a schema may
    /// list the catalog's ids).
    fn input_schema(&self, business: &BusinessConfig) -> Value;
    /// Runs the tool; the `Ok` text is what the model reads.
    async fn call(&self, ctx: &mut ToolContext<'_>, input: Value) -> Result<String, ToolError>;
}

/// What goes back to the model for one `tool_use`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    pub content: String,
    pub is_error: bool,
}

#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: Vec<Arc<dyn Tool>>,
    /// Definitions per business and set of legal tools: schemas are built
    /// from the catalog once per configuration, not on every model call.
    definitions: Arc<std::sync::Mutex<std::collections::HashMap<DefinitionsKey, CachedDefinitions>>>,
}

/// A business's id and a state's legal-tool list (each a distinct static slice).
type DefinitionsKey = (String, usize);

/// Definitions built from one configuration. Holding its `Arc` keeps the
/// address from being reused, so "the same configuration" is `ptr_eq`;
/// after a reload the first turn on the new one builds them again.
struct CachedDefinitions {
    built_from: Arc<BusinessConfig>,
    definitions: Vec<ToolDefinition>,
}

impl ToolRegistry {
    pub fn register(&mut self, tool: Arc<dyn Tool>) {
        assert!(
            self.tools.iter().all(|t| t.name() != tool.name()),
            "tool `{}` registered twice",
            tool.name()
        );
        self.tools.push(tool);
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.tools.iter().map(|t| t.name()).collect()
    }

    fn legal<'a>(&'a self, state: &'a ConversationState) -> impl Iterator<Item = &'a Arc<dyn Tool>> + 'a {
        self.tools
            .iter()
            .filter(move |t| state.allowed_tools().contains(&t.name()))
    }

    /// The tools legal in `state`, as the API wants them, with schemas
    /// from `business`'s catalog.
    pub fn definitions(
        &self,
        state: &ConversationState,
        business: &Arc<BusinessConfig>,
    ) -> Vec<ToolDefinition> {
        let key = (
            business.business.id.clone(),
            state.allowed_tools().as_ptr() as usize,
        );
        let mut cache = self
            .definitions
            .lock()
            .expect("never poisoned: no panics while held");
        if let Some(cached) = cache.get(&key)
            && Arc::ptr_eq(&cached.built_from, business)
        {
            return cached.definitions.clone();
        }
        let definitions: Vec<ToolDefinition> = self
            .legal(state)
            .map(|t| ToolDefinition {
                name: t.name().into(),
                description: t.description(),
                input_schema: t.input_schema(business),
                cache: false,
            })
            .collect();
        cache.insert(
            key,
            CachedDefinitions {
                built_from: business.clone(),
                definitions: definitions.clone(),
            },
        );
        definitions
    }

    /// Every registered tool, in registration order, with schemas from
    /// `business`'s catalog: the same list in every state, so that the
    /// prompt cache (which starts with the tools) survives a state change.
    /// The state still decides what runs: `call` refuses a tool it does
    /// not allow, and the turn's context names the tools usable now.
    pub fn all_definitions(&self, business: &Arc<BusinessConfig>) -> Vec<ToolDefinition> {
        // No state's slice is at address usize::MAX: an entry of its own.
        let key = (business.business.id.clone(), usize::MAX);
        let mut cache = self
            .definitions
            .lock()
            .expect("never poisoned: no panics while held");
        if let Some(cached) = cache.get(&key)
            && Arc::ptr_eq(&cached.built_from, business)
        {
            return cached.definitions.clone();
        }
        let definitions: Vec<ToolDefinition> = self
            .tools
            .iter()
            .map(|t| ToolDefinition {
                name: t.name().into(),
                description: t.description(),
                input_schema: t.input_schema(business),
                cache: false,
            })
            .collect();
        cache.insert(
            key,
            CachedDefinitions {
                built_from: business.clone(),
                definitions: definitions.clone(),
            },
        );
        definitions
    }

    pub async fn call(&self, ctx: &mut ToolContext<'_>, name: &str, input: Value) -> ToolOutcome {
        let error = |content: String| ToolOutcome {
            content,
            is_error: true,
        };
        let available = || {
            self.legal(&ctx.state)
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let tool = self.tools.iter().find(|t| t.name() == name);
        if !ctx.state.allowed_tools().contains(&name) || tool.is_none() {
            let content = if !tool::ALL.contains(&name) {
                format!(
                    "Error: there is no tool named `{name}`. Tools available now: {}.",
                    available()
                )
            } else {
                tracing::info!(
                    tool = name,
                    state = ctx.state.name(),
                    "model called a tool its state forbids"
                );
                format!(
                    "Error: `{name}` is not available while the conversation is {}. Tools available now: {}.",
                    ctx.state.name(),
                    available()
                )
            };
            return error(content);
        }
        let tool = tool.expect("checked above");
        if !input.is_object() {
            return error("Error: invalid input: the input must be a JSON object.".into());
        }
        match tool.call(ctx, input).await {
            Ok(content) => ToolOutcome {
                content,
                is_error: false,
            },
            Err(e) => {
                tracing::info!(tool = name, error = %e, "tool call returned an error to the model");
                error(format!("Error: {e}"))
            }
        }
    }
}
