//! One turn: the customer's unanswered texts in, one reply out.
//!
//! A turn is safe to run again after a crash at any point: the reply is
//! queued in the same transaction that marks the texts answered, keyed on
//! the last text it answers, and delivery claims each queued text once.

use std::sync::Arc;

use chrono::Utc;

use super::dispatch::Dispatcher;
use crate::assistant::guided::GuidedResponder;
use crate::assistant::{Responder, ResponderError};
use crate::channel::Channel;
use crate::clock::Clock;
use crate::config::business::ApprovalPolicy;
use crate::config::business::BusinessConfig;
use crate::desk;
use crate::domain::conversation::{self, ConversationState, Event};
use crate::domain::guardrail::{self, ViolationKind};
use crate::domain::guided;
use crate::domain::keywords::{self, Keyword};
use crate::domain::phone::redact_phone_numbers;
use crate::domain::quote::Quote;
use crate::jobs::payload::{ApprovalTimeout, DeferredReply, JobPayload, JobTarget};
use crate::jobs::plan;
use crate::jobs::verification::Verification;
use crate::store::{
    AlertKind, ConversationId, Direction, FloodReading, FloodWindow, MessageId, MessageKind, ModelCalls,
    NewAlert, NewJob, OutboundDraft, Store, StoreError, TurnCommit, TurnInput, UNSENT_BY_DECISION,
};
use crate::templates;

/// How much of a held reply its alert quotes: the owner's text about it
/// stays within its segments, and the console shows the whole reply.
const APPROVAL_EXCERPT_CHARS: usize = 120;

/// What every turn of every business shares: adapters, never a
/// configuration. Built once at start; a reload leaves it alone.
#[derive(Clone)]
pub struct EngineParts {
    pub store: Arc<dyn Store>,
    /// Claude, or the guided flow when no model is configured.
    pub responder: Arc<dyn Responder>,
    /// Stands in when the responder fails.
    pub guided: GuidedResponder,
    /// The one way a stored text leaves: through its conversation's channel.
    pub dispatcher: Arc<Dispatcher>,
    /// Longest a turn may wait on the responder.
    pub turn_deadline: std::time::Duration,
    /// The only source of "now" for turns, sends and alerts.
    pub clock: Arc<dyn Clock>,
    /// Web chat sessions, for a web visitor's phone verification
    /// (`jobs::verification`); `None` where there is no web chat (a
    /// rehearsal).
    pub webchat: Option<Arc<dyn crate::store::webchat::WebChatStore>>,
}

/// One turn's engine: the shared parts, and the business's configuration
/// as the turn started, taken once from the directory and kept to the
/// turn's end (a reload meanwhile serves the next turn). Two `Arc`s, so
/// it is made per turn, never cached.
#[derive(Clone)]
pub struct Engine {
    pub parts: Arc<EngineParts>,
    pub business: Arc<BusinessConfig>,
}

impl std::ops::Deref for Engine {
    type Target = EngineParts;

    fn deref(&self) -> &EngineParts {
        &self.parts
    }
}

/// What a turn did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnResult {
    NothingPending,
    /// `None` when a rerun found its reply already stored.
    Replied(Option<MessageId>),
    /// Nothing to send: STOP or START, or the owner has the conversation.
    Silent,
    /// The sender is flooding and was answered less than a minute ago: the
    /// texts stay pending, and the conversation waits until `until`, when
    /// one turn answers them all.
    Throttled {
        until: chrono::DateTime<Utc>,
    },
}

/// More texts than this within `FLOOD_WINDOW` is a flood.
pub const FLOOD_TEXTS: usize = 20;
pub const FLOOD_WINDOW: chrono::Duration = chrono::Duration::minutes(1);
/// A throttled conversation is answered at most this often.
pub const THROTTLED_REPLY_INTERVAL: chrono::Duration = chrono::Duration::minutes(1);
/// Whether, and why, a conversation's sender is throttled this turn.
struct Throttle {
    /// More than `FLOOD_TEXTS` texts within `FLOOD_WINDOW`.
    flooding: bool,
    /// The customer's model calls today reached the business's budget.
    budget_spent: bool,
    /// Throttled and answered too recently: wait until then.
    wait_until: Option<chrono::DateTime<Utc>>,
    /// The owner has not yet heard about this sender today.
    alert_owner: bool,
    /// Today, in the business's time zone: the model budget's day.
    day: chrono::NaiveDate,
}

impl Throttle {
    fn throttled(&self) -> bool {
        self.flooding || self.budget_spent
    }
}

/// At most one such text per conversation in this long.
pub const HANDOFF_ACK_INTERVAL: chrono::Duration = chrono::Duration::hours(4);

/// How code, not the assistant, answers a compliance keyword.
enum KeywordAction {
    Silent,
    Reply(OutboundDraft),
}

