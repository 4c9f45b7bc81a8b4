//! The Messages API streamed (`stream: true`): server-sent events read from
//! reqwest's byte stream as they arrive, for calls, where the caller hears
//! the first words while the model is still writing the rest.
//!
//! The request is the same [`MessagesRequest`] the text desk sends (with
//! `stream` added on the wire); the events are reduced to what the call
//! loop needs: text as it comes, whole tool calls (their JSON input is
//! streamed in pieces and parsed once complete), and the stop reason.
//! There is no retry: a caller cannot wait through a backoff, so a failure
//! is reported at once and the call apologises and hands over.

use std::pin::Pin;

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::{ANTHROPIC_VERSION, ErrorBody, MessagesRequest, ModelError, Usage};
use crate::config::settings::AnthropicSettings;

/// What the call loop reads from a streamed reply.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A piece of the reply's text, as soon as the model wrote it.
    Text(String),
    /// A complete tool call (its input assembled from the streamed pieces).
    ToolUse { id: String, name: String, input: Value },
    /// What the request cost, in tokens (input and cache use from
    /// `message_start`, the output count from `message_delta`), just
    /// before `Stop`; not sent when the stream reported no usage.
    Usage(Usage),
    /// The message ended, with its stop reason (`end_turn`, `tool_use`, ...).
    Stop(Option<String>),
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ModelError>> + Send>>;

/// The seam the call loop streams through; tests and benchmarks substitute
/// their own, or point [`StreamingClient`] at a fake server.
#[async_trait]
pub trait StreamingModel: Send + Sync + 'static {
    async fn stream_message(&self, request: &MessagesRequest) -> Result<EventStream, ModelError>;
}

/// The request on the wire: the shared request, plus `stream: true`.
#[derive(Serialize)]
struct Streamed<'a> {
    #[serde(flatten)]
    request: &'a MessagesRequest,
    stream: bool,
}

pub struct StreamingClient {
    http: reqwest::Client,
    endpoint: Url,
    settings: AnthropicSettings,
}

impl StreamingClient {
    pub fn new(settings: AnthropicSettings) -> Self {
        let mut endpoint = settings.base_url.clone();
        endpoint.set_path(&format!(
            "{}/v1/messages",
            settings.base_url.path().trim_end_matches('/')
        ));
        Self {
            // No whole-request timeout: a streamed reply may legitimately
            // outlast it. The call loop bounds the wait for each event.
            http: reqwest::Client::builder()
                .connect_timeout(settings.timeout)
                .build()
                .expect("a TLS backend is compiled in"),
            endpoint,
            settings,
        }
    }
}

#[async_trait]
impl StreamingModel for StreamingClient {
    #[tracing::instrument(name = "anthropic_stream", skip_all, fields(model = %request.model))]
    async fn stream_message(&self, request: &MessagesRequest) -> Result<EventStream, ModelError> {
        let response = self
            .http
            .post(self.endpoint.clone())
            .header("x-api-key", self.settings.api_key.expose_secret())
            .header("anthropic-version", ANTHROPIC_VERSION)
            .header("accept", "text/event-stream")
            .json(&Streamed {
                request,
                stream: true,
            })
            .send()
            .await
            .map_err(|e| ModelError::Unavailable {
                attempts: 1,
                last_error: format!("request failed: {e}"),
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<ErrorBody>(&body)
                .map(|b| format!("{}: {}", b.error.kind, b.error.message))
                .unwrap_or_else(|_| body.chars().take(300).collect());
            return Err(
                if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 529 {
                    ModelError::Unavailable {
                        attempts: 1,
                        last_error: format!("HTTP {status}: {message}"),
                    }
                } else {
                    ModelError::Rejected {
                        status: status.as_u16(),
                        message,
                    }
                },
            );
        }
        let bytes = response.bytes_stream();
        let events = futures_util::stream::unfold(
            (
                bytes,
                SseDecoder::default(),
                std::collections::VecDeque::new(),
                false,
            ),
            |(mut bytes, mut decoder, mut ready, mut done)| async move {
                loop {
                    if let Some(event) = ready.pop_front() {
                        return Some((event, (bytes, decoder, ready, done)));
                    }
                    if done {
                        return None;
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => {
                            for event in decoder.push(&chunk) {
                                if matches!(event, Ok(StreamEvent::Stop(_)) | Err(_)) {
                                    done = true;
                                }
                                ready.push_back(event);
                            }
                        }
                        Some(Err(e)) => {
                            done = true;
                            ready.push_back(Err(ModelError::Unavailable {
                                attempts: 1,
                                last_error: format!("the stream broke: {e}"),
                            }));
                        }
                        None => {
                            done = true;
                            if !decoder.stopped {
                                ready.push_back(Err(ModelError::Unavailable {
                                    attempts: 1,
                                    last_error: "the stream ended before message_stop".into(),
                                }));
                            }
                        }
                    }
                }
            },
        );
        Ok(Box::pin(events))
    }
}

/// A tool call whose input is still arriving.
#[derive(Debug, Default)]
struct PendingTool {
    id: String,
    name: String,
    json: String,
}

/// Server-sent events to [`StreamEvent`]s: bytes in any chunking, events
/// out in order. Fed by [`StreamingClient`]; public for the benchmark.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    tools: std::collections::BTreeMap<u64, PendingTool>,
    stop_reason: Option<String>,
    stopped: bool,
    /// The request's usage so far, if the stream reported any.
    usage: Option<Usage>,
}

