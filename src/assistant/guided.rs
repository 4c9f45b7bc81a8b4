//! The guided responder: the state machine driven by numbered questions,
//! with no model. It serves when no ANTHROPIC_API_KEY is set, and takes over
//! a turn when Claude stays unreachable.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Draft, Responder, ResponderError};
use crate::clock::Clock;
use crate::config::business::BusinessConfig;
use crate::desk::{self, DeskError};
use crate::domain::availability::DateFilter;
use crate::domain::conversation::{
    CancelledBy, ConversationState, Event, HandoffReason, JobUpdate, OfferedSlot, Scheduling, transition,
};
use crate::domain::guided::{self, QUOTED_MENU, QuotedChoice, SlotPick};
use crate::domain::money::Money;
use crate::scheduling::{Offer, Scheduler, SchedulingError};
use crate::store::Direction;
use crate::store::TurnInput;
use crate::templates;

/// Added to a question the customer has missed twice in a row.
const STUCK: &str = "Or reply PERSON to talk to someone.";

/// Whether our last text to the customer already said we did not follow.
fn missed_last_time(turn: &TurnInput) -> bool {
    turn.history
        .iter()
        .rev()
        .find(|m| m.direction == crate::store::Direction::Outbound)
        .is_some_and(|m| m.body.contains("Sorry, I didn't catch that."))
}

#[derive(Clone)]
pub struct GuidedResponder {
    pub scheduler: Arc<Scheduler>,
    pub clock: Arc<dyn Clock>,
}

const CALENDAR_DOWN: &str = "Our calendar is unavailable right now; the owner will text you to set a time.";
const NO_OPENINGS: &str = "We have no openings soon; the owner will text you to find a time.";

/// The openings on offer, numbered, as the customer reads them.
fn offer_list(offer: Offer) -> String {
    let list = offer.numbered();
    let note = offer.note.map(|n| format!("{n} ")).unwrap_or_default();
    format!("{note}Openings:\n{list}\nReply with a number, or tell me a day that suits you.")
}

