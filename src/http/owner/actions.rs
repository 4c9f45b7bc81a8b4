//! The owner's actions on a conversation: take over, hand back, reply,
//! move or cancel the booking. Each calls the desk's operation (never a
//! second implementation), then sends the owner back to the conversation
//! (303) with a notice in the session, worded here.

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use super::views;
use crate::channel::Channel;
use crate::config::business::BusinessConfig;
use crate::desk::{self, BookingChange, BookingChanged, DeskError, FollowUp};
use crate::domain::conversation::ConversationState;
use crate::domain::sms_text::{Encoding, normalize_gsm7, segment_info};
use crate::http::AppState;
use crate::jobs::payload::{DeferredReply, JobPayload, JobTarget};
use crate::jobs::plan;
use crate::jobs::turns::Engine;
use crate::scheduling::SchedulingError;
use crate::store::{ConversationId, OutboundDraft};

/// Session keys: the notice the next view of a conversation shows, and a
/// reply that was not sent, kept for the owner to send later or edit.
const NOTICE: &str = "actions_notice";
const DRAFT: &str = "actions_draft";

/// What the owner is told after an action.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notice {
    pub conversation: i64,
    pub error: bool,
    pub text: String,
}

/// What the conversation page offers the owner to do.
pub struct ActionsView {
    pub notice: Option<Notice>,
    /// The owner has the conversation: hand back; otherwise take over.
    pub with_owner: bool,
    /// Why the customer cannot be texted, when they cannot.
    pub cannot_text: Option<&'static str>,
    /// Quiet hours now: when the reply may go out instead.
    pub send_at: Option<String>,
    /// The reply the owner wrote and did not send.
    pub draft: String,
    /// The counter, as the server counts the draft (JavaScript keeps it
    /// current while typing).
    pub counter: String,
    /// A booking stands (it can be cancelled).
    pub booked: Option<String>,
    /// It can be moved too: the booking flow has the conversation.
    pub movable: bool,
    /// New times the scheduler offered for the booking: (number, label).
    pub openings: Vec<(u8, String)>,
}

/// "12 characters · GSM-7 · 1 text": what a text costs, as
/// `static/reply-counter.js` says it too.
pub fn counter(text: &str) -> String {
    let normalized = normalize_gsm7(text);
    let info = segment_info(&normalized);
    let encoding = match info.encoding {
        Encoding::Gsm7 => "GSM-7",
        Encoding::Ucs2 => "Unicode",
    };
    let chars = normalized.chars().count();
    format!(
        "{chars} character{} · {encoding} · {} text{}",
        if chars == 1 { "" } else { "s" },
        info.segments,
        if info.segments == 1 { "" } else { "s" }
    )
}

/// Keeps the reply counter current while the owner types; the page works
/// without it.
pub(super) async fn counter_script() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../templates/owner/reply-counter.js"),
    )
}

/// When quiet hours keep a text from this customer's phone: the next
/// moment one may go out.
fn quiet_until(business: &BusinessConfig, address: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !Channel::of_address(address).observes_quiet_hours() {
        return None;
    }
    let allowed = business.quiet_hours.next_allowed(now, business.business.timezone);
    (allowed > now).then_some(allowed)
}

fn send_at_label(business: &BusinessConfig, at: DateTime<Utc>) -> String {
    let tz = business.business.timezone;
    format!("{} ({})", views::local_time(at, tz), tz.name())
}

