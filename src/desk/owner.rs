//! The owner's side of the desk: take a conversation over, hand it back,
//! reply to the customer. These happen outside any turn, so each holds the
//! conversation's lease while it reads and writes: a turn cannot commit a
//! state built on what the owner just changed.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::DeskError;
use crate::domain::conversation::{ConversationState, Event, HandoffReason, transition};
use crate::store::MessageKind;
use crate::store::{ConversationId, MessageId, OutboundDraft, Store, StoreError, TurnInput};

/// The kind of a text the owner wrote.
pub const OWNER_REPLY: MessageKind = MessageKind::OwnerReply;

/// Long enough for a read and a write; a crash mid-way frees it soon.
const OWNER_LEASE: Duration = Duration::from_secs(30);

const TAKEN_OVER: &str = "The owner is answering this customer.";

/// The owner's text, queued. The worker's delivery sends it within a
/// poll, or the caller at once with `Engine::deliver`; either way the
/// channel's rules (a WhatsApp window, an opt-out) are judged at the
/// moment of sending.
#[derive(Debug, Clone)]
pub struct OwnerReplied {
    pub state: ConversationState,
    pub message: MessageId,
}

/// The owner takes the conversation from the assistant, which stays
/// silent until it is handed back (or `handoff_days` pass). Taking a
/// conversation the owner already has changes nothing.
pub async fn take_over(
    store: &dyn Store,
    id: ConversationId,
    now: DateTime<Utc>,
) -> Result<ConversationState, DeskError> {
    with_lease(store, id, async {
        let turn = read(store, id).await?;
        let next = taken_over(turn.state.clone(), now)?;
        if next != turn.state {
            store.commit_owner_action(id, &next, None).await?;
        }
        Ok(next)
    })
    .await
}

/// The owner gives the conversation back: the assistant answers the
/// customer's next text, starting from the job described so far.
pub async fn hand_back(store: &dyn Store, id: ConversationId) -> Result<ConversationState, DeskError> {
    with_lease(store, id, async {
        let turn = read(store, id).await?;
        let next = transition(turn.state, Event::HandBack)?;
        store.commit_owner_action(id, &next, None).await?;
        Ok(next)
    })
    .await
}

/// The owner texts the customer. Writing to a customer is taking the
/// conversation: the assistant does not answer over the owner.
pub async fn send_owner_reply(
    store: &dyn Store,
    id: ConversationId,
    text: &str,
    now: DateTime<Utc>,
) -> Result<OwnerReplied, DeskError> {
    let body = text.trim();
    if body.is_empty() {
        return Err(DeskError::EmptyText);
    }
    with_lease(store, id, async {
        let turn = read(store, id).await?;
        if turn.conversation.opted_out || matches!(turn.state, ConversationState::OptedOut(_)) {
            return Err(DeskError::OptedOut);
        }
        let next = taken_over(turn.state, now)?;
        let draft = OutboundDraft {
            kind: OWNER_REPLY,
            body: body.to_string(),
        };
        let message = store
            .commit_owner_action(id, &next, Some(&draft))
            .await?
            .ok_or(DeskError::Store(StoreError::NotFound("owner's text")))?;
        Ok(OwnerReplied { state: next, message })
    })
    .await
}

/// The state once the owner has the conversation. A closed or cancelled
/// conversation opens again in the owner's hands.
fn taken_over(state: ConversationState, now: DateTime<Utc>) -> Result<ConversationState, DeskError> {
    let state = match state {
        ConversationState::HandedOff(_) => return Ok(state),
        ConversationState::Closed(_) | ConversationState::Cancelled(_) => {
            transition(state, Event::StartOver)?
        }
        other => other,
    };
    Ok(transition(
        state,
        Event::HandOff {
            reason: HandoffReason::OwnerTookOver,
            summary: TAKEN_OVER.into(),
            at: now,
        },
    )?)
}

pub(super) async fn read(store: &dyn Store, id: ConversationId) -> Result<TurnInput, DeskError> {
    match store.turn_input(id, 0).await {
        Ok(turn) => Ok(turn),
        Err(StoreError::NotFound(_)) => Err(DeskError::UnknownConversation),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn with_lease<T>(
    store: &dyn Store,
    id: ConversationId,
    work: impl std::future::Future<Output = Result<T, DeskError>>,
) -> Result<T, DeskError> {
    let holder = format!("owner-{}", uuid::Uuid::new_v4().simple());
    if !store.claim(id, &holder, OWNER_LEASE).await? {
        return Err(DeskError::Busy);
    }
    let outcome = work.await;
    let released = store.release(id, &holder).await;
    let value = outcome?;
    released?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::conversation::{CloseReason, Closed, HandedOff, Intake, JobDetails};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 18, 0, 0).unwrap()
    }

    fn job() -> JobDetails {
        JobDetails {
            size: Some("half_truck".into()),
            ..JobDetails::default()
        }
    }

    #[test]
    fn taking_over_hands_the_job_to_the_owner() {
        let state = taken_over(ConversationState::Intake(Intake { job: job() }), now()).unwrap();
        let ConversationState::HandedOff(h) = &state else {
            panic!("expected HANDED_OFF, got {}", state.name())
        };
        assert_eq!(h.reason, HandoffReason::OwnerTookOver);
        assert_eq!(h.job, job());
        assert_eq!(h.at, now());
    }

    #[test]
    fn taking_over_what_the_owner_has_changes_nothing() {
        let handed = ConversationState::HandedOff(HandedOff {
            reason: HandoffReason::Complaint,
            summary: "unhappy".into(),
            at: now() - chrono::Duration::hours(3),
            job: job(),
        });
        assert_eq!(taken_over(handed.clone(), now()).unwrap(), handed);
    }

    #[test]
    fn a_closed_conversation_opens_again_in_the_owners_hands() {
        let closed = ConversationState::Closed(Closed {
            reason: CloseReason::Expired,
            at: now(),
        });
        assert_eq!(taken_over(closed, now()).unwrap().name(), "HANDED_OFF");
    }
}
