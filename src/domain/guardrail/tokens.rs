//! The text as a customer reads it, cut into words, numbers and signs.
//!
//! Every check reads the same prepared text: GSM-7 look-alikes rewritten as
//! they will be sent, then NFKC (so `＄１９９` reads `$199`), then lower
//! case. Offsets are byte offsets into that prepared text.

use unicode_normalization::UnicodeNormalization;

/// The text a check reads: as sent, in compatibility form, lower case.
pub fn prepare(text: &str) -> String {
    let sent = crate::domain::sms_text::normalize_gsm7(text);
    // ASCII is its own compatibility form: most replies skip NFKC.
    if sent.is_ascii() {
        return sent.to_ascii_lowercase();
    }
    sent.nfkc()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            // NFKC keeps typographic apostrophes and dashes that GSM-7
            // normalization already handled; the fraction slash is a slash.
            '\u{2044}' => '/',
            '\u{2019}' => '\'',
            _ => c,
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Letters, with inner apostrophes ("won't").
    Word,
    /// A run of ASCII digits.
    Number,
    /// Any other visible character, one per token.
    Sign,
}

#[derive(Debug, Clone, Copy)]
pub struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    pub start: usize,
    pub end: usize,
    /// Whether a line break stands between this token and the previous one.
    pub after_line_break: bool,
}

impl Token<'_> {
    pub fn is_word(&self, w: &str) -> bool {
        self.kind == Kind::Word && self.text == w
    }

    pub fn is_sign(&self, c: char) -> bool {
        self.kind == Kind::Sign && self.text.starts_with(c)
    }

    pub fn number(&self) -> Option<u32> {
        if self.kind == Kind::Number && self.text.len() <= 9 {
            self.text.parse().ok()
        } else {
            None
        }
    }
}

/// Splits prepared text into tokens; whitespace separates and is dropped.
pub fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::with_capacity(text.len() / 4);
    let bytes = text.as_bytes();
    let mut line_break = false;
    let mut iter = text.char_indices().peekable();
    while let Some((start, c)) = iter.next() {
        if c.is_whitespace() {
            line_break |= c == '\n';
            continue;
        }
        let kind;
        let mut end = start + c.len_utf8();
        if c.is_ascii_digit() {
            kind = Kind::Number;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
                iter.next();
            }
        } else if c.is_alphabetic() {
            kind = Kind::Word;
            while let Some(&(i, n)) = iter.peek() {
                let inner_apostrophe =
                    n == '\'' && text[i + 1..].chars().next().is_some_and(char::is_alphabetic);
                if n.is_alphabetic() || inner_apostrophe {
                    end = i + n.len_utf8();
                    iter.next();
                } else {
                    break;
                }
            }
        } else {
            kind = Kind::Sign;
        }
        tokens.push(Token {
            kind,
            text: &text[start..end],
            start,
            end,
            after_line_break: line_break,
        });
        line_break = false;
    }
    tokens
}

pub use crate::domain::number_words::small_number_word;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepares_what_the_customer_reads() {
        assert_eq!(prepare("＄１９９ Total"), "$199 total");
        assert_eq!(prepare("We\u{2019}ll"), "we'll");
        assert_eq!(prepare("𝟑𝟓𝟎 dollars"), "350 dollars");
    }

    #[test]
    fn splits_words_numbers_and_signs() {
        let t = prepare("Won't 8-10am,\n$1,234");
        let tokens = tokenize(&t);
        let texts: Vec<&str> = tokens.iter().map(|t| t.text).collect();
        assert_eq!(texts, ["won't", "8", "-", "10", "am", ",", "$", "1", ",", "234"]);
        assert!(tokens[6].after_line_break && !tokens[5].after_line_break);
        assert_eq!(tokens[1].number(), Some(8));
    }
}
