//! One turn of a phone call: the caller's words in, the reply spoken as it
//! is written, the turn's effects committed like a text turn's.
//!
//! A call turn holds the conversation's lease (the text worker never
//! answers the caller's words by SMS), records what the caller said as an
//! inbound message, and answers it: Claude streamed with the state's legal
//! tools, or the guided flow with no model. Each sentence is checked by
//! the guardrail against the facts after the tools that ran, and spoken
//! only if it passes; a failing one is replaced by the code-stated version.
//! The turn ends in one `finish_turn` (state, quotes, alerts, reminders,
//! the booking's confirmation text as a job), with the spoken reply stored
//! as the answer and marked delivered on the call, never texted.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::turns::Engine;
use crate::anthropic::stream::{StreamEvent, StreamingModel};
use crate::anthropic::{ApiMessage, ContentBlock, ModelError, Role, Usage};
use crate::assistant::tools::{ToolContext, ToolRegistry};
use crate::assistant::{
    cached_request, context_block, history_to_messages, job_tools, prompt, schedule_tools, with_context,
};
use crate::channel::Channel;
use crate::channel::voice::{self, CallMode, Sentences};
use crate::clock::Clock;
use crate::desk;
use crate::domain::conversation::{self, ConversationState, Event, HandoffReason};
use crate::domain::guardrail;
use crate::domain::keywords::Keyword;
use crate::domain::phone::E164;
use crate::jobs::payload::{DeferredReply, JobPayload, JobTarget};
use crate::jobs::plan;
use crate::store::{
    AlertKind, ConversationId, Direction, InboundMessage, Message, MessageId, MessageKind, NewAlert, NewJob,
    OutboundDraft, Recorded, Store, StoreError, TurnCommit, TurnInput, UNSENT_BY_DECISION,
};

/// What the relay sends Twilio, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Speech {
    /// A `text` message.
    Text { token: String, last: bool },
    /// The `end` message, with its hand-off data.
    End(Value),
}

/// The streaming model a call speaks with.
pub struct CallModel {
    pub client: Arc<dyn StreamingModel>,
    pub model: String,
    pub max_tokens: u32,
    pub max_tool_rounds: usize,
}

/// What every call shares: built once at start.
pub struct Calls {
    pub store: Arc<dyn Store>,
    /// Claude streamed; `None`: the guided flow's questions are spoken.
    pub model: Option<CallModel>,
    pub clock: Arc<dyn Clock>,
    /// A tool still running after this is covered by a spoken filler.
    pub slow_tool: Duration,
    /// Nothing said this long after the caller finished: "One moment."
    pub dead_air: Duration,
    /// While the model stays silent after that, a short filler this often,
    /// so the caller never hears more than 3 s of nothing before the
    /// apology at `model_stall`.
    pub keep_alive: Duration,
    /// Longest wait for the model's next event before the call apologises.
    pub model_stall: Duration,
    /// How long a turn holds the conversation's lease.
    pub lease: Duration,
    tools: OnceLock<ToolRegistry>,
}

impl Calls {
    pub fn new(
        store: Arc<dyn Store>,
        model: Option<CallModel>,
        clock: Arc<dyn Clock>,
        lease: Duration,
    ) -> Self {
        Self {
            store,
            model,
            clock,
            slow_tool: Duration::from_millis(700),
            dead_air: Duration::from_millis(1500),
            keep_alive: Duration::from_millis(2500),
            model_stall: Duration::from_secs(8),
            lease,
            tools: OnceLock::new(),
        }
    }

    /// How long the line may stay quiet before the next filler: `dead_air`
    /// after the caller finished (the turn `started`), then `keep_alive`.
    fn until_filler(&self, spoke_anything: bool, started: tokio::time::Instant) -> Duration {
        if spoke_anything {
            self.keep_alive
        } else {
            self.dead_air.saturating_sub(started.elapsed())
        }
    }

    /// The tools, on the one scheduler every engine shares.
    fn tools(&self, engine: &Engine) -> &ToolRegistry {
        self.tools.get_or_init(|| {
            let mut tools = ToolRegistry::default();
            job_tools::register(&mut tools);
            schedule_tools::register(&mut tools, engine.guided.scheduler.clone());
            tools
        })
    }
}

/// One call, as the relay's `setup` described it.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub call_sid: String,
    /// The relay session (Twilio's `sessionId`): utterances are numbered
    /// within it, so their ids are unique across the call's sessions.
    pub session_id: String,
    pub business_id: String,
    pub conversation: ConversationId,
    pub caller: E164,
    pub called: E164,
    pub mode: CallMode,
}

impl CallInfo {
    /// Who holds the conversation's lease during this call's turns.
    pub fn worker(&self) -> String {
        format!("call:{}", self.call_sid)
    }
}

