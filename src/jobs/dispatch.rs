//! Delivery: the last step of drafts → outbox → channel.
//!
//! The engine drafts a reply and the job runner a reminder; either is
//! stored in the outbox (a `messages` row, already claimed or claimed here)
//! and handed to the `Dispatcher`, the one path by which a text leaves. It
//! asks the conversation's channel whether free-form text may go out now,
//! sends the text or the business's approved template through that
//! channel's port, and records what happened, in channel terms.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::lease::TurnLease;
use super::plan;
use super::turns::alert_owner;
use crate::channel::{Channel, Channels, Content, SendError, whatsapp};
use crate::config::business::BusinessConfig;
use crate::store::{AlertKind, Delivery, MessageId, OutboundMessage, Store, StoreError};

pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub channels: Channels,
    pub clock: Arc<dyn crate::clock::Clock>,
}

/// What a stored text goes out as on its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing<'a> {
    Text(&'a str),
    /// Outside the free-form window: the approved template for the text's
    /// kind, carrying the text as a variable.
    Template {
        id: &'a str,
        variables: String,
    },
}

impl Outgoing<'_> {
    fn content(&self) -> Content<'_> {
        match self {
            Outgoing::Text(body) => Content::Text(body),
            Outgoing::Template { id, variables } => Content::Template { id, variables },
        }
    }
}

/// How `text` may go out on `channel` at `now`: judged at the moment of
/// sending, not when the text was drafted or queued, so a reply held by
/// quiet hours may find WhatsApp's window closed. `Err` when it may not go
/// out at all.
pub fn outgoing<'a>(
    channel: Channel,
    text: &'a OutboundMessage,
    business: &'a BusinessConfig,
    now: DateTime<Utc>,
) -> Result<Outgoing<'a>, SendError> {
    if channel.free_form_allowed(text.last_inbound_at, now) {
        return Ok(Outgoing::Text(&text.body));
    }
    match business.whatsapp.templates.for_kind(text.kind.as_str()) {
        (_, Some(id)) => Ok(Outgoing::Template {
            id,
            variables: whatsapp::content_variables(&business.business.name, &text.body),
        }),
        (key, None) => Err(SendError::OutsideWindow(format!(
            "no template is configured for it (`[whatsapp.templates] {key}`)"
        ))),
    }
}

impl Dispatcher {
    /// Sends a queued text, once. A text another task already claimed, or
    /// one already sent, is left alone.
    #[tracing::instrument(name = "deliver", skip_all, fields(message = id.0))]
    pub async fn deliver(&self, business: &BusinessConfig, id: MessageId) -> Result<(), StoreError> {
        if let Some(text) = self.store.claim_outbound(id).await? {
            self.send_claimed(business, text, self.clock.now(), None).await?;
        }
        Ok(())
    }