impl Engine {
    /// Runs a turn. The caller holds the conversation's lease.
    #[tracing::instrument(name = "turn", skip_all, fields(conversation = id.0))]
    pub async fn run_turn(&self, id: ConversationId) -> Result<TurnResult, StoreError> {
        let history_limit = self.business.assistant.history_messages;
        let now = self.clock.now();
        let (window, day) = self.flood_window(now);
        // The flood reading comes with the turn's input: one read, not two.
        let (mut turn, reading) = self
            .store
            .turn_input_with_flood(id, history_limit, &window)
            .await?;
        // Replies held for the owner, or rejected or expired, never reached
        // the customer: the assistant must not read them as said.
        turn.history.retain(|m| {
            m.direction == Direction::Inbound || !UNSENT_BY_DECISION.contains(&m.status.as_str())
        });
        let Some(last) = turn.pending.last().map(|m| m.id) else {
            return Ok(TurnResult::NothingPending);
        };
        let throttle = self.throttle(&reading, day, now);
        if let Some(until) = throttle.wait_until
            && !changes_consent(&turn)
        {
            tracing::info!(
                customer = %turn.conversation.customer_phone.masked(),
                texts = turn.pending.len(),
                %until,
                "sender throttled; their texts wait for one answer"
            );
            if throttle.alert_owner {
                // Now, not with the answer a minute from now.
                let contact = plan::CustomerContact::of(&turn, &turn.state);
                let detail = self.flood_alert(&throttle, &contact.describe());
                self.alert_about(AlertKind::FloodThrottled, Some(id), &detail, Some(&contact))
                    .await;
            }
            return Ok(TurnResult::Throttled { until });
        }
        let mut state = conversation::on_customer_text(
            turn.state.clone(),
            now,
            turn.last_activity,
            self.business.conversation.lifetimes(),
        );
        if let Some(name) = &turn.conversation.profile_name {
            state.name_customer_if_unknown(name);
        }
        tracing::info!(
            customer = %turn.conversation.customer_phone.masked(),
            texts = turn.pending.len(),
            state = state.name(),
            "turn started"
        );
        // Alerts name the customer in full: the owner must be able to call.
        let contact = plan::CustomerContact::of(&turn, &state);
        let customer = contact.describe();
        let mut alerts: Vec<NewAlert> = Vec::new();
        if throttle.alert_owner {
            alerts.push(NewAlert {
                kind: AlertKind::FloodThrottled,
                detail: self.flood_alert(&throttle, &customer),
            });
        }
        let follow_up_may_be_pending = plan::may_have_follow_up(&state);
        let commit = |reply: Option<OutboundDraft>,
                      state: ConversationState,
                      new_quotes: Vec<Quote>,
                      alerts: Vec<NewAlert>| TurnCommit {
            through: last,
            reply,
            held: None,
            state,
            new_quotes,
            alerts: alerts
                .into_iter()
                .map(|a| NewAlert {
                    kind: a.kind,
                    detail: contact.reveal(&a.detail),
                })
                .collect(),
            jobs: Vec::new(),
            model_calls: None,
            spoken: None,
            // The customer texted: a pending nudge on their quote is moot.
            cancel_jobs: if follow_up_may_be_pending {
                vec!["followup:".into()]
            } else {
                Vec::new()
            },
        };
        let landed = state.clone();

        let booked_before = match &state {
            // Already out: a second STOP is no news.
            ConversationState::OptedOut(_) => None,
            standing => standing.standing_booking().map(|b| b.slot.label.clone()),
        };
        if let Some(action) = self
            .handle_keywords(&turn, &mut state, booked_before.as_deref(), now)
            .await?
        {
            if let (Some(label), ConversationState::OptedOut(_)) = (&booked_before, &state) {
                // A texted STOP (or CANCEL) ends texts, not the job: the
                // owner must call to confirm or cancel it.
                alerts.push(NewAlert {
                    kind: AlertKind::OptedOutWithBooking,
                    detail: format!(
                        "Customer {customer} opted out of texts but is booked for {label}. The booking stands; call them to confirm or cancel."
                    ),
                });
            }
            return match action {
                KeywordAction::Silent => {
                    self.conclude_about(id, commit(None, state, Vec::new(), alerts), Some(&contact))
                        .await?;
                    Ok(TurnResult::Silent)
                }
                KeywordAction::Reply(draft) => {
                    let reply = self
                        .conclude_about(id, commit(Some(draft), state, Vec::new(), alerts), Some(&contact))
                        .await?;
                    Ok(TurnResult::Replied(reply))
                }
            };
        }
        if self.business.business.owner_phone.as_ref() == Some(&turn.conversation.customer_phone) {
            // The owner answering one of the alert texts: it shows in the
            // console, and the assistant never treats the owner as a
            // customer (STOP, START and HELP were handled above).
            self.conclude_about(id, commit(None, state, Vec::new(), alerts), None)
                .await?;
            return Ok(TurnResult::Silent);
        }
        if !state.bot_answers() {
            // The owner has this conversation; they hear about every text,
            // in the customer's own words.
            alerts.push(NewAlert {
                kind: AlertKind::HandedOffText,
                detail: format!(
                    "{customer} texted while the conversation is with you: \"{}\"",
                    turn.pending_text()
                ),
            });
            // The customer hears, now and then, that the owner has it, so
            // silence does not read as being ignored.
            let ack = if matches!(state, ConversationState::HandedOff(_))
                && self.replies_allowed(now)
                && !self.acknowledged_since(id, now - HANDOFF_ACK_INTERVAL).await?
            {
                Some(OutboundDraft {
                    kind: MessageKind::HandoffAck,
                    body: templates::handoff_ack(&self.business),
                })
            } else {
                None
            };
            let replied = ack.is_some();
            let reply = self
                .conclude_about(id, commit(ack, state, Vec::new(), alerts), Some(&contact))
                .await?;
            return Ok(if replied {
                TurnResult::Replied(reply)
            } else {
                TurnResult::Silent
            });
        }

        // While a reply waits for the owner, the customer gets nothing
        // more: their texts are kept for the owner to read before deciding.
        // (The one read approval adds to a turn, and only when it is on.)
        let approval = self.business.assistant.approval;
        if !approval.is_off() && self.store.held_reply(id).await?.is_some() {
            alerts.push(NewAlert {
                kind: AlertKind::ApprovalNeeded,
                detail: format!(
                    "{customer} texted while a reply waits for your approval: \"{}\"",
                    turn.pending_text()
                ),
            });
            self.conclude_about(id, commit(None, state, Vec::new(), alerts), Some(&contact))
                .await?;
            return Ok(TurnResult::Silent);
        }

        // A web visitor typing a phone number or the code texted to it:
        // answered by code, before the responder.
        let mut book_picked = None;
        if turn.conversation.customer_phone.is_web() {
            match self.web_verification(&turn, &mut state, now).await? {
                Some(Verification::Answer(answer)) => {
                    let mut done = commit(Some(answer.draft), state, Vec::new(), alerts);
                    done.jobs.extend(answer.jobs);
                    let reply = self.conclude_about(id, done, Some(&contact)).await?;
                    return Ok(TurnResult::Replied(reply));
                }
                // Verified, with an opening picked before: the booking is
                // the turn (code books it, with no model call).
                Some(Verification::BookPicked(slot)) => book_picked = Some(slot),
                None => {}
            }
        }

        // Answers to a reminder ("C" to confirm, "R" to reschedule) are
        // handled by code, with no model round trip.
        let latest = turn.pending.last().map(|m| m.body.as_str()).unwrap_or("");
        let by_code = matches!(state, ConversationState::Booked(_))
            && (guided::is_confirm(latest) || guided::wants_reschedule(latest));
        // A throttled sender's model calls wait: the guided flow answers.
        let responder: &dyn Responder = if by_code || throttle.throttled() {
            &self.guided
        } else {
            self.responder.as_ref()
        };
        let (drafted, metered) = match book_picked {
            Some(slot) => {
                let booked = self
                    .guided
                    .book_picked(&self.business, &turn, state.clone(), now, slot)
                    .await;
                (Ok(booked), Default::default())
            }
            None => {
                let (drafted, metered) = crate::assistant::metering_model_calls(tokio::time::timeout(
                    self.turn_deadline,
                    responder.respond(&self.business, &turn, state.clone()),
                ))
                .await;
                let drafted = drafted.unwrap_or(Err(ResponderError::DeadlineExceeded(self.turn_deadline)));
                (drafted, metered)
            }
        };
        if metered.calls > 0 {
            // Model round trips per customer text: the seconds a customer
            // waits (issue 11 asks for at most 2 for a quote or a booking).
            metrics::histogram!(crate::meters::MODEL_CALLS_PER_TURN).record(f64::from(metered.calls));
        }
        let model_calls = metered.calls;
        // Counted, with the tokens they spent, in the turn's own commit (no
        // write of their own). A turn that crashes before its commit loses
        // its usage figure; the rerun's own is stored.
        let model_calls = (model_calls > 0).then_some(ModelCalls {
            customer: turn.conversation.customer_id,
            day: throttle.day,
            calls: model_calls,
            tokens: metered.usage.into(),
        });
        let (mut draft, kind) = match drafted {
            Ok(draft) if book_picked.is_some() => (draft, MessageKind::Guided),
            Ok(draft) => (draft, MessageKind::Reply),
            Err(e) => {
                tracing::error!(error = %e, "no reply from the model; the guided flow answers");
                // What the model already did (a quote, a hand-off) stands;
                // the guided flow goes on from there.
                let (partial, e) = e.into_partial();
                let from_state = partial
                    .as_ref()
                    .map_or_else(|| state.clone(), |p| p.state.clone());
                let mut guided = self
                    .guided
                    .draft(&self.business, &turn, from_state, now, true)
                    .await;
                if let Some(partial) = partial {
                    let mut quotes = partial.new_quotes;
                    quotes.append(&mut guided.new_quotes);
                    guided.new_quotes = quotes;
                    let mut raised = partial.alerts;
                    raised.append(&mut guided.alerts);
                    guided.alerts = raised;
                }
                alerts.push(NewAlert {
                    kind: AlertKind::ModelUnavailable,
                    detail: format!(
                        "Could not reach the model for {customer} ({} text(s)): {e}. The guided flow answered instead.",
                        turn.pending.len()
                    ),
                });
                (guided, MessageKind::Guided)
            }
        };

        // Prices that openings carry (a weekend rate) are this conversation's
        // quotes, whichever responder offered them.
        if let ConversationState::Scheduling(s) = &draft.state {
            for quote in s.offered.iter().filter_map(|o| o.quote.as_ref()) {
                if !turn
                    .quotes
                    .iter()
                    .chain(&draft.new_quotes)
                    .any(|q| q.id == quote.id)
                {
                    draft.new_quotes.push(quote.clone());
                }
            }
        }
        // What this turn sets in motion: reminders, provider emails, a
        // follow-up; and a booking's facts stated by code, sent instead of
        // the draft.
        let scheduler = self.guided.scheduler.for_business(&self.business);
        let event_link = |booking: &crate::domain::conversation::Booking| scheduler.event_link(booking);
        let mut planned = plan::plan(&landed, &draft.state, &turn, &self.business, now, &event_link);
        let (mut kind, text) = match &planned.confirmation {
            Some(text) => (MessageKind::Confirmation, text.clone()),
            None => (kind, draft.text.clone()),
        };
        let channel = Channel::of(&turn.conversation.customer_phone);
        // Words our code wrote (no model call made them) say what a web
        // visitor does in the chat, not by text.
        let by_code = model_calls.is_none() || kind != MessageKind::Reply;
        let text = if channel == Channel::Web && by_code {
            crate::channel::webchat::web_wording(&text)
        } else {
            text
        };

        // The guardrail, last line: whatever drafted it, the reply as it will
        // be sent (whole, before the provider splits it into texts) states only
        // facts of this conversation after the turn.
        let mut body = channel.prepare_reply(&text, self.business.sms.max_segments);
        let violations = guardrail::check(&body, &self.guardrail_facts(&state, &draft, &turn, now));
        if !violations.is_empty() {
            let state_before_fallback = draft.state.clone();
            let mut text = self.templated_fallback(&turn, &state, &mut draft, now);
            if channel == Channel::Web {
                text = crate::channel::webchat::web_wording(&text);
            }
            body = channel.prepare_reply(&text, self.business.sms.max_segments);
            kind = MessageKind::Templated;
            let money = violations.iter().any(|v| {
                matches!(
                    v.kind,
                    ViolationKind::Price | ViolationKind::Amount | ViolationKind::Percent
                )
            });
            alerts.push(NewAlert {
                kind: if money {
                    AlertKind::PriceGuardrail
                } else {
                    AlertKind::FactGuardrail
                },
                detail: format!(
                    "A drafted reply to {customer} was not sent: {}. Sent instead: \"{body}\"",
                    guardrail::describe(&violations)
                ),
            });
            let still = guardrail::check(&body, &self.guardrail_facts(&state, &draft, &turn, now));
            if !still.is_empty() {
                tracing::error!(violations = %guardrail::describe(&still), "the code-stated fallback fails the guardrail");
            }
            if draft.state != state_before_fallback {
                planned = plan::plan(&landed, &draft.state, &turn, &self.business, now, &event_link);
            }
        }
        alerts.extend(draft.alerts.iter().map(|a| NewAlert {
            kind: a.kind.clone(),
            detail: a.detail.clone(),
        }));

        let mut commit = commit(None, draft.state, draft.new_quotes, alerts);
        commit.model_calls = model_calls;
        commit.jobs = planned.jobs;
        commit.cancel_jobs = planned.cancel;
        let quiet = &self.business.quiet_hours;
        let tz = self.business.business.timezone;
        let new_totals: Vec<_> = commit.new_quotes.iter().map(|q| q.total).collect();
        let received = turn
            .history
            .iter()
            .filter(|m| m.direction == Direction::Outbound)
            .map(|m| m.body.as_str());
        if approval.holds(&body, &new_totals, received) {
            self.hold_for_approval(&mut commit, &turn, &customer, OutboundDraft { kind, body }, now);
            let reply = self.conclude_about(id, commit, Some(&contact)).await?;
            return Ok(if reply.is_some() {
                TurnResult::Replied(reply)
            } else {
                TurnResult::Silent
            });
        }
        if channel.observes_quiet_hours() && !quiet.replies_allowed && quiet.is_quiet(now, tz) {
            // The owner keeps even replies out of quiet hours: this one waits.
            let held = JobPayload::DeferredReply(DeferredReply { body });
            commit.jobs.push(held.job(JobTarget {
                dedupe_key: format!("reply:{}:{}", id.0, last.0),
                conversation_id: Some(id),
                customer_id: Some(turn.conversation.customer_id),
                recipient: turn.conversation.customer_phone.as_str().to_string(),
                run_at: quiet.next_allowed(now, tz),
                max_attempts: 5,
            }));
        } else {
            commit.reply = Some(OutboundDraft { kind, body });
        }
        let reply = self.conclude_about(id, commit, Some(&contact)).await?;
        Ok(TurnResult::Replied(reply))
    }

