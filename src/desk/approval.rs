//! Approval before sending: the owner's decision on a reply the turn held
//! (see `[assistant] approval`). Each decision holds the conversation's
//! lease, like the owner's other operations, and moves the held reply out
//! of `held` once: a second click, a retried request or a timeout racing
//! the owner finds it already decided and changes nothing.
//!
//! Approving or editing returns the reply claimed for sending; the caller
//! hands it to the `Dispatcher`, the one send path.

use chrono::{DateTime, Utc};

use super::DeskError;
use super::owner::{read, with_lease};
use crate::channel::Channel;
use crate::config::business::BusinessConfig;
use crate::domain::conversation::{ConversationState, Event, HandoffReason, transition};
use crate::domain::guardrail;
use crate::store::{ConversationId, HeldOutcome, HeldReply, MessageId, OutboundMessage, Store};

/// The owner approves the held reply as drafted.
pub async fn approve(
    store: &dyn Store,
    id: ConversationId,
    message: MessageId,
) -> Result<OutboundMessage, DeskError> {
    with_lease(store, id, async {
        let turn = read(store, id).await?;
        if turn.conversation.opted_out {
            return Err(DeskError::OptedOut);
        }
        store
            .release_held(id, message, None)
            .await?
            .ok_or(DeskError::NotHeld)
    })
    .await
}

/// The owner sends their own wording instead. It passes the same guardrail
/// as any reply, against the conversation's facts as they stand (its state
/// and quotes), as the customer will read it on this channel; a refusal
/// lists each reason and leaves the reply held.
pub async fn edit_and_send(
    store: &dyn Store,
    business: &BusinessConfig,
    id: ConversationId,
    message: MessageId,
    text: &str,
    now: DateTime<Utc>,
) -> Result<OutboundMessage, DeskError> {
    if text.trim().is_empty() {
        return Err(DeskError::EmptyText);
    }
    with_lease(store, id, async {
        let turn = read(store, id).await?;
        if turn.conversation.opted_out {
            return Err(DeskError::OptedOut);
        }
        let channel = Channel::of(&turn.conversation.customer_phone);
        let body = channel.prepare_reply(text.trim(), business.sms.max_segments);
        let facts = guardrail::Facts::of(
            &business.guardrail_terms(),
            &turn.state,
            &turn.state,
            &turn.quotes,
            now,
        );
        let violations = guardrail::check(&body, &facts);
        if !violations.is_empty() {
            return Err(DeskError::Guardrail(
                violations
                    .iter()
                    .map(|v| format!("{} (in \"{}\")", v.reason, v.phrase))
                    .collect(),
            ));
        }
        store
            .release_held(id, message, Some(&body))
            .await?
            .ok_or(DeskError::NotHeld)
    })
    .await
}

/// The owner rejects the held reply: nothing is sent, and the assistant's
/// next turn starts from the conversation as it stands.
pub async fn reject(store: &dyn Store, id: ConversationId, message: MessageId) -> Result<(), DeskError> {
    with_lease(store, id, async {
        if store
            .discard_held(id, message, HeldOutcome::Rejected, None)
            .await?
        {
            Ok(())
        } else {
            Err(DeskError::NotHeld)
        }
    })
    .await
}

/// No one acted in time on the reply that answers `answers`: it is never
/// sent, and the conversation is handed to the owner in the same commit.
/// `None` when it was decided meanwhile (nothing changes).
pub async fn expire(
    store: &dyn Store,
    id: ConversationId,
    answers: MessageId,
    waited_minutes: u32,
    now: DateTime<Utc>,
) -> Result<Option<HeldReply>, DeskError> {
    with_lease(store, id, async {
        let Some(held) = store.held_reply(id).await?.filter(|h| h.reply_to == answers) else {
            return Ok(None);
        };
        let turn = read(store, id).await?;
        // Already with the owner (or opted out): only the reply ends.
        let handed = match &turn.state {
            ConversationState::HandedOff(_) | ConversationState::OptedOut(_) => None,
            state => transition(
                state.clone(),
                Event::HandOff {
                    reason: HandoffReason::Other,
                    summary: format!(
                        "A reply waited {waited_minutes} minutes for your approval and was not sent."
                    ),
                    at: now,
                },
            )
            .ok(),
        };
        let expired = store
            .discard_held(id, held.id, HeldOutcome::Expired, handed.as_ref())
            .await?;
        Ok(expired.then_some(held))
    })
    .await
}
