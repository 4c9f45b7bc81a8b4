//! Turning a conversation into the next reply.
//!
//! [`Responder`] is the seam: [`ClaudeResponder`] runs the Messages API tool
//! loop; [`guided::GuidedResponder`] drives the same state machine with
//! numbered questions when there is no model, or the model is down.

pub mod guided;
pub mod job_tools;
pub mod prompt;
pub mod schedule_tools;
pub mod tools;

use std::sync::Arc;

use async_trait::async_trait;

use crate::anthropic::{
    ApiMessage, ContentBlock, ImageSource, MessagesRequest, ModelClient, ModelError, Role,
};
use crate::clock::Clock;
use crate::config::business::BusinessConfig;
use crate::domain::conversation::ConversationState;
use crate::domain::guardrail;
use crate::domain::quote::Quote;
use crate::store::{Direction, MediaStatus, Message, StoredImage, TurnInput};
use tools::{OwnerAlert, ToolContext, ToolRegistry};

/// A drafted reply, and what the turn changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub text: String,
    pub state: ConversationState,
    pub new_quotes: Vec<Quote>,
    pub alerts: Vec<OwnerAlert>,
}

impl Draft {
    /// The turn as the desk's operations take it.
    pub fn desk<'a>(
        &'a mut self,
        business: &'a BusinessConfig,
        conversation: &'a crate::store::Conversation,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::desk::Turn<'a> {
        crate::desk::Turn {
            business,
            conversation,
            now,
            state: &mut self.state,
            new_quotes: &mut self.new_quotes,
            alerts: &mut self.alerts,
        }
    }
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
    /// Failed after tools had already changed the conversation (a quote, a
    /// hand-off): those changes are kept in `partial`.
    #[error("{source}")]
    Interrupted {
        source: Box<ResponderError>,
        partial: Box<Draft>,
    },
}

impl ResponderError {
    /// Splits off whatever the turn had already done.
    pub fn into_partial(self) -> (Option<Draft>, ResponderError) {
        match self {
            ResponderError::Interrupted { source, partial } => (Some(*partial), *source),
            other => (None, other),
        }
    }
}

tokio::task_local! {
    static MODEL_CALLS: std::cell::Cell<u32>;
}

/// Runs `work` (a turn's responder) and returns how many model requests it
/// made, whichever responder drafted and however the tool loop went, so
/// each customer's daily model budget counts real requests.
pub async fn counting_model_calls<F: std::future::Future>(work: F) -> (F::Output, u32) {
    MODEL_CALLS
        .scope(std::cell::Cell::new(0), async {
            let output = work.await;
            (output, MODEL_CALLS.with(|calls| calls.get()))
        })
        .await
}

#[async_trait]
pub trait Responder: Send + Sync + 'static {
    /// Drafts the reply to `turn`'s pending texts, starting from `state`,
    /// on the business's configuration as the turn started.
    async fn respond(
        &self,
        business: &Arc<BusinessConfig>,
        turn: &TurnInput,
        state: ConversationState,
    ) -> Result<Draft, ResponderError>;
}

pub struct ClaudeResponder {
    pub client: Arc<dyn ModelClient>,
    pub model: String,
    pub max_tokens: u32,
    pub max_tool_rounds: usize,
    /// No new model call starts after this much of the turn: what the
    /// tools did is kept and the guided flow answers. Shorter than the
    /// engine's own deadline, which would drop the turn's work.
    pub deadline: std::time::Duration,
    pub tools: ToolRegistry,
    /// "Now" for the tools: quotes' dates, openings, the guardrail's today.
    pub clock: Arc<dyn Clock>,
}