    /// Stores the turn's reply held for the owner instead of sending it: the
    /// owner is alerted, the timeout is queued with the turn's commit, and
    /// with `all` the configured holding text goes out now (once per held
    /// reply: no further turn drafts while one waits), outside quiet hours.
    fn hold_for_approval(
        &self,
        commit: &mut TurnCommit,
        turn: &TurnInput,
        customer: &str,
        draft: OutboundDraft,
        now: chrono::DateTime<Utc>,
    ) {
        let assistant = &self.business.assistant;
        let minutes = assistant.approval_timeout_minutes;
        commit.alerts.push(NewAlert {
            kind: AlertKind::ApprovalNeeded,
            // The alert's title already says a reply waits: the detail
            // says for whom, what, and until when, once.
            detail: format!(
                "For {customer} ({} policy); nothing is sent until you decide, and unanswered in {} the conversation is handed to you. The reply: \"{}\"",
                assistant.approval,
                crate::domain::approval::minutes_in_words(minutes),
                crate::domain::approval::excerpt(&draft.body, APPROVAL_EXCERPT_CHARS),
            ),
        });
        let timeout = JobPayload::ApprovalTimeout(ApprovalTimeout {
            answers: commit.through.0,
            minutes,
        });
        commit.jobs.push(timeout.job(JobTarget {
            dedupe_key: format!(
                "{}{}",
                crate::desk::approval::approval_timeout_key_prefix(turn.conversation.id),
                commit.through.0
            ),
            conversation_id: Some(turn.conversation.id),
            customer_id: Some(turn.conversation.customer_id),
            recipient: turn.conversation.customer_phone.as_str().to_string(),
            run_at: now + chrono::Duration::minutes(i64::from(minutes)),
            max_attempts: 10,
        }));
        let holding = assistant
            .approval_holding_text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty() && assistant.approval == ApprovalPolicy::All);
        commit.reply = holding
            .filter(|_| self.replies_allowed(now))
            .map(|text| OutboundDraft {
                kind: MessageKind::HoldingText,
                body: Channel::of(&turn.conversation.customer_phone)
                    .prepare_reply(text, self.business.sms.max_segments),
            });
        commit.held = Some(draft);
    }

    /// What flood throttling reads about a conversation at `now`, and
    /// today in the business's time zone (the model budget's day).
    fn flood_window(&self, now: chrono::DateTime<Utc>) -> (FloodWindow, chrono::NaiveDate) {
        use chrono::TimeZone;
        let tz = self.business.business.timezone;
        let day = now.with_timezone(&tz).date_naive();
        // Midnight may fall in a DST gap: then the day is the last 24 hours.
        let day_start = tz
            .from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
            .earliest()
            .map_or(now - chrono::Duration::hours(24), |t| t.with_timezone(&Utc));
        let window = FloodWindow {
            since: now - FLOOD_WINDOW,
            limit: FLOOD_TEXTS,
            day,
            day_start,
        };
        (window, day)
    }

    /// Whether the sender is flooding or has spent today's model budget,
    /// judged from the store's reading, so neither a restart nor a second
    /// process forgets it.
    fn throttle(
        &self,
        reading: &FloodReading,
        day: chrono::NaiveDate,
        now: chrono::DateTime<Utc>,
    ) -> Throttle {
        let flooding = reading.recent_texts > FLOOD_TEXTS;
        let budget_spent =
            reading.model_calls_today as usize >= self.business.assistant.daily_model_calls_per_customer;
        let throttled = flooding || budget_spent;
        Throttle {
            flooding,
            budget_spent,
            wait_until: reading
                .last_reply_at
                .map(|at| at + THROTTLED_REPLY_INTERVAL)
                .filter(|until| throttled && *until > now),
            alert_owner: throttled && !reading.alerted_today,
            day,
        }
    }

    /// The owner's one alert of the day about a throttled sender.
    fn flood_alert(&self, throttle: &Throttle, customer: &str) -> String {
        let why = if throttle.flooding {
            format!("sent more than {FLOOD_TEXTS} texts in a minute")
        } else {
            format!(
                "used today's {} model calls",
                self.business.assistant.daily_model_calls_per_customer
            )
        };
        format!(
            "{customer} {why}. Every text is kept; while this lasts they are answered at most once a minute, by the guided flow instead of the model. Take the conversation over if it needs a person."
        )
    }

    /// Whether a reply may go out now (quiet hours may hold even replies).
    fn replies_allowed(&self, now: chrono::DateTime<Utc>) -> bool {
        let quiet = &self.business.quiet_hours;
        quiet.replies_allowed || !quiet.is_quiet(now, self.business.business.timezone)
    }

    /// Whether the customer was told the owner has their conversation since
    /// `since`. Read from the stored texts, so a restart changes nothing.
    async fn acknowledged_since(
        &self,
        id: ConversationId,
        since: chrono::DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self
            .store
            .messages(id)
            .await?
            .iter()
            .any(|m| m.kind == MessageKind::HandoffAck && m.created_at >= since))
    }

    /// The facts a reply of this turn may state: the one place the engine
    /// builds them.
    fn guardrail_facts(
        &self,
        before: &ConversationState,
        draft: &crate::assistant::Draft,
        turn: &TurnInput,
        now: chrono::DateTime<Utc>,
    ) -> guardrail::Facts {
        guardrail::Facts::of(
            &self.business.guardrail_terms(),
            before,
            &draft.state,
            turn.quotes.iter().chain(&draft.new_quotes),
            now,
        )
    }

    /// What to say instead of a draft that stated something our code did
    /// not produce: the conversation's facts, stated by code. The booking,
    /// the openings on offer, the current quote; or, if the job is fully
    /// described, a fresh quote; or the next question.
    fn templated_fallback(
        &self,
        turn: &TurnInput,
        before: &ConversationState,
        draft: &mut crate::assistant::Draft,
        now: chrono::DateTime<Utc>,
    ) -> String {
        match &draft.state {
            ConversationState::Booked(b) => {
                return templates::confirmation(&self.business, &b.booking.slot.label, b.quote.total);
            }
            ConversationState::Scheduling(s) if !s.offered.is_empty() => {
                let listed: Vec<String> = s.offered.iter().map(|o| o.numbered(&s.quote)).collect();
                let keep = s
                    .rescheduling
                    .as_ref()
                    .map(|b| format!(" You're still booked for {} until you pick one.", b.slot.label))
                    .unwrap_or_default();
                return format!(
                    "These are the openings we can offer:\n{}\nReply with a number.{keep}",
                    listed.join("\n")
                );
            }
            ConversationState::Cancelled(_) => {
                let which = before.standing_booking();
                return match which {
                    Some(b) => format!(
                        "Your booking for {} is cancelled. Text us any time to book again.",
                        b.slot.label
                    ),
                    None => "Text us any time to book again.".into(),
                };
            }
            ConversationState::HandedOff(_) => {
                return templates::handoff_ack(&self.business);
            }
            _ => {}
        }
        if let Some(quote) = draft.state.quote() {
            return templates::quote_message(&self.business, quote);
        }
        let job = draft.state.job().cloned().unwrap_or_default();
        let kind = self.business.business.kind;
        if let Ok(quote) = desk::issue_quote(&mut draft.desk(&self.business, &turn.conversation, now)) {
            return templates::quote_message(&self.business, &quote);
        }
        match guided::next_question(&job, kind, &self.business.pricing) {
            Some(question) => format!(
                "I can't confirm that until I know a bit more. {}",
                guided::ask(question, &self.business.pricing)
            ),
            None => "I can't confirm that by text yet; the owner will follow up.".into(),
        }
    }

    /// Commits the turn's outcome and sends its reply, if it has one. The
    /// turn's alerts are about `customer`: the owner's emails name them and
    /// link their number; the log masks both.
    pub(crate) async fn conclude_about(
        &self,
        id: ConversationId,
        mut commit: TurnCommit,
        customer: Option<&plan::CustomerContact>,
    ) -> Result<Option<MessageId>, StoreError> {
        // Alerts a person must act on also go to the owner by email (and
        // text, with `owner_phone`).
        let key = format!("{}:{}", id.0, commit.through.0);
        let owner_jobs: Vec<NewJob> = commit
            .alerts
            .iter()
            .flat_map(|a| {
                plan::alert_jobs_about(&self.business, a, Some(id), customer, &key, self.clock.now())
            })
            .collect();
        commit.jobs.extend(owner_jobs);
        let alerts = commit.alerts.clone();
        // Another worker took the conversation over while this turn ran
        // (it stalled past its lease): that worker's turn answers.
        if super::lease::lost() {
            return Err(StoreError::LeaseLost);
        }
        let claimed = self.store.finish_turn(id, commit).await?;
        for alert in &alerts {
            let detail = match customer {
                Some(customer) => customer.redact(&alert.detail),
                None => redact_phone_numbers(&alert.detail),
            };
            stored_alert(&alert.kind, &detail, Some(id.0));
        }
        match claimed {
            Some(sms) => {
                let reply = sms.id;
                // The send is the turn's last step: its record gives the
                // conversation's lease up too.
                let lease = super::lease::current(id);
                self.dispatcher
                    .send_claimed(&self.business, sms, self.clock.now(), lease.as_deref())
                    .await?;
                Ok(Some(reply))
            }
            None => Ok(None),
        }
    }

    /// Applies STOP / START / HELP before anything else sees the texts.
    /// Returns `None` when the turn should go on to the assistant.
    /// `booked` is the customer's booking, which an opt-out leaves standing.
    async fn handle_keywords(
        &self,
        turn: &TurnInput,
        state: &mut ConversationState,
        booked: Option<&str>,
        now: chrono::DateTime<Utc>,
    ) -> Result<Option<KeywordAction>, StoreError> {
        let conversation = &turn.conversation;
        let channel = Channel::of(&conversation.customer_phone);
        if !channel.honours_keywords() {
            return Ok(None);
        }
        let mut opted_out = conversation.opted_out;
        let mut last_keyword = None;
        // Carriers confirm their own keywords; an opt-out in words, nobody does.
        let mut in_words = false;
        for message in &turn.pending {
            // The provider's opt-out service tells us what it understood.
            let keyword = match message
                .opt_out_keyword
                .as_deref()
                .map(str::to_ascii_uppercase)
                .as_deref()
            {
                Some("STOP") => Some(Keyword::OptOut),
                Some("START") => Some(Keyword::OptIn),
                Some("HELP") => Some(Keyword::Help),
                _ => keywords::classify(&message.body, opted_out),
            };
            match keyword {
                // (Only a customer still subscribed can opt out in words.)
                Some(Keyword::OptOutInWords) => {
                    in_words = true;
                    opted_out = true;
                }
                Some(Keyword::OptOut) => {
                    opted_out = true;
                    in_words = false;
                }
                Some(Keyword::OptIn) => {
                    opted_out = false;
                    in_words = false;
                }
                Some(Keyword::Help) | None => {}
            }
            last_keyword = keyword;
        }
        if opted_out != conversation.opted_out {
            self.store
                .set_opted_out(conversation.customer_id, opted_out)
                .await?;
            // STOP drops pending reminders and follow-ups; START restores them.
            self.store
                .suspend_jobs(conversation.customer_id, opted_out)
                .await?;
            tracing::info!(
                customer = %conversation.customer_phone.masked(),
                opted_out,
                "customer changed their text preference"
            );
        }
        let event = if opted_out {
            Event::OptOut { at: now }
        } else {
            Event::OptIn
        };
        if (opted_out || matches!(state, ConversationState::OptedOut(_)))
            && let Ok(next) = conversation::transition(state.clone(), event)
        {
            *state = next;
        }
        // An opted-out customer gets no texts at all; on SMS the provider
        // itself confirms STOP and START to the customer, so we add nothing to
        // either. An opt-out in words, or any opt-out on a channel whose
        // provider confirms nothing (WhatsApp), gets its one confirmation
        // from us.
        let provider_confirms = channel.provider_confirms_keywords();
        if opted_out {
            if (in_words || !provider_confirms) && !conversation.opted_out {
                return Ok(Some(KeywordAction::Reply(OutboundDraft {
                    kind: MessageKind::OptOutConfirmation,
                    body: templates::opted_out(&self.business, booked),
                })));
            }
            // HELP is answered even after an opt-out; where the provider
            // answers nothing itself, that is ours to do.
            if !provider_confirms && matches!(last_keyword, Some(Keyword::Help)) {
                return Ok(Some(KeywordAction::Reply(OutboundDraft {
                    kind: MessageKind::Help,
                    body: templates::help(&self.business),
                })));
            }
            return Ok(Some(KeywordAction::Silent));
        }
        Ok(match last_keyword {
            Some(Keyword::Help) => Some(KeywordAction::Reply(OutboundDraft {
                kind: MessageKind::Help,
                body: templates::help(&self.business),
            })),
            // Back from an opt-out: confirmed by us where the provider
            // confirms nothing (WhatsApp), so the customer knows it took.
            Some(Keyword::OptIn) if !provider_confirms && conversation.opted_out => {
                Some(KeywordAction::Reply(OutboundDraft {
                    kind: MessageKind::OptInConfirmation,
                    body: templates::opted_in(&self.business),
                }))
            }
            Some(Keyword::OptIn) => Some(KeywordAction::Silent),
            Some(Keyword::OptOut | Keyword::OptOutInWords) | None => None,
        })
    }

    /// Delivers texts left queued, e.g. by a crash between queueing and
    /// sending.
    pub async fn deliver_undelivered(&self) -> Result<usize, StoreError> {
        // Reminders and follow-ups left queued by a crash wait out quiet hours.
        let quiet = self
            .business
            .quiet_hours
            .is_quiet(self.clock.now(), self.business.business.timezone);
        let ids = self.store.undelivered(!quiet).await?;
        for id in &ids {
            self.dispatcher.deliver(&self.business, *id).await?;
        }
        Ok(ids.len())
    }

    /// Owner alerts go to the log at error level and into the store, where
    /// notifications pick them up. Failing to store one must not fail the turn.
    /// `customer`, when the alert is about one, is named in the owner's
    /// email with a link to call; the log masks the number.
    pub(crate) async fn alert_about(
        &self,
        kind: AlertKind,
        conversation: Option<ConversationId>,
        detail: &str,
        customer: Option<&plan::CustomerContact>,
    ) {
        alert_owner(
            self.store.as_ref(),
            &self.business,
            kind,
            conversation,
            detail,
            customer,
            self.clock.now(),
        )
        .await;
    }
}