impl SseDecoder {
    /// Feeds a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<StreamEvent, ModelError>> {
        self.buffer.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((end, separator)) = find_event_end(&self.buffer) {
            let raw: Vec<u8> = self.buffer.drain(..end + separator).collect();
            let text = String::from_utf8_lossy(&raw[..end]);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if data.is_empty() {
                continue;
            }
            if let Some(event) = self.event(&data.join("\n")) {
                out.push(event);
            }
        }
        out
    }

    fn event(&mut self, data: &str) -> Option<Result<StreamEvent, ModelError>> {
        let value: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "an unreadable stream event; skipped");
                return None;
            }
        };
        let index = value["index"].as_u64().unwrap_or(0);
        match value["type"].as_str().unwrap_or("") {
            "content_block_start" => {
                let block = &value["content_block"];
                match block["type"].as_str() {
                    Some("tool_use") => {
                        self.tools.insert(
                            index,
                            PendingTool {
                                id: block["id"].as_str().unwrap_or_default().to_string(),
                                name: block["name"].as_str().unwrap_or_default().to_string(),
                                json: String::new(),
                            },
                        );
                        None
                    }
                    Some("text") => block["text"]
                        .as_str()
                        .filter(|t| !t.is_empty())
                        .map(|t| Ok(StreamEvent::Text(t.to_string()))),
                    _ => None,
                }
            }
            "content_block_delta" => {
                let delta = &value["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => delta["text"]
                        .as_str()
                        .filter(|t| !t.is_empty())
                        .map(|t| Ok(StreamEvent::Text(t.to_string()))),
                    Some("input_json_delta") => {
                        if let Some(tool) = self.tools.get_mut(&index) {
                            tool.json.push_str(delta["partial_json"].as_str().unwrap_or(""));
                        }
                        None
                    }
                    _ => None,
                }
            }
            "content_block_stop" => {
                let tool = self.tools.remove(&index)?;
                let input = if tool.json.trim().is_empty() {
                    Value::Object(Default::default())
                } else {
                    // A tool call with unreadable input still reaches the
                    // registry, which answers it with an error result.
                    serde_json::from_str(&tool.json).unwrap_or(Value::String(tool.json))
                };
                Some(Ok(StreamEvent::ToolUse {
                    id: tool.id,
                    name: tool.name,
                    input,
                }))
            }
            "message_start" => {
                self.usage = serde_json::from_value(value["message"]["usage"].clone()).ok();
                None
            }
            "message_delta" => {
                if let Some(reason) = value["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_string());
                }
                // The delta's counts are cumulative: the output so far, and
                // (in newer API versions) the input counts again.
                let delta = &value["usage"];
                if delta.is_object() {
                    let usage = self.usage.get_or_insert_with(Usage::default);
                    let count = |key: &str| delta[key].as_u64();
                    if let Some(n) = count("output_tokens") {
                        usage.output_tokens = n;
                    }
                    if let Some(n) = count("input_tokens") {
                        usage.input_tokens = n;
                    }
                    if let Some(n) = count("cache_read_input_tokens") {
                        usage.cache_read_input_tokens = n;
                    }
                    if let Some(n) = count("cache_creation_input_tokens") {
                        usage.cache_creation_input_tokens = n;
                    }
                }
                self.usage.take().map(|u| Ok(StreamEvent::Usage(u)))
            }
            "message_stop" => {
                self.stopped = true;
                Some(Ok(StreamEvent::Stop(self.stop_reason.take())))
            }
            "error" => Some(Err(ModelError::Unavailable {
                attempts: 1,
                last_error: format!(
                    "{}: {}",
                    value["error"]["type"].as_str().unwrap_or("error"),
                    value["error"]["message"].as_str().unwrap_or("")
                ),
            })),
            // ping, and event types added later.
            _ => None,
        }
    }
}

