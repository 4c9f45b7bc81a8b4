//! A web chat visitor proving a phone number, inside their turn: a number
//! typed in the chat gets a code texted to it (a `verification_code` job,
//! committed with the turn), and the code typed back verifies the number
//! (`Event::PhoneVerified`, in the same commit as the answer), which
//! `desk::book` requires of a web customer. Every answer here is stated by
//! code.

use chrono::{DateTime, Utc};

use super::payload::{JobPayload, JobTarget, VerificationCode};
use super::turns::Engine;
use crate::channel::webchat::{
    CODE_LIFETIME, MAX_CODE_ATTEMPTS, MAX_CODES_PER_SESSION, as_code, as_phone, hash_secret,
};
use crate::domain::conversation::{ConversationState, Event, transition};
use crate::store::webchat::PendingCode;
use crate::store::{MessageKind, NewJob, OutboundDraft, StoreError, TurnInput};

pub const CODE_SENT: &str = "Thanks. A code is on its way to that number by text. Please type it here.";
pub const CODE_WRONG: &str = "That code is not the one we texted. Please check the text and type it again.";
pub const CODE_EXPIRED: &str = "That code has expired. Type your mobile number again for a new one.";
pub const TOO_MANY_ATTEMPTS: &str =
    "That was too many wrong codes. Type your mobile number again for a new one.";
pub const TOO_MANY_CODES: &str =
    "We have texted as many codes as we can for this chat. Please text or call us to book.";
pub const VERIFIED: &str = "Thank you, your number is verified.";
pub const PICK_AGAIN: &str = " Which opening would you like? Type its number.";

/// What the verification step does with a visitor's text.
pub(crate) enum Verification {
    /// Answered by code: the reply and the job it plans.
    Answer(Answer),
    /// The code was right and the visitor had picked an offered opening
    /// before it was asked for: book that one now (the turn goes on to the
    /// booking, whose confirmation is the reply).
    BookPicked(u8),
}

impl From<Answer> for Verification {
    fn from(answer: Answer) -> Self {
        Verification::Answer(answer)
    }
}

/// What the verification step answers, with the job it plans.
pub struct Answer {
    pub draft: OutboundDraft,
    pub jobs: Vec<NewJob>,
}

fn answer(body: impl Into<String>) -> Answer {
    Answer {
        draft: OutboundDraft {
            kind: MessageKind::Guided,
            body: body.into(),
        },
        jobs: Vec::new(),
    }
}

/// What follows a proven number: the opening picked before it is booked;
/// else, when the visitor was about to pick, the openings again, so
/// "which?" has its list.
fn after_verification(state: &ConversationState) -> Verification {
    let ConversationState::Scheduling(s) = state else {
        return answer(VERIFIED).into();
    };
    if let Some(picked) = s.picked
        && s.offered.iter().any(|o| o.id == picked)
    {
        return Verification::BookPicked(picked);
    }
    let mut body = VERIFIED.to_string();
    if !s.offered.is_empty() {
        body.push_str(PICK_AGAIN);
        for slot in &s.offered {
            body.push('\n');
            body.push_str(&slot.numbered(&s.quote));
        }
    }
    answer(body).into()
}

/// The code texted for this turn: derived from the session's secret, the
/// text it answers and the number, so a turn run again after a crash texts
/// the same code under the same job (once), never a second one.
fn code_for(secret: &str, through: i64, phone: &str) -> String {
    let hash = hash_secret(secret, &format!("{through}:{phone}"));
    let n = u64::from_str_radix(&hash[..12], 16).unwrap_or(0) % 1_000_000;
    format!("{n:06}")
}

