//! One turn: the customer's unanswered texts in, one reply out.
//!
//! A turn is safe to run again after a crash at any point: the reply is
//! queued in the same transaction that marks the texts answered, keyed on
//! the last text it answers, and delivery claims each queued text once.

use std::sync::Arc;

use crate::assistant::{Draft, Responder, ResponderError};
use crate::config::business::BusinessConfig;
use crate::domain::keywords::{self, Keyword};
use crate::domain::sms_text;
use crate::store::{
    ConversationId, Delivery, InboundResolution, MessageId, OutboundDraft, OutboundSms, Store, StoreError,
    TurnInput,
};
use crate::templates;
use crate::twilio::{SendError, SmsSender};

pub struct Engine {
    pub store: Arc<dyn Store>,
    pub responder: Arc<dyn Responder>,
    pub sender: Arc<dyn SmsSender>,
    pub business: Arc<BusinessConfig>,
    /// Longest a turn may wait on the responder.
    pub turn_deadline: std::time::Duration,
}

/// What a turn did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnResult {
    NothingPending,
    /// `None` when a rerun found its reply already stored.
    Replied(Option<MessageId>),
    /// Keywords handled by code with nothing to say (STOP, START).
    Silent,
    /// The model was unreachable; the customer got an apology.
    Apologized(Option<MessageId>),
}

/// How code, not the model, answers a compliance keyword.
enum KeywordAction {
    Silent,
    Reply(OutboundDraft),
}

impl Engine {
    /// Runs a turn. The caller holds the conversation's lease.
    #[tracing::instrument(name = "turn", skip_all, fields(conversation = id.0))]
    pub async fn run_turn(&self, id: ConversationId) -> Result<TurnResult, StoreError> {
        let history_limit = self.business.assistant.history_messages;
        let turn = self.store.turn_input(id, history_limit).await?;
        let Some(last) = turn.pending.last().map(|m| m.id) else {
            return Ok(TurnResult::NothingPending);
        };
        tracing::info!(
            customer = %turn.conversation.customer_phone.masked(),
            texts = turn.pending.len(),
            "turn started"
        );

        if let Some(action) = self.handle_keywords(&turn).await? {
            return match action {
                KeywordAction::Silent => {
                    self.conclude(id, last, InboundResolution::Handled, None).await?;
                    Ok(TurnResult::Silent)
                }
                KeywordAction::Reply(draft) => {
                    let reply = self
                        .conclude(id, last, InboundResolution::Handled, Some(draft))
                        .await?;
                    Ok(TurnResult::Replied(reply))
                }
            };
        }

        let drafted = match tokio::time::timeout(self.turn_deadline, self.responder.respond(&turn)).await {
            Ok(result) => result,
            Err(_) => Err(ResponderError::DeadlineExceeded(self.turn_deadline)),
        };
        match drafted {
            Ok(Draft { text, owner_alert }) => {
                if let Some(alert) = owner_alert {
                    self.alert("needs_owner", Some(id), &alert).await;
                }
                let body = sms_text::prepare_reply(&text, self.business.sms.max_segments);
                let draft = OutboundDraft { kind: "reply", body };
                let reply = self
                    .conclude(id, last, InboundResolution::Handled, Some(draft))
                    .await?;
                Ok(TurnResult::Replied(reply))
            }
            Err(e) => {
                tracing::error!(error = %e, "no reply from the model; apologizing to the customer");
                self.alert(
                    "model_unavailable",
                    Some(id),
                    &format!(
                        "Could not answer {} ({} text(s)): {e}. The customer got an apology; please follow up.",
                        turn.conversation.customer_phone.masked(),
                        turn.pending.len()
                    ),
                )
                .await;
                let draft = OutboundDraft {
                    kind: "apology",
                    body: templates::apology(&self.business),
                };
                let reply = self
                    .conclude(id, last, InboundResolution::Failed, Some(draft))
                    .await?;
                Ok(TurnResult::Apologized(reply))
            }
        }
    }

    /// Commits the turn's outcome and sends its reply, if it has one.
    async fn conclude(
        &self,
        id: ConversationId,
        through: MessageId,
        resolution: InboundResolution,
        draft: Option<OutboundDraft>,
    ) -> Result<Option<MessageId>, StoreError> {
        let claimed = self.store.finish_turn(id, through, resolution, draft).await?;
        match claimed {
            Some(sms) => {
                let reply = sms.id;
                self.send_claimed(sms).await?;
                Ok(Some(reply))
            }
            None => Ok(None),
        }
    }