/// A barge-in during or after a turn: what the caller heard, and the
/// stored reply to cut to it. Made when the caller's words arrive.
#[derive(Debug)]
pub struct Barge {
    heard: Mutex<Option<String>>,
    committed: Mutex<Option<MessageId>>,
    /// When the caller finished speaking (the prompt arrived).
    received: Instant,
}

impl Default for Barge {
    fn default() -> Self {
        Self {
            heard: Mutex::default(),
            committed: Mutex::default(),
            received: Instant::now(),
        }
    }
}

impl Barge {
    /// The caller interrupted having heard `heard`. Returns the stored
    /// reply to cut now, if the turn already committed it.
    pub fn interrupt(&self, heard: &str) -> Option<MessageId> {
        *self.heard.lock().expect("not poisoned") = Some(heard.to_string());
        *self.committed.lock().expect("not poisoned")
    }

    fn heard(&self) -> Option<String> {
        self.heard.lock().expect("not poisoned").clone()
    }

    fn committed(&self, id: MessageId) {
        *self.committed.lock().expect("not poisoned") = Some(id);
    }
}

/// A stand-in id for the caller's words in a turn read before they were
/// stored; never written.
const UNSTORED: MessageId = MessageId(i64::MAX);

/// The caller's words, being stored while the turn goes on.
struct Utterance {
    task: Option<tokio::task::JoinHandle<Result<Recorded, StoreError>>>,
    id: Option<MessageId>,
}

impl Utterance {
    fn store(store: Arc<dyn Store>, inbound: InboundMessage) -> Self {
        Self {
            task: Some(tokio::spawn(async move { store.record_inbound(&inbound).await })),
            id: None,
        }
    }

    /// Waits until the words are stored; their message's id.
    async fn wait(&mut self, speaker: &mut Speaker) -> Result<MessageId, CallError> {
        if let Some(id) = self.id {
            return Ok(id);
        }
        let task = self.task.take().ok_or(CallError::NotStored)?;
        let recorded = task.await.map_err(|_| CallError::NotStored)??;
        speaker.phases.recorded = Some(Instant::now());
        let id = match recorded {
            Recorded::New(_, id) => id,
            Recorded::Duplicate(_, id) => {
                tracing::info!("a prompt already recorded; answered again");
                id
            }
        };
        self.id = Some(id);
        Ok(id)
    }
}

/// How a turn left the call.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEnd {
    /// The caller speaks next.
    Continue,
    /// The relay ends with this hand-off: a transfer, or the call is over.
    End(Value),
    /// The next thing the caller says is a message for the owner.
    TakeMessage,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the conversation stayed busy with another turn")]
    Busy,
    #[error("the caller's words could not be stored")]
    NotStored,
}

/// When a call turn reached each of its steps, for the `call turn
/// timing` event (where a caller's wait goes; the benchmark reads it).
#[derive(Debug, Clone, Copy)]
struct Phases {
    /// The caller's words arrived.
    received: Instant,
    started: Instant,
    claimed: Option<Instant>,
    recorded: Option<Instant>,
    read: Option<Instant>,
    /// The model's request was sent (the prompt built).
    requested: Option<Instant>,
    /// The model's response began (its headers: the first byte).
    model_opened: Option<Instant>,
    /// The first words were handed to the socket's writer.
    first_spoken: Option<Instant>,
}

impl Phases {
    fn new(received: Instant) -> Self {
        Self {
            received,
            started: Instant::now(),
            claimed: None,
            recorded: None,
            read: None,
            requested: None,
            model_opened: None,
            first_spoken: None,
        }
    }

    fn report(&self, conversation: ConversationId) {
        let ms = |at: Option<Instant>| at.map_or(-1.0, |t| (t - self.received).as_secs_f64() * 1e3);
        tracing::debug!(
            target: "textdesk::call_timing",
            conversation = conversation.0,
            started_ms = ms(Some(self.started)),
            claimed_ms = ms(self.claimed),
            recorded_ms = ms(self.recorded),
            read_ms = ms(self.read),
            requested_ms = ms(self.requested),
            model_opened_ms = ms(self.model_opened),
            first_spoken_ms = ms(self.first_spoken),
            total_ms = ms(Some(Instant::now())),
            "call turn timing"
        );
    }
}

/// Speaks to the relay and keeps what was said, for the record.
pub struct Speaker {
    out: mpsc::UnboundedSender<Speech>,
    said: String,
    /// Stopped by a barge-in: nothing more is sent this turn.
    stopped: bool,
    phases: Phases,
}

impl Speaker {
    pub fn new(out: mpsc::UnboundedSender<Speech>) -> Self {
        Self {
            out,
            said: String::new(),
            stopped: false,
            phases: Phases::new(Instant::now()),
        }
    }

    fn spoke(&mut self) {
        self.phases.first_spoken.get_or_insert_with(Instant::now);
    }