/// Maps stored texts onto the alternating user/assistant turns the API
/// requires: consecutive texts from one side are joined, and history starts
/// and ends with the customer (the turn answers them). A customer's photos
/// follow their text as image blocks; one not fetched (yet) is named in the
/// text instead, so the model knows it exists and does not guess at it.
pub fn history_to_messages(history: &[Message], images: &[StoredImage]) -> Vec<ApiMessage> {
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
        let mut blocks = Vec::new();
        if role == Role::User {
            for image in images.iter().filter(|i| i.message_id == m.id) {
                match image_block(image) {
                    Ok(block) => blocks.push(block),
                    Err(note) => {
                        text.push(' ');
                        text.push_str(note);
                    }
                }
            }
        }
        if text.trim().is_empty() {
            text = "(empty message)".into();
        }
        blocks.insert(0, ContentBlock::Text { text });
        match messages.last_mut() {
            Some(last) if last.role == role => {
                let mut blocks = blocks.into_iter();
                if let (Some(ContentBlock::Text { text: previous }), Some(ContentBlock::Text { text })) =
                    (last.content.last_mut(), blocks.next())
                {
                    previous.push('\n');
                    previous.push_str(&text);
                }
                last.content.extend(blocks);
            }
            _ => messages.push(ApiMessage {
                role,
                content: blocks,
            }),
        }
    }
    while messages.last().is_some_and(|m| m.role == Role::Assistant) {
        messages.pop();
    }
    messages
}

/// An image block for a fetched photo the API can read, or the note that
/// stands in for it.
fn image_block(image: &StoredImage) -> Result<ContentBlock, &'static str> {
    use base64::Engine;
    match (&image.data, image.status) {
        (Some(data), _) if crate::media::MODEL_IMAGE_TYPES.contains(&image.content_type.as_str()) => {
            Ok(ContentBlock::Image {
                source: ImageSource::Base64 {
                    media_type: image.content_type.clone(),
                    data: base64::engine::general_purpose::STANDARD.encode(data),
                },
            })
        }
        (Some(_), _) => Err("[photo in a format the assistant cannot view]"),
        (None, MediaStatus::Pending) => Err("[photo not yet available]"),
        (None, MediaStatus::Fetched) => Err("[earlier photo, not shown]"),
        (None, _) => Err("[photo could not be loaded]"),
    }
}

impl ClaudeResponder {
    /// The system prompt for the state the conversation is in now; rebuilt
    /// every round, because a tool may have moved it.
    fn system_prompt(&self, turn: &TurnInput, ctx: &ToolContext<'_>) -> String {
        prompt::for_request(ctx.business, &ctx.state, turn.first_contact, ctx.now).text()
    }

    /// Runs the tool loop until the model answers in text.
    async fn run_loop(
        &self,
        business: &Arc<BusinessConfig>,
        turn: &TurnInput,
        ctx: &mut ToolContext<'_>,
        messages: &mut Vec<ApiMessage>,
        started: std::time::Instant,
    ) -> Result<String, ResponderError> {
        for round in 0..=self.max_tool_rounds {
            if started.elapsed() > self.deadline {
                return Err(ResponderError::DeadlineExceeded(self.deadline));
            }
            let request = MessagesRequest {
                model: self.model.clone(),
                max_tokens: self.max_tokens,
                system: self.system_prompt(turn, ctx),
                messages: messages.clone(),
                tools: self.tools.definitions(&ctx.state, business),
            };
            // Outside `counting_model_calls` (a test, `chat`) nothing counts.
            let _ = MODEL_CALLS.try_with(|calls| calls.set(calls.get() + 1));
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
                return Ok(text);
            }
            if round == self.max_tool_rounds {
                break;
            }
            let mut results = Vec::with_capacity(tool_uses.len());
            for (id, name, input) in tool_uses {
                tracing::info!(tool = %name, round, state = ctx.state.name(), "model called a tool");
                let outcome = self.tools.call(ctx, &name, input).await;
                results.push(ContentBlock::ToolResult {
                    tool_use_id: id,
                    content: outcome.content,
                    is_error: outcome.is_error,
                });
            }
            messages.push(ApiMessage {
                role: Role::Assistant,
                content: response
                    .content
                    .into_iter()
                    .filter(|b| !matches!(b, ContentBlock::Unsupported))
                    .collect(),
            });
            messages.push(ApiMessage {
                role: Role::User,
                content: results,
            });
        }
        Err(ResponderError::ToolLoopExhausted(self.max_tool_rounds))
    }
}