    /// Applies STOP / START / HELP before anything else sees the texts.
    /// Returns `None` when the turn should go on to the model.
    async fn handle_keywords(&self, turn: &TurnInput) -> Result<Option<KeywordAction>, StoreError> {
        let conversation = &turn.conversation;
        let mut opted_out = conversation.opted_out;
        let mut last_keyword = None;
        for message in &turn.pending {
            let keyword = keywords::classify(&message.body, opted_out);
            match keyword {
                Some(Keyword::OptOut) => opted_out = true,
                Some(Keyword::OptIn) => opted_out = false,
                Some(Keyword::Help) | None => {}
            }
            last_keyword = keyword;
        }
        if opted_out != conversation.opted_out {
            self.store
                .set_opted_out(conversation.customer_id, opted_out)
                .await?;
            tracing::info!(
                customer = %conversation.customer_phone.masked(),
                opted_out,
                "customer changed their text preference"
            );
        }
        // An opted-out customer gets no texts at all; Twilio itself confirms
        // STOP and START to the customer, so we add nothing to either.
        if opted_out {
            return Ok(Some(KeywordAction::Silent));
        }
        Ok(match last_keyword {
            Some(Keyword::Help) => Some(KeywordAction::Reply(OutboundDraft {
                kind: "help",
                body: templates::help(&self.business),
            })),
            Some(Keyword::OptIn) => Some(KeywordAction::Silent),
            Some(Keyword::OptOut) | None => None,
        })
    }

    /// Sends a queued text, once. A text another task already claimed, or
    /// one already sent, is left alone.
    #[tracing::instrument(name = "deliver", skip_all, fields(message = id.0))]
    pub async fn deliver(&self, id: MessageId) -> Result<(), StoreError> {
        match self.store.claim_outbound(id).await? {
            Some(sms) => self.send_claimed(sms).await,
            None => Ok(()),
        }
    }

    /// Sends a text this task has claimed, and records what happened.
    async fn send_claimed(&self, sms: OutboundSms) -> Result<(), StoreError> {
        let id = sms.id;
        if sms.customer_opted_out {
            self.store.record_delivery(id, &Delivery::OptedOut).await?;
            return Ok(());
        }
        let delivery = match self.sender.send(&sms.from, &sms.to, &sms.body).await {
            Ok(sid) => Delivery::Sent { sid },
            Err(SendError::OptedOut) => {
                self.store.set_opted_out(sms.customer_id, true).await?;
                Delivery::OptedOut
            }
            Err(SendError::Ambiguous(error)) => {
                self.alert(
                    "send_unknown",
                    Some(sms.conversation_id),
                    &format!(
                        "A text to {} may not have been delivered: {error}",
                        sms.to.masked()
                    ),
                )
                .await;
                Delivery::Unknown { error }
            }
            Err(e) => {
                self.alert(
                    "send_failed",
                    Some(sms.conversation_id),
                    &format!("A text to {} was not delivered: {e}", sms.to.masked()),
                )
                .await;
                Delivery::Failed { error: e.to_string() }
            }
        };
        tracing::info!(to = %sms.to.masked(), ?delivery, "delivery recorded");
        // The text is out; failing to record that must not lose the fact.
        let mut attempt = 0;
        loop {
            match self.store.record_delivery(id, &delivery).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "could not record a delivery; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, ?delivery, "delivery happened but could not be recorded");
                    return Err(e);
                }
            }
        }
    }

    /// Delivers texts left queued, e.g. by a crash between queueing and
    /// sending.
    pub async fn deliver_undelivered(&self) -> Result<usize, StoreError> {
        let ids = self.store.undelivered().await?;
        for id in &ids {
            self.deliver(*id).await?;
        }
        Ok(ids.len())
    }

    /// Owner alerts go to the log at error level and into the store, where
    /// notifications pick them up. Failing to store one must not fail the turn.
    async fn alert(&self, kind: &str, conversation: Option<ConversationId>, detail: &str) {
        tracing::error!(alert = kind, detail, "owner alert");
        if let Err(e) = self.store.record_alert(kind, conversation, detail).await {
            tracing::error!(error = %e, "could not store owner alert");
        }
    }
}