impl GuidedResponder {
    /// Offers openings (preferring `filter`) and moves to SCHEDULING;
    /// returns the text that lists them.
    async fn offer(
        &self,
        business: &BusinessConfig,
        turn: &TurnInput,
        draft: &mut Draft,
        now: DateTime<Utc>,
        filter: &DateFilter,
    ) -> String {
        let offered = desk::offer_openings(
            &mut draft.desk(business, &turn.conversation, now),
            &self.scheduler,
            filter,
            "",
        )
        .await;
        match offered {
            Ok(offer) if offer.slots.is_empty() => NO_OPENINGS.into(),
            Ok(offer) => offer_list(offer),
            // The desk told the owner.
            Err(_) => CALENDAR_DOWN.into(),
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
        business: &BusinessConfig,
        turn: &TurnInput,
        draft: &mut Draft,
        slot: &OfferedSlot,
        now: DateTime<Utc>,
        opening: &str,
    ) {
        let booked = desk::book(
            &mut draft.desk(business, &turn.conversation, now),
            &self.scheduler,
            slot.id,
        )
        .await;
        draft.text = match booked {
            Ok(booked) => format!(
                "{opening}You're booked: {}. Total {}. {}",
                booked.slot.label,
                booked.total,
                guided::RESCHEDULE_HINT
            ),
            Err(DeskError::AlreadyBookedFor(label)) => format!(
                "{opening}You're already booked for {label}. Pick another time, or reply KEEP to leave it as it is."
            ),
            Err(DeskError::AddressMissing) => format!("{opening}{}", guided::ADDRESS_QUESTION),
            Err(DeskError::PhoneUnverified) => {
                format!("{opening}{}", crate::channel::webchat::ASK_FOR_PHONE)
            }
            Err(DeskError::Scheduling(SchedulingError::Taken(_))) => {
                let offered = self
                    .offer(business, turn, draft, now, &DateFilter::default())
                    .await;
                format!("{opening}Sorry, that time was just taken. {offered}")
            }
            Err(_) => format!("{opening}{CALENDAR_DOWN}"),
        };
    }

    /// Books the opening a web visitor picked before verifying a phone
    /// number, now that they have (`Engine::web_verification`): from
    /// `state`, the state after the verification.
    pub async fn book_picked(
        &self,
        business: &BusinessConfig,
        turn: &TurnInput,
        state: ConversationState,
        now: DateTime<Utc>,
        slot_id: u8,
    ) -> Draft {
        let mut draft = Draft {
            text: String::new(),
            state,
            new_quotes: Vec::new(),
            alerts: Vec::new(),
        };
        let opening = format!("{} ", crate::jobs::verification::VERIFIED);
        match desk::offered_slot(&draft.state, slot_id) {
            Ok(slot) => self.book(business, turn, &mut draft, &slot, now, &opening).await,
            // The verification checked it was on offer; say which are.
            Err(_) => {
                let offered = self
                    .offer(business, turn, &mut draft, now, &DateFilter::default())
                    .await;
                draft.text = format!("{opening}{offered}");
            }
        }
        draft
    }

    async fn cancel(
        &self,
        business: &BusinessConfig,
        turn: &TurnInput,
        draft: &mut Draft,
        now: DateTime<Utc>,
        opening: &str,
    ) {
        let cancelled = desk::cancel(
            &mut draft.desk(business, &turn.conversation, now),
            &self.scheduler,
            CancelledBy::Customer,
        )
        .await;
        draft.text = match cancelled {
            Ok(booking) => format!(
                "{opening}Your booking for {} is cancelled. Text us any time to book again.",
                booking.slot.label
            ),
            Err(_) => format!("{opening}{CALENDAR_DOWN}"),
        };
    }

    /// Hands the conversation to the owner at the customer's request.
    fn hand_off(
        &self,
        business: &BusinessConfig,
        turn: &TurnInput,
        draft: &mut Draft,
        now: DateTime<Utc>,
        summary: &str,
        opening: &str,
    ) {
        let handed = desk::hand_off(
            &mut draft.desk(business, &turn.conversation, now),
            HandoffReason::CustomerAskedForPerson,
            summary,
        );
        if let Err(e) = handed {
            tracing::error!(error = %e, "guided flow made an illegal move");
        }
        draft.text = format!("{opening}OK, I've asked the owner to text you.");
    }

    /// One guided turn. `apologize` opens the reply with an apology, for
    /// when this stands in for a model that failed.
    pub async fn draft(
        &self,
        business: &BusinessConfig,
        turn: &TurnInput,
        state: ConversationState,
        now: DateTime<Utc>,
        apologize: bool,
    ) -> Draft {
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
            self.hand_off(
                business,
                turn,
                &mut draft,
                now,
                "Asked for a person (guided flow).",
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
                        } else if missed_last_time(turn) {
                            // Stuck on the same question: say how to reach a
                            // person, which is read in any state.
                            format!("{opening}Sorry, I didn't catch that. {asked}\n{STUCK}")
                        } else {
                            format!("{opening}Sorry, I didn't catch that. {asked}")
                        };
                    }
                    None => {
                        let issued = desk::issue_quote(&mut draft.desk(business, &turn.conversation, now));
                        match issued {
                            Ok(quote) => {
                                draft.text = format!(
                                    "{opening}{} {QUOTED_MENU}",
                                    templates::quote_message(business, &quote)
                                );
                            }
                            Err(e) => {
                                // The catalog changed under a half-finished job.
                                let summary = format!("The guided flow could not price the job: {e}");
                                let handed = desk::hand_off(
                                    &mut draft.desk(business, &turn.conversation, now),
                                    HandoffReason::CannotPrice,
                                    &summary,
                                );
                                if let Err(e) = handed {
                                    tracing::error!(error = %e, "guided flow made an illegal move");
                                }
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
                            let offered = self
                                .offer(business, turn, &mut draft, now, &DateFilter::default())
                                .await;
                            draft.text = format!("{opening}{offered}");
                        }
                    }
                    Some(QuotedChoice::Person) => {
                        let summary = format!("Wants a person about quote {}.", quoted.quote.id);
                        self.hand_off(business, turn, &mut draft, now, &summary, &opening);
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
                            let offered = self
                                .offer(business, turn, &mut draft, now, &DateFilter::default())
                                .await;
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
                        let offered = self
                            .offer(business, turn, &mut draft, now, &DateFilter::default())
                            .await;
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
                match desk::keep_booking(&mut draft.desk(business, &turn.conversation, now)) {
                    Ok(kept) => {
                        draft.text = format!(
                            "{opening}No problem: you're still booked for {}.",
                            kept.slot.label
                        );
                    }
                    Err(e) => tracing::error!(error = %e, "guided flow made an illegal move"),
                }
            }
            ConversationState::Scheduling(s)
                if s.rescheduling.is_some() && guided::wants_cancel_booking(text) =>
            {
                self.cancel(business, turn, &mut draft, now, &opening).await;
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
                // An opening was picked before the address was known (the
                // model offered it): this is the address, and the pick stands
                // to be made again.
                if s.job.address.is_none()
                    && last_sent.ends_with(guided::ADDRESS_QUESTION)
                    && !text.trim().is_empty()
                    && !s.offered.is_empty()
                {
                    step(
                        &mut draft,
                        Event::DetailsRecorded(JobUpdate {
                            address: Some(text.trim().to_string()),
                            ..JobUpdate::default()
                        }),
                    );
                    let list: Vec<String> = s.offered.iter().map(|slot| slot.numbered(&s.quote)).collect();
                    draft.text = format!(
                        "{opening}Thanks! Openings:\n{}\nReply with a number, or tell me a day that suits you.",
                        list.join("\n")
                    );
                    return draft;
                }
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
                        self.book(business, turn, &mut draft, &slot, now, &opening).await;
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
                        let offered = self
                            .offer(business, turn, &mut draft, now, &wanted.search_filter())
                            .await;
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
                        let offered = self
                            .offer(business, turn, &mut draft, now, &DateFilter::default())
                            .await;
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
                    let moving = desk::reschedule(
                        &mut draft.desk(business, &turn.conversation, now),
                        &self.scheduler,
                        &DateFilter::default(),
                        "",
                    )
                    .await;
                    let offered = match moving {
                        Ok(offer) if offer.slots.is_empty() => NO_OPENINGS.to_string(),
                        Ok(offer) => offer_list(offer),
                        Err(_) => CALENDAR_DOWN.to_string(),
                    };
                    draft.text = format!("{opening}Sure. {offered}");
                } else if guided::wants_cancel_booking(text) {
                    self.cancel(business, turn, &mut draft, now, &opening).await;
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

#[async_trait]
impl Responder for GuidedResponder {
    async fn respond(
        &self,
        business: &Arc<BusinessConfig>,
        turn: &TurnInput,
        state: ConversationState,
    ) -> Result<Draft, ResponderError> {
        Ok(self.draft(business, turn, state, self.clock.now(), false).await)
    }
}
