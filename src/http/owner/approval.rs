//! The owner's decision on a reply held for approval: approve, edit and
//! send, or reject. Each calls the desk's use case and words its outcome;
//! a sent reply leaves through the `Dispatcher`, like every text.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Duration;
use chrono_tz::Tz;
use serde::Deserialize;
use tower_sessions::Session;

use super::pages::{conversation_page, internal, not_found, parse_id};
use super::views::{self, HeldView};
use crate::config::business::{BusinessConfig, DEFAULT_APPROVAL_TIMEOUT_MINUTES};
use crate::desk::DeskError;
use crate::desk::approval::{self, Approved};
use crate::http::AppState;
use crate::jobs::turns::Engine;
use crate::store::console::ConversationDetail;
use crate::store::{ConversationId, Direction, MessageId};

/// The owner's wording the guardrail refused, and its reasons.
pub struct RefusedEdit {
    pub text: String,
    pub reasons: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct EditForm {
    #[serde(default)]
    body: String,
}

/// The held reply of a conversation page, if one waits.
pub(super) fn held_view(
    detail: &ConversationDetail,
    business: Option<&BusinessConfig>,
    tz: Tz,
    refused: Option<RefusedEdit>,
) -> Option<HeldView> {
    let held = detail
        .messages
        .iter()
        .rev()
        .find(|m| m.direction == Direction::Outbound && m.status == "held")?;
    let minutes = business.map_or(DEFAULT_APPROVAL_TIMEOUT_MINUTES, |b| {
        b.assistant.approval_timeout_minutes
    });
    let (text, reasons) = match refused {
        Some(edit) => (edit.text, edit.reasons),
        None => (held.body.clone(), Vec::new()),
    };
    Some(HeldView {
        action: format!("/owner/conversations/{}/held/{}", detail.id.0, held.id.0),
        draft: held.body.clone(),
        time: views::local_time(held.created_at, tz),
        deadline: views::local_time(held.created_at + Duration::minutes(i64::from(minutes)), tz),
        text,
        reasons,
    })
}

/// The conversation and held reply a path names, with the conversation's
/// business engine; 404 for what does not exist.
async fn target(
    state: &AppState,
    conversation: &str,
    message: &str,
) -> Result<(ConversationId, MessageId, std::sync::Arc<Engine>), Response> {
    let (Some(conversation), Some(message)) = (parse_id(conversation), parse_id(message)) else {
        return Err(not_found().await);
    };
    let id = ConversationId(conversation);
    let business = match state.store.conversation_business(id).await {
        Ok(Some(business)) => business,
        Ok(None) => return Err(not_found().await),
        Err(e) => return Err(internal(e)),
    };
    let Some(engine) = state.desks.engine(&business) else {
        return Err(views::error_page(
            StatusCode::CONFLICT,
            "This conversation belongs to a business no configuration file names any more.",
        ));
    };
    Ok((id, MessageId(message), engine))
}

/// Sends the released reply (one queued for after quiet hours goes with
/// its job) and goes back to the conversation.
async fn send(engine: &Engine, id: ConversationId, approved: Approved) -> Response {
    if let Approved::Send(reply) = approved
        && let Err(e) = engine
            .dispatcher
            .send_claimed(&engine.business, reply, engine.clock.now(), None)
            .await
    {
        // Released and claimed: the start-up recovery sends it if this failed.
        tracing::error!(error = %e, "console: an approved reply was not recorded as sent");
    }
    Redirect::to(&format!("/owner/conversations/{}", id.0)).into_response()
}

/// A decision the desk refused, in plain words.
fn refused(e: DeskError) -> Response {
    match e {
        DeskError::UnknownConversation => views::error_page(StatusCode::NOT_FOUND, "There is no such page."),
        DeskError::NotHeld => views::error_page(
            StatusCode::CONFLICT,
            "This reply was already dealt with: approved, edited, rejected or timed out. Nothing more was sent.",
        ),
        DeskError::OptedOut => views::error_page(
            StatusCode::CONFLICT,
            "This customer opted out of texts, so textdesk will not text them. Reject the reply, or call them.",
        ),
        DeskError::Busy => views::error_page(
            StatusCode::CONFLICT,
            "The assistant is answering this conversation right now. Go back and try again in a moment.",
        ),
        other => internal(other),
    }
}

pub(super) async fn approve(
    State(state): State<AppState>,
    Path((conversation, message)): Path<(String, String)>,
) -> Response {
    let (id, message, engine) = match target(&state, &conversation, &message).await {
        Ok(target) => target,
        Err(response) => return response,
    };
    let now = engine.clock.now();
    match approval::approve(state.store.as_ref(), &engine.business, id, message, now).await {
        Ok(reply) => send(&engine, id, reply).await,
        Err(e) => refused(e),
    }
}

pub(super) async fn edit(
    State(state): State<AppState>,
    session: Session,
    Path((conversation, message)): Path<(String, String)>,
    Form(form): Form<EditForm>,
) -> Response {
    let (id, message, engine) = match target(&state, &conversation, &message).await {
        Ok(target) => target,
        Err(response) => return response,
    };
    let now = engine.clock.now();
    let outcome = approval::edit_and_send(
        state.store.as_ref(),
        &engine.business,
        id,
        message,
        &form.body,
        now,
    )
    .await;
    let reasons = match outcome {
        Ok(reply) => return send(&engine, id, reply).await,
        Err(DeskError::Guardrail(reasons)) => reasons,
        Err(DeskError::EmptyText) => {
            vec!["The reply is empty: write what to send, or reject the reply.".into()]
        }
        Err(e) => return refused(e),
    };
    conversation_page(
        &state,
        &session,
        id.0,
        StatusCode::BAD_REQUEST,
        Some(RefusedEdit {
            text: form.body,
            reasons,
        }),
    )
    .await
}

pub(super) async fn reject(
    State(state): State<AppState>,
    Path((conversation, message)): Path<(String, String)>,
) -> Response {
    let (id, message, _) = match target(&state, &conversation, &message).await {
        Ok(target) => target,
        Err(response) => return response,
    };
    match approval::reject(state.store.as_ref(), id, message).await {
        Ok(()) => Redirect::to(&format!("/owner/conversations/{}", id.0)).into_response(),
        Err(e) => refused(e),
    }
}
