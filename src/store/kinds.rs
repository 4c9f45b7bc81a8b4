//! What kind of text a message is, and what kind of news an alert is: enums
//! stored as the same text as before they were enums, so no data moves. A
//! kind this build does not know (written by a newer one) is kept as
//! `Other`, never an error, so reading old or new rows cannot fail on it.

use std::fmt;

/// Declares a kind enum whose variants are stored as fixed text.
macro_rules! stored_kind {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// Stored text this build does not know, kept as it was.
            Other(String),
        }

        impl $name {
            /// The text stored for this kind.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )*
                    $name::Other(text) => text,
                }
            }

            /// The kind stored as `text`; unknown text is `Other`.
            pub fn parse(text: &str) -> Self {
                match text {
                    $( $text => $name::$variant, )*
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

stored_kind! {
    /// What a message is: the customer's text, or which of our texts.
    pub enum MessageKind {
        /// Any text a customer sent.
        Customer => "customer",
        /// Claude's reply.
        Reply => "reply",
        /// The guided flow's reply (no model, or the model was down).
        Guided => "guided",
        /// A code-stated reply that replaced a draft the guardrail refused.
        Templated => "templated",
        /// The booking confirmation, stated by code.
        Confirmation => "confirmation",
        /// The business cancelled the booking (the owner, from the
        /// console): the customer is told, stated by code.
        Cancellation => "cancellation",
        /// The apology for a turn that could not answer.
        Apology => "apology",
        Help => "help",
        /// The one text confirming an opt-out in words: the only text an
        /// opted-out customer may still get (carriers confirm their own
        /// keywords).
        OptOutConfirmation => "opt_out_confirmation",
        /// The confirmation of START, where the provider sends none.
        OptInConfirmation => "opt_in_confirmation",
        /// The text telling a customer the owner has their message.
        HandoffAck => "handoff_ack",
        Reminder => "reminder",
        FollowUp => "follow_up",
        /// A text the owner wrote in the console, sent as the business.
        OwnerReply => "owner_reply",
        /// With approval of every reply, the one text telling the customer
        /// an answer is coming while the owner looks at it.
        HoldingText => "holding_text",
        /// An alert texted to the owner's own phone (`owner_phone`).
        OwnerAlert => "owner_alert",
        /// A web chat visitor's verification code, texted to their phone.
        VerificationCode => "verification_code",
    }
}

impl MessageKind {
    /// Texts we send unprompted: held back by quiet hours.
    pub fn is_proactive(&self) -> bool {
        matches!(self, MessageKind::Reminder | MessageKind::FollowUp)
    }
}

stored_kind! {
    /// What an owner alert is about.
    pub enum AlertKind {
        Handoff => "handoff",
        HandedOffText => "handed_off_text",
        CalendarCredentials => "calendar_credentials",
        CalendarUnavailable => "calendar_unavailable",
        BookingIncomplete => "booking_incomplete",
        BookingCancelled => "booking_cancelled",
        NoOpenings => "no_openings",
        CannotPrice => "cannot_price",
        OptedOutWithBooking => "opted_out_with_booking",
        DeadJob => "dead_job",
        ConfigRejected => "config_rejected",
        /// Conversations stored under a business id no file has any more.
        UnansweredBusiness => "unanswered_business",
        TurnPanicked => "turn_panicked",
        TextUndelivered => "text_undelivered",
        /// A WhatsApp message outside the 24-hour window with no template.
        WhatsappWindow => "whatsapp_window",
        FloodThrottled => "flood_throttled",
        ModelUnavailable => "model_unavailable",
        /// A draft stated an amount not quoted.
        PriceGuardrail => "price_guardrail",
        /// A draft stated another fact not ours.
        FactGuardrail => "fact_guardrail",
        SendUnknown => "send_unknown",
        SendFailed => "send_failed",
        /// A reply waits for the owner's approval (or the customer texted
        /// while one does).
        ApprovalNeeded => "approval_needed",
        /// No one acted on a held reply in time: handed to the owner, unsent.
        ApprovalTimedOut => "approval_timed_out",
    }
}

impl AlertKind {
    /// The headline of the owner's email, for the kinds that are emailed;
    /// `None` for those only stored.
    pub fn email_title(&self) -> Option<&'static str> {
        Some(match self {
            AlertKind::Handoff => "A customer needs you",
            AlertKind::HandedOffText => "A customer texted you",
            AlertKind::CalendarCredentials => "Google Calendar refused textdesk's credentials",
            // The customer waits on the owner (to set a time, or to hear a
            // cancel went through): as much a call to act as a hand-off.
            AlertKind::CalendarUnavailable => "The calendar could not be reached",
            AlertKind::BookingIncomplete => "A booking needs a look",
            AlertKind::OptedOutWithBooking => "A booked customer opted out of texts",
            AlertKind::DeadJob => "A notification could not be sent",
            AlertKind::ConfigRejected => "Your configuration edit was refused",
            AlertKind::UnansweredBusiness => "Some conversations belong to no business now",
            AlertKind::TurnPanicked => "A customer's text could not be answered",
            AlertKind::TextUndelivered => "A text did not reach a customer",
            AlertKind::WhatsappWindow => "A WhatsApp message could not be sent",
            AlertKind::FloodThrottled => "A customer is flooding your number",
            AlertKind::SendFailed => "A text could not be delivered",
            AlertKind::ApprovalNeeded => "A reply waits for your approval",
            AlertKind::ApprovalTimedOut => "A reply waited too long: the customer is yours",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_as_the_text_it_is_stored_as() {
        for text in [
            "customer",
            "reply",
            "guided",
            "templated",
            "confirmation",
            "apology",
            "help",
            "opt_out_confirmation",
            "handoff_ack",
            "reminder",
            "follow_up",
        ] {
            let kind = MessageKind::parse(text);
            assert!(!matches!(kind, MessageKind::Other(_)), "{text}");
            assert_eq!(kind.as_str(), text);
        }
        assert_eq!(MessageKind::parse("handoff_ack"), MessageKind::HandoffAck);
        assert_eq!(AlertKind::parse("price_guardrail"), AlertKind::PriceGuardrail);
        assert_eq!(AlertKind::FloodThrottled.as_str(), "flood_throttled");
    }

    #[test]
    fn an_unknown_stored_kind_is_kept_not_refused() {
        let kind = MessageKind::parse("postcard");
        assert_eq!(kind, MessageKind::Other("postcard".into()));
        assert_eq!(kind.as_str(), "postcard");
        let alert = AlertKind::parse("meteor_strike");
        assert_eq!(alert.as_str(), "meteor_strike");
        assert_eq!(alert.email_title(), None);
    }

    #[test]
    fn emailed_alerts_have_their_titles() {
        assert_eq!(AlertKind::Handoff.email_title(), Some("A customer needs you"));
        assert_eq!(
            AlertKind::SendFailed.email_title(),
            Some("A text could not be delivered")
        );
        assert_eq!(AlertKind::PriceGuardrail.email_title(), None);
        assert!(MessageKind::Reminder.is_proactive() && !MessageKind::Reply.is_proactive());
    }
}