/// The actions panel of a conversation's page; takes the notice and the
/// unsent draft out of the session.
pub(super) async fn panel(
    session: &Session,
    id: ConversationId,
    business: Option<&BusinessConfig>,
    address: &str,
    opted_out: bool,
    state: Option<&ConversationState>,
    now: DateTime<Utc>,
) -> ActionsView {
    let notice = session
        .remove::<Notice>(NOTICE)
        .await
        .ok()
        .flatten()
        .filter(|n| n.conversation == id.0);
    let draft = session
        .remove::<(i64, String)>(DRAFT)
        .await
        .ok()
        .flatten()
        .filter(|(conversation, _)| *conversation == id.0)
        .map(|(_, text)| text)
        .unwrap_or_default();
    let opted_out = opted_out || matches!(state, Some(ConversationState::OptedOut(_)));
    let booked = state
        .and_then(ConversationState::standing_booking)
        .map(|b| b.slot.label.clone());
    // Moving is the booking flow's (openings offered, one picked): not while
    // the owner has the conversation, nor for a customer who opted out.
    let movable = matches!(
        state,
        Some(ConversationState::Booked(_) | ConversationState::Scheduling(_))
    );
    let openings = match state {
        Some(ConversationState::Scheduling(s)) if s.rescheduling.is_some() => {
            s.offered.iter().map(|o| (o.id, o.numbered(&s.quote))).collect()
        }
        _ => Vec::new(),
    };
    ActionsView {
        notice,
        with_owner: matches!(state, Some(ConversationState::HandedOff(_))),
        cannot_text: opted_out.then_some(
            "This customer opted out of texts (they sent STOP). textdesk will not text them until they send START.",
        ),
        send_at: business
            .and_then(|b| quiet_until(b, address, now).map(|at| send_at_label(b, at))),
        counter: counter(&draft),
        draft,
        booked,
        movable,
        openings,
    }
}

fn back(id: ConversationId) -> Response {
    Redirect::to(&format!("/owner/conversations/{}", id.0)).into_response()
}

async fn tell(session: &Session, id: ConversationId, error: bool, text: impl Into<String>) -> Response {
    let notice = Notice {
        conversation: id.0,
        error,
        text: text.into(),
    };
    if let Err(e) = session.insert(NOTICE, &notice).await {
        tracing::warn!(error = %e, "console: could not keep a notice");
    }
    back(id)
}

/// The conversation and its business's engine, or the response that says
/// why not (404 for an id that is not a conversation).
async fn open(state: &AppState, raw: &str) -> Result<(ConversationId, Arc<Engine>), Response> {
    let not_found = || views::error_page(StatusCode::NOT_FOUND, "There is no such conversation.");
    let id = raw
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(ConversationId)
        .ok_or_else(not_found)?;
    let business = match state.store.conversation_business(id).await {
        Ok(Some(business)) => business,
        Ok(None) => return Err(not_found()),
        Err(e) => {
            tracing::error!(error = %e, "console: could not read a conversation");
            return Err(views::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Try again in a moment.",
            ));
        }
    };
    let engine = state.desks.engine(&business).ok_or_else(|| {
        views::error_page(
            StatusCode::CONFLICT,
            "This conversation's business is no longer in the configuration.",
        )
    })?;
    Ok((id, engine))
}

/// A desk refusal in the owner's words.
fn words(e: &DeskError) -> String {
    match e {
        DeskError::OptedOut => {
            "Not sent: this customer opted out of texts (they sent STOP). textdesk will not text them.".into()
        }
        DeskError::EmptyText => "Not sent: the text is empty.".into(),
        DeskError::Busy => {
            "The assistant is answering this customer right now. Try again in a moment.".into()
        }
        DeskError::Scheduling(SchedulingError::Taken(_)) => {
            "That opening was just taken. Pick another, or ask for new times.".into()
        }
        DeskError::Scheduling(other) => {
            format!("The calendar could not do it: {other}. You have an alert about it.")
        }
        DeskError::NotOffered { .. } => "That opening is no longer on offer. Ask for new times.".into(),
        DeskError::Store(_) => "Something went wrong. Try again in a moment.".into(),
        other => format!("Not done: {other}."),
    }
}

async fn refused(session: &Session, id: ConversationId, e: DeskError) -> Response {
    match e {
        DeskError::UnknownConversation => {
            views::error_page(StatusCode::NOT_FOUND, "There is no such conversation.")
        }
        e => {
            if matches!(e, DeskError::Store(_)) {
                tracing::error!(error = %e, "console: an action failed");
            }
            tell(session, id, true, words(&e)).await
        }
    }
}

pub(super) async fn take_over(
    State(state): State<AppState>,
    session: Session,
    Path(raw): Path<String>,
) -> Response {
    let (id, _) = match open(&state, &raw).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match desk::take_over(state.store.as_ref(), id, state.owner.clock.now()).await {
        Ok(_) => {
            tell(
                &session,
                id,
                false,
                "You have this conversation: the assistant stays silent until you hand it back.",
            )
            .await
        }
        Err(e) => refused(&session, id, e).await,
    }
}