/// How loud an owner alert is in the log: a hand-off or a cancelled
/// booking is normal business (info); a price the guardrail stopped or a
/// customer flooding wants a look (warn); something that failed is an
/// error.
pub(crate) fn alert_level(kind: &AlertKind) -> tracing::Level {
    match kind {
        AlertKind::Handoff
        | AlertKind::HandedOffText
        | AlertKind::BookingCancelled
        | AlertKind::NoOpenings
        | AlertKind::ApprovalNeeded => tracing::Level::INFO,
        AlertKind::BookingIncomplete
        | AlertKind::CannotPrice
        | AlertKind::OptedOutWithBooking
        | AlertKind::WhatsappWindow
        | AlertKind::FloodThrottled
        | AlertKind::ModelUnavailable
        | AlertKind::PriceGuardrail
        | AlertKind::FactGuardrail
        | AlertKind::ApprovalTimedOut
        | AlertKind::TextUndelivered => tracing::Level::WARN,
        _ => tracing::Level::ERROR,
    }
}

/// An owner alert in the log, at its kind's level (`alert_level`);
/// `detail` is already redacted.
pub(crate) fn log_alert(kind: &AlertKind, detail: &str, conversation: Option<i64>) {
    match alert_level(kind) {
        tracing::Level::INFO => tracing::info!(alert = %kind, %detail, conversation, "owner alert"),
        tracing::Level::WARN => tracing::warn!(alert = %kind, %detail, conversation, "owner alert"),
        _ => tracing::error!(alert = %kind, %detail, conversation, "owner alert"),
    }
}

