//! Delivery receipts: what Twilio's status callbacks say happened to a text
//! we sent, in which order those statuses may follow each other, and what a
//! failure code means in words the owner understands.
//!
//! Callbacks arrive out of order and more than once, so a status is applied
//! only when it moves a text forward: a late `sent` never undoes
//! `delivered`, and a final status (undelivered, failed, canceled, read)
//! stays.

/// One of Twilio's `MessageStatus` values for an outbound text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    Queued,
    Accepted,
    Scheduled,
    Sending,
    Sent,
    Delivered,
    /// WhatsApp: the customer opened it.
    Read,
    Undelivered,
    Failed,
    /// A scheduled text cancelled before it went out.
    Canceled,
}

impl DeliveryStatus {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw.trim().to_ascii_lowercase().as_str() {
            "queued" => Self::Queued,
            "accepted" => Self::Accepted,
            "scheduled" => Self::Scheduled,
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "undelivered" => Self::Undelivered,
            "failed" => Self::Failed,
            "canceled" | "cancelled" => Self::Canceled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Accepted => "accepted",
            Self::Scheduled => "scheduled",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// The text did not reach the customer, for good: the owner must hear.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Undelivered | Self::Failed)
    }

    /// No later status can follow this one.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Read | Self::Undelivered | Self::Failed | Self::Canceled
        )
    }

    /// How far along the happy path: queued, sending, sent, delivered, read.
    fn progress(self) -> u8 {
        match self {
            Self::Queued | Self::Accepted | Self::Scheduled => 0,
            Self::Sending => 1,
            Self::Sent => 2,
            Self::Delivered => 3,
            Self::Read => 4,
            // Outcomes off the path; see `advances`.
            Self::Undelivered | Self::Failed | Self::Canceled => 0,
        }
    }
}

/// Whether a callback reporting `incoming` moves a text whose recorded
/// status is `current` (`None`: no callback yet) forward. Anything else is
/// a late or repeated callback and changes nothing.
pub fn advances(current: Option<DeliveryStatus>, incoming: DeliveryStatus) -> bool {
    use DeliveryStatus::*;
    let Some(current) = current else {
        return true;
    };
    if current.is_final() || current == incoming {
        return false;
    }
    match incoming {
        // A carrier that confirmed delivery does not take it back.
        Undelivered | Failed => !matches!(current, Delivered),
        // Only a text that had not gone out yet can be cancelled.
        Canceled => current.progress() == 0,
        _ => incoming.progress() > current.progress(),
    }
}

/// What a Twilio error code on an undelivered or failed text means, in the
/// owner's words.
pub fn describe_error(code: Option<i64>) -> String {
    match code {
        Some(30003) => "the phone was unreachable (off or out of coverage) (error 30003)".into(),
        Some(30005) => "the number is unknown or no longer in service (error 30005)".into(),
        Some(30006) => "the number is a landline or its carrier is unreachable (error 30006)".into(),
        Some(30007) => "the carrier filtered it as spam (error 30007)".into(),
        Some(63016) => {
            "WhatsApp refused it: the customer last wrote more than 24 hours ago, when only an approved template may be sent (error 63016)".into()
        }
        Some(21610) => "the customer has opted out of texts (replied STOP) (error 21610)".into(),
        Some(code) => format!("Twilio reported error {code}"),
        None => "Twilio gave no reason".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryStatus::*;
    use super::*;

    const ALL: [DeliveryStatus; 10] = [
        Queued,
        Accepted,
        Scheduled,
        Sending,
        Sent,
        Delivered,
        Read,
        Undelivered,
        Failed,
        Canceled,
    ];

    #[test]
    fn the_happy_path_moves_forward_and_never_back() {
        let path = [Queued, Sending, Sent, Delivered, Read];
        for (i, earlier) in path.iter().enumerate() {
            for later in &path[i + 1..] {
                assert!(advances(Some(*earlier), *later), "{earlier:?} -> {later:?}");
                assert!(!advances(Some(*later), *earlier), "{later:?} -> {earlier:?}");
            }
        }
        // Twilio's three first statuses are one step.
        assert!(!advances(Some(Accepted), Queued));
        assert!(!advances(Some(Scheduled), Accepted));
        assert!(advances(Some(Accepted), Sending));
    }

    #[test]
    fn delivered_then_a_late_sent_stays_delivered() {
        assert!(advances(Some(Sent), Delivered));
        assert!(!advances(Some(Delivered), Sent));
        assert!(!advances(Some(Delivered), Sending));
    }

    #[test]
    fn a_repeated_status_is_applied_once() {
        for status in ALL {
            assert!(!advances(Some(status), status), "{status:?} twice");
        }
    }

    #[test]
    fn the_first_callback_always_applies() {
        for status in ALL {
            assert!(advances(None, status), "{status:?}");
        }
    }

    #[test]
    fn final_statuses_stay() {
        for end in [Undelivered, Failed, Canceled, Read] {
            assert!(end.is_final());
            for next in ALL {
                assert!(!advances(Some(end), next), "{end:?} -> {next:?}");
            }
        }
    }

    #[test]
    fn failure_ends_any_text_not_yet_delivered() {
        for before in [Queued, Accepted, Scheduled, Sending, Sent] {
            assert!(advances(Some(before), Undelivered), "{before:?}");
            assert!(advances(Some(before), Failed), "{before:?}");
        }
        assert!(!advances(Some(Delivered), Undelivered));
        assert!(!advances(Some(Delivered), Failed));
        assert!(Undelivered.is_failure() && Failed.is_failure());
        assert!(!Canceled.is_failure() && !Delivered.is_failure());
    }

    #[test]
    fn only_a_text_not_yet_sent_can_be_canceled() {
        assert!(advances(Some(Scheduled), Canceled));
        assert!(advances(Some(Queued), Canceled));
        assert!(!advances(Some(Sending), Canceled));
        assert!(!advances(Some(Sent), Canceled));
    }

    #[test]
    fn statuses_parse_as_twilio_writes_them() {
        for status in ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeliveryStatus::parse("Delivered"), Some(Delivered));
        assert_eq!(DeliveryStatus::parse("received"), None);
        assert_eq!(DeliveryStatus::parse(""), None);
    }

    #[test]
    fn error_codes_read_as_words() {
        assert!(describe_error(Some(30003)).contains("unreachable"));
        assert!(describe_error(Some(30005)).contains("unknown"));
        assert!(describe_error(Some(30006)).contains("landline"));
        assert!(describe_error(Some(30007)).contains("spam"));
        assert!(describe_error(Some(63016)).contains("24 hours"));
        assert!(describe_error(Some(21610)).contains("opted out"));
        assert_eq!(describe_error(Some(30008)), "Twilio reported error 30008");
        assert_eq!(describe_error(None), "Twilio gave no reason");
    }
}