    fn say(&mut self, sentence: &str, barge: &Barge) {
        if self.stopped || barge.heard().is_some() {
            self.stopped = true;
            return;
        }
        let spoken = voice::speakable(sentence);
        if spoken.is_empty() {
            return;
        }
        if !self.said.is_empty() {
            self.said.push(' ');
        }
        self.said.push_str(&spoken);
        self.spoke();
        // A socket gone mid-turn: the turn's effects still stand.
        let _ = self.out.send(Speech::Text {
            token: format!("{spoken} "),
            last: false,
        });
    }

    /// A filler is spoken but not kept: it states nothing.
    fn filler(&mut self, words: &str, barge: &Barge) {
        if self.stopped || barge.heard().is_some() {
            return;
        }
        self.spoke();
        let _ = self.out.send(Speech::Text {
            token: format!("{words} "),
            last: false,
        });
    }

    fn finish(&mut self) {
        let _ = self.out.send(Speech::Text {
            token: String::new(),
            last: true,
        });
    }

    fn end(&mut self, handoff: Value) {
        let _ = self.out.send(Speech::End(handoff));
    }

    pub fn spoken(&self) -> &str {
        &self.said
    }

    /// A turn that could not run (the conversation stayed busy, the
    /// database failed): the caller is asked to say it again, never left
    /// in silence.
    pub fn apologise_and_retry(&mut self) {
        let _ = self.out.send(Speech::Text {
            token: "Sorry, I missed that. Could you say it again?".into(),
            last: true,
        });
    }

    /// A new turn: nothing said yet.
    fn start(&mut self, barge: &Barge) {
        self.said.clear();
        self.stopped = false;
        self.phases = Phases::new(barge.received);
    }
}

/// The per-sentence guardrail: the facts after the tools that ran, and
/// whether the code-stated replacement was already said this turn.
struct SpokenCheck {
    replaced: bool,
    violations: Vec<guardrail::Violation>,
}

