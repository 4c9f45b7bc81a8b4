//! Carrier compliance keywords, recognized by code before any model sees a text.
//!
//! Carriers and Twilio treat a message consisting solely of one of these words
//! as a command, so we do the same: the whole text, trimmed, any case, with
//! trailing punctuation ignored. "Please stop by Tuesday" is not an opt-out.
//!
//! The FCC (2024) also accepts revoking consent "by any reasonable means", so
//! a plain request in words ("stop texting me", "unsubscribe me", "remove me
//! from your list") opts out too. Carriers do not see those as keywords, so
//! textdesk, not Twilio, confirms them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT: Twilio's Advanced
    /// Opt-Out confirms these itself.
    OptOut,
    /// An opt-out in words, which no carrier or Twilio recognizes or confirms.
    OptOutInWords,
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
        _ if !opted_out && asks_to_stop_texts(body) => Some(Keyword::OptOutInWords),
        _ => None,
    }
}

/// Phrases that ask for no more texts wherever they appear in a text.
const STOP_PHRASES: [&str; 21] = [
    "stop texting",
    "stop txting",
    "stop messaging",
    "stop contacting",
    "stop sending",
    "quit texting",
    "quit messaging",
    "cease texting",
    "unsubscribe",
    "opt out",
    "opt me out",
    "optout",
    "remove my number",
    "delete my number",
    "take my number off",
    "lose my number",
    "no more texts",
    "no more messages",
    "no more msgs",
    "revoke",
    "never text me",
];

/// A verb followed, after a few filler words, by one of these nouns asks to
/// stop the texts: "stop the texts", "remove me from your list".
const STOP_VERBS: [&[&str]; 7] = [
    &["stop"],
    &["cancel"],
    &["end"],
    &["quit"],
    &["no", "more"],
    &["remove", "me", "from"],
    &["take", "me", "off"],
];
/// ("of" is not one: "the end of the text" asks for nothing.)
const FILLERS: [&str; 12] = [
    "the", "these", "those", "all", "your", "ur", "my", "any", "this", "contact", "mailing", "sending",
];
const TEXT_NOUNS: [&str; 11] = [
    "texts",
    "text",
    "messages",
    "message",
    "msgs",
    "sms",
    "texting",
    "reminders",
    "notifications",
    "list",
    "contacts",
];

/// "Don't text me" opts out, but "don't text me before 9" only asks for
/// later texts: after these phrases, one of these words means a condition.
const DONT_TEXT_PHRASES: [&str; 9] = [
    "dont text me",
    "do not text me",
    "dont message me",
    "do not message me",
    "dont contact me",
    "do not contact me",
    "dont txt me",
    "dont send me texts",
    "do not send me texts",
];
const CONDITIONS: [&str; 16] = [
    "before", "after", "until", "till", "til", "at", "on", "during", "between", "early", "late", "while",
    "when", "today", "tonight", "tomorrow",
];

/// Words that may surround a bare STOP without making it a sentence like
/// "please stop by Tuesday".
const POLITE: [&str; 12] = [
    "stop", "please", "pls", "plz", "now", "it", "thanks", "thank", "you", "ok", "just", "already",
];

/// Whether a text asks, in words, for no more texts.
pub fn asks_to_stop_texts(body: &str) -> bool {
    let words = normalized_words(body);
    if words.is_empty() {
        return false;
    }
    if words.iter().any(|w| w == "stop") && words.iter().all(|w| POLITE.contains(&w.as_str())) {
        return true;
    }
    let text = format!(" {} ", words.join(" "));
    if STOP_PHRASES.iter().any(|p| text.contains(&format!(" {p} "))) {
        return true;
    }
    for start in 0..words.len() {
        for verb in STOP_VERBS {
            let Some(after) = after_words(&words[start..], verb) else {
                continue;
            };
            let noun = after
                .iter()
                .find(|w| *w != "me" && !FILLERS.contains(&w.as_str()));
            if noun.is_some_and(|n| TEXT_NOUNS.contains(&n.as_str())) {
                return true;
            }
        }
    }
    DONT_TEXT_PHRASES.iter().any(|p| {
        let pattern = format!(" {p} ");
        text.match_indices(&pattern).any(|(at, _)| {
            let after = text[at + pattern.len()..].split_whitespace().next();
            after.is_none_or(|w| !CONDITIONS.contains(&w))
        })
    })
}

/// The words after `prefix`, if `words` starts with it.
fn after_words<'a>(words: &'a [String], prefix: &[&str]) -> Option<&'a [String]> {
    let head = words.get(..prefix.len())?;
    head.iter()
        .zip(prefix)
        .all(|(w, p)| w == p)
        .then(|| &words[prefix.len()..])
}

/// Lowercase words, apostrophes dropped ("don't" is "dont"), other
/// punctuation a space.
fn normalized_words(body: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(body.len());
    for c in body.chars() {
        match c {
            '\'' | '\u{2019}' | '\u{2018}' | '`' => {}
            c if c.is_alphanumeric() => cleaned.extend(c.to_lowercase()),
            _ => cleaned.push(' '),
        }
    }
    cleaned.split_whitespace().map(str::to_string).collect()
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

    #[test]
    fn opt_outs_in_plain_words() {
        for w in [
            "Stop texting me",
            "stop texting me!!",
            "Please don't text me again",
            "please dont text me",
            "Do not text me anymore.",
            "don\u{2019}t text me",
            "Don't message me again",
            "do not contact me",
            "unsubscribe me",
            "Unsubscribe me from this list please",
            "no more texts",
            "No more messages please",
            "remove me from your list",
            "Remove me from your contact list",
            "take me off your list",
            "Take my number off your list",
            "please stop",
            "STOP PLEASE",
            "stop it",
            "Stop stop stop",
            "stop sending me messages",
            "Stop the texts",
            "can you stop all these messages",
            "cancel the texts",
            "opt me out",
            "I want to opt out",
            "how do I unsubscribe",
            "I revoke my consent",
            "never text me again",
            "Stop texting me, I already hired someone",
            "quit texting me",
            "delete my number",
            "No more text messages",
            "please stop messaging me",
            "end these texts",
        ] {
            assert_eq!(classify(w, false), Some(Keyword::OptOutInWords), "{w}");
        }
    }

    #[test]
    fn ordinary_sentences_with_stop_words_are_not_opt_outs() {
        for w in [
            "please stop by tuesday",
            "Can you stop by on Friday?",
            "can I cancel my booking",
            "cancel my booking",
            "CANCEL BOOKING",
            "please cancel the appointment",
            "I need to cancel",
            "don't text me before 9am",
            "Please don't text me after 8pm",
            "don't text me at work, call instead... just kidding texting is fine",
            "the couch is at the end of the driveway",
            "see the end of the text you sent",
            "no more than two trips please",
            "can you take me off the 8am slot and do 10 instead",
            "stop sign on the corner, turn left",
            "is there a bus stop nearby",
            "I'll text you the address",
            "can you text me when you're on the way",
            "remove the couch and the mattress",
            "take the fridge too",
            "what's the total?",
            "R",
            "C",
            "yes",
            "no",
            "end of the month works",
            "I want more texts about deals",
            "Text me the quote",
        ] {
            assert_eq!(classify(w, false), None, "{w}");
        }
    }

    #[test]
    fn a_plain_word_opt_out_does_not_repeat_for_the_opted_out() {
        assert_eq!(classify("stop texting me", true), None);
        assert_eq!(classify("STOP", true), Some(Keyword::OptOut));
    }
}
