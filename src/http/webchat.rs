//! The web chat's HTTP edge: the widget's script, and the visitor's
//! messages (`channel::webchat` has the channel).
//!
//! - `GET /chat/widget.js`: the vendored widget (`static/chat/widget.js`).
//! - `POST /api/chat/messages` `{"token"?, "text", "business"?, "id"?}`: stores the
//!   visitor's text as an inbound message (the same path as a text; `id`,
//!   the widget's own per-message id, makes a retried POST a duplicate that
//!   gets the first one's answer and stores nothing), wakes
//!   the worker, and waits (up to `WEBCHAT_REPLY_WAIT_MS`, woken by the web
//!   channel's send, never a polling loop) for the turn's reply. Answers
//!   `{"token", "replies": [...], "after"}`.
//! - `GET /api/chat/messages?token=...&after=N`: the replies after id `N`,
//!   for the widget's polling when the turn took longer.
//! - `OPTIONS` on the same path: the CORS preflight.
//!
//! Every request but the script must come from an origin in its business's
//! `[webchat] allowed_origins` (403 otherwise, with no CORS headers), and
//! is rate-limited per client address and per session (429 with
//! `Retry-After`). Every error answer to an allowed origin (400, 401, 403,
//! 404, 405, 408, 413, 429, 5xx) is JSON `{"error"}` with the CORS headers,
//! so the widget can read and show it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::owner::ClientIp;
use crate::channel::webchat::{WebChatHub, hash_secret, new_token, random_id};
use crate::config::business::BusinessConfig;
use crate::config::settings::WebChatSettings;
use crate::domain::phone::E164;
use crate::store::webchat::{WebChatStore, WebSession};
use crate::store::{Direction, InboundMessage, Recorded, StoreError};

/// The widget, vendored: no build step.
const WIDGET_JS: &str = include_str!("../../static/chat/widget.js");

/// A visitor's message body is a few hundred bytes; this is generous.
pub const MAX_CHAT_BODY_BYTES: usize = 8 * 1024;
/// The longest text a visitor may send.
pub const MAX_TEXT_CHARS: usize = 1000;
/// The rate limits' window.
const WINDOW: Duration = Duration::from_secs(60);
/// Statuses of an outbound message the visitor has been shown (or is
/// being shown right now): held, rejected and expired replies never are.
const VISIBLE: [&str; 2] = ["sending", "sent"];

/// The web chat's shared parts.
#[derive(Clone)]
pub struct WebChat {
    pub store: Arc<dyn WebChatStore>,
    pub hub: WebChatHub,
    pub settings: WebChatSettings,
    by_address: Arc<RateLimiter>,
    by_session: Arc<RateLimiter>,
}

impl WebChat {
    pub fn new(store: Arc<dyn WebChatStore>, hub: WebChatHub, settings: WebChatSettings) -> Self {
        Self {
            by_address: Arc::new(RateLimiter::new(settings.per_address_per_minute)),
            by_session: Arc::new(RateLimiter::new(settings.per_session_per_minute)),
            store,
            hub,
            settings,
        }
    }
}

/// At most `limit` requests per key in any minute (a sliding window).
pub struct RateLimiter {
    limit: usize,
    hits: Mutex<HashMap<String, Vec<Instant>>>,
}

impl RateLimiter {
    pub fn new(limit: u32) -> Self {
        Self {
            limit: limit as usize,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request for `key`, or says how long until one is free.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        if hits.len() > 10_000 {
            hits.retain(|_, times| times.iter().any(|t| now.duration_since(*t) < WINDOW));
        }
        let times = hits.entry(key.to_string()).or_default();
        times.retain(|t| now.duration_since(*t) < WINDOW);
        if times.len() >= self.limit {
            let oldest = times.first().copied().unwrap_or(now);
            return Err(WINDOW.saturating_sub(now.duration_since(oldest)));
        }
        times.push(now);
        Ok(())
    }
}

/// The web chat's routes, with their own limits: a POST may wait longer
/// than the app's 10-second request timeout for the reply.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/chat/widget.js", get(widget))
        .route(
            "/api/chat/messages",
            get(poll).post(post_message).options(preflight),
        )
        // Any other path of the chat API: a JSON 404 the widget can read.
        .route("/api/chat/{*rest}", axum::routing::any(unknown_path))
        .with_state(state.clone())
        // The body's limit is the extractor's (not a layer's), so a body
        // too large reaches the handler and is refused there, like every
        // other error: in JSON, with the CORS headers an allowed page needs
        // to read it.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_CHAT_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(40),
        ))
        .layer(axum::middleware::from_fn_with_state(state, cors_on_errors))
}

