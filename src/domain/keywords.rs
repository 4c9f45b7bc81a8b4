//! Carrier compliance keywords, recognized by code before any model sees a text.
//!
//! Carriers and Twilio treat a message consisting solely of one of these words
//! as a command, so we do the same: the whole text, trimmed, any case, with
//! trailing punctuation ignored. "Please stop by Tuesday" is not an opt-out.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT.
    OptOut,
    /// START, UNSTOP, and YES from a customer who is opted out.
    OptIn,
    /// HELP, INFO.
    Help,
}

/// Classifies a text. `opted_out` matters because YES re-subscribes only a
/// customer who is opted out; from anyone else it is an ordinary answer.
pub fn classify(body: &str, opted_out: bool) -> Option<Keyword> {
    let word = body.trim().trim_end_matches(['.', '!', '?']).to_ascii_uppercase();
    match word.as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" => Some(Keyword::OptOut),
        "START" | "UNSTOP" => Some(Keyword::OptIn),
        "YES" if opted_out => Some(Keyword::OptIn),
        "HELP" | "INFO" => Some(Keyword::Help),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_words() {
        for w in [
            "STOP",
            "stop",
            " Stop! ",
            "STOPALL",
            "unsubscribe",
            "CANCEL",
            "end",
            "Quit.",
        ] {
            assert_eq!(classify(w, false), Some(Keyword::OptOut), "{w}");
        }
    }

    #[test]
    fn opt_in_and_help() {
        assert_eq!(classify("start", true), Some(Keyword::OptIn));
        assert_eq!(classify("UNSTOP", false), Some(Keyword::OptIn));
        assert_eq!(classify("help", false), Some(Keyword::Help));
        assert_eq!(classify("INFO", false), Some(Keyword::Help));
    }

    #[test]
    fn yes_only_resubscribes_the_opted_out() {
        assert_eq!(classify("yes", true), Some(Keyword::OptIn));
        assert_eq!(classify("yes", false), None);
    }

    #[test]
    fn sentences_are_not_keywords() {
        for w in [
            "please stop by tuesday",
            "can I cancel my booking",
            "help me move a couch",
            "",
        ] {
            assert_eq!(classify(w, false), None, "{w}");
        }
    }
}