/// An owner alert that a commit stored: counted, and logged (`detail`
/// already redacted).
pub(crate) fn stored_alert(kind: &AlertKind, detail: &str, conversation: Option<i64>) {
    crate::meters::alert(kind);
    log_alert(kind, detail, conversation);
}

/// Raises an owner alert: to the log at its kind's level, into the store, and
/// into the owner's email (a job). Failing to store one must not fail the
/// work that raised it.
pub(crate) async fn alert_owner(
    store: &dyn Store,
    business: &BusinessConfig,
    kind: AlertKind,
    conversation: Option<ConversationId>,
    detail: &str,
    customer: Option<&plan::CustomerContact>,
    now: chrono::DateTime<Utc>,
) {
    log_alert(&kind, &redact_phone_numbers(detail), conversation.map(|c| c.0));
    match store.record_alert(&kind, conversation, detail).await {
        Ok(()) => crate::meters::alert(&kind),
        Err(e) => tracing::error!(error = %e, "could not store owner alert"),
    }
    let alert = NewAlert {
        kind,
        detail: detail.to_string(),
    };
    let key = format!("{}:{}", conversation.map_or(0, |c| c.0), now.timestamp_millis());
    let owner_jobs = plan::alert_jobs_about(business, &alert, conversation, customer, &key, now);
    if !owner_jobs.is_empty()
        && let Err(e) = store.enqueue_jobs(&owner_jobs).await
    {
        tracing::error!(error = %e, "could not queue the owner's alert email");
    }
}

/// Whether the pending texts opt out or back in: consent is honoured at
/// once, even for a throttled sender.
fn changes_consent(turn: &TurnInput) -> bool {
    turn.pending.iter().any(|m| {
        let carrier = m.opt_out_keyword.as_deref().map(str::to_ascii_uppercase);
        matches!(carrier.as_deref(), Some("STOP" | "START"))
            || matches!(
                keywords::classify(&m.body, turn.conversation.opted_out),
                Some(Keyword::OptOut | Keyword::OptOutInWords | Keyword::OptIn)
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_off_is_normal_business_and_a_failure_is_an_error() {
        assert_eq!(alert_level(&AlertKind::Handoff), tracing::Level::INFO);
        assert_eq!(alert_level(&AlertKind::HandedOffText), tracing::Level::INFO);
        assert_eq!(alert_level(&AlertKind::PriceGuardrail), tracing::Level::WARN);
        assert_eq!(alert_level(&AlertKind::SendFailed), tracing::Level::ERROR);
        assert_eq!(alert_level(&AlertKind::TurnPanicked), tracing::Level::ERROR);
        assert_eq!(
            alert_level(&AlertKind::parse("meteor_strike")),
            tracing::Level::ERROR
        );
    }
}