/// Every error answer of the chat API that a handler did not shape (a
/// timeout, a rejection by a layer) in JSON with the CORS headers, when
/// the page's origin is one some business allows; an error answer the
/// handlers made already has both.
async fn cors_on_errors(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let origin = origin_of(request.headers());
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let Some(origin) = origin.filter(|o| state.businesses.current().iter().any(|b| b.webchat.allows(o)))
    else {
        return response;
    };
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let response = if is_json {
        response
    } else {
        let message = match status {
            StatusCode::REQUEST_TIMEOUT => "the answer took too long; please try again".to_string(),
            StatusCode::PAYLOAD_TOO_LARGE => {
                format!("the request is larger than {MAX_CHAT_BODY_BYTES} bytes")
            }
            StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed here".to_string(),
            other => other
                .canonical_reason()
                .unwrap_or("the request failed")
                .to_lowercase(),
        };
        let (mut parts, _) = response.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Response::from_parts(
            parts,
            axum::body::Body::from(serde_json::json!({ "error": message }).to_string()),
        )
    };
    if response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        response
    } else {
        with_cors(response, &origin)
    }
}

async fn unknown_path() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "no such web chat API path" })),
    )
        .into_response()
}

async fn widget() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        WIDGET_JS,
    )
        .into_response()
}

/// A refusal in JSON, with a readable `error`.
#[derive(Debug)]
pub enum ChatError {
    BadRequest(String),
    Forbidden(&'static str),
    /// The session token is unknown: the widget starts a new session.
    UnknownSession,
    TooLarge,
    TooMany(Duration),
    Unavailable(String),
    Store(StoreError),
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        ChatError::Store(e)
    }
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            ChatError::BadRequest(why) => (StatusCode::BAD_REQUEST, why.clone()),
            ChatError::Forbidden(why) => (StatusCode::FORBIDDEN, (*why).to_string()),
            ChatError::UnknownSession => (
                StatusCode::UNAUTHORIZED,
                "unknown session token: start a new chat without one".to_string(),
            ),
            ChatError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request is larger than {MAX_CHAT_BODY_BYTES} bytes"),
            ),
            ChatError::TooMany(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many messages; please wait a moment".to_string(),
            ),
            ChatError::Unavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, why.clone()),
            ChatError::Store(e) => {
                tracing::error!(error = %e, "web chat: storage failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; please try again".to_string(),
                )
            }
        };
        if status.is_client_error() {
            tracing::info!(%status, %message, "web chat request refused");
        }
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
        if let ChatError::TooMany(wait) = self {
            let secs = wait.as_secs().max(1);
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs.to_string()).expect("digits"),
            );
        }
        response
    }
}

/// A response carrying the CORS headers for `origin` (already checked).
fn with_cors(mut response: Response, origin: &str) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

fn origin_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The preflight: answered for an origin some business allows; any other
/// gets 403 and no CORS headers.
async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(origin) = origin_of(&headers) else {
        return ChatError::Forbidden("a web chat request needs the page's Origin").into_response();
    };
    let directory = state.businesses.current();
    if !directory.iter().any(|b| b.webchat.allows(&origin)) {
        return ChatError::Forbidden("this site is not allowed to use the web chat").into_response();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    with_cors(response, &origin)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    #[serde(default)]
    token: Option<String>,
    text: String,
    /// The business's id (the widget's `data-business`); needed on the
    /// first message when several businesses are configured.
    #[serde(default)]
    business: Option<String>,
    /// The widget's own id for this message (random, kept for its
    /// retries): a POST sent again after a lost answer stores nothing new
    /// and gets the same answer.
    #[serde(default)]
    id: Option<String>,
}

/// The longest client message id.
pub const MAX_CLIENT_ID_CHARS: usize = 64;

/// A client message id: 1 to 64 letters, digits, `-` or `_`.
fn client_id(raw: &str) -> Result<&str, ChatError> {
    if raw.is_empty()
        || raw.len() > MAX_CLIENT_ID_CHARS
        || !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ChatError::BadRequest(format!(
            "`id` must be 1 to {MAX_CLIENT_ID_CHARS} letters, digits, - or _"
        )));
    }
    Ok(raw)
}

#[derive(Debug, Serialize)]
struct Reply {
    id: i64,
    text: String,
    at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize)]
struct Answer {
    token: String,
    replies: Vec<Reply>,
    /// The id to poll after: the last reply's, or the visitor's text's.
    after: i64,
}

/// The business a session belongs to, and its number (the conversation's
/// business side).
fn business_for(state: &AppState, id: &str) -> Result<(Arc<BusinessConfig>, E164), ChatError> {
    let business = state
        .businesses
        .current()
        .iter()
        .find(|b| b.business.id == id)
        .cloned()
        .ok_or_else(|| ChatError::BadRequest(format!("no business `{id}` here")))?;
    let number = business.business.phone.clone().ok_or_else(|| {
        ChatError::Unavailable("web chat needs the business's `[business] phone` to be set".into())
    })?;
    Ok((business, number))
}

