//! Turning a conversation into the next reply.
//!
//! [`Responder`] is the seam: [`ClaudeResponder`] runs the Messages API tool
//! loop; [`NoModelResponder`] answers when no model key is configured (the
//! guided flow replaces it in a later stage).

pub mod tools;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use crate::anthropic::{ApiMessage, ContentBlock, MessagesRequest, ModelClient, ModelError, Role};
use crate::config::business::BusinessConfig;
use crate::domain::prompt;
use crate::store::{Direction, Message, TurnInput};
use crate::templates;
use tools::{ToolContext, ToolRegistry};

/// A drafted reply, and anything the owner should hear about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub text: String,
    pub owner_alert: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the model used {0} tool rounds without finishing its reply")]
    ToolLoopExhausted(usize),
    #[error("the model returned no text")]
    EmptyReply,
    #[error("no reply within {0:?}")]
    DeadlineExceeded(std::time::Duration),
}

#[async_trait]
pub trait Responder: Send + Sync + 'static {
    async fn respond(&self, turn: &TurnInput) -> Result<Draft, ResponderError>;
}

pub struct ClaudeResponder {
    pub client: Arc<dyn ModelClient>,
    pub model: String,
    pub max_tokens: u32,
    pub max_tool_rounds: usize,
    pub tools: ToolRegistry,
    pub business: Arc<BusinessConfig>,
}

/// Maps stored texts onto the alternating user/assistant turns the API
/// requires: consecutive texts from one side are joined, and history starts
/// and ends with the customer (the turn answers them).
pub fn history_to_messages(history: &[Message]) -> Vec<ApiMessage> {
    let mut messages: Vec<ApiMessage> = Vec::new();
    for m in history {
        let role = match m.direction {
            Direction::Inbound => Role::User,
            Direction::Outbound => Role::Assistant,
        };
        if messages.is_empty() && role == Role::Assistant {
            continue;
        }
        let mut text = m.body.trim().to_string();
        if m.num_media > 0 {
            text.push_str(&format!(" [sent {} photo(s)]", m.num_media));
        }
        if text.trim().is_empty() {
            text = "(empty message)".into();
        }
        match messages.last_mut() {
            Some(last) if last.role == role => {
                if let Some(ContentBlock::Text { text: previous }) = last.content.last_mut() {
                    previous.push('\n');
                    previous.push_str(&text);
                }
            }
            _ => messages.push(ApiMessage {
                role,
                content: vec![ContentBlock::Text { text }],
            }),
        }
    }
    while messages.last().is_some_and(|m| m.role == Role::Assistant) {
        messages.pop();
    }
    messages
}

impl ClaudeResponder {
    fn system_prompt(&self, turn: &TurnInput) -> String {
        let mut text = prompt::assemble(&self.business, Utc::now()).text();
        if turn.first_contact {
            text.push_str("\n\nThis is the customer's first message to us.");
        }
        text
    }
}

#[async_trait]
impl Responder for ClaudeResponder {
    #[tracing::instrument(name = "claude_turn", skip_all, fields(conversation = turn.conversation.id.0))]
    async fn respond(&self, turn: &TurnInput) -> Result<Draft, ResponderError> {
        let mut request = MessagesRequest {
            model: self.model.clone(),
            max_tokens: self.max_tokens,
            system: self.system_prompt(turn),
            messages: history_to_messages(&turn.history),
            tools: self.tools.definitions(),
        };
        let ctx = ToolContext {
            conversation: &turn.conversation,
            turn,
        };
        for round in 0..=self.max_tool_rounds {
            let response = self.client.create_message(&request).await?;
            let tool_uses: Vec<(String, String, serde_json::Value)> = response
                .content
                .iter()
                .filter_map(|b| match b {
                    ContentBlock::ToolUse { id, name, input } => {
                        Some((id.clone(), name.clone(), input.clone()))
                    }
                    _ => None,
                })
                .collect();
            if tool_uses.is_empty() || response.stop_reason.as_deref() != Some("tool_use") {
                let text = response
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Text { text } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                if text.trim().is_empty() {
                    return Err(ResponderError::EmptyReply);
                }
                return Ok(Draft {
                    text,
                    owner_alert: None,
                });
            }
            if round == self.max_tool_rounds {
                break;
            }
            let mut results = Vec::with_capacity(tool_uses.len());
            for (id, name, input) in tool_uses {
                tracing::info!(tool = %name, round, "model called a tool");
                let outcome = self.tools.call(&ctx, &name, input).await;
                results.push(ContentBlock::ToolResult {
                    tool_use_id: id,
                    content: outcome.content,
                    is_error: outcome.is_error,
                });
            }
            let assistant_blocks = response
                .content
                .into_iter()
                .filter(|b| !matches!(b, ContentBlock::Unsupported))
                .collect();
            request.messages.push(ApiMessage {
                role: Role::Assistant,
                content: assistant_blocks,
            });
            request.messages.push(ApiMessage {
                role: Role::User,
                content: results,
            });
        }
        Err(ResponderError::ToolLoopExhausted(self.max_tool_rounds))
    }
}

