//! The guided responder: the state machine driven by numbered questions,
//! with no model. It serves when no ANTHROPIC_API_KEY is set, and takes over
//! a turn when Claude stays unreachable.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::job_tools::new_quote_id;
use super::tools::OwnerAlert;
use super::{Draft, Responder, ResponderError};
use crate::config::business::BusinessConfig;
use crate::domain::conversation::{ConversationState, Event, HandoffReason, JobUpdate, transition};
use crate::domain::guided::{self, QUOTED_MENU, QuotedChoice};
use crate::domain::quote::price;
use crate::domain::when;
use crate::scheduling::{Scheduler, SchedulingError};
use crate::store::Direction;
use crate::store::TurnInput;
use crate::templates;

pub struct GuidedResponder {
    pub business: Arc<BusinessConfig>,
    pub scheduler: Arc<Scheduler>,
}

const CALENDAR_DOWN: &str = "Our calendar is unavailable right now; the owner will text you to set a time.";

impl GuidedResponder {
    /// Offers openings (preferring `preference`) and moves to SCHEDULING;
    /// returns the text that lists them.
    async fn offer(
        &self,
        turn: &TurnInput,
        draft: &mut Draft,
        now: DateTime<Utc>,
        preference: &str,
    ) -> String {
        let Some(quote) = draft.state.quote().cloned() else {
            return CALENDAR_DOWN.into();
        };
        let today = now.with_timezone(&self.business.business.timezone).date_naive();
        let (filter, _) = when::resolve(preference, today);
        let rescheduling = match &draft.state {
            ConversationState::Scheduling(s) => s.rescheduling.clone(),
            _ => None,
        };
        match self
            .scheduler
            .offer(turn.conversation.id, &quote, &filter, rescheduling.as_ref(), now)
            .await
        {
            Ok(offer) if offer.slots.is_empty() => {
                draft.alerts.push(OwnerAlert {
                    kind: "no_openings",
                    detail: format!(
                        "No openings for customer {}. Please text them to find a time.",
                        turn.conversation.customer_phone.masked()
                    ),
                });
                "We have no openings soon; the owner will text you to find a time.".into()
            }
            Ok(offer) => {
                if let Ok(next) = transition(draft.state.clone(), Event::SlotsOffered(offer.slots.clone())) {
                    draft.state = next;
                }
                let list = offer.numbered();
                let note = offer.note.map(|n| format!("{n} ")).unwrap_or_default();
                format!("{note}Openings:\n{list}\nReply with a number, or tell me a day that suits you.")
            }
            Err(e) => {
                self.calendar_down(turn, draft, &e);
                CALENDAR_DOWN.into()
            }
        }
    }

    async fn cancel(
        &self,
        turn: &TurnInput,
        draft: &mut Draft,
        booking: &crate::domain::conversation::Booking,
        now: DateTime<Utc>,
        opening: &str,
    ) {
        match self.scheduler.cancel(booking).await {
            Ok(()) => {
                if let Ok(next) = transition(draft.state.clone(), Event::BookingCancelled { at: now }) {
                    draft.state = next;
                }
                draft.alerts.push(OwnerAlert {
                    kind: "booking_cancelled",
                    detail: format!(
                        "Customer {} cancelled {}.",
                        turn.conversation.customer_phone.masked(),
                        booking.slot.label
                    ),
                });
                draft.text = format!(
                    "{opening}Your booking for {} is cancelled. Text us any time to book again.",
                    booking.slot.label
                );
            }
            Err(e) => {
                self.calendar_down(turn, draft, &e);
                draft.text = format!("{opening}{CALENDAR_DOWN}");
            }
        }
    }

    fn calendar_down(&self, turn: &TurnInput, draft: &mut Draft, e: &SchedulingError) {
        let kind = match e {
            SchedulingError::Calendar(crate::calendar::CalendarError::CredentialsRevoked(_)) => {
                "calendar_credentials"
            }
            _ => "calendar_unavailable",
        };
        draft.alerts.push(OwnerAlert {
            kind,
            detail: format!(
                "Could not schedule customer {}: {e}. Please text them to set a time.",
                turn.conversation.customer_phone.masked()
            ),
        });
    }

