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
use crate::domain::conversation::{ConversationState, Event, HandoffReason, transition};
use crate::domain::guided::{self, QUOTED_MENU, QuotedChoice};
use crate::domain::quote::price;
use crate::store::TurnInput;
use crate::templates;

pub struct GuidedResponder {
    pub business: Arc<BusinessConfig>,
}

impl GuidedResponder {
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
            step(
                &mut draft,
                Event::HandOff {
                    reason: HandoffReason::CustomerAskedForPerson,
                    summary: "Asked for a person (guided flow).".into(),
                    at: now,
                },
            );
            draft.alerts.push(OwnerAlert {
                kind: "handoff",
                detail: format!(
                    "Customer {} asked for a person.",
                    turn.conversation.customer_phone.masked()
                ),
            });
            draft.text = format!("{opening}OK, I've asked the owner to text you.");
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
            ConversationState::Quoted(quoted) => match guided::quoted_choice(text) {
                Some(QuotedChoice::Book) => {
                    draft.alerts.push(OwnerAlert {
                        kind: "booking_request",
                        detail: format!(
                            "Customer {} wants to book quote {} ({}).",
                            turn.conversation.customer_phone.masked(),
                            quoted.quote.id,
                            quoted.quote.total
                        ),
                    });
                    draft.text = format!("{opening}Great! We'll text you shortly to pick a time.");
                }
                Some(QuotedChoice::Person) => {
                    step(
                        &mut draft,
                        Event::HandOff {
                            reason: HandoffReason::CustomerAskedForPerson,
                            summary: format!("Wants a person about quote {}.", quoted.quote.id),
                            at: now,
                        },
                    );
                    draft.alerts.push(OwnerAlert {
                        kind: "handoff",
                        detail: format!(
                            "Customer {} asked for a person.",
                            turn.conversation.customer_phone.masked()
                        ),
                    });
                    draft.text = format!("{opening}OK, I've asked the owner to text you.");
                }
                None => {
                    draft.text = format!(
                        "{opening}{} {QUOTED_MENU}",
                        templates::quote_message(business, &quoted.quote)
                    );
                }
            },
            ConversationState::Scheduling(s) => {
                draft.text = format!(
                    "{opening}{} {QUOTED_MENU}",
                    templates::quote_message(business, &s.quote)
                );
            }
            ConversationState::Booked(b) => {
                draft.text = format!(
                    "{opening}You're booked for {}. To change anything, reply PERSON and the owner will text you.",
                    b.booking.slot.label
                );
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
    async fn respond(&self, turn: &TurnInput, state: ConversationState) -> Result<Draft, ResponderError> {
        Ok(self.draft(turn, state, Utc::now(), false).await)
    }
}
