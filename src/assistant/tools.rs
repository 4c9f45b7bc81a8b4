//! The tools Claude may call, and what happens when it calls one badly.
//!
//! The conversation state decides which tools are legal: only those are
//! offered, and a call to any other is refused. Whatever the model sends, a
//! call ends in a `tool_result`: a bad or forbidden input is an `is_error`
//! result whose text tells the model what to fix, never a panic and never a
//! silent success.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::anthropic::ToolDefinition;
use crate::config::business::BusinessConfig;
use crate::domain::conversation::{ConversationState, Event, tool, transition};
use crate::domain::quote::Quote;
use crate::store::{AlertKind, TurnInput};

/// Something the owner must hear about, raised during a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerAlert {
    pub kind: AlertKind,
    pub detail: String,
}

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
    /// Moves the conversation through the state machine.
    pub fn apply(&mut self, event: Event) -> Result<(), ToolError> {
        let next = transition(self.state.clone(), event).map_err(|e| ToolError::NotAllowed(e.to_string()))?;
        if next.name() != self.state.name() {
            tracing::info!(
                from = self.state.name(),
                to = next.name(),
                "conversation state changed"
            );
        }
        self.state = next;
        Ok(())
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

#[async_trait]
pub trait Tool: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn description(&self) -> String;
    /// JSON Schema of the input object.
    fn input_schema(&self) -> Value;
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
    /// Definitions per set of legal tools: schemas are built from the
    /// catalog once, not on every model call.
    definitions: Arc<std::sync::Mutex<std::collections::HashMap<usize, Vec<ToolDefinition>>>>,
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

    /// The tools legal in `state`, as the API wants them.
    pub fn definitions(&self, state: &ConversationState) -> Vec<ToolDefinition> {
        // Each state's legal-tool list is a distinct static slice.
        let key = state.allowed_tools().as_ptr() as usize;
        let mut cache = self
            .definitions
            .lock()
            .expect("never poisoned: no panics while held");
        cache
            .entry(key)
            .or_insert_with(|| {
                self.legal(state)
                    .map(|t| ToolDefinition {
                        name: t.name().into(),
                        description: t.description(),
                        input_schema: t.input_schema(),
                    })
                    .collect()
            })
            .clone()
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
