//! Approval before sending: the owner's decision on a reply the turn held
//! (see `[assistant] approval`). Each decision holds the conversation's
//! lease, like the owner's other operations, and moves the held reply out
//! of `held` once: a second click, a retried request or a timeout racing
//! the owner finds it already decided and changes nothing.
//!
//! Approving or editing returns the reply claimed for sending, and the
//! caller hands it to the `Dispatcher`, the one send path; or, when the
//! owner keeps replies out of quiet hours and it is quiet now, the reply is
//! queued for the next allowed moment.

use chrono::{DateTime, Utc};

use super::DeskError;
use super::owner::{read, with_lease};
use crate::channel::Channel;
use crate::config::business::BusinessConfig;
use crate::domain::conversation::{ConversationState, Event, HandoffReason, transition};
use crate::domain::guardrail;
use crate::jobs::payload::{DeferredReply, JobPayload, JobTarget};
use crate::jobs::plan::{CustomerContact, alert_jobs_about};
use crate::store::{
    AlertKind, ConversationId, HeldOutcome, HeldReply, MessageId, NewAlert, OutboundMessage, Settles, Store,
    TurnInput,
};

/// What the owner's decision on the held reply answers: the alerts asking
/// for it, and the timeout that would hand the conversation over.
fn decided_by_owner(id: ConversationId) -> Settles {
    Settles {
        resolve_alerts: vec![AlertKind::ApprovalNeeded],
        cancel_jobs: vec![approval_timeout_key_prefix(id)],
        ..Settles::default()
    }
}

/// The dedupe key of a conversation's approval timeouts starts with this
/// (the turn that holds a reply names its job so).
pub fn approval_timeout_key_prefix(id: ConversationId) -> String {
    format!("approval:{}:", id.0)
}

/// An approved reply: to send now, or queued for the end of quiet hours.
#[derive(Debug)]
pub enum Approved {
    Send(OutboundMessage),
    Later { at: DateTime<Utc> },
}

/// The owner approves the held reply as drafted.
pub async fn approve(
    store: &dyn Store,
    business: &BusinessConfig,
    id: ConversationId,
    message: MessageId,
    now: DateTime<Utc>,
) -> Result<Approved, DeskError> {
    with_lease(store, id, async {
        let turn = read(store, id).await?;
        if turn.conversation.opted_out {
            return Err(DeskError::OptedOut);
        }
        release(store, business, &turn, message, None, now).await
    })
    .await
}

/// Moves the held reply out of `held` toward the customer, now or, when
/// the owner keeps even replies out of quiet hours and it is quiet, as a
/// deferred reply at the next allowed moment.
async fn release(
    store: &dyn Store,
    business: &BusinessConfig,
    turn: &TurnInput,
    message: MessageId,
    body: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Approved, DeskError> {
    let conversation = &turn.conversation;
    let quiet = &business.quiet_hours;
    let tz = business.business.timezone;
    let channel = Channel::of(&conversation.customer_phone);
    if !(channel.observes_quiet_hours() && !quiet.replies_allowed && quiet.is_quiet(now, tz)) {
        return store
            .release_held(conversation.id, message, body, &decided_by_owner(conversation.id))
            .await?
            .map(Approved::Send)
            .ok_or(DeskError::NotHeld);
    }
    let Some(held) = store
        .held_reply(conversation.id)
        .await?
        .filter(|h| h.id == message)
    else {
        return Err(DeskError::NotHeld);
    };
    let at = quiet.next_allowed(now, tz);
    let job = JobPayload::DeferredReply(DeferredReply {
        body: body.map_or(held.body, str::to_string),
    })
    .job(JobTarget {
        dedupe_key: format!("reply:approved:{}", message.0),
        conversation_id: Some(conversation.id),
        customer_id: Some(conversation.customer_id),
        recipient: conversation.customer_phone.as_str().to_string(),
        run_at: at,
        max_attempts: 5,
    });
    if store
        .defer_held(
            conversation.id,
            message,
            body,
            &job,
            &decided_by_owner(conversation.id),
        )
        .await?
    {
        Ok(Approved::Later { at })
    } else {
        Err(DeskError::NotHeld)
    }
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
) -> Result<Approved, DeskError> {
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
        release(store, business, &turn, message, Some(&body), now).await
    })
    .await
}

/// The owner rejects the held reply: nothing is sent, and the assistant's
/// next turn starts from the conversation as it stands.
pub async fn reject(store: &dyn Store, id: ConversationId, message: MessageId) -> Result<(), DeskError> {
    with_lease(store, id, async {
        if store
            .discard_held(id, message, HeldOutcome::Rejected, None, &decided_by_owner(id))
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
/// sent, and the conversation is handed to the owner in the same commit,
/// which also stores the owner's alert and queues its email and text. The
/// reply and that alert (to log and count once committed); `None` when it
/// was decided meanwhile (nothing changes).
pub async fn expire(
    store: &dyn Store,
    business: &BusinessConfig,
    id: ConversationId,
    answers: MessageId,
    waited_minutes: u32,
    now: DateTime<Utc>,
) -> Result<Option<(HeldReply, NewAlert)>, DeskError> {
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
                        "A reply waited {} for your approval and was not sent.",
                        crate::domain::approval::minutes_in_words(waited_minutes)
                    ),
                    at: now,
                },
            )
            .ok(),
        };
        // The owner hears of it in the same commit: a crash after it
        // cannot leave the hand-off without its alert (the rerun finds the
        // reply decided and does nothing).
        let contact = CustomerContact::of(&turn, &turn.state);
        let alert = NewAlert {
            kind: AlertKind::ApprovalTimedOut,
            detail: format!(
                "A reply to {} waited {} for your approval and was not sent; the conversation is yours now. The reply was: \"{}\"",
                contact.describe(),
                crate::domain::approval::minutes_in_words(waited_minutes),
                crate::domain::approval::excerpt(&held.body, 160)
            ),
        };
        let key = format!("{}:{}", id.0, now.timestamp_millis());
        let settles = Settles {
            jobs: alert_jobs_about(business, &alert, Some(id), Some(&contact), &key, now),
            raise_alerts: vec![alert.clone()],
            ..Settles::default()
        };
        let expired = store
            .discard_held(id, held.id, HeldOutcome::Expired, handed.as_ref(), &settles)
            .await?;
        Ok(expired.then_some((held, alert)))
    })
    .await
}