    /// Sends a text this task has claimed, records and returns what happened.
    /// `now` is the moment of sending, by which WhatsApp's window is judged.
    /// `lease`, the turn's lease on the text's conversation when the text is
    /// that turn's reply, is given up in the commit that records the send.
    pub async fn send_claimed(
        &self,
        business: &BusinessConfig,
        text: OutboundMessage,
        now: DateTime<Utc>,
        lease: Option<&TurnLease>,
    ) -> Result<Delivery, StoreError> {
        let id = text.id;
        let (channel, port) = self.channels.for_address(&text.to);
        if text.customer_opted_out {
            self.record(id, &Delivery::OptedOut, lease).await?;
            crate::meters::send(channel, &Delivery::OptedOut);
            return Ok(Delivery::OptedOut);
        }
        // How it goes out now; an earlier attempt went out the same way
        // unless WhatsApp's window closed between the two.
        let planned = outgoing(channel, &text, business, now);
        // An earlier attempt was cut off (a crash mid-send): ask the channel
        // whether it went out before sending it again.
        if text.attempts > 1 {
            let content = match &planned {
                Ok(outgoing) => outgoing.content(),
                Err(_) => Content::Text(&text.body),
            };
            match port
                .find_sent(&text.from, &text.to, content, text.created_at)
                .await
            {
                Ok(Some(sid)) => {
                    tracing::info!(to = %text.to.masked(), %sid, "an interrupted send had gone out; not sending again");
                    let delivery = Delivery::Sent {
                        channel_message_id: sid,
                    };
                    self.record(id, &delivery, lease).await?;
                    crate::meters::send(channel, &delivery);
                    return Ok(delivery);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not check an interrupted send; sending it"),
            }
        }
        let recipient = plan::CustomerContact {
            name: None,
            phone: text.to.clone(),
        };
        let sent = match planned {
            Ok(outgoing) => port.send(&text.from, &text.to, outgoing.content()).await,
            Err(withheld) => Err(withheld),
        };
        let delivery = match sent {
            Ok(sid) => Delivery::Sent {
                channel_message_id: sid,
            },
            Err(SendError::OutsideWindow(why)) => {
                self.alert(
                    business,
                    AlertKind::WhatsappWindow,
                    &text,
                    &format!(
                        "A WhatsApp {} to {} was not sent: the customer last wrote more than 24 hours ago, so WhatsApp allows only an approved template, and {why}. It said: \"{}\"",
                        text.kind,
                        text.to.as_str(),
                        text.body
                    ),
                    &recipient,
                )
                .await;
                Delivery::Withheld {
                    reason: format!("outside WhatsApp's 24-hour window: {why}"),
                }
            }
            Err(SendError::OptedOut) => {
                self.store.set_opted_out(text.customer_id, true).await?;
                Delivery::OptedOut
            }
            Err(SendError::Ambiguous(error)) => {
                self.alert(
                    business,
                    AlertKind::SendUnknown,
                    &text,
                    &format!(
                        "A text to {} may not have been delivered: {error}",
                        text.to.as_str()
                    ),
                    &recipient,
                )
                .await;
                Delivery::Unknown { error }
            }
            Err(e) => {
                self.alert(
                    business,
                    AlertKind::SendFailed,
                    &text,
                    &format!("A text to {} was not delivered: {e}", text.to.as_str()),
                    &recipient,
                )
                .await;
                Delivery::Failed { error: e.to_string() }
            }
        };
        tracing::info!(to = %text.to.masked(), ?delivery, "delivery recorded");
        crate::meters::send(channel, &delivery);
        // The text is out; failing to record that must not lose the fact.
        let mut attempt = 0;
        loop {
            match self.record(id, &delivery, lease).await {
                Ok(()) => return Ok(delivery),
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

    /// Records a send; with `lease`, gives it up in the same commit and
    /// keeps what the release said on it for the turn's worker.
    async fn record(
        &self,
        id: MessageId,
        delivery: &Delivery,
        lease: Option<&TurnLease>,
    ) -> Result<(), StoreError> {
        let Some(lease) = lease else {
            return self.store.record_delivery(id, delivery).await;
        };
        let waiting = self
            .store
            .record_delivery_and_release(id, delivery, lease.conversation, &lease.token)
            .await?;
        lease.mark_released(waiting);
        Ok(())
    }

    async fn alert(
        &self,
        business: &BusinessConfig,
        kind: AlertKind,
        text: &OutboundMessage,
        detail: &str,
        recipient: &plan::CustomerContact,
    ) {
        alert_owner(
            self.store.as_ref(),
            business,
            kind,
            Some(text.conversation_id),
            detail,
            Some(recipient),
            self.clock.now(),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::channel::ChannelPort;
    use crate::domain::phone::E164;
    use crate::store::{ConversationId, CustomerId};

    /// A port that records what it was asked to send.
    #[derive(Default)]
    struct Recording {
        sent: Mutex<Vec<(String, String)>>,
        /// What `find_sent` was asked about; it finds a template send.
        looked_up: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl ChannelPort for Recording {
        async fn send(&self, _from: &E164, to: &E164, content: Content<'_>) -> Result<String, SendError> {
            let what = match content {
                Content::Text(body) => body.to_string(),
                Content::Template { id, .. } => format!("template {id}"),
            };
            self.sent.lock().unwrap().push((to.as_str().to_string(), what));
            Ok("ID1".into())
        }

        async fn find_sent(
            &self,
            _from: &E164,
            _to: &E164,
            content: Content<'_>,
            _since: DateTime<Utc>,
        ) -> Result<Option<String>, SendError> {
            let (what, found) = match content {
                Content::Text(body) => (body.to_string(), None),
                Content::Template { id, variables } => (
                    format!("template {id} {variables}"),
                    Some("SMtemplate0000000000000000000001".to_string()),
                ),
            };
            self.looked_up.lock().unwrap().push(what);
            Ok(found)
        }
    }

    #[tokio::test]
    async fn an_interrupted_template_send_is_looked_up_as_the_template_and_not_sent_again() {
        let sid = "HX0123456789abcdef0123456789abcdef";
        let business = business(Some(sid));
        let whatsapp = Arc::new(Recording::default());
        let store: Arc<dyn crate::store::Store> = Arc::new(
            crate::store::sqlite::SqliteStore::connect("sqlite::memory:")
                .await
                .unwrap(),
        );
        let dispatcher = Dispatcher {
            store,
            channels: Channels::new(
                Arc::new(Recording::default()),
                whatsapp.clone(),
                Arc::new(Recording::default()),
            ),
            clock: crate::clock::system(),
        };
        // Claimed a second time: the first attempt was cut off mid-send,
        // after WhatsApp's window closed, so it went out as the template.
        let interrupted = OutboundMessage {
            attempts: 2,
            ..text("whatsapp:+15035551234", "reminder", 25)
        };
        let delivery = dispatcher
            .send_claimed(&business, interrupted, now(), None)
            .await
            .unwrap();
        assert_eq!(
            delivery,
            Delivery::Sent {
                channel_message_id: "SMtemplate0000000000000000000001".into()
            }
        );
        let looked_up = whatsapp.looked_up.lock().unwrap().clone();
        assert_eq!(looked_up.len(), 1);
        assert!(
            looked_up[0].starts_with(&format!("template {sid} "))
                && looked_up[0].contains("Reminder: tomorrow 8-10am. Reply C to confirm."),
            "{looked_up:?}"
        );
        assert!(whatsapp.sent.lock().unwrap().is_empty(), "sent twice");
    }

    fn now() -> DateTime<Utc> {
        "2026-03-10T12:00:00Z".parse().unwrap()
    }

    fn text(to: &str, kind: &str, last_inbound_hours_ago: i64) -> OutboundMessage {
        OutboundMessage {
            id: MessageId(1),
            conversation_id: ConversationId(1),
            customer_id: CustomerId(1),
            customer_opted_out: false,
            to: E164::parse_address(to).unwrap(),
            from: E164::parse_address(&to.replace("5551234", "5550142")).unwrap(),
            body: "Reminder: tomorrow 8-10am.\nReply C to confirm.".into(),
            kind: crate::store::MessageKind::parse(kind),
            last_inbound_at: Some(now() - chrono::Duration::hours(last_inbound_hours_ago)),
            attempts: 1,
            created_at: now(),
        }
    }

    fn business(reminder_template: Option<&str>) -> BusinessConfig {
        let mut business: BusinessConfig = BusinessConfig::parse(
            include_str!("../../business.toml"),
            std::path::Path::new("business.toml"),
        )
        .unwrap();
        business.whatsapp.templates.reminder = reminder_template.map(str::to_string);
        business
    }

    #[tokio::test]
    async fn each_address_is_sent_through_its_own_channel() {
        let (sms, whatsapp, chat) = (
            Arc::new(Recording::default()),
            Arc::new(Recording::default()),
            Arc::new(Recording::default()),
        );
        let channels = Channels::new(sms.clone(), whatsapp.clone(), chat.clone());
        for to in ["+15035551234", "whatsapp:+15035551234"] {
            let customer = E164::parse_address(to).unwrap();
            let (_, port) = channels.for_address(&customer);
            port.send(&customer, &customer, Content::Text("hi"))
                .await
                .unwrap();
        }
        assert_eq!(
            *sms.sent.lock().unwrap(),
            [("+15035551234".to_string(), "hi".to_string())]
        );
        assert_eq!(
            *whatsapp.sent.lock().unwrap(),
            [("whatsapp:+15035551234".to_string(), "hi".to_string())]
        );
        assert!(chat.sent.lock().unwrap().is_empty());
    }

    #[test]
    fn whatsapp_inside_the_window_is_free_form() {
        let business = business(Some("HX0123456789abcdef0123456789abcdef"));
        let text = text("whatsapp:+15035551234", "reminder", 23);
        assert_eq!(
            outgoing(Channel::WhatsApp, &text, &business, now()),
            Ok(Outgoing::Text(text.body.as_str()))
        );
    }

    #[test]
    fn whatsapp_outside_the_window_uses_the_template_for_the_kind() {
        let sid = "HX0123456789abcdef0123456789abcdef";
        let business = business(Some(sid));
        let text = text("whatsapp:+15035551234", "reminder", 25);
        let Ok(Outgoing::Template { id, variables }) = outgoing(Channel::WhatsApp, &text, &business, now())
        else {
            panic!("expected the reminder template");
        };
        assert_eq!(id, sid);
        let variables: serde_json::Value = serde_json::from_str(&variables).unwrap();
        assert_eq!(variables["1"], business.business.name.as_str());
        assert_eq!(variables["2"], "Reminder: tomorrow 8-10am. Reply C to confirm.");
    }

    #[test]
    fn whatsapp_outside_the_window_without_a_template_is_withheld() {
        let business = business(None);
        let text = text("whatsapp:+15035551234", "reminder", 25);
        let Err(SendError::OutsideWindow(why)) = outgoing(Channel::WhatsApp, &text, &business, now()) else {
            panic!("a free-form text outside the window must not go out");
        };
        assert!(why.contains("[whatsapp.templates] reminder"), "{why}");
    }

    #[test]
    fn sms_has_no_window() {
        let business = business(None);
        let text = text("+15035551234", "reminder", 24 * 30);
        assert_eq!(
            outgoing(Channel::Sms, &text, &business, now()),
            Ok(Outgoing::Text(text.body.as_str()))
        );
    }
}