impl Engine {
    /// The verification step's answer to a web visitor's latest text, or
    /// `None` when the text is not a number or a code the step is waiting
    /// for (the responder answers it).
    pub(crate) async fn web_verification(
        &self,
        turn: &TurnInput,
        state: &mut ConversationState,
        now: DateTime<Utc>,
    ) -> Result<Option<Verification>, StoreError> {
        let Some(store) = &self.webchat else {
            return Ok(None);
        };
        let address = &turn.conversation.customer_phone;
        let Some(last) = turn.pending.last() else {
            return Ok(None);
        };
        let Some(session) = store.web_session_of(address).await? else {
            return Ok(None);
        };
        let verified = state.job().is_some_and(|j| j.verified_phone.is_some());

        // The session proved a number the job does not carry: the turn that
        // took the code stored the proof and was cut off before its commit
        // (this is its rerun, or the visitor typing the spent code again),
        // or a new job in the same chat. The proof stands: the job gets it.
        if !verified
            && session.code.is_none()
            && let Some(phone) = session.verified_phone.clone()
        {
            if let Ok(next) = transition(state.clone(), Event::PhoneVerified(phone)) {
                *state = next;
            }
            if as_code(&last.body).is_some() {
                return Ok(Some(after_verification(state)));
            }
            return Ok(None);
        }

        if let (Some(code), Some(typed)) = (&session.code, as_code(&last.body)) {
            if now >= code.expires_at {
                return Ok(Some(answer(CODE_EXPIRED).into()));
            }
            if code.attempts >= MAX_CODE_ATTEMPTS {
                return Ok(Some(answer(TOO_MANY_ATTEMPTS).into()));
            }
            if hash_secret(address.as_str(), &typed) != code.code_hash {
                let attempts = store.web_code_failed(address).await?;
                tracing::info!(visitor = %address.masked(), attempts, "a wrong verification code");
                return Ok(Some(
                    answer(if attempts >= MAX_CODE_ATTEMPTS {
                        TOO_MANY_ATTEMPTS
                    } else {
                        CODE_WRONG
                    })
                    .into(),
                ));
            }
            // The number's own SMS conversation at this business: the same
            // customer record its texts use, now linked to this chat.
            let linked = self
                .store
                .owner_conversation(
                    &session.business_id,
                    &code.phone,
                    &turn.conversation.business_number,
                )
                .await?;
            match transition(state.clone(), Event::PhoneVerified(code.phone.clone())) {
                Ok(next) => *state = next,
                Err(e) => tracing::info!(error = %e, "a verified number with no open job to keep it"),
            }
            store.web_phone_verified(address, &code.phone, linked).await?;
            tracing::info!(visitor = %address.masked(), phone = %code.phone.masked(), "web visitor verified a phone number");
            return Ok(Some(after_verification(state)));
        }

        if verified {
            return Ok(None);
        }
        let Some(phone) = as_phone(&last.body) else {
            return Ok(None);
        };
        if session.codes_sent >= MAX_CODES_PER_SESSION {
            return Ok(Some(answer(TOO_MANY_CODES).into()));
        }
        let code = code_for(&session.secret, last.id.0, phone.as_str());
        store
            .web_code_sent(
                address,
                &PendingCode {
                    phone: phone.clone(),
                    code_hash: hash_secret(address.as_str(), &code),
                    expires_at: now
                        + chrono::Duration::from_std(CODE_LIFETIME)
                            .expect("ten minutes fit a chrono Duration"),
                    attempts: 0,
                },
            )
            .await?;
        let minutes = CODE_LIFETIME.as_secs() / 60;
        let text = JobPayload::VerificationCode(VerificationCode {
            business_id: session.business_id.clone(),
            phone: phone.clone(),
            body: format!(
                "{}: your web chat code is {code}. It expires in {minutes} minutes. If you did not ask for it, ignore this text.",
                self.business.business.name
            ),
        });
        let job = text.job(JobTarget {
            dedupe_key: format!("verify:{}:{}", turn.conversation.id.0, last.id.0),
            conversation_id: Some(turn.conversation.id),
            customer_id: None,
            recipient: phone.as_str().to_string(),
            run_at: now,
            max_attempts: 3,
        });
        tracing::info!(visitor = %address.masked(), phone = %phone.masked(), "verification code texted");
        let mut reply = answer(CODE_SENT);
        reply.jobs.push(job);
        Ok(Some(reply.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_run_again_texts_the_same_code() {
        let a = code_for("secret", 7, "+15035551234");
        assert_eq!(a, code_for("secret", 7, "+15035551234"));
        assert_eq!(a.len(), 6);
        assert_ne!(a, code_for("other", 7, "+15035551234"));
    }
}