#[async_trait]
impl Responder for ClaudeResponder {
    #[tracing::instrument(name = "claude_turn", skip_all, fields(conversation = turn.conversation.id.0))]
    async fn respond(
        &self,
        business: &Arc<BusinessConfig>,
        turn: &TurnInput,
        state: ConversationState,
    ) -> Result<Draft, ResponderError> {
        let mut ctx = ToolContext {
            turn,
            business,
            now: self.clock.now(),
            state,
            new_quotes: Vec::new(),
            alerts: Vec::new(),
        };
        let initial = ctx.state.clone();
        let mut messages = history_to_messages(&turn.history, &turn.images);
        let keep_partial = |ctx: ToolContext<'_>, source: ResponderError| {
            if ctx.state == initial && ctx.new_quotes.is_empty() && ctx.alerts.is_empty() {
                return source;
            }
            ResponderError::Interrupted {
                source: Box::new(source),
                partial: Box::new(Draft {
                    text: String::new(),
                    state: ctx.state,
                    new_quotes: ctx.new_quotes,
                    alerts: ctx.alerts,
                }),
            }
        };
        let started = std::time::Instant::now();
        let mut text = match self
            .run_loop(business, turn, &mut ctx, &mut messages, started)
            .await
        {
            Ok(text) => text,
            Err(e) => return Err(keep_partial(ctx, e)),
        };
        // The guardrail, first line: a draft stating a fact our code did not
        // produce (a price, a time, a booking, a promise) is written again,
        // once, with the reasons. The engine checks the result too, and
        // falls back to a code-stated text.
        let as_sent = crate::channel::Channel::of(&turn.conversation.customer_phone)
            .prepare_reply(&text, business.sms.max_segments);
        let facts = guardrail::Facts::of(
            &business.guardrail_terms(),
            &initial,
            &ctx.state,
            ctx.quotes(),
            ctx.now,
        );
        let violations = guardrail::check(&as_sent, &facts);
        if !violations.is_empty() {
            let reasons = guardrail::describe(&violations);
            tracing::warn!(violations = %reasons, "draft states facts our code did not produce; regenerating once");
            messages.push(ApiMessage {
                role: Role::Assistant,
                content: vec![ContentBlock::Text { text: text.clone() }],
            });
            messages.push(ApiMessage {
                role: Role::User,
                content: vec![ContentBlock::Text {
                    text: format!(
                        "[textdesk check, not from the customer] Your reply was not sent. It states facts that \
                         no get_quote, get_available_slots or booking tool result in this conversation produced: \
                         {reasons}. Rewrite your reply to the customer: state only amounts from get_quote results \
                         (the total as the price), only openings get_available_slots returned (as written), only \
                         what book_slot, reschedule_booking or cancel_booking actually did, and no promise (free \
                         extras, waived fees, discounts, guarantees, arrival or call-back times). Call a tool if \
                         you need a fact, or leave it out."
                    ),
                }],
            });
            // If the rewrite fails, the first draft goes on to the engine,
            // whose guardrail replaces it with the templated message.
            match self
                .run_loop(business, turn, &mut ctx, &mut messages, started)
                .await
            {
                Ok(rewritten) => text = rewritten,
                Err(e) => tracing::warn!(error = %e, "rewrite failed; the engine's guardrail decides"),
            }
        }
        Ok(Draft {
            text,
            state: ctx.state,
            new_quotes: ctx.new_quotes,
            alerts: ctx.alerts,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::{Value, json};

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
            kind: crate::store::MessageKind::parse("x"),
            body: body.into(),
            status: "pending".into(),
            channel_message_id: None,
            num_media: 0,
            opt_out_keyword: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
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
                profile_name: None,
            },
            pending: history.clone(),
            history,
            first_contact: true,
            state: ConversationState::default(),
            last_activity: None,
            quotes: Vec::new(),
            images: Vec::new(),
        }
    }

    fn responder(model: Arc<ScriptedModel>, max_tool_rounds: usize) -> ClaudeResponder {
        let mut tools = ToolRegistry::default();
        job_tools::register(&mut tools);
        ClaudeResponder {
            client: model,
            model: "claude-test".into(),
            max_tokens: 100,
            max_tool_rounds,
            tools,
            deadline: std::time::Duration::from_secs(60),
            clock: crate::clock::system(),
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

    fn tool_names(request: &MessagesRequest) -> Vec<&str> {
        request.tools.iter().map(|t| t.name.as_str()).collect()
    }

    async fn run(model: Arc<ScriptedModel>, rounds: usize) -> Result<Draft, ResponderError> {
        responder(model, rounds)
            .respond(
                &Arc::new(BusinessConfig::default()),
                &turn(vec![message(1, Direction::Inbound, "half a truck of junk")]),
                ConversationState::default(),
            )
            .await
    }

    #[test]
    fn tool_schemas_come_from_the_turns_own_catalog() {
        let mut tools = ToolRegistry::default();
        job_tools::register(&mut tools);
        let parse = |text: &str, file: &str| {
            Arc::new(BusinessConfig::parse(text, std::path::Path::new(file)).unwrap())
        };
        let junk = parse(include_str!("../../business.toml"), "business.toml");
        let maid = parse(include_str!("../../examples/maid.toml"), "maid.toml");
        let state = ConversationState::default();
        let schema = |definitions: Vec<crate::anthropic::ToolDefinition>| {
            definitions
                .into_iter()
                .find(|d| d.name == "record_job_details")
                .unwrap()
                .input_schema
                .to_string()
        };
        let for_junk = schema(tools.definitions(&state, &junk));
        let for_maid = schema(tools.definitions(&state, &maid));
        assert!(for_junk.contains("half_truck") && !for_junk.contains("move_out"));
        assert!(for_maid.contains("move_out") && !for_maid.contains("half_truck"));
        // A reload: the same business, a new catalog, served at once.
        let mut edited = (*junk).clone();
        edited.pricing.junk.tiers[0].id = "renamed_tier".into();
        let edited = Arc::new(edited);
        assert!(schema(tools.definitions(&state, &edited)).contains("renamed_tier"));
        // A turn still on the old configuration keeps its own schemas.
        assert_eq!(schema(tools.definitions(&state, &junk)), for_junk);
    }

    #[tokio::test]
    async fn tool_loop_reaches_quoted_with_state_legal_tools() {
        let model = ScriptedModel::new(vec![
            tool_use("t1", "record_job_details", json!({"size": "half_truck"})),
            tool_use("t2", "get_quote", json!({})),
            text("It's $350 for about half a truck."),
        ]);
        let draft = run(model.clone(), 4).await.unwrap();
        assert_eq!(draft.text, "It's $350 for about half a truck.");
        assert_eq!(draft.state.name(), "QUOTED");
        assert_eq!(draft.new_quotes.len(), 1);
        assert_eq!(draft.new_quotes[0].total.to_string(), "$350");
        let requests = model.requests.lock().unwrap();
        assert_eq!(requests.len(), 3);
        // INTAKE offers the intake tools only; QUOTED adds nothing unregistered.
        assert_eq!(
            tool_names(&requests[0]),
            vec!["record_job_details", "get_quote", "escalate_to_owner"]
        );
        assert!(requests[0].system.contains("Conversation state: INTAKE"));
        assert!(requests[0].system.contains("half_truck (about half a truck)"));
        assert!(
            !requests[0].system.contains("$50"),
            "prices must not be in the prompt"
        );
        let recorded = tool_results(&requests[1]);
        assert!(
            !recorded[0].1 && recorded[0].0.contains("Enough to quote"),
            "{recorded:?}"
        );
        let quoted = tool_results(&requests[2]);
        assert!(!quoted[0].1 && quoted[0].0.contains("total $350"), "{quoted:?}");
        assert!(requests[2].system.contains("Conversation state: QUOTED"));
    }

    #[tokio::test]
    async fn bad_forbidden_and_unknown_calls_return_is_error_results() {
        let model = ScriptedModel::new(vec![
            tool_use("t1", "record_job_details", json!({"size": "two_trucks"})),
            tool_use("t2", "record_job_details", json!({"bedrooms": 3})),
            tool_use("t3", "get_quote", json!({})),
            tool_use("t4", "book_slot", json!({"slot_id": 1})),
            tool_use("t5", "launch_rocket", json!({})),
            tool_use("t6", "record_job_details", json!("not an object")),
            tool_use("t7", "escalate_to_owner", json!({"reason": "bored"})),
            text("Done."),
        ]);
        let draft = run(model.clone(), 10).await.unwrap();
        assert_eq!(draft.state.name(), "INTAKE");
        let requests = model.requests.lock().unwrap();
        let result = |i: usize| tool_results(&requests[i]).remove(0);
        let expect = [
            (1, "unknown size `two_trucks`"),
            (2, "junk removal business"),
            (3, "not enough to price"),
            (4, "`book_slot` is not available while the conversation is INTAKE"),
            (5, "no tool named `launch_rocket`"),
            (6, "JSON object"),
            (7, "unknown variant `bored`"),
        ];
        for (i, needle) in expect {
            let (content, is_error) = result(i);
            assert!(is_error && content.contains(needle), "{i}: {content}");
        }
    }

    #[tokio::test]
    async fn tool_rounds_are_bounded() {
        let model = ScriptedModel::new(
            (0..10)
                .map(|i| tool_use(&format!("t{i}"), "record_job_details", json!({"notes": "x"})))
                .collect(),
        );
        let err = run(model.clone(), 2).await.unwrap_err();
        // The notes it recorded are kept for whoever answers instead.
        let (partial, source) = err.into_partial();
        assert!(
            matches!(source, ResponderError::ToolLoopExhausted(2)),
            "{source:?}"
        );
        assert_eq!(partial.unwrap().state.job().unwrap().notes.as_deref(), Some("x"));
        assert_eq!(model.requests.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn an_invented_price_is_regenerated_once() {
        let model = ScriptedModel::new(vec![
            tool_use("t1", "record_job_details", json!({"size": "half_truck"})),
            tool_use("t2", "get_quote", json!({})),
            text("Sure, $20 it is!"),
            text("Your price is $350."),
        ]);
        let draft = run(model.clone(), 4).await.unwrap();
        assert_eq!(draft.text, "Your price is $350.");
        let requests = model.requests.lock().unwrap();
        let last = requests.last().unwrap().messages.last().unwrap();
        let ContentBlock::Text { text } = &last.content[0] else {
            panic!()
        };
        assert!(text.contains("$20") && text.contains("no get_quote"), "{text}");
    }

    #[tokio::test]
    async fn escalation_hands_off_and_alerts_the_owner() {
        let model = ScriptedModel::new(vec![
            tool_use(
                "t1",
                "escalate_to_owner",
                json!({"reason": "complaint", "summary": "Crew left a mess last week."}),
            ),
            text("I'm sorry. The owner will text you soon."),
        ]);
        let draft = run(model, 4).await.unwrap();
        assert_eq!(draft.state.name(), "HANDED_OFF");
        assert_eq!(draft.alerts.len(), 1);
        assert!(draft.alerts[0].detail.contains("Crew left a mess"));
        assert!(!draft.alerts[0].detail.contains("5550100"));
    }

    #[test]
    fn history_alternates_and_starts_with_the_customer() {
        let messages = history_to_messages(
            &[
                message(1, Direction::Outbound, "Reminder: tomorrow"),
                message(2, Direction::Inbound, "hi"),
                message(3, Direction::Inbound, "need a couch gone"),
                message(4, Direction::Outbound, "Sure!"),
                message(5, Direction::Inbound, "thanks"),
                message(6, Direction::Outbound, "You're welcome"),
            ],
            &[],
        );
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, vec![Role::User, Role::Assistant, Role::User]);
        assert_eq!(
            messages[0].content,
            vec![ContentBlock::Text {
                text: "hi\nneed a couch gone".into()
            }]
        );
    }

    #[test]
    fn photos_follow_their_text_as_image_blocks_or_are_named() {
        let mut with_photos = message(3, Direction::Inbound, "this pile");
        with_photos.num_media = 3;
        let image = |position, content_type: &str, status, data: Option<&[u8]>| StoredImage {
            message_id: MessageId(3),
            position,
            content_type: content_type.into(),
            status,
            data: data.map(<[u8]>::to_vec),
        };
        let messages = history_to_messages(
            &[message(2, Direction::Inbound, "hi"), with_photos],
            &[
                image(0, "image/jpeg", MediaStatus::Fetched, Some(b"jpeg bytes")),
                image(1, "image/png", MediaStatus::Pending, None),
                image(2, "image/heic", MediaStatus::Fetched, Some(b"heic")),
            ],
        );
        assert_eq!(messages.len(), 1);
        assert_eq!(
            messages[0].content,
            vec![
                ContentBlock::Text {
                    text: "hi\nthis pile [sent 3 photo(s)] [photo not yet available] \
                           [photo in a format the assistant cannot view]"
                        .into()
                },
                ContentBlock::Image {
                    source: ImageSource::Base64 {
                        media_type: "image/jpeg".into(),
                        data: "anBlZyBieXRlcw==".into(),
                    }
                },
            ]
        );
        let wire = serde_json::to_value(&messages[0].content[1]).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "anBlZyBieXRlcw=="}})
        );
    }
}
