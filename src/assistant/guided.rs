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
use crate::domain::availability::DateFilter;
use crate::domain::conversation::{
    ConversationState, Event, HandoffReason, JobUpdate, OfferedSlot, Scheduling, transition,
};
use crate::domain::guided::{self, QUOTED_MENU, QuotedChoice, SlotPick};
use crate::domain::money::Money;
use crate::domain::quote::price;
use crate::scheduling::{Scheduler, SchedulingError};
use crate::store::TurnInput;
use crate::store::{AlertKind, Direction};
use crate::templates;

pub struct GuidedResponder {
    pub business: Arc<BusinessConfig>,
    pub scheduler: Arc<Scheduler>,
}

const CALENDAR_DOWN: &str = "Our calendar is unavailable right now; the owner will text you to set a time.";

impl GuidedResponder {
    /// Offers openings (preferring `filter`) and moves to SCHEDULING;
    /// returns the text that lists them. A booking being moved is never
    /// offered its own time again.
    async fn offer(
        &self,
        turn: &TurnInput,
        draft: &mut Draft,
        now: DateTime<Utc>,
        filter: &DateFilter,
    ) -> String {
        let Some(quote) = draft.state.quote().cloned() else {
            return CALENDAR_DOWN.into();
        };
        let rescheduling = match &draft.state {
            ConversationState::Scheduling(s) => s.rescheduling.clone(),
            _ => None,
        };
        match self
            .scheduler
            .offer(turn.conversation.id, &quote, filter, rescheduling.as_ref(), now)
            .await
        {
            Ok(mut offer) => {
                if let Some(current) = &rescheduling {
                    offer.slots.retain(|slot| slot.start != current.slot.start);
                    for (i, slot) in offer.slots.iter_mut().enumerate() {
                        slot.id = (i + 1) as u8;
                    }
                }
                if offer.slots.is_empty() {
                    draft.alerts.push(OwnerAlert {
                        kind: AlertKind::NoOpenings,
                        detail: format!(
                            "No openings for customer {}. Please text them to find a time.",
                            turn.conversation.customer_phone.masked()
                        ),
                    });
                    return "We have no openings soon; the owner will text you to find a time.".into();
                }
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

    /// The price booked for `slot`: what the customer is asked to confirm
    /// must be what the booking will cost.
    fn slot_total(&self, scheduling: &Scheduling, slot: &OfferedSlot) -> Money {
        slot.quote.as_ref().unwrap_or(&scheduling.quote).total
    }

    /// Books an offered slot (or moves the booking to it).
    async fn book(
        &self,
        turn: &TurnInput,
        draft: &mut Draft,
        s: &Scheduling,
        slot: &OfferedSlot,
        now: DateTime<Utc>,
        opening: &str,
    ) {
        if let Some(current) = &s.rescheduling
            && current.slot.start == slot.start
        {
            draft.text = format!(
                "{opening}You're already booked for {}. Pick another time, or reply KEEP to leave it as it is.",
                current.slot.label
            );
            return;
        }
        match self
            .scheduler
            .book(
                &turn.conversation,
                &s.job,
                &s.quote,
                slot,
                s.rescheduling.as_ref(),
                now,
            )
            .await
        {
            Ok(booking) => {
                if let Ok(next) = transition(draft.state.clone(), Event::SlotBooked(booking)) {
                    draft.state = next;
                }
                draft.text = format!(
                    "{opening}You're booked: {}. Total {}. {}",
                    slot.label,
                    self.slot_total(s, slot),
                    guided::RESCHEDULE_HINT
                );
            }
            Err(SchedulingError::Taken(_)) => {
                let offered = self.offer(turn, draft, now, &DateFilter::default()).await;
                draft.text = format!("{opening}Sorry, that time was just taken. {offered}");
            }
            Err(e) => {
                self.calendar_down(turn, draft, &e);
                draft.text = format!("{opening}{CALENDAR_DOWN}");
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
                    kind: AlertKind::BookingCancelled,
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
                AlertKind::CalendarCredentials
            }
            _ => AlertKind::CalendarUnavailable,
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
        // The flow cannot read a photo, but it heard it arrive.
        let sent_photo = turn
            .images
            .iter()
            .any(|image| turn.pending.iter().any(|m| m.id == image.message_id));
        if sent_photo {
            opening.push_str("Thanks for the photo! ");
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
                // much?" is an answer, then a question. A text is the answer
                // to the question asked, or else free text ("a couch and two
                // mattresses", "3 bed 2 bath deep clean").
                let mut understood = false;
                let mut needs_size = false;
                for message in &turn.pending {
                    let job = draft.state.job().cloned().unwrap_or_default();
                    let asked = guided::next_question(&job, kind, pricing);
                    // Free text first: "studio, 1 bath, standard" answers
                    // more than the bedrooms it was asked.
                    let free = guided::understand(&message.body, kind, pricing, &job);
                    needs_size |= free.needs_size;
                    for update in free.updates() {
                        understood = true;
                        step(&mut draft, Event::DetailsRecorded(update));
                    }
                    // Then as the answer to the question, if that is still
                    // open: "yes, and 2 flights of stairs".
                    let job = draft.state.job().cloned().unwrap_or_default();
                    if let Some(question) = asked
                        && guided::next_question(&job, kind, pricing) == Some(question)
                        && let Some(update) = guided::interpret(question, &message.body, pricing, &job)
                    {
                        understood = true;
                        step(&mut draft, Event::DetailsRecorded(update));
                    }
                }
                let job = draft.state.job().cloned().unwrap_or_default();
                match guided::next_question(&job, kind, pricing) {
                    Some(question) => {
                        let asked = guided::ask(question, pricing);
                        draft.text = if needs_size && question == guided::Question::Size {
                            // Several things and no size: how much in all.
                            let asked =
                                asked.replacen("What needs to go?", "About how much is that in all?", 1);
                            format!("{opening}Got it. {asked}")
                        } else if understood || turn.first_contact || apologize || sent_photo {
                            format!("{opening}{asked}")
                        } else {
                            format!("{opening}Sorry, I didn't catch that. {asked}")
                        };
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
                                    kind: AlertKind::CannotPrice,
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
                let last_sent = turn
                    .history
                    .iter()
                    .rev()
                    .find(|m| m.direction == Direction::Outbound)
                    .map(|m| m.body.as_str())
                    .unwrap_or("");
                let asked_address = last_sent.ends_with(guided::ADDRESS_QUESTION);
                let asked_name = last_sent.ends_with(guided::NAME_QUESTION);
                match guided::quoted_choice(text) {
                    Some(QuotedChoice::Book) => {
                        // The crew's email and calendar event say who to ask for.
                        if quoted.job.customer_name.is_none() {
                            draft.text = format!("{opening}{}", guided::NAME_QUESTION);
                        } else if quoted.job.address.is_none() {
                            draft.text = format!("{opening}{}", guided::ADDRESS_QUESTION);
                        } else {
                            let offered = self.offer(turn, &mut draft, now, &DateFilter::default()).await;
                            draft.text = format!("{opening}{offered}");
                        }
                    }
                    Some(QuotedChoice::Person) => {
                        let summary = format!("Wants a person about quote {}.", quoted.quote.id);
                        hand_off(&mut draft, turn, now, summary, &opening);
                    }
                    // The name is asked once. An answer that is not a name
                    // (an address, say) is taken for what it is.
                    None if asked_name && !text.trim().is_empty() => {
                        let name = guided::customer_name(text);
                        let address = (name.is_none() && text.chars().any(|c| c.is_ascii_digit()))
                            .then(|| text.trim().to_string())
                            .or(quoted.job.address.clone());
                        let thanks = match &name {
                            Some(name) => format!("Thanks, {name}! "),
                            None => "Thanks! ".to_string(),
                        };
                        step(
                            &mut draft,
                            Event::DetailsRecorded(JobUpdate {
                                customer_name: name,
                                address: address.clone(),
                                ..JobUpdate::default()
                            }),
                        );
                        if address.is_none() {
                            draft.text = format!("{opening}{thanks}{}", guided::ADDRESS_QUESTION);
                        } else {
                            let offered = self.offer(turn, &mut draft, now, &DateFilter::default()).await;
                            draft.text = format!("{opening}{thanks}{offered}");
                        }
                    }
                    None if asked_address && !text.trim().is_empty() => {
                        step(
                            &mut draft,
                            Event::DetailsRecorded(JobUpdate {
                                address: Some(text.trim().to_string()),
                                ..JobUpdate::default()
                            }),
                        );
                        let offered = self.offer(turn, &mut draft, now, &DateFilter::default()).await;
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
                let tz = business.business.timezone;
                let today = now.with_timezone(&tz).date_naive();
                let last_sent = turn
                    .history
                    .iter()
                    .rev()
                    .find(|m| m.direction == Direction::Outbound)
                    .map(|m| m.body.as_str())
                    .unwrap_or("");
                // A pick in words was confirmed with YES; anything else is
                // read afresh.
                let confirmed = guided::confirmed_in(last_sent, &s.offered)
                    .filter(|_| guided::yes_or_no(text) == Some(true));
                let pick = match confirmed {
                    Some(i) => SlotPick::Number(i),
                    // YES to a list of one is that opening, in words: it
                    // is confirmed like any other pick in words.
                    None if s.offered.len() == 1 && guided::yes_or_no(text) == Some(true) => {
                        SlotPick::Words(0)
                    }
                    None => guided::pick_slot(text, &s.offered, tz, today),
                };
                match pick {
                    SlotPick::Number(i) => {
                        let slot = s.offered[i].clone();
                        self.book(turn, &mut draft, &s, &slot, now, &opening).await;
                    }
                    SlotPick::Words(i) => {
                        let slot = &s.offered[i];
                        draft.text = format!(
                            "{opening}{}",
                            guided::confirm_pick(slot, self.slot_total(&s, slot))
                        );
                    }
                    SlotPick::Several(fitting) => {
                        let list: Vec<String> =
                            fitting.iter().map(|&i| s.offered[i].numbered(&s.quote)).collect();
                        draft.text =
                            format!("{opening}Which one?\n{}\nReply with its number.", list.join("\n"));
                    }
                    SlotPick::Elsewhere(wanted) => {
                        tracing::debug!(asked = %wanted.description, "no offered opening fits; searching");
                        let offered = self.offer(turn, &mut draft, now, &wanted.search_filter()).await;
                        let fresh = match &draft.state {
                            ConversationState::Scheduling(fresh) => fresh.clone(),
                            _ => s.clone(),
                        };
                        let fitting: Vec<&OfferedSlot> = guided::fitting(&fresh.offered, tz, &wanted)
                            .into_iter()
                            .map(|i| &fresh.offered[i])
                            .collect();
                        draft.text = match fitting.as_slice() {
                            // Exactly what was asked for exists: confirm it.
                            [slot] if fresh.offered != s.offered => format!(
                                "{opening}{}",
                                guided::confirm_pick(slot, self.slot_total(&fresh, slot))
                            ),
                            // Said without restating the time: every time in a
                            // text must be one that was offered.
                            [] if offered.starts_with("Openings:") => {
                                format!("{opening}Nothing is open at the time you asked. {offered}")
                            }
                            // Several fit, or the scheduler already said it
                            // fell back to the earliest openings.
                            _ => format!("{opening}{offered}"),
                        };
                    }
                    SlotPick::Unclear if s.offered.is_empty() => {
                        let offered = self.offer(turn, &mut draft, now, &DateFilter::default()).await;
                        draft.text = format!("{opening}{offered}");
                    }
                    SlotPick::Unclear => {
                        // The list stands: a new search would lose the day
                        // the customer already chose.
                        let list: Vec<String> =
                            s.offered.iter().map(|slot| slot.numbered(&s.quote)).collect();
                        draft.text = format!(
                            "{opening}Sorry, I didn't catch which one. Openings:\n{}\nReply with a number, or tell me a day that suits you.",
                            list.join("\n")
                        );
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
                    let offered = self.offer(turn, &mut draft, now, &DateFilter::default()).await;
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
        kind: AlertKind::Handoff,
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
