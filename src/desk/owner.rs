//! The owner's side of the desk: take a conversation over, hand it back,
//! reply to the customer. These happen outside any turn, so each holds the
//! conversation's lease while it reads and writes: a turn cannot commit a
//! state built on what the owner just changed.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Booked, DeskError, OwnerAlert, Turn};
use crate::config::business::BusinessConfig;
use crate::domain::conversation::{
    Booking, CancelledBy, ConversationState, Event, HandoffReason, transition,
};
use crate::scheduling::{Offer, Scheduler};
use crate::store::{AlertKind, MessageKind, NewAlert, NewJob, OwnerCommit};
use crate::store::{Conversation, ConversationId, MessageId, OutboundDraft, Store, StoreError, TurnInput};

/// The kind of a text the owner wrote.
pub const OWNER_REPLY: MessageKind = MessageKind::OwnerReply;

/// Twilio's own ceiling is 1,600 characters (ten full segments); the
/// console's counter shows the owner what a text costs before that.
const OWNER_MAX_SEGMENTS: usize = 10;

/// The owner's text as the customer's channel will carry it: GSM-7 for
/// SMS (a curly quote would make it Unicode and double its cost), within
/// the channel's length.
fn as_sent(conversation: &Conversation, body: &str) -> String {
    crate::channel::Channel::of(&conversation.customer_phone).prepare_reply(body, OWNER_MAX_SEGMENTS)
}

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
            store
                .commit_owner_action(id, &OwnerCommit::state(next.clone()))
                .await?;
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
        let commit = OwnerCommit {
            // Handing back answers the hand-off and what the customer
            // texted the owner meanwhile.
            resolve_alerts: vec![
                AlertKind::Handoff,
                AlertKind::HandedOffText,
                AlertKind::ApprovalTimedOut,
            ],
            ..OwnerCommit::state(next.clone())
        };
        store.commit_owner_action(id, &commit).await?;
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
        let commit = OwnerCommit {
            text: Some(OutboundDraft {
                kind: OWNER_REPLY,
                body: as_sent(&turn.conversation, body),
            }),
            ..OwnerCommit::state(next.clone())
        };
        let message = store
            .commit_owner_action(id, &commit)
            .await?
            .ok_or(DeskError::Store(StoreError::NotFound("owner's text")))?;
        Ok(OwnerReplied { state: next, message })
    })
    .await
}

/// The owner's text, to go out at a later moment (quiet hours: the next
/// allowed one). Like sending it now, writing it takes the conversation;
/// `hold` makes the job that sends it (the job queue is the caller's), so
/// an opt-out meanwhile is judged when it runs.
pub async fn schedule_owner_reply(
    store: &dyn Store,
    id: ConversationId,
    text: &str,
    now: DateTime<Utc>,
    hold: impl FnOnce(&Conversation, &str) -> NewJob,
) -> Result<ConversationState, DeskError> {
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
        let commit = OwnerCommit {
            jobs: vec![hold(&turn.conversation, &as_sent(&turn.conversation, body))],
            ..OwnerCommit::state(next.clone())
        };
        store.commit_owner_action(id, &commit).await?;
        Ok(next)
    })
    .await
}

/// What the owner does to a booking from the console, through the same
/// desk operations the assistant uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingChange {
    Cancel,
    /// Start moving the booking: openings from the scheduler are held and
    /// offered (to the owner on the page, and to the customer if they text).
    OfferNewTimes,
    /// Move the booking to the offered opening with this number.
    MoveTo(u8),
}

#[derive(Debug, Clone)]
pub enum BookingChanged {
    Cancelled(Box<Booking>),
    Offered(Offer),
    Moved(Box<Booked>),
}

/// What a booking change sets in motion beyond the state (reminders, the
/// crew's emails, the customer's confirmation), planned by the caller from
/// the state before and after: the desk knows no job kinds.
#[derive(Debug, Default)]
pub struct FollowUp {
    pub jobs: Vec<NewJob>,
    pub cancel_jobs: Vec<String>,
    pub text: Option<OutboundDraft>,
}