fn check_origin(business: &BusinessConfig, origin: Option<&str>) -> Result<String, ChatError> {
    match origin {
        None => Err(ChatError::Forbidden("a web chat request needs the page's Origin")),
        Some(origin) if business.webchat.allows(origin) => Ok(origin.to_string()),
        Some(_) => Err(ChatError::Forbidden(
            "this site is not allowed to use the web chat",
        )),
    }
}

fn token_hash(token: &str) -> String {
    hash_secret("webchat-token", token)
}

async fn session_of(chat: &WebChat, token: &str) -> Result<WebSession, ChatError> {
    if token.len() != 64 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ChatError::UnknownSession);
    }
    chat.store
        .web_session(&token_hash(token))
        .await?
        .ok_or(ChatError::UnknownSession)
}

/// The replies shown to the visitor after message `after`.
async fn replies_after(
    state: &AppState,
    session: &WebSession,
    number: &E164,
    after: i64,
) -> Result<Vec<Reply>, ChatError> {
    let Some(conversation) = state.store.find_conversation(&session.address, number).await? else {
        return Ok(Vec::new());
    };
    Ok(state
        .store
        .messages(conversation)
        .await?
        .into_iter()
        .filter(|m| {
            m.direction == Direction::Outbound && m.id.0 > after && VISIBLE.contains(&m.status.as_str())
        })
        .map(|m| Reply {
            id: m.id.0,
            text: m.body,
            at: m.created_at,
        })
        .collect())
}

fn rate_limit(chat: &WebChat, ip: IpAddr) -> Result<(), ChatError> {
    chat.by_address
        .take(&ip.to_string(), Instant::now())
        .map_err(ChatError::TooMany)
}

#[tracing::instrument(name = "webchat_post", skip_all, fields(visitor))]
async fn post_message(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let origin = origin_of(&headers);
    match post(&state, ip, origin.as_deref(), body).await {
        Ok((answer, origin)) => with_cors(Json(answer).into_response(), &origin),
        Err((e, Some(origin))) => with_cors(e.into_response(), &origin),
        Err((e, None)) => e.into_response(),
    }
}

