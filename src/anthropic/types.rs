//! Wire types of the Messages API, limited to what textdesk sends and reads.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    /// Text blocks, stable first: a block marked `cache` ends a cached
    /// prefix (tools, then system, then messages, in the API's order).
    pub system: Vec<SystemBlock>,
    pub messages: Vec<ApiMessage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDefinition>,
}

impl MessagesRequest {
    /// The system prompt as one string, for logs and tests.
    pub fn system_text(&self) -> String {
        self.system
            .iter()
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    /// How many `cache_control` breakpoints the request carries (the API
    /// accepts at most [`MAX_CACHE_BREAKPOINTS`]).
    pub fn cache_breakpoints(&self) -> usize {
        self.system.iter().filter(|b| b.cache).count()
            + self.tools.iter().filter(|t| t.cache).count()
            + self.messages.iter().filter(|m| m.cache_breakpoint).count()
    }
}

/// The Messages API refuses a request with more `cache_control` marks.
pub const MAX_CACHE_BREAKPOINTS: usize = 4;

/// `{"type": "ephemeral"}`: the only cache type, five minutes' life,
/// refreshed on every hit.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct CacheControl {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

pub const EPHEMERAL: CacheControl = CacheControl { kind: "ephemeral" };

fn ephemeral_if<S: serde::Serializer>(cache: &bool, s: S) -> Result<S::Ok, S::Error> {
    debug_assert!(*cache, "skipped when false");
    EPHEMERAL.serialize(s)
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One text block of the system prompt.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SystemBlock {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
    /// A cache breakpoint after this block.
    #[serde(
        rename = "cache_control",
        skip_serializing_if = "is_false",
        serialize_with = "ephemeral_if"
    )]
    pub cache: bool,
}

impl SystemBlock {
    pub fn text(text: impl Into<String>, cache: bool) -> Self {
        Self {
            kind: "text",
            text: text.into(),
            cache,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ApiMessage {
    pub role: Role,
    pub content: Vec<ContentBlock>,
    /// A cache breakpoint after this message: `cache_control` goes on its
    /// last content block, where the API accepts it.
    #[serde(skip)]
    pub cache_breakpoint: bool,
}

impl ApiMessage {
    pub fn new(role: Role, content: Vec<ContentBlock>) -> Self {
        Self {
            role,
            content,
            cache_breakpoint: false,
        }
    }
}

impl Serialize for ApiMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeStruct};
        let mut out = s.serialize_struct("ApiMessage", 2)?;
        out.serialize_field("role", &self.role)?;
        match self.content.split_last() {
            Some((last, rest)) if self.cache_breakpoint => {
                let mut marked = serde_json::to_value(last).map_err(S::Error::custom)?;
                if let Value::Object(block) = &mut marked {
                    block.insert(
                        "cache_control".into(),
                        serde_json::to_value(EPHEMERAL).map_err(S::Error::custom)?,
                    );
                }
                let blocks: Vec<Value> = rest
                    .iter()
                    .map(serde_json::to_value)
                    .chain(std::iter::once(Ok(marked)))
                    .collect::<Result<_, _>>()
                    .map_err(S::Error::custom)?;
                out.serialize_field("content", &blocks)?;
            }
            _ => out.serialize_field("content", &self.content)?,
        }
        out.end()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    /// A photo the customer sent, inline.
    Image {
        source: ImageSource,
    },
    /// Block types we neither send nor need (thinking, server tools).
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    Base64 { media_type: String, data: String },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
    /// A cache breakpoint after this tool (the last one: tools are the
    /// start of every prompt).
    #[serde(
        rename = "cache_control",
        skip_serializing_if = "is_false",
        serialize_with = "ephemeral_if"
    )]
    pub cache: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MessagesResponse {
    #[serde(default)]
    pub id: String,
    pub content: Vec<ContentBlock>,
    pub stop_reason: Option<String>,
    /// Absent in a fake's reply: zero.
    #[serde(default)]
    pub usage: Usage,
}

/// What one request cost, in tokens. `input_tokens` counts only what was
/// neither read from nor written to the cache.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    #[serde(default, deserialize_with = "null_as_zero")]
    pub input_tokens: u64,
    #[serde(default, deserialize_with = "null_as_zero")]
    pub cache_read_input_tokens: u64,
    #[serde(default, deserialize_with = "null_as_zero")]
    pub cache_creation_input_tokens: u64,
    #[serde(default, deserialize_with = "null_as_zero")]
    pub output_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
        self.output_tokens += other.output_tokens;
    }

    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

fn null_as_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.unwrap_or(0))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}