    /// One guided turn. `apologize` opens the reply with an apology, for
    /// when this stands in for a model that failed.
    pub async fn draft(
        &self,
        turn: &TurnInput,
        state: ConversationState,
        now: DateTime<Utc>,
        apologize: bool,
    ) -> Draft {
        let business = &self.business;
        let pricing = &business.pricing;
        let kind = business.business.kind;
        let text = turn.pending.last().map(|m| m.body.as_str()).unwrap_or("");
        let mut draft = Draft {
            text: String::new(),
            state,
            new_quotes: Vec::new(),
            alerts: Vec::new(),
        };
        let mut opening = String::new();
        if apologize {
            opening.push_str("Sorry, our assistant is having trouble, so let's keep it quick. ");
        } else if turn.first_contact {
            opening.push_str(&business.greeting());
            opening.push(' ');
        }
        let step = |draft: &mut Draft, event: Event| match transition(draft.state.clone(), event) {
            Ok(next) => draft.state = next,
            Err(e) => tracing::error!(error = %e, "guided flow made an illegal move"),
        };

        if guided::wants_person(text)
            && matches!(
                draft.state,
                ConversationState::Intake(_)
                    | ConversationState::Quoted(_)
                    | ConversationState::Scheduling(_)
                    | ConversationState::Booked(_)
            )
        {
            hand_off(
                &mut draft,
                turn,
                now,
                "Asked for a person (guided flow).".into(),
                &opening,
            );
            return draft;
        }

        match draft.state.clone() {
            ConversationState::Intake(_) => {
                // Every waiting text, oldest first: "half a truck" then "how
                // much?" is an answer, then a question.
                let mut understood = false;
                for message in &turn.pending {
                    let job = draft.state.job().cloned().unwrap_or_default();
                    if let Some(question) = guided::next_question(&job, kind, pricing)
                        && let Some(update) = guided::interpret(question, &message.body, pricing)
                    {
                        step(&mut draft, Event::DetailsRecorded(update));
                        understood = true;
                    }
                }
                let job = draft.state.job().cloned().unwrap_or_default();
                match guided::next_question(&job, kind, pricing) {
                    Some(question) => {
                        let nudge = if understood || turn.first_contact || apologize {
                            ""
                        } else {
                            "Sorry, I didn't catch that. "
                        };
                        draft.text = format!("{opening}{nudge}{}", guided::ask(question, pricing));
                    }
                    None => {
                        let priced = job
                            .to_spec(kind)
                            .and_then(|spec| price(pricing, &spec, new_quote_id(), now));
                        match priced {
                            Ok(quote) => {
                                step(&mut draft, Event::QuoteIssued(quote.clone()));
                                draft.text = format!(
                                    "{opening}{} {QUOTED_MENU}",
                                    templates::quote_message(business, &quote)
                                );
                                draft.new_quotes.push(quote);
                            }
                            Err(e) => {
                                // The catalog changed under a half-finished job.
                                draft.alerts.push(OwnerAlert {
                                    kind: "cannot_price",
                                    detail: format!("The guided flow could not price a job: {e}"),
                                });
                                step(
                                    &mut draft,
                                    Event::HandOff {
                                        reason: HandoffReason::CannotPrice,
                                        summary: e.to_string(),
                                        at: now,
                                    },
                                );
                                draft.text = format!(
                                    "{opening}I need the owner to price this one; they'll text you soon."
                                );
                            }
                        }
                    }
                }
            }
            ConversationState::Quoted(quoted) => {
                let asked_address = turn
                    .history
                    .iter()
                    .rev()
                    .find(|m| m.direction == Direction::Outbound)
                    .is_some_and(|m| m.body.ends_with(guided::ADDRESS_QUESTION));
                match guided::quoted_choice(text) {
                    Some(QuotedChoice::Book) => {
                        if quoted.job.address.is_none() {
                            draft.text = format!("{opening}{}", guided::ADDRESS_QUESTION);
                        } else {
                            let offered = self.offer(turn, &mut draft, now, "").await;
                            draft.text = format!("{opening}{offered}");
                        }
                    }
                    Some(QuotedChoice::Person) => {
                        let summary = format!("Wants a person about quote {}.", quoted.quote.id);
                        hand_off(&mut draft, turn, now, summary, &opening);
                    }
                    None if asked_address && !text.trim().is_empty() => {
                        step(
                            &mut draft,
                            Event::DetailsRecorded(JobUpdate {
                                address: Some(text.trim().to_string()),
                                ..JobUpdate::default()
                            }),
                        );
                        let offered = self.offer(turn, &mut draft, now, "").await;
                        draft.text = format!("{opening}Thanks! {offered}");
                    }
                    None => {
                        draft.text = format!(
                            "{opening}{} {QUOTED_MENU}",
                            templates::quote_message(business, &quoted.quote)
                        );
                    }
                }
            }
            ConversationState::Scheduling(s) if s.rescheduling.is_some() && guided::wants_to_keep(text) => {
                let kept = s.rescheduling.clone().expect("checked");
                step(&mut draft, Event::KeepBooking);
                draft.text = format!(
                    "{opening}No problem: you're still booked for {}.",
                    kept.slot.label
                );
            }
            ConversationState::Scheduling(s)
                if s.rescheduling.is_some() && guided::wants_cancel_booking(text) =>
            {
                let booking = s.rescheduling.clone().expect("checked");
                self.cancel(turn, &mut draft, &booking, now, &opening).await;
            }
            ConversationState::Scheduling(s) => {
                let labels: Vec<&str> = s.offered.iter().map(|o| o.label.as_str()).collect();
                match guided::pick_slot(text, &labels) {
                    Some(i) => {
                        let slot = s.offered[i].clone();
                        match self
                            .scheduler
                            .book(
                                &turn.conversation,
                                &s.job,
                                &s.quote,
                                &slot,
                                s.rescheduling.as_ref(),
                                now,
                            )
                            .await
                        {
                            Ok(booking) => {
                                step(&mut draft, Event::SlotBooked(booking));
                                draft.text = format!(
                                    "{opening}You're booked: {}. Total {}. {}",
                                    slot.label,
                                    s.quote.total,
                                    guided::RESCHEDULE_HINT
                                );
                            }
                            Err(SchedulingError::Taken(_)) => {
                                let offered = self.offer(turn, &mut draft, now, "").await;
                                draft.text = format!("{opening}Sorry, that time was just taken. {offered}");
                            }
                            Err(e) => {
                                self.calendar_down(turn, &mut draft, &e);
                                draft.text = format!("{opening}{CALENDAR_DOWN}");
                            }
                        }
                    }
                    None => {
                        let today = now.with_timezone(&business.business.timezone).date_naive();
                        let (filter, _) = when::resolve(text, today);
                        let offered = self
                            .offer(turn, &mut draft, now, if filter.is_empty() { "" } else { text })
                            .await;
                        let nudge = if filter.is_empty() {
                            "Sorry, I didn't catch which one. "
                        } else {
                            ""
                        };
                        draft.text = format!("{opening}{nudge}{offered}");
                    }
                }
            }
            ConversationState::Booked(b) => {
                if guided::is_confirm(text) {
                    draft.text = format!(
                        "{opening}Thanks! You're confirmed for {}. See you then.",
                        b.booking.slot.label
                    );
                } else if guided::wants_reschedule(text) {
                    step(&mut draft, Event::RescheduleRequested);
                    let offered = self.offer(turn, &mut draft, now, "").await;
                    draft.text = format!("{opening}Sure. {offered}");
                } else if guided::wants_cancel_booking(text) {
                    self.cancel(turn, &mut draft, &b.booking, now, &opening).await;
                } else {
                    draft.text = format!(
                        "{opening}You're booked for {}. {}",
                        b.booking.slot.label,
                        guided::RESCHEDULE_HINT
                    );
                }
            }
            ConversationState::HandedOff(_)
            | ConversationState::OptedOut(_)
            | ConversationState::Cancelled(_)
            | ConversationState::Closed(_) => {
                draft.text = format!("{opening}{}", templates::apology(business));
            }
        }
        draft
    }
}

/// Hands the conversation to the owner at the customer's request.
fn hand_off(draft: &mut Draft, turn: &TurnInput, now: DateTime<Utc>, summary: String, opening: &str) {
    let event = Event::HandOff {
        reason: HandoffReason::CustomerAskedForPerson,
        summary,
        at: now,
    };
    match transition(draft.state.clone(), event) {
        Ok(next) => draft.state = next,
        Err(e) => tracing::error!(error = %e, "guided flow made an illegal move"),
    }
    draft.alerts.push(OwnerAlert {
        kind: "handoff",
        detail: format!(
            "Customer {} asked for a person.",
            turn.conversation.customer_phone.masked()
        ),
    });
    draft.text = format!("{opening}OK, I've asked the owner to text you.");
}

#[async_trait]
impl Responder for GuidedResponder {
    async fn respond(&self, turn: &TurnInput, state: ConversationState) -> Result<Draft, ResponderError> {
        Ok(self.draft(turn, state, Utc::now(), false).await)
    }
}