/// The POST's work; an error carries the origin when it was allowed (so
/// the widget can read the error).
async fn post(
    state: &AppState,
    ip: IpAddr,
    origin: Option<&str>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(Answer, String), (ChatError, Option<String>)> {
    let chat = &state.webchat;
    let allowed_anywhere = origin
        .filter(|o| state.businesses.current().iter().any(|b| b.webchat.allows(o)))
        .map(str::to_string);
    let fail = |e: ChatError| (e, allowed_anywhere.clone());
    if allowed_anywhere.is_none() {
        return Err(fail(
            check_origin(&BusinessConfig::default(), origin).unwrap_err(),
        ));
    }
    rate_limit(chat, ip).map_err(fail)?;
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(fail(ChatError::TooLarge)),
        Err(e) => return Err(fail(ChatError::BadRequest(e.body_text()))),
    };
    let request: PostBody = serde_json::from_slice(&body).map_err(|e| {
        fail(ChatError::BadRequest(format!(
            "the body is not the JSON expected: {e}"
        )))
    })?;
    let text = request.text.trim();
    if text.is_empty() {
        return Err(fail(ChatError::BadRequest("`text` is empty".into())));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(fail(ChatError::BadRequest(format!(
            "`text` is longer than {MAX_TEXT_CHARS} characters"
        ))));
    }
    let client_id = request.id.as_deref().map(client_id).transpose().map_err(fail)?;

    // The session: the token's, or a new one for the named business.
    let (session, token) = match request.token.as_deref() {
        Some(token) => (session_of(chat, token).await.map_err(fail)?, token.to_string()),
        None => {
            let business_id = match request.business {
                Some(id) => id,
                None => match state.businesses.current().single() {
                    Some(only) => only.business.id.clone(),
                    None => {
                        return Err(fail(ChatError::BadRequest(
                            "name the business (`business`, the widget's data-business)".into(),
                        )));
                    }
                },
            };
            let (business, _) = business_for(state, &business_id).map_err(fail)?;
            check_origin(&business, origin).map_err(fail)?;
            let address = E164::web(&random_id()).expect("a random id is a valid session id");
            let token = new_token();
            chat.store
                .create_web_session(&token_hash(&token), &business_id, &address)
                .await
                .map_err(|e| fail(e.into()))?;
            let session = chat
                .store
                .web_session(&token_hash(&token))
                .await
                .map_err(|e| fail(e.into()))?
                .ok_or_else(|| fail(ChatError::UnknownSession))?;
            (session, token)
        }
    };
    tracing::Span::current().record("visitor", tracing::field::display(session.address.masked()));
    let (business, number) = business_for(state, &session.business_id).map_err(fail)?;
    let origin = check_origin(&business, origin).map_err(fail)?;
    chat.by_session
        .take(session.address.as_str(), Instant::now())
        .map_err(|wait| fail(ChatError::TooMany(wait)))?;

    // Listen before the text is stored, so a reply that comes at once is
    // not missed between the store and the wait.
    let mut delivered = chat.hub.subscribe();
    let inbound = InboundMessage {
        business_id: session.business_id.clone(),
        // The idempotency key: the session's and the widget's id when it
        // sent one (a retry is then a duplicate, answered as the first was).
        channel_message_id: match client_id {
            Some(id) => format!("WEB:{}:{id}", session.address.as_str()),
            None => format!("WEB{}", uuid::Uuid::new_v4().simple()),
        },
        from: session.address.clone(),
        to: number.clone(),
        body: text.to_string(),
        media: Vec::new(),
        params: serde_json::json!({"Source": "web chat"}),
        opt_out_keyword: None,
        profile_name: None,
    };
    let message = match state
        .store
        .record_inbound(&inbound)
        .await
        .map_err(|e| fail(e.into()))?
    {
        Recorded::New(_, message) => {
            state.wake_worker.notify_one();
            message
        }
        Recorded::Duplicate(_, message) => {
            tracing::info!("web chat: a message sent again; answered as the first time");
            message
        }
    };

    let deadline = tokio::time::Instant::now() + chat.settings.reply_wait;
    let replies = loop {
        let replies = replies_after(state, &session, &number, message.0)
            .await
            .map_err(|e| (e, Some(origin.clone())))?;
        if !replies.is_empty() {
            break replies;
        }
        // Wait for a send to this visitor, or the deadline.
        let woke = loop {
            match tokio::time::timeout_at(deadline, delivered.recv()).await {
                Err(_) => break false,
                Ok(Ok(address)) if address == session.address.as_str() => break true,
                Ok(Ok(_)) => continue,
                // Missed some sends: one of them may be ours.
                Ok(Err(RecvError::Lagged(_))) => break true,
                Ok(Err(RecvError::Closed)) => break false,
            }
        };
        if !woke {
            break replies_after(state, &session, &number, message.0)
                .await
                .map_err(|e| (e, Some(origin.clone())))?;
        }
    };
    let after = replies.last().map_or(message.0, |r| r.id);
    Ok((
        Answer {
            token,
            replies,
            after,
        },
        origin,
    ))
}

#[derive(Debug, Deserialize)]
struct PollQuery {
    token: Option<String>,
    after: Option<String>,
}

#[tracing::instrument(name = "webchat_poll", skip_all)]
async fn poll(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    query: Result<Query<PollQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let origin = origin_of(&headers);
    let chat = &state.webchat;
    let allowed = origin
        .as_deref()
        .filter(|o| state.businesses.current().iter().any(|b| b.webchat.allows(o)))
        .map(str::to_string);
    let Some(allowed) = allowed else {
        return check_origin(&BusinessConfig::default(), origin.as_deref())
            .unwrap_err()
            .into_response();
    };
    let result = async {
        rate_limit(chat, ip)?;
        let Query(query) = query.map_err(|e| ChatError::BadRequest(e.body_text()))?;
        let token = query
            .token
            .ok_or_else(|| ChatError::BadRequest("`token` is missing".into()))?;
        let after =
            match query.after.as_deref() {
                None | Some("") => 0,
                Some(raw) => raw.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    ChatError::BadRequest(format!("`after` must be a message id, got `{raw}`"))
                })?,
            };
        let session = session_of(chat, &token).await?;
        let (business, number) = business_for(&state, &session.business_id)?;
        check_origin(&business, Some(&allowed))?;
        let replies = replies_after(&state, &session, &number, after).await?;
        let after = replies.last().map_or(after, |r| r.id);
        Ok::<_, ChatError>(Answer {
            token,
            replies,
            after,
        })
    }
    .await;
    match result {
        Ok(answer) => with_cors(Json(answer).into_response(), &allowed),
        Err(e) => with_cors(e.into_response(), &allowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_refuses_past_its_limit_and_says_when_to_come_back() {
        let limiter = RateLimiter::new(2);
        let start = Instant::now();
        assert!(limiter.take("a", start).is_ok());
        assert!(limiter.take("a", start).is_ok());
        let wait = limiter.take("a", start + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(limiter.take("b", start).is_ok(), "each key has its own");
        assert!(limiter.take("a", start + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn tokens_are_checked_for_shape_before_the_store() {
        assert_eq!(token_hash("x").len(), 40);
        assert_ne!(token_hash("x"), token_hash("y"));
    }
}
