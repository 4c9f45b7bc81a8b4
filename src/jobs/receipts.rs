//! Delivery receipts: the provider's word on what became of a text we sent.
//!
//! The store applies each receipt once and only forward; a text that did
//! not reach its customer (undelivered or failed) alerts the owner, by a
//! stored alert and email, in words: who, which text, why, and whether the
//! customer may not know about their booking.

use crate::channel::{self, SendError};
use crate::domain::delivery::{self, DeliveryStatus};
use crate::jobs::plan;
use crate::jobs::turns::Engine;
use crate::store::{AlertKind, MessageKind, ReceiptedText, StoreError};

impl Engine {
    /// Alerts the owner of this engine's business that a text did not
    /// arrive (a receipt that advanced to undelivered or failed).
    pub async fn alert_undelivered(&self, text: &ReceiptedText) -> Result<(), StoreError> {
        if text.error_code.and_then(channel::receipt_error) == Some(SendError::OptedOut) {
            // As when a send is refused with 21610: no more texts to them.
            self.store.set_opted_out(text.customer_id, true).await?;
        }
        let turn = self.store.turn_input(text.conversation_id, 1).await?;
        let contact = plan::CustomerContact::of(&turn, &turn.state);
        let booked = turn.state.standing_booking().map(|b| b.slot.label.as_str());
        let detail = undelivered_detail(text, &contact.describe(), booked);
        self.alert_about(
            AlertKind::TextUndelivered,
            Some(text.conversation_id),
            &detail,
            Some(&contact),
        )
        .await;
        Ok(())
    }
}

/// The owner's alert for a text that did not arrive. `booked` is the
/// customer's booking, when they have one.
pub fn undelivered_detail(text: &ReceiptedText, customer: &str, booked: Option<&str>) -> String {
    let which = match text.kind {
        MessageKind::Reminder => "A booking reminder",
        MessageKind::Confirmation => "The booking confirmation",
        MessageKind::FollowUp => "A follow-up on their quote",
        MessageKind::Reply | MessageKind::Guided | MessageKind::Templated => "A reply",
        _ => "A text",
    };
    let what = match text.status {
        DeliveryStatus::Failed => "could not be sent",
        _ => "was not delivered",
    };
    let why = delivery::describe_error(text.error_code);
    if text.kind == MessageKind::Cancellation {
        // The booking is gone from the state by then: no label to name.
        return format!(
            "The text telling {customer} their booking is cancelled {what}: {why}. They may still expect the crew; call them."
        );
    }
    let mut detail = format!("{which} to {customer} {what}: {why}.");
    if matches!(text.kind, MessageKind::Reminder | MessageKind::Confirmation) {
        match booked {
            Some(label) => detail.push_str(&format!(
                " They may not know about their booking ({label}); call them."
            )),
            None => detail.push_str(" They may not know about their booking; call them."),
        }
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::phone::E164;
    use crate::store::{ConversationId, CustomerId, MessageId};

    fn text(kind: &str, status: DeliveryStatus, code: Option<i64>) -> ReceiptedText {
        ReceiptedText {
            id: MessageId(1),
            conversation_id: ConversationId(1),
            customer_id: CustomerId(1),
            to: E164::parse("+15035551234").unwrap(),
            kind: MessageKind::parse(kind),
            status,
            error_code: code,
        }
    }

    #[test]
    fn a_failed_reminder_says_the_customer_may_not_know() {
        let detail = undelivered_detail(
            &text("reminder", DeliveryStatus::Undelivered, Some(30006)),
            "Dana Reyes (+15035551234)",
            Some("Tue Dec 1, 8-10am"),
        );
        assert_eq!(
            detail,
            "A booking reminder to Dana Reyes (+15035551234) was not delivered: the number is a landline \
             or its carrier is unreachable (error 30006). They may not know about their booking \
             (Tue Dec 1, 8-10am); call them."
        );
    }

    #[test]
    fn an_undelivered_cancellation_says_to_call_them() {
        let detail = undelivered_detail(
            &text("cancellation", DeliveryStatus::Undelivered, Some(30006)),
            "Dana Reyes (+15035551234)",
            None,
        );
        assert_eq!(
            detail,
            "The text telling Dana Reyes (+15035551234) their booking is cancelled was not delivered: the number \
             is a landline or its carrier is unreachable (error 30006). They may still expect the crew; call them."
        );
    }

    #[test]
    fn a_failed_reply_is_not_about_a_booking() {
        let detail = undelivered_detail(
            &text("reply", DeliveryStatus::Failed, Some(30007)),
            "+15035551234",
            None,
        );
        assert_eq!(
            detail,
            "A reply to +15035551234 could not be sent: the carrier filtered it as spam (error 30007)."
        );
    }
}