/// Without a model key: acknowledge the customer and put the owner on it.
pub struct NoModelResponder {
    pub business: Arc<BusinessConfig>,
}

#[async_trait]
impl Responder for NoModelResponder {
    async fn respond(&self, turn: &TurnInput) -> Result<Draft, ResponderError> {
        Ok(Draft {
            text: templates::no_model_reply(&self.business),
            owner_alert: Some(format!(
                "A customer ({}) texted and no model is configured (ANTHROPIC_API_KEY is unset); \
                 please answer them yourself.",
                turn.conversation.customer_phone.masked()
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::{Value, json};

    use super::tools::{Tool, ToolError};
    use super::*;
    use crate::anthropic::MessagesResponse;
    use crate::domain::phone::E164;
    use crate::store::{Conversation, ConversationId, CustomerId, MessageId};

    /// Plays back scripted responses and records what it was sent.
    struct ScriptedModel {
        responses: Mutex<Vec<MessagesResponse>>,
        requests: Mutex<Vec<MessagesRequest>>,
    }

    impl ScriptedModel {
        fn new(mut responses: Vec<MessagesResponse>) -> Arc<Self> {
            responses.reverse();
            Arc::new(Self {
                responses: Mutex::new(responses),
                requests: Mutex::new(Vec::new()),
            })
        }
    }

    #[async_trait]
    impl ModelClient for ScriptedModel {
        async fn create_message(&self, request: &MessagesRequest) -> Result<MessagesResponse, ModelError> {
            self.requests.lock().unwrap().push(request.clone());
            self.responses
                .lock()
                .unwrap()
                .pop()
                .ok_or(ModelError::Unavailable {
                    attempts: 1,
                    last_error: "script exhausted".into(),
                })
        }
    }

    struct Echo;

    #[async_trait]
    impl Tool for Echo {
        fn name(&self) -> &'static str {
            "echo_item"
        }
        fn description(&self) -> &'static str {
            "Echoes an item name."
        }
        fn input_schema(&self) -> Value {
            json!({"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]})
        }
        async fn call(&self, _ctx: &ToolContext<'_>, input: Value) -> Result<String, ToolError> {
            match input.get("item").and_then(Value::as_str) {
                Some(item) if !item.is_empty() => Ok(format!("noted: {item}")),
                _ => Err(ToolError::InvalidInput(
                    "`item` must be a non-empty string".into(),
                )),
            }
        }
    }

    fn tool_use(id: &str, name: &str, input: Value) -> MessagesResponse {
        MessagesResponse {
            id: "msg".into(),
            content: vec![
                ContentBlock::Text {
                    text: "Let me check.".into(),
                },
                ContentBlock::ToolUse {
                    id: id.into(),
                    name: name.into(),
                    input,
                },
            ],
            stop_reason: Some("tool_use".into()),
        }
    }

    fn text(t: &str) -> MessagesResponse {
        MessagesResponse {
            id: "msg".into(),
            content: vec![ContentBlock::Text { text: t.into() }],
            stop_reason: Some("end_turn".into()),
        }
    }

    fn message(id: i64, direction: Direction, body: &str) -> Message {
        Message {
            id: MessageId(id),
            direction,
            kind: "x".into(),
            body: body.into(),
            status: "pending".into(),
            twilio_sid: None,
            num_media: 0,
            created_at: Utc::now(),
        }
    }

    fn turn(history: Vec<Message>) -> TurnInput {
        TurnInput {
            conversation: Conversation {
                id: ConversationId(1),
                customer_id: CustomerId(1),
                customer_phone: E164::parse("+15035550100").unwrap(),
                business_number: E164::parse("+15035550142").unwrap(),
                opted_out: false,
            },
            pending: history.clone(),
            history,
            first_contact: true,
        }
    }

    fn responder(model: Arc<ScriptedModel>, max_tool_rounds: usize) -> ClaudeResponder {
        let mut tools = ToolRegistry::default();
        tools.register(Arc::new(Echo));
        ClaudeResponder {
            client: model,
            model: "claude-test".into(),
            max_tokens: 100,
            max_tool_rounds,
            tools,
            business: Arc::new(BusinessConfig::default()),
        }
    }

    fn tool_results(request: &MessagesRequest) -> Vec<(String, bool)> {
        request
            .messages
            .last()
            .unwrap()
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolResult {
                    content, is_error, ..
                } => Some((content.clone(), *is_error)),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn tool_loop_runs_until_end_turn() {
        let model = ScriptedModel::new(vec![
            tool_use("t1", "echo_item", json!({"item": "couch"})),
            text("We can take the couch."),
        ]);
        let draft = responder(model.clone(), 4)
            .respond(&turn(vec![message(1, Direction::Inbound, "a couch")]))
            .await
            .unwrap();
        assert_eq!(draft.text, "We can take the couch.");
        let requests = model.requests.lock().unwrap();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].tools[0].name, "echo_item");
        assert_eq!(
            tool_results(&requests[1]),
            vec![("noted: couch".to_string(), false)]
        );
        assert_eq!(requests[1].messages[1].role, Role::Assistant);
    }

    #[tokio::test]
    async fn bad_input_and_unknown_tools_return_is_error_results() {
        let model = ScriptedModel::new(vec![
            tool_use("t1", "echo_item", json!({"item": ""})),
            tool_use("t2", "book_spaceship", json!({})),
            tool_use("t3", "echo_item", json!("not an object")),
            text("Done."),
        ]);
        responder(model.clone(), 5)
            .respond(&turn(vec![message(1, Direction::Inbound, "hi")]))
            .await
            .unwrap();
        let requests = model.requests.lock().unwrap();
        let bad = tool_results(&requests[1]);
        assert!(
            bad[0].1 && bad[0].0.contains("`item` must be a non-empty string"),
            "{bad:?}"
        );
        let unknown = tool_results(&requests[2]);
        assert!(
            unknown[0].1 && unknown[0].0.contains("no tool named `book_spaceship`"),
            "{unknown:?}"
        );
        let not_object = tool_results(&requests[3]);
        assert!(
            not_object[0].1 && not_object[0].0.contains("JSON object"),
            "{not_object:?}"
        );
    }

    #[tokio::test]
    async fn tool_rounds_are_bounded() {
        let model = ScriptedModel::new(
            (0..10)
                .map(|i| tool_use(&format!("t{i}"), "echo_item", json!({"item": "x"})))
                .collect(),
        );
        let err = responder(model.clone(), 2)
            .respond(&turn(vec![message(1, Direction::Inbound, "hi")]))
            .await
            .unwrap_err();
        assert!(matches!(err, ResponderError::ToolLoopExhausted(2)));
        assert_eq!(model.requests.lock().unwrap().len(), 3);
    }

    #[test]
    fn history_alternates_and_starts_with_the_customer() {
        let messages = history_to_messages(&[
            message(1, Direction::Outbound, "Reminder: tomorrow"),
            message(2, Direction::Inbound, "hi"),
            message(3, Direction::Inbound, "need a couch gone"),
            message(4, Direction::Outbound, "Sure!"),
            message(5, Direction::Inbound, "thanks"),
            message(6, Direction::Outbound, "You're welcome"),
        ]);
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, vec![Role::User, Role::Assistant, Role::User]);
        assert_eq!(
            messages[0].content,
            vec![ContentBlock::Text {
                text: "hi\nneed a couch gone".into()
            }]
        );
    }
}