pub(super) async fn hand_back(
    State(state): State<AppState>,
    session: Session,
    Path(raw): Path<String>,
) -> Response {
    let (id, _) = match open(&state, &raw).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match desk::hand_back(state.store.as_ref(), id).await {
        Ok(_) => {
            tell(
                &session,
                id,
                false,
                "Handed back: the assistant answers this customer's next text.",
            )
            .await
        }
        Err(DeskError::NotAllowed(_)) => {
            tell(
                &session,
                id,
                true,
                "This conversation is not with you, so there is nothing to hand back.",
            )
            .await
        }
        Err(e) => refused(&session, id, e).await,
    }
}

#[derive(Deserialize)]
pub(super) struct ReplyForm {
    #[serde(default)]
    body: String,
    /// `later`: at the end of quiet hours.
    #[serde(default)]
    send: String,
}

pub(super) async fn reply(
    State(state): State<AppState>,
    session: Session,
    Path(raw): Path<String>,
    Form(form): Form<ReplyForm>,
) -> Response {
    let (id, engine) = match open(&state, &raw).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let now = state.owner.clock.now();
    let store = state.store.as_ref();
    let address = match store.turn_input(id, 0).await {
        Ok(turn) => turn.conversation.customer_phone,
        Err(e) => return refused(&session, id, DeskError::Store(e)).await,
    };
    let business = &engine.business;
    let outcome = match quiet_until(business, address.as_str(), now) {
        Some(at) if form.send == "later" => {
            let hold = |conversation: &crate::store::Conversation, body: &str| {
                JobPayload::OwnerReply(DeferredReply {
                    body: body.to_string(),
                })
                .job(JobTarget {
                    dedupe_key: format!("ownerreply:{}:{}", id.0, now.timestamp_millis()),
                    conversation_id: Some(conversation.id),
                    customer_id: Some(conversation.customer_id),
                    recipient: conversation.customer_phone.as_str().to_string(),
                    run_at: at,
                    max_attempts: 5,
                })
            };
            desk::schedule_owner_reply(store, id, &form.body, now, hold)
                .await
                .map(|_| format!("Scheduled: your text goes out {}.", send_at_label(business, at)))
        }
        Some(at) if !form.body.trim().is_empty() => {
            keep_draft(&session, id, &form.body).await;
            return tell(
                &session,
                id,
                true,
                format!(
                    "Not sent: it is quiet hours for this customer. Choose \"Send at {}\" to send it then.",
                    send_at_label(business, at)
                ),
            )
            .await;
        }
        _ => match desk::send_owner_reply(store, id, &form.body, now).await {
            Ok(replied) => {
                // Delivered now; if this fails, the worker's delivery sends it.
                if let Err(e) = engine.dispatcher.deliver(business, replied.message).await {
                    tracing::warn!(error = %e, "console: the owner's text waits for the worker");
                }
                Ok("Sent. Its delivery status shows in the thread; the assistant stays silent until you hand back.".to_string())
            }
            Err(e) => Err(e),
        },
    };
    match outcome {
        Ok(text) => tell(&session, id, false, text).await,
        Err(e) => {
            if !matches!(e, DeskError::OptedOut | DeskError::EmptyText) {
                keep_draft(&session, id, &form.body).await;
            }
            refused(&session, id, e).await
        }
    }
}

async fn keep_draft(session: &Session, id: ConversationId, body: &str) {
    if let Err(e) = session.insert(DRAFT, (id.0, body)).await {
        tracing::warn!(error = %e, "console: could not keep the owner's draft");
    }
}

/// How the customer hears of a change the owner made to their booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    /// The change needs no text (new times offered, nothing moved yet).
    Nothing,
    /// Texted now.
    Now,
    /// Texted when quiet hours end, if the change still stands then;
    /// `late`: the booking starts before that.
    At { at: DateTime<Utc>, late: bool },
    /// They opted out of texts: the owner has to tell them.
    OptedOut,
    /// A web chat visitor: by text to the phone they verified, as their
    /// reminders go (the chat page is rarely open).
    ToVerifiedPhone,
}

