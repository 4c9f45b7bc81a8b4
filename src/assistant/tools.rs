//! The tools Claude may call, and what happens when it calls one badly.
//!
//! Later stages register tools here (quotes, slots, bookings). Whatever the
//! model sends, a call ends in a `tool_result`: a bad or forbidden input is
//! an `is_error` result whose text tells the model what to fix, never a
//! panic and never a silent success.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::anthropic::ToolDefinition;
use crate::store::{Conversation, TurnInput};

/// What a tool may know about the turn it runs in.
pub struct ToolContext<'a> {
    pub conversation: &'a Conversation,
    pub turn: &'a TurnInput,
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
    fn description(&self) -> &'static str;
    /// JSON Schema of the input object.
    fn input_schema(&self) -> Value;
    /// Runs the tool; the `Ok` text is what the model reads.
    async fn call(&self, ctx: &ToolContext<'_>, input: Value) -> Result<String, ToolError>;
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

    pub fn definitions(&self) -> Vec<ToolDefinition> {
        self.tools
            .iter()
            .map(|t| ToolDefinition {
                name: t.name().into(),
                description: t.description().into(),
                input_schema: t.input_schema(),
            })
            .collect()
    }

    pub async fn call(&self, ctx: &ToolContext<'_>, name: &str, input: Value) -> ToolOutcome {
        let Some(tool) = self.tools.iter().find(|t| t.name() == name) else {
            return ToolOutcome {
                content: format!(
                    "Error: there is no tool named `{name}` available now. Available: {}.",
                    self.names().join(", ")
                ),
                is_error: true,
            };
        };
        if !input.is_object() {
            return ToolOutcome {
                content: "Error: invalid input: the input must be a JSON object.".into(),
                is_error: true,
            };
        }
        match tool.call(ctx, input).await {
            Ok(content) => ToolOutcome {
                content,
                is_error: false,
            },
            Err(e) => {
                tracing::info!(tool = name, error = %e, "tool call returned an error to the model");
                ToolOutcome {
                    content: format!("Error: {e}"),
                    is_error: true,
                }
            }
        }
    }
}