/// The conversation's lease, held by a call from its start to its end
/// (renewed while it lasts), so a turn does not queue on the database's
/// writer for it between the caller's last word and the model's request.
/// While a call holds it, the text worker leaves the conversation alone:
/// a text the caller sends during the call is answered after it.
#[derive(Debug, Default)]
pub struct CallLease {
    /// Until when it is ours, by the store's clock, as far as we know.
    held_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl CallLease {
    /// Takes the lease, or renews it, waiting (briefly) for a text turn
    /// that holds it to finish.
    pub async fn take(&mut self, calls: &Calls, call: &CallInfo) -> Result<(), CallError> {
        let asked = calls.clock.now();
        claim(calls, call.conversation, &call.worker()).await?;
        self.held_until = chrono::Duration::from_std(calls.lease)
            .ok()
            .map(|lease| asked + lease);
        Ok(())
    }

    /// Held for at least half a lease more: long enough for a turn.
    fn fresh(&self, calls: &Calls) -> bool {
        let half = chrono::Duration::from_std(calls.lease / 2).unwrap_or_default();
        self.held_until
            .is_some_and(|until| calls.clock.now() + half < until)
    }

    /// Lets the conversation go at the end of the call.
    pub async fn release(&mut self, calls: &Calls, call: &CallInfo) {
        self.held_until = None;
        if let Err(e) = calls.store.release(call.conversation, &call.worker()).await {
            tracing::warn!(error = %e, "could not release the call's lease; it expires");
        }
    }
}

/// Runs one call turn for the caller's words `text` (the `n`th of the
/// call), under the call's lease (taken again first if it is not fresh).
#[allow(clippy::too_many_arguments)]
pub async fn run_turn(
    calls: &Calls,
    engine: &Engine,
    call: &CallInfo,
    lease: &mut CallLease,
    n: u32,
    text: &str,
    speaker: &mut Speaker,
    barge: &Barge,
) -> Result<TurnEnd, CallError> {
    speaker.start(barge);
    if !lease.fresh(calls) {
        lease.take(calls, call).await?;
    }
    speaker.phases.claimed = Some(Instant::now());
    let outcome = turn_under_lease(calls, engine, call, n, text, speaker, barge).await;
    speaker.phases.report(call.conversation);
    outcome
}

/// Takes the conversation's lease, waiting (briefly) for a text turn that
/// holds it to finish.
async fn claim(calls: &Calls, id: ConversationId, worker: &str) -> Result<(), CallError> {
    let started = std::time::Instant::now();
    while !calls.store.claim(id, worker, calls.lease).await? {
        if started.elapsed() > Duration::from_secs(5) {
            return Err(CallError::Busy);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

async fn turn_under_lease(
    calls: &Calls,
    engine: &Engine,
    call: &CallInfo,
    n: u32,
    text: &str,
    speaker: &mut Speaker,
    barge: &Barge,
) -> Result<TurnEnd, CallError> {
    let business = engine.business.clone();
    let store = &calls.store;
    let inbound = InboundMessage {
        business_id: call.business_id.clone(),
        channel_message_id: format!("{}:{}:{n}", call.call_sid, call.session_id),
        from: call.caller.clone(),
        to: call.called.clone(),
        body: text.to_string(),
        media: Vec::new(),
        params: json!({"channel": "voice", "CallSid": call.call_sid}),
        opt_out_keyword: None,
        profile_name: None,
    };
    let words_id = inbound.channel_message_id.clone();
    // The caller's words are stored (a group commit, with its fsync) while
    // the conversation is read and the model's request is sent: nothing
    // the turn does waits for that write except speaking and committing,
    // which wait for it (`Utterance::wait`).
    let mut utterance = Utterance::store(store.clone(), inbound);
    let mut turn = store
        .turn_input(call.conversation, business.assistant.history_messages)
        .await?;
    speaker.phases.read = Some(Instant::now());
    turn.history
        .retain(|m| m.direction == Direction::Inbound || !UNSENT_BY_DECISION.contains(&m.status.as_str()));
    let seen = turn
        .history
        .iter()
        .chain(&turn.pending)
        .any(|m| m.channel_message_id.as_deref() == Some(words_id.as_str()));
    if !seen {
        // Read before the words were stored: added as they will be.
        let words = Message {
            id: UNSTORED,
            direction: Direction::Inbound,
            kind: MessageKind::Customer,
            body: text.to_string(),
            status: "pending".into(),
            channel_message_id: Some(words_id),
            num_media: 0,
            opt_out_keyword: None,
            created_at: calls.clock.now(),
        };
        turn.history.push(words.clone());
        turn.pending.push(words);
    }
    if turn.pending.is_empty() {
        // Answered already (a rerun): nothing to say twice.
        utterance.wait(speaker).await?;
        speaker.finish();
        return Ok(TurnEnd::Continue);
    }
    let now = calls.clock.now();
    let mut state = conversation::on_customer_text(
        turn.state.clone(),
        now,
        turn.last_activity,
        business.conversation.lifetimes(),
    );
    let landed = state.clone();
    let contact = plan::CustomerContact::of(&turn, &state);
    let customer = contact.describe();
    let open = voice::open_at(&business, now);
    let owner_reachable = open && business.business.owner_phone.is_some();
    let mut alerts: Vec<NewAlert> = Vec::new();
    let mut new_quotes = Vec::new();
    let mut draft_alerts = Vec::new();
    let mut kind = MessageKind::Reply;
    let mut model_calls = 0u32;
    let mut usage = Usage::default();

    let end = if call.mode == CallMode::Message {
        utterance.wait(speaker).await?;
        // The caller's words are the message: the owner gets them, with the
        // call's transcript (the conversation's history).
        alerts.push(NewAlert {
            kind: AlertKind::Handoff,
            detail: format!(
                "Voice message from {customer}: \"{}\". The call's transcript is in the conversation.",
                turn.pending_text()
            ),
        });
        speaker.say(
            &format!(
                "Thank you. I'll pass your message to {}. Goodbye.",
                business.business.owner_name()
            ),
            barge,
        );
        kind = MessageKind::HandoffAck;
        TurnEnd::End(json!({"reason": "message_taken", "conversation": call.conversation.0}))
    } else if let Some(keyword) = voice::spoken_keyword(text, turn.conversation.opted_out) {
        // Compliance keywords, by code, before the model: as for texts.
        utterance.wait(speaker).await?;
        match keyword {
            Keyword::Help => {
                speaker.say(&voice::help_spoken(&business), barge);
                kind = MessageKind::Help;
                TurnEnd::Continue
            }
            _ => {
                let booked = match &state {
                    ConversationState::OptedOut(_) => None,
                    standing => standing.standing_booking().map(|b| b.slot.label.clone()),
                };
                let customer_id = turn.conversation.customer_id;
                if !turn.conversation.opted_out {
                    store.set_opted_out(customer_id, true).await?;
                    // No more reminders or follow-ups, as after a texted STOP.
                    store.suspend_jobs(customer_id, true).await?;
                    tracing::info!(customer = %turn.conversation.customer_phone.masked(), "a caller opted out of texts");
                }
                if let Ok(next) = conversation::transition(state.clone(), Event::OptOut { at: now }) {
                    state = next;
                }
                if let Some(label) = &booked {
                    alerts.push(NewAlert {
                        kind: AlertKind::OptedOutWithBooking,
                        detail: format!(
                            "Caller {customer} opted out of texts but is booked for {label}. The booking stands; call them to confirm or cancel."
                        ),
                    });
                }
                speaker.say(&voice::opted_out_spoken(&business, booked.as_deref()), barge);
                kind = MessageKind::OptOutConfirmation;
                TurnEnd::End(json!({"reason": "opted_out", "conversation": call.conversation.0}))
            }
        }
    } else if voice::wants_person(text) || !state.bot_answers() {
        utterance.wait(speaker).await?;
        let mut d = desk::Turn {
            business: &business,
            conversation: &turn.conversation,
            now,
            state: &mut state,
            new_quotes: &mut new_quotes,
            alerts: &mut draft_alerts,
        };
        if d.state.bot_answers()
            && let Err(e) = desk::hand_off(
                &mut d,
                HandoffReason::CustomerAskedForPerson,
                "The caller asked for a person.",
            )
        {
            tracing::warn!(error = %e, "could not hand the call off in the state machine");
        }
        kind = MessageKind::HandoffAck;
        hand_over(&business, owner_reachable, call, speaker, barge)
    } else {
        let before = state.clone();
        let result = match &calls.model {
            Some(model) => {
                let mut ctx = ToolContext {
                    turn: &turn,
                    business: &business,
                    now,
                    state: state.clone(),
                    new_quotes: Vec::new(),
                    alerts: Vec::new(),
                };
                let outcome = stream_reply(
                    calls,
                    engine,
                    model,
                    &turn,
                    &mut ctx,
                    &before,
                    speaker,
                    barge,
                    &mut model_calls,
                    &mut usage,
                    &mut utterance,
                )
                .await;
                state = ctx.state;
                new_quotes = ctx.new_quotes;
                draft_alerts = ctx.alerts;
                outcome
            }
            None => {
                utterance.wait(speaker).await?;
                let draft = engine
                    .guided
                    .draft(&business, &turn, state.clone(), now, false)
                    .await;
                state = draft.state;
                new_quotes = draft.new_quotes;
                draft_alerts = draft.alerts;
                kind = MessageKind::Guided;
                let facts = guardrail::Facts::of(
                    &business.guardrail_terms(),
                    &before,
                    &state,
                    turn.quotes.iter().chain(&new_quotes),
                    now,
                );
                let mut check = SpokenCheck {
                    replaced: false,
                    violations: Vec::new(),
                };
                let mut sentences = Sentences::default();
                let mut all = sentences.push(&format!("{} ", voice::guided_spoken(&draft.text)));
                all.extend(sentences.finish());
                for sentence in all {
                    speak_checked(&sentence, &facts, &business, &state, &mut check, speaker, barge);
                }
                report_violations(&check, &customer, speaker.spoken(), &mut alerts);
                Ok(())
            }
        };
        match result {
            Ok(()) if matches!(state, ConversationState::HandedOff(_)) && before.bot_answers() => {
                // The assistant escalated: a person takes it from here.
                hand_over(&business, owner_reachable, call, speaker, barge)
            }
            Ok(()) => TurnEnd::Continue,
            Err(e) => {
                tracing::error!(error = %e, "the model failed mid-call; apologising and handing over");
                alerts.push(NewAlert {
                    kind: AlertKind::ModelUnavailable,
                    detail: format!("The model failed during a call with {customer}: {e}. The caller was apologised to and handed to you."),
                });
                speaker.say("I'm sorry, I'm having trouble on my end.", barge);
                kind = MessageKind::Apology;
                if state.bot_answers() {
                    let mut d = desk::Turn {
                        business: &business,
                        conversation: &turn.conversation,
                        now,
                        state: &mut state,
                        new_quotes: &mut new_quotes,
                        alerts: &mut draft_alerts,
                    };
                    let _ = desk::hand_off(
                        &mut d,
                        HandoffReason::Other,
                        "The assistant failed during a call.",
                    );
                }
                hand_over(&business, owner_reachable, call, speaker, barge)
            }
        }
    };

    // The newest text answered: the caller's words (stored by now; a
    // failure to store them fails the turn, unspoken and uncommitted).
    let stored = utterance.wait(speaker).await?;
    let through = turn
        .pending
        .iter()
        .map(|m| m.id)
        .filter(|id| *id != UNSTORED)
        .chain([stored])
        .max()
        .unwrap_or(stored);

    // What this turn sets in motion, as a text turn's would: reminders,
    // emails; the booking's confirmation goes out as a text after the call.
    let scheduler = engine.guided.scheduler.for_business(&business);
    let event_link = |booking: &crate::domain::conversation::Booking| scheduler.event_link(booking);
    let planned = plan::plan(&landed, &state, &turn, &business, now, &event_link);
    let mut jobs: Vec<NewJob> = planned.jobs;
    if let Some(confirmation) = planned.confirmation {
        let body = Channel::of(&turn.conversation.customer_phone)
            .prepare_reply(&confirmation, business.sms.max_segments);
        let quiet = &business.quiet_hours;
        let tz = business.business.timezone;
        jobs.push(JobPayload::DeferredReply(DeferredReply { body }).job(JobTarget {
            dedupe_key: format!("call-confirmation:{}:{}", call.conversation.0, through.0),
            conversation_id: Some(call.conversation),
            customer_id: Some(turn.conversation.customer_id),
            recipient: turn.conversation.customer_phone.as_str().to_string(),
            run_at: if quiet.is_quiet(now, tz) {
                quiet.next_allowed(now, tz)
            } else {
                now
            },
            max_attempts: 5,
        }));
    }
    alerts.extend(draft_alerts.into_iter().map(|a| NewAlert {
        kind: a.kind,
        detail: a.detail,
    }));
    let alerts: Vec<NewAlert> = alerts
        .into_iter()
        .map(|a| NewAlert {
            kind: a.kind,
            detail: contact.reveal(&a.detail),
        })
        .collect();
    let key = format!("{}:{}", call.conversation.0, through.0);
    for alert in &alerts {
        jobs.extend(plan::alert_jobs_about(
            &business,
            alert,
            Some(call.conversation),
            Some(&contact),
            &key,
            now,
        ));
        tracing::error!(alert = %alert.kind, detail = %contact.redact(&alert.detail), conversation = call.conversation.0, "owner alert");
    }
    speaker.finish();
    // What the caller heard: all of it, or up to their barge-in.
    let heard = barge.heard();
    let body = heard.clone().unwrap_or_else(|| speaker.spoken().to_string());
    let commit = TurnCommit {
        through,
        reply: (!body.trim().is_empty()).then(|| OutboundDraft {
            kind,
            body: body.clone(),
        }),
        held: None,
        state,
        new_quotes,
        alerts,
        jobs,
        cancel_jobs: planned.cancel,
        model_calls: (model_calls > 0).then(|| crate::store::ModelCalls {
            customer: turn.conversation.customer_id,
            day: now.with_timezone(&business.business.timezone).date_naive(),
            calls: model_calls,
            // The turn's usage, stored by its commit as for a text turn.
            tokens: usage.into(),
        }),
        // Spoken on the call: stored delivered in the same commit, never
        // to be texted (not even after a crash right after it).
        spoken: Some(format!("{}:{}:r{n}", call.call_sid, call.session_id)),
    };
    if let Some(reply) = calls.store.finish_turn(call.conversation, commit).await? {
        barge.committed(reply.id);
        // A barge-in that arrived while the reply was being stored.
        if let Some(late) = barge.heard()
            && heard.as_deref() != Some(late.as_str())
        {
            calls.store.cut_spoken_reply(reply.id, &late).await?;
        }
    }
    if let TurnEnd::End(handoff) = &end {
        speaker.end(handoff.clone());
    }
    Ok(end)
}

/// A person takes the call: transferred to the owner in business hours
/// (the `<Connect action>` dials them), otherwise the caller leaves a
/// message.
fn hand_over(
    business: &crate::config::business::BusinessConfig,
    owner_reachable: bool,
    call: &CallInfo,
    speaker: &mut Speaker,
    barge: &Barge,
) -> TurnEnd {
    if owner_reachable {
        speaker.say(
            &format!(
                "Let me put you through to {}. One moment.",
                business.business.owner_name()
            ),
            barge,
        );
        TurnEnd::End(json!({"reason": "transfer", "conversation": call.conversation.0}))
    } else {
        speaker.say(
            &format!(
                "Nobody at {} can come to the phone right now. Please tell me your message, and I'll pass it on.",
                business.business.name
            ),
            barge,
        );
        TurnEnd::TakeMessage
    }
}

/// Checks a sentence against the turn's facts and speaks it, or the
/// code-stated version instead (once a turn).
fn speak_checked(
    sentence: &str,
    facts: &guardrail::Facts,
    business: &crate::config::business::BusinessConfig,
    state: &ConversationState,
    check: &mut SpokenCheck,
    speaker: &mut Speaker,
    barge: &Barge,
) {
    let spoken = voice::speakable(sentence);
    let mut violations = guardrail::check(sentence, facts);
    if violations.is_empty() {
        violations = guardrail::check(&spoken, facts);
    }
    if violations.is_empty() {
        speaker.say(sentence, barge);
        return;
    }
    tracing::warn!(violations = %guardrail::describe(&violations), "a sentence stated facts our code did not produce; replaced");
    check.violations.extend(violations);
    if !check.replaced {
        check.replaced = true;
        speaker.say(&code_stated(business, state), barge);
    }
}

fn report_violations(check: &SpokenCheck, customer: &str, said: &str, alerts: &mut Vec<NewAlert>) {
    if check.violations.is_empty() {
        return;
    }
    let money = check.violations.iter().any(|v| {
        matches!(
            v.kind,
            guardrail::ViolationKind::Price
                | guardrail::ViolationKind::Amount
                | guardrail::ViolationKind::Percent
        )
    });
    alerts.push(NewAlert {
        kind: if money {
            AlertKind::PriceGuardrail
        } else {
            AlertKind::FactGuardrail
        },
        detail: format!(
            "On a call with {customer}, a drafted sentence was not spoken: {}. Said instead: \"{said}\"",
            guardrail::describe(&check.violations)
        ),
    });
}

/// The conversation's facts in words, stated by code: the booking, two or
/// three openings, the quote, or nothing to state.
pub fn code_stated(business: &crate::config::business::BusinessConfig, state: &ConversationState) -> String {
    match state {
        ConversationState::Booked(b) => format!(
            "You're booked for {}, and the total is {}.",
            b.booking.slot.label,
            voice::money_in_words(b.quote.total)
        ),
        ConversationState::Scheduling(s) if !s.offered.is_empty() => {
            let labels: Vec<&str> = s.offered.iter().take(3).map(|o| o.label.as_str()).collect();
            let listed = match labels.as_slice() {
                [one] => one.to_string(),
                [a, b] => format!("{a} or {b}"),
                [a, b, c, ..] => format!("{a}, {b}, or {c}"),
                [] => String::new(),
            };
            format!("I can offer {listed}. Which suits you?")
        }
        _ => match state.quote() {
            Some(quote) => format!("The price is {}.", voice::money_in_words(quote.total)),
            None => format!(
                "I can't confirm that on the phone; {} will follow up.",
                business.business.owner_name()
            ),
        },
    }
}

/// Streams Claude's reply and speaks it sentence by sentence, running the
/// tools it calls between streamed segments.
#[allow(clippy::too_many_arguments)]
async fn stream_reply(
    calls: &Calls,
    engine: &Engine,
    model: &CallModel,
    turn: &TurnInput,
    ctx: &mut ToolContext<'_>,
    before: &ConversationState,
    speaker: &mut Speaker,
    barge: &Barge,
    model_calls: &mut u32,
    usage: &mut Usage,
    utterance: &mut Utterance,
) -> Result<(), ModelError> {
    let tools = calls.tools(engine);
    let business = ctx.business;
    // Laid out for the prompt cache as a text turn's request is
    // (`cached_request`): every tool, the stable prompt (with the spoken
    // style, the same on every call) as the system, the earlier turns'
    // messages as a cached prefix, and the per-turn facts (time, state)
    // with the caller's latest words.
    let stable = format!(
        "{}{}",
        prompt::for_request(business, &ctx.state, turn.first_contact, ctx.now).stable_text(),
        voice::SPOKEN_STYLE
    );
    let all_tools = tools.all_definitions(&engine.business);
    let mut messages = history_to_messages(&turn.history, &turn.images);
    let mut per_turn = prompt::for_request(business, &ctx.state, turn.first_contact, ctx.now).per_turn_text();
    let prefix_end = with_context(&mut messages, &per_turn);
    let mut check = SpokenCheck {
        replaced: false,
        violations: Vec::new(),
    };
    let started = tokio::time::Instant::now();
    let mut spoke_anything = false;
    for round in 0..=model.max_tool_rounds {
        if speaker.stopped {
            break;
        }
        let request = cached_request(
            &model.model,
            model.max_tokens,
            stable.clone(),
            all_tools.clone(),
            &messages,
            prefix_end,
            round > 0,
        );
        *model_calls += 1;
        speaker.phases.requested.get_or_insert_with(Instant::now);
        // Sent at once, on a task of its own, so it is in flight while
        // the caller's words are still being stored.
        let client = model.client.clone();
        let request = tokio::spawn(async move { client.stream_message(&request).await });
        let abort = request.abort_handle();
        if utterance.wait(speaker).await.is_err() {
            // Not stored: nothing is said; the turn fails after this.
            abort.abort();
            return Ok(());
        }
        let opening = async move {
            request.await.unwrap_or_else(|e| {
                Err(ModelError::Unavailable {
                    attempts: 1,
                    last_error: format!("the request's task ended: {e}"),
                })
            })
        };
        tokio::pin!(opening);
        // Waiting for the model to start: fillers keep the line from going
        // silent (`dead_air` first, then every `keep_alive`), and the wait
        // ends at `model_stall`, when the caller hears the apology.
        let stall_at = Instant::now() + calls.model_stall;
        let opened = loop {
            let silence = calls.until_filler(spoke_anything, started);
            let left = stall_at.saturating_duration_since(Instant::now());
            tokio::select! {
                opened = &mut opening => break Ok(opened),
                _ = tokio::time::sleep(silence.min(left)) => {
                    if Instant::now() >= stall_at {
                        break Err(());
                    }
                    speaker.filler(filler_words(spoke_anything), barge);
                    spoke_anything = true;
                }
            }
        };
        let mut stream = match opened {
            Ok(Ok(s)) => {
                speaker.phases.model_opened.get_or_insert_with(Instant::now);
                s
            }
            Ok(Err(e)) => {
                flush_violations(&check, ctx, speaker);
                return Err(e);
            }
            Err(_) => {
                flush_violations(&check, ctx, speaker);
                return Err(ModelError::Unavailable {
                    attempts: 1,
                    last_error: format!("no answer in {:?}", calls.model_stall),
                });
            }
        };
        let facts = guardrail::Facts::of(
            &business.guardrail_terms(),
            before,
            &ctx.state,
            ctx.quotes(),
            ctx.now,
        );
        let mut sentences = Sentences::default();
        let mut text = String::new();
        let mut tool_uses = Vec::new();
        let mut stop = None;
        let mut last_event = Instant::now();
        loop {
            // Dead air while the model is slow: a filler (`dead_air` after
            // the caller finished, then every `keep_alive`), and the
            // apology once the model has sent nothing for `model_stall`.
            let silence = calls.until_filler(spoke_anything, started);
            let left = calls.model_stall.saturating_sub(last_event.elapsed());
            let next =
                match tokio::time::timeout(silence.min(left).max(Duration::from_millis(1)), stream.next())
                    .await
                {
                    Ok(next) => {
                        last_event = Instant::now();
                        next
                    }
                    Err(_) if last_event.elapsed() < calls.model_stall => {
                        speaker.filler(filler_words(spoke_anything), barge);
                        spoke_anything = true;
                        continue;
                    }
                    Err(_) => {
                        return Err(ModelError::Unavailable {
                            attempts: 1,
                            last_error: format!("no stream event in {:?}", calls.model_stall),
                        });
                    }
                };
            match next {
                None => break,
                Some(Err(e)) => {
                    flush_violations(&check, ctx, speaker);
                    return Err(e);
                }
                Some(Ok(StreamEvent::Text(piece))) => {
                    text.push_str(&piece);
                    for sentence in sentences.push(&piece) {
                        speak_checked(
                            &sentence, &facts, business, &ctx.state, &mut check, speaker, barge,
                        );
                        spoke_anything = true;
                    }
                    if speaker.stopped {
                        break;
                    }
                }
                Some(Ok(StreamEvent::ToolUse { id, name, input })) => tool_uses.push((id, name, input)),
                Some(Ok(StreamEvent::Usage(spent))) => {
                    crate::assistant::count_usage(&spent);
                    usage.add(&spent);
                }
                Some(Ok(StreamEvent::Stop(reason))) => {
                    stop = reason;
                    break;
                }
            }
        }
        if let Some(rest) = sentences.finish() {
            speak_checked(&rest, &facts, business, &ctx.state, &mut check, speaker, barge);
            spoke_anything = true;
        }
        if tool_uses.is_empty() || stop.as_deref() != Some("tool_use") || round == model.max_tool_rounds {
            break;
        }
        let mut content = Vec::new();
        if !text.trim().is_empty() {
            content.push(ContentBlock::Text { text: text.clone() });
        }
        let mut results = Vec::with_capacity(tool_uses.len());
        for (id, name, input) in tool_uses {
            tracing::info!(tool = %name, round, state = ctx.state.name(), "model called a tool on a call");
            content.push(ContentBlock::ToolUse {
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
            });
            let call = tools.call(ctx, &name, input);
            tokio::pin!(call);
            let outcome = tokio::select! {
                outcome = &mut call => outcome,
                _ = tokio::time::sleep(calls.slow_tool) => {
                    speaker.filler(filler_for(&name), barge);
                    spoke_anything = true;
                    call.await
                }
            };
            results.push(ContentBlock::ToolResult {
                tool_use_id: id,
                content: outcome.content,
                is_error: outcome.is_error,
            });
        }
        // The state the tools left, when they moved it, after the results
        // (the API wants tool results first), as on a text turn.
        let now_per_turn =
            prompt::for_request(business, &ctx.state, turn.first_contact, ctx.now).per_turn_text();
        if now_per_turn != per_turn {
            results.push(context_block(&now_per_turn));
            per_turn = now_per_turn;
        }
        messages.push(ApiMessage::new(Role::Assistant, content));
        messages.push(ApiMessage::new(Role::User, results));
    }
    flush_violations(&check, ctx, speaker);
    Ok(())
}

/// The turn's guardrail replacements, as an owner alert with the turn's.
fn flush_violations(check: &SpokenCheck, ctx: &mut ToolContext<'_>, speaker: &Speaker) {
    let mut raised = Vec::new();
    let customer = ctx.turn.conversation.customer_phone.masked().to_string();
    report_violations(check, &customer, speaker.spoken(), &mut raised);
    ctx.alerts.extend(raised.into_iter().map(|a| desk::OwnerAlert {
        kind: a.kind,
        detail: a.detail,
    }));
}

/// What a caller hears while a slow tool runs.
/// What the caller hears while the model is silent: "One moment." first,
/// then "Still with you."
fn filler_words(spoke_anything: bool) -> &'static str {
    if spoke_anything {
        "Still with you."
    } else {
        "One moment."
    }
}

fn filler_for(tool: &str) -> &'static str {
    match tool {
        "get_available_slots" | "book_slot" | "reschedule_booking" | "cancel_booking" => {
            "One moment while I check the calendar."
        }
        _ => "One moment.",
    }
}