/// Reminders, the crew's emails and the customer's news of a booking the
/// owner changed: what a turn would plan for the same change, plus the text
/// a turn would have answered with (a move's confirmation, a
/// cancellation's notice), held for the end of quiet hours at night.
fn follow_up<'a>(
    engine: &'a Engine,
    now: DateTime<Utc>,
    told: &'a mut Told,
) -> impl FnOnce(&crate::store::TurnInput, &ConversationState, &ConversationState) -> FollowUp + 'a {
    move |turn, before, after| {
        let business = &engine.business;
        let scheduler = engine.guided.scheduler.for_business(business);
        let event_link = |booking: &crate::domain::conversation::Booking| scheduler.event_link(booking);
        let planned = plan::plan(before, after, turn, business, now, &event_link);
        let mut follow_up = FollowUp {
            jobs: planned.jobs,
            cancel_jobs: planned.cancel,
            text: None,
        };
        let Some(notice) = plan::owner_change_notice(business, before, after) else {
            *told = Told::Nothing;
            return follow_up;
        };
        // A notice still waiting is about an earlier change: this one
        // supersedes it.
        follow_up.cancel_jobs.push(plan::NOTICE_PREFIX.into());
        let address = &turn.conversation.customer_phone;
        if turn.conversation.opted_out {
            *told = Told::OptedOut;
            return follow_up;
        }
        if address.is_web() {
            // The job finds the verified phone's conversation and waits out
            // quiet hours there.
            follow_up.jobs.push(plan::notice_job(notice, turn, now, now));
            *told = Told::ToVerifiedPhone;
            return follow_up;
        }
        match quiet_until(business, address.as_str(), now) {
            Some(at) => {
                let late = notice.start <= at;
                follow_up.jobs.push(plan::notice_job(notice, turn, now, at));
                *told = Told::At { at, late };
            }
            None => {
                follow_up.text = Some(OutboundDraft {
                    kind: notice.change.message_kind(),
                    body: Channel::of(address).prepare_reply(&notice.body, business.sms.max_segments),
                });
                *told = Told::Now;
            }
        }
        follow_up
    }
}

/// The owner's notice after a booking change: what changed, and whether
/// and when the customer hears of it.
fn booking_changed_notice(business: &BusinessConfig, changed: &BookingChanged, told: Told) -> String {
    let customer = match told {
        Told::Nothing => String::new(),
        Told::Now => " The customer was texted.".into(),
        Told::At { at, late } => format!(
            " It is quiet hours for this customer: they will be texted {}.{}",
            send_at_label(business, at),
            if late {
                " The booking starts before then: call them."
            } else {
                ""
            }
        ),
        Told::OptedOut => " The customer opted out of texts, so they were not told: call them.".into(),
        Told::ToVerifiedPhone => {
            " The customer will be texted at the number they verified (after quiet hours, at night).".into()
        }
    };
    match changed {
        BookingChanged::Cancelled(booking) => format!(
            "Cancelled the booking for {} and removed it from the crew's calendar.{customer}",
            booking.slot.label
        ),
        BookingChanged::Offered(offer) if offer.slots.is_empty() => {
            "The calendar has no openings for this job right now; the booking stands as it was.".into()
        }
        BookingChanged::Offered(_) => {
            "Pick one of the openings below. The booking stands until you move it.".into()
        }
        BookingChanged::Moved(booked) => {
            format!("Moved the booking to {}.{customer}", booked.slot.label)
        }
    }
}

async fn change_booking(state: &AppState, session: &Session, raw: &str, change: BookingChange) -> Response {
    let (id, engine) = match open(state, raw).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let now = state.owner.clock.now();
    let mut told = Told::Nothing;
    let changed = desk::change_booking(
        state.store.as_ref(),
        &engine.business,
        &engine.guided.scheduler,
        id,
        change,
        now,
        follow_up(&engine, now, &mut told),
    )
    .await;
    let (changed, text) = match changed {
        Ok(changed) => changed,
        Err(e) => return refused(session, id, e).await,
    };
    if let Some(message) = text
        && let Err(e) = engine.dispatcher.deliver(&engine.business, message).await
    {
        tracing::warn!(error = %e, "console: the customer's text waits for the worker");
    }
    tell(
        session,
        id,
        false,
        booking_changed_notice(&engine.business, &changed, told),
    )
    .await
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    session: Session,
    Path(raw): Path<String>,
) -> Response {
    change_booking(&state, &session, &raw, BookingChange::Cancel).await
}