/// Cancels, offers new times for, or moves the conversation's booking
/// for the owner: `cancel`, `reschedule` and `book` on a turn of the
/// owner's, committed under the lease with the quotes, alerts and
/// follow-up work it caused. The text committed with it is returned, for
/// the caller to deliver.
pub async fn change_booking(
    store: &dyn Store,
    business: &BusinessConfig,
    scheduler: &Scheduler,
    id: ConversationId,
    change: BookingChange,
    now: DateTime<Utc>,
    follow_up: impl FnOnce(&TurnInput, &ConversationState, &ConversationState) -> FollowUp,
) -> Result<(BookingChanged, Option<MessageId>), DeskError> {
    with_lease(store, id, async {
        let input = read(store, id).await?;
        let before = input.state.clone();
        let mut state = input.state.clone();
        let mut new_quotes = Vec::new();
        let mut alerts: Vec<OwnerAlert> = Vec::new();
        let mut turn = Turn {
            business,
            conversation: &input.conversation,
            now,
            state: &mut state,
            new_quotes: &mut new_quotes,
            alerts: &mut alerts,
        };
        let outcome = match change {
            BookingChange::Cancel => super::cancel(&mut turn, scheduler, CancelledBy::Owner)
                .await
                .map(|booking| BookingChanged::Cancelled(Box::new(booking))),
            BookingChange::OfferNewTimes => {
                if matches!(&*turn.state, ConversationState::HandedOff(h) if h.booked.is_some()) {
                    return Err(DeskError::NotAllowed(
                        "you have this conversation: hand it back to move the booking".into(),
                    ));
                }
                if !matches!(&*turn.state, ConversationState::Booked(_)) {
                    return Err(DeskError::NotAllowed("there is no booking to move".into()));
                }
                let (filter, looked_for) = super::read_preference(business, now, None);
                super::reschedule(&mut turn, scheduler, &filter, &looked_for)
                    .await
                    .map(BookingChanged::Offered)
            }
            BookingChange::MoveTo(slot) => {
                if !matches!(&*turn.state, ConversationState::Scheduling(s) if s.rescheduling.is_some()) {
                    return Err(DeskError::NotAllowed(
                        "no new times are on offer: ask for new times first".into(),
                    ));
                }
                super::book(&mut turn, scheduler, slot)
                    .await
                    .map(|booked| BookingChanged::Moved(Box::new(booked)))
            }
        };
        // A calendar failure raised its alert: it is stored (the booking
        // needs following up) though nothing else changed. Not emailed or
        // texted: the owner is looking at the page that says so.
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                let contact = crate::jobs::plan::CustomerContact::of(&input, &state);
                for alert in &alerts {
                    let detail = contact.reveal(&alert.detail);
                    store.record_alert(&alert.kind, Some(id), &detail).await?;
                    crate::jobs::turns::stored_alert(&alert.kind, &contact.redact(&detail), Some(id.0));
                }
                return Err(e);
            }
        };
        let planned = follow_up(&input, &before, &state);
        let commit = OwnerCommit {
            state,
            text: planned.text,
            new_quotes,
            alerts: alerts
                .into_iter()
                .map(|a| NewAlert {
                    kind: a.kind,
                    detail: a.detail,
                })
                .collect(),
            jobs: planned.jobs,
            cancel_jobs: planned.cancel_jobs,
            resolve_alerts: Vec::new(),
        };
        let text = store.commit_owner_action(id, &commit).await?;
        for alert in &commit.alerts {
            crate::meters::alert(&alert.kind);
        }
        Ok((outcome, text))
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
            booked: None,
        });
        assert_eq!(taken_over(handed.clone(), now()).unwrap(), handed);
    }

    #[test]
    fn a_closed_conversation_opens_again_in_the_owners_hands() {
        let closed = ConversationState::Closed(Closed {
            reason: CloseReason::Expired,
            at: now(),
            job: None,
            quote: None,
        });
        assert_eq!(taken_over(closed, now()).unwrap().name(), "HANDED_OFF");
    }
}
