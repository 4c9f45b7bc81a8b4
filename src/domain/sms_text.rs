//! What a reply costs on a phone bill: GSM-7 normalization and segment limits.
//!
//! One character outside the GSM-7 alphabet (a curly quote from the model,
//! say) makes the whole message UCS-2, which cuts a segment from 160 to 70
//! characters and so roughly doubles the price. We rewrite the look-alikes to
//! plain ASCII and keep every reply within a segment budget.

/// GSM 03.38 basic character set (one septet each).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table (escape + char: two septets each).
const GSM7_EXTENDED: &str = "^{}\\[~]|€\u{000C}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub encoding: Encoding,
    pub segments: usize,
    /// Septets for GSM-7, UTF-16 code units for UCS-2.
    pub units: usize,
}

/// Rewrites typographic characters to their GSM-7 equivalents and trims
/// invisible ones. Characters with no equivalent (emoji, CJK) are kept: the
/// message is then honestly UCS-2 rather than silently mangled.
pub fn normalize_gsm7(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{00B4}' | '\u{0060}' => {
                out.push('\'')
            }
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{00AB}' | '\u{00BB}' => {
                out.push('"')
            }
            '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2015}' | '\u{2212}' => {
                out.push('-')
            }
            '\u{2026}' => out.push_str("..."),
            '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\t' => {
                out.push(' ')
            }
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => {}
            '\u{2022}' | '\u{00B7}' => out.push('*'),
            '\u{2122}' => out.push_str("(TM)"),
            '\u{00A9}' => out.push_str("(c)"),
            '\u{00AE}' => out.push_str("(R)"),
            '\u{00BD}' => out.push_str("1/2"),
            '\u{00BC}' => out.push_str("1/4"),
            '\u{00BE}' => out.push_str("3/4"),
            '\u{00D7}' => out.push('x'),
            '\u{2192}' => out.push_str("->"),
            '\u{00E1}' => out.push('a'),
            '\u{00ED}' => out.push('i'),
            '\u{00F3}' => out.push('o'),
            '\u{00FA}' => out.push('u'),
            '\u{00E7}' => out.push('c'),
            '\u{00EA}' | '\u{00EB}' => out.push('e'),
            '\r' => {}
            _ => out.push(c),
        }
    }
    out
}

fn septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENDED.contains(c) {
        Some(2)
    } else {
        None
    }
}

pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| septets(c).is_some())
}

pub fn segment_info(text: &str) -> SegmentInfo {
    if is_gsm7(text) {
        let units: usize = text.chars().map(|c| septets(c).unwrap_or(1)).sum();
        let segments = if units <= 160 { 1 } else { units.div_ceil(153) };
        SegmentInfo {
            encoding: Encoding::Gsm7,
            segments,
            units,
        }
    } else {
        let units = text.encode_utf16().count();
        let segments = if units <= 70 { 1 } else { units.div_ceil(67) };
        SegmentInfo {
            encoding: Encoding::Ucs2,
            segments,
            units,
        }
    }
}

/// Normalizes `text` and shortens it to at most `max_segments` segments,
/// cutting at a sentence end when one is near, else at a word, and marking
/// the cut with "...".
pub fn prepare_reply(text: &str, max_segments: usize) -> String {
    let max_segments = max_segments.max(1);
    let normalized = normalize_gsm7(text.trim());
    if segment_info(&normalized).segments <= max_segments {
        return normalized;
    }
    let chars: Vec<char> = normalized.chars().collect();
    // Binary search the longest prefix that fits with the ellipsis appended.
    let fits = |n: usize| {
        let candidate: String = chars[..n].iter().collect::<String>() + "...";
        segment_info(&candidate).segments <= max_segments
    };
    let (mut lo, mut hi) = (0usize, chars.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) { lo = mid } else { hi = mid - 1 }
    }
    let prefix: String = chars[..lo].iter().collect();
    // Prefer a sentence end in the last third (a `.` followed by a space or
    // the end of the text, so "$687.85" is never cut to "$687."), then a
    // word boundary.
    let full = normalized.as_str();
    let sentence_cut = prefix
        .char_indices()
        .filter(|&(i, c)| {
            matches!(c, '.' | '!' | '?')
                && full[i + c.len_utf8()..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace)
        })
        .map(|(i, _)| i)
        .next_back()
        .filter(|&i| i >= prefix.len() * 2 / 3);
    if let Some(i) = sentence_cut {
        return prefix[..=i].to_string();
    }
    let word_cut = prefix.rfind(' ').filter(|&i| i > 0).unwrap_or(prefix.len());
    format!("{}...", prefix[..word_cut].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_typography_to_gsm7() {
        let model = "We\u{2019}ll be there 8\u{2013}10am \u{2014} \u{201C}promise\u{201D}\u{2026}\u{00A0}ok";
        let out = normalize_gsm7(model);
        assert_eq!(out, "We'll be there 8-10am - \"promise\"... ok");
        assert!(is_gsm7(&out));
        assert_eq!(segment_info(&out).encoding, Encoding::Gsm7);
    }

    #[test]
    fn keeps_what_has_no_equivalent() {
        let out = normalize_gsm7("See you soon \u{1F44D}");
        assert!(out.contains('\u{1F44D}'));
        assert_eq!(segment_info(&out).encoding, Encoding::Ucs2);
    }

    #[test]
    fn counts_segments_by_encoding() {
        assert_eq!(segment_info(&"a".repeat(160)).segments, 1);
        assert_eq!(segment_info(&"a".repeat(161)).segments, 2);
        assert_eq!(segment_info(&"a".repeat(306)).segments, 2);
        assert_eq!(segment_info(&"a".repeat(307)).segments, 3);
        // Extension characters cost two septets.
        assert_eq!(segment_info(&"€".repeat(80)).units, 160);
        assert_eq!(segment_info(&"€".repeat(81)).segments, 2);
        // UCS-2: 70 single, 67 per part.
        let emoji_free_ucs2 = "ж".repeat(70);
        assert_eq!(segment_info(&emoji_free_ucs2).segments, 1);
        assert_eq!(segment_info(&"ж".repeat(71)).segments, 2);
    }

    #[test]
    fn short_replies_pass_through() {
        assert_eq!(prepare_reply("  Hi there!  ", 2), "Hi there!");
    }

    #[test]
    fn long_replies_are_cut_to_the_budget() {
        let long = "Our crew can haul that away. ".repeat(20);
        for max in [1, 2, 3] {
            let out = prepare_reply(&long, max);
            let info = segment_info(&out);
            assert!(info.segments <= max, "{max}: {info:?}");
            assert!(out.ends_with('.') || out.ends_with("..."), "{out}");
        }
        let words = "word ".repeat(100);
        let out = prepare_reply(&words, 1);
        assert!(out.ends_with("word..."), "{out}");
        assert!(segment_info(&out).segments == 1);
    }

    #[test]
    fn a_decimal_point_is_not_a_sentence_end() {
        let text = format!(
            "{} Your total is $687.85 for the job and more words follow here",
            "Filler words. ".repeat(8)
        );
        let out = prepare_reply(&text, 1);
        assert!(!out.ends_with("$687."), "{out}");
        assert!(segment_info(&out).segments <= 1);
    }

    #[test]
    fn ucs2_replies_are_cut_too() {
        let long = "\u{1F69A} truck ".repeat(40);
        let out = prepare_reply(&long, 2);
        assert!(segment_info(&out).segments <= 2);
    }
}