#[derive(Deserialize)]
pub(super) struct RescheduleForm {
    /// The offered opening to move to; none: find openings first.
    #[serde(default)]
    slot: Option<String>,
}

pub(super) async fn reschedule(
    State(state): State<AppState>,
    session: Session,
    Path(raw): Path<String>,
    Form(form): Form<RescheduleForm>,
) -> Response {
    let change = match form.slot.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => BookingChange::OfferNewTimes,
        Some(slot) => match slot.parse::<u8>() {
            Ok(n) => BookingChange::MoveTo(n),
            Err(_) => {
                return views::error_page(
                    StatusCode::BAD_REQUEST,
                    "That is not one of the openings offered.",
                );
            }
        },
    };
    change_booking(&state, &session, &raw, change).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_told_how_and_when_the_customer_hears_of_a_change() {
        use crate::domain::conversation::{Booking, OfferedSlot};
        let business = BusinessConfig::default();
        let at: DateTime<Utc> = "2026-12-01T16:00:00Z".parse().unwrap();
        let slot = OfferedSlot {
            id: 1,
            start: at,
            end: at + chrono::Duration::hours(2),
            label: "Tue Dec 1, 8am".into(),
            crew: "crew-1".into(),
            quote: None,
        };
        let booking = Booking {
            id: "b1".into(),
            slot: slot.clone(),
            calendar_event_id: "ev1".into(),
        };
        let moved = BookingChanged::Moved(Box::new(desk::Booked {
            booking: booking.clone(),
            slot,
            total: "350".parse().unwrap(),
        }));
        let cancelled = BookingChanged::Cancelled(Box::new(booking));
        assert_eq!(
            booking_changed_notice(&business, &moved, Told::Now),
            "Moved the booking to Tue Dec 1, 8am. The customer was texted."
        );
        let morning = send_at_label(&business, at);
        assert_eq!(
            booking_changed_notice(&business, &moved, Told::At { at, late: true }),
            format!(
                "Moved the booking to Tue Dec 1, 8am. It is quiet hours for this customer: they will be texted {morning}. The booking starts before then: call them."
            )
        );
        assert!(
            !booking_changed_notice(&business, &cancelled, Told::At { at, late: false })
                .contains("call them")
        );
        assert!(
            booking_changed_notice(&business, &cancelled, Told::OptedOut)
                .ends_with("so they were not told: call them.")
        );
        assert!(
            booking_changed_notice(&business, &cancelled, Told::ToVerifiedPhone)
                .ends_with("texted at the number they verified (after quiet hours, at night).")
        );
    }

    #[test]
    fn the_counter_counts_what_the_customer_will_receive() {
        assert_eq!(counter(""), "0 characters · GSM-7 · 1 text");
        // A curly quote is rewritten, so the text stays GSM-7.
        assert_eq!(counter("it\u{2019}s"), "4 characters · GSM-7 · 1 text");
        assert_eq!(counter(&"a".repeat(161)), "161 characters · GSM-7 · 2 texts");
        assert_eq!(counter("on my way 🚚"), "11 characters · Unicode · 1 text");
        // The cases reply-counter.js was checked against (node), so the two
        // stay one rule: extension characters, UTF-16 units, rewrites.
        assert_eq!(counter("price: 5€ [ok]"), "14 characters · GSM-7 · 1 text");
        assert_eq!(
            counter(&format!("日本{}", "a".repeat(69))),
            "71 characters · Unicode · 2 texts"
        );
        assert_eq!(counter("\u{2014}\u{2026}"), "4 characters · GSM-7 · 1 text");
        assert_eq!(counter(&"a".repeat(307)), "307 characters · GSM-7 · 3 texts");
    }
}