/// Where the first complete event in `buffer` ends, and its separator's
/// length (a blank line, `\n\n` or `\r\n\r\n`).
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// A whole streamed reply as Anthropic sends it: for fakes in tests and
/// the benchmark. `text` is sent in `pieces` deltas; `tool`, if any, is
/// one tool call (its input in two pieces) and the stop reason `tool_use`.
pub fn sse_body(text_pieces: &[&str], tool: Option<(&str, &str, &Value)>) -> String {
    sse_body_with_usage(text_pieces, tool, None)
}

/// As [`sse_body`], reporting `usage` as the API does: the input counts in
/// `message_start`, the output count in `message_delta`.
pub fn sse_body_with_usage(
    text_pieces: &[&str],
    tool: Option<(&str, &str, &Value)>,
    usage: Option<&Usage>,
) -> String {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| {
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    let mut message =
        serde_json::json!({"id": "msg_fake", "type": "message", "role": "assistant", "content": []});
    if let Some(u) = usage {
        message["usage"] = serde_json::json!({
            "input_tokens": u.input_tokens,
            "cache_read_input_tokens": u.cache_read_input_tokens,
            "cache_creation_input_tokens": u.cache_creation_input_tokens,
            "output_tokens": 1,
        });
    }
    event(
        "message_start",
        serde_json::json!({"type": "message_start", "message": message}),
    );
    let mut index = 0;
    if !text_pieces.is_empty() {
        event(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        );
        for piece in text_pieces {
            event(
                "content_block_delta",
                serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            );
        }
        event(
            "content_block_stop",
            serde_json::json!({"type": "content_block_stop", "index": 0}),
        );
        index = 1;
    }
    if let Some((id, name, input)) = tool {
        let json = input.to_string();
        let (a, b) = json.split_at(json.len() / 2);
        event(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        );
        for part in [a, b] {
            event(
                "content_block_delta",
                serde_json::json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": part}}),
            );
        }
        event(
            "content_block_stop",
            serde_json::json!({"type": "content_block_stop", "index": index}),
        );
    }
    let stop = if tool.is_some() { "tool_use" } else { "end_turn" };
    let mut delta = serde_json::json!({"type": "message_delta", "delta": {"stop_reason": stop}});
    if let Some(u) = usage {
        delta["usage"] = serde_json::json!({"output_tokens": u.output_tokens});
    }
    event("message_delta", delta);
    event("message_stop", serde_json::json!({"type": "message_stop"}));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn events_decode_in_any_chunking() {
        let body = sse_body(
            &["Sure, ", "let me check."],
            Some(("toolu_1", "get_quote", &json!({"a": 1}))),
        );
        let expected = vec![
            StreamEvent::Text("Sure, ".into()),
            StreamEvent::Text("let me check.".into()),
            StreamEvent::ToolUse {
                id: "toolu_1".into(),
                name: "get_quote".into(),
                input: json!({"a": 1}),
            },
            StreamEvent::Stop(Some("tool_use".into())),
        ];
        for size in [1, 3, 7, 64, body.len()] {
            let mut decoder = SseDecoder::default();
            let mut events = Vec::new();
            for chunk in body.as_bytes().chunks(size) {
                events.extend(decoder.push(chunk).into_iter().map(Result::unwrap));
            }
            assert_eq!(events, expected, "chunks of {size}");
        }
    }

    #[test]
    fn usage_is_reported_before_the_stop() {
        let usage = Usage {
            input_tokens: 40,
            cache_read_input_tokens: 1500,
            cache_creation_input_tokens: 7,
            output_tokens: 23,
        };
        let body = sse_body_with_usage(&["Hello."], None, Some(&usage));
        let mut decoder = SseDecoder::default();
        let events: Vec<StreamEvent> = decoder
            .push(body.as_bytes())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            events,
            vec![
                StreamEvent::Text("Hello.".into()),
                StreamEvent::Usage(usage),
                StreamEvent::Stop(Some("end_turn".into())),
            ]
        );
    }

    #[test]
    fn crlf_pings_and_errors() {
        let mut decoder = SseDecoder::default();
        let events = decoder.push(
            b"event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\nevent: error\r\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\r\n\r\n",
        );
        assert_eq!(events.len(), 1);
        let Err(ModelError::Unavailable { last_error, .. }) = &events[0] else {
            panic!("{events:?}")
        };
        assert!(last_error.contains("overloaded_error"), "{last_error}");
    }

    #[test]
    fn the_wire_request_says_stream() {
        let request = MessagesRequest {
            model: "m".into(),
            max_tokens: 10,
            system: vec![crate::anthropic::SystemBlock::text("s", false)],
            messages: vec![],
            tools: vec![],
        };
        let wire = serde_json::to_value(Streamed {
            request: &request,
            stream: true,
        })
        .unwrap();
        assert_eq!(wire["stream"], json!(true));
        assert_eq!(wire["model"], json!("m"));
    }
}
