//! Dates, weekdays and times of day, against the openings the text may name.

use chrono::{Datelike, Days, NaiveDate, NaiveTime, Weekday};

use super::tokens::{Kind, Token};
use super::{Facts, Violation, ViolationKind, excerpt};

#[derive(Debug, Clone, Copy, PartialEq)]
enum What {
    /// A calendar date; `None` when the words name no real date ("Feb 30").
    Date(Option<NaiveDate>),
    /// "the 30th": a day of the month, no month.
    DayOfMonth(u32),
    Weekday(Weekday),
    /// "tomorrow", "tonight".
    Relative(NaiveDate),
    /// A time of day; `either_half` when no am/pm was written ("2:30").
    Time {
        time: NaiveTime,
        either_half: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Mention {
    what: What,
    start: usize,
    end: usize,
}

fn month_of(w: &str) -> Option<u32> {
    const MONTHS: [(&str, &str); 12] = [
        ("jan", "january"),
        ("feb", "february"),
        ("mar", "march"),
        ("apr", "april"),
        ("may", "may"),
        ("jun", "june"),
        ("jul", "july"),
        ("aug", "august"),
        ("sep", "september"),
        ("oct", "october"),
        ("nov", "november"),
        ("dec", "december"),
    ];
    MONTHS
        .iter()
        .position(|(short, long)| w == *short || w == *long || (w == "sept" && *short == "sep"))
        .map(|i| i as u32 + 1)
}

/// A weekday word, and whether it is one only beside a date or time
/// ("sat", "sun", "wed" and "mon" are also ordinary words).
fn weekday_of(w: &str) -> Option<(Weekday, bool)> {
    use Weekday::*;
    let full = [
        ("monday", Mon),
        ("tuesday", Tue),
        ("wednesday", Wed),
        ("thursday", Thu),
        ("friday", Fri),
        ("saturday", Sat),
        ("sunday", Sun),
    ];
    // "Sundays" is a habit ("closed Sundays"), not a day on offer.
    for (name, day) in full {
        if w == name {
            return Some((day, false));
        }
    }
    match w {
        "tue" | "tues" => Some((Tue, false)),
        "thu" | "thur" | "thurs" => Some((Thu, false)),
        "fri" => Some((Fri, false)),
        "mon" => Some((Mon, true)),
        "wed" => Some((Wed, true)),
        "sat" => Some((Sat, true)),
        "sun" => Some((Sun, true)),
        _ => None,
    }
}

fn is_ordinal_suffix(t: Option<&Token<'_>>) -> bool {
    t.is_some_and(|t| t.kind == Kind::Word && matches!(t.text, "th" | "st" | "nd" | "rd"))
}

/// "am", "pm", "a.m.", "p.m." at `j`: whether it is pm, and the index after.
fn meridiem(tokens: &[Token<'_>], j: usize) -> Option<(bool, usize)> {
    let t = tokens.get(j)?;
    if t.kind != Kind::Word {
        return None;
    }
    match t.text {
        "am" | "pm" => {
            let mut next = j + 1;
            if tokens
                .get(next)
                .is_some_and(|n| n.is_sign('.') && n.start == t.end)
            {
                next += 1;
            }
            Some((t.text == "pm", next))
        }
        "a" | "p" => {
            let dot = tokens.get(j + 1)?;
            let m = tokens.get(j + 2)?;
            if dot.is_sign('.') && m.is_word("m") && dot.start == t.end {
                let mut next = j + 3;
                if tokens.get(next).is_some_and(|n| n.is_sign('.')) {
                    next += 1;
                }
                Some((t.text == "p", next))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// An hour, with optional ":mm", at `j`: (hour, minute, index after).
fn clock(tokens: &[Token<'_>], j: usize) -> Option<(u32, u32, bool, usize)> {
    let t = tokens.get(j)?;
    let hour = t.number().filter(|_| t.text.len() <= 2)?;
    if let (Some(colon), Some(min)) = (tokens.get(j + 1), tokens.get(j + 2))
        && colon.is_sign(':')
        && colon.start == t.end
        && min.start == colon.end
        && min.text.len() == 2
        && let Some(minute) = min.number()
    {
        return (hour <= 23 && minute < 60).then_some((hour, minute, true, j + 3));
    }
    Some((hour, 0, false, j + 1))
}

fn to_time(hour: u32, minute: u32, pm: Option<bool>) -> Option<NaiveTime> {
    let hour = match pm {
        Some(_) if !(1..=12).contains(&hour) => return None,
        Some(true) => hour % 12 + 12,
        Some(false) => hour % 12,
        None => hour,
    };
    NaiveTime::from_hms_opt(hour, minute, 0)
}

/// Times of day at `i`: "3pm", "2:30", "8-10am", "11am to 1pm", "noon".
fn times_at(tokens: &[Token<'_>], i: usize) -> Option<(Vec<What>, usize)> {
    let t = &tokens[i];
    if t.is_word("noon") || t.is_word("midnight") {
        let hour = if t.text == "noon" { 12 } else { 0 };
        let time = NaiveTime::from_hms_opt(hour, 0, 0)?;
        return Some((
            vec![What::Time {
                time,
                either_half: false,
            }],
            i + 1,
        ));
    }
    if t.kind != Kind::Number || (i > 0 && (tokens[i - 1].is_sign('$') || tokens[i - 1].is_sign('.'))) {
        return None;
    }
    let (h1, m1, colon1, after1) = clock(tokens, i)?;
    let single = |h: u32, m: u32, pm: Option<bool>| {
        to_time(h, m, pm).map(|time| What::Time {
            time,
            either_half: pm.is_none() && h <= 12,
        })
    };
    if let Some((pm, next)) = meridiem(tokens, after1) {
        return Some((vec![single(h1, m1, Some(pm))?], next));
    }
    // A range whose end carries the half of day: "8-10am", "11-1pm".
    let joiner = tokens.get(after1)?;
    let joined = joiner.is_sign('-') || matches!(joiner.text, "to" | "til" | "till" | "until");
    if joined && let Some((h2, m2, _, after2)) = clock(tokens, after1 + 1) {
        if let Some((pm2, next)) = meridiem(tokens, after2) {
            let end = to_time(h2, m2, Some(pm2))?;
            let same_half = h1 % 12 <= h2 % 12;
            let pm1 = if same_half { pm2 } else { !pm2 };
            let start = to_time(h1, m1, Some(pm1))?;
            let time = |time| What::Time {
                time,
                either_half: false,
            };
            return Some((vec![time(start), time(end)], next));
        }
        return None;
    }
    if joiner.text == "o'clock" || joiner.text == "oclock" {
        return Some((vec![single(h1, 0, None)?], after1 + 1));
    }
    // "at 2:30" with no half of day: either one.
    if colon1 {
        return Some((vec![single(h1, m1, None)?], after1));
    }
    None
}

fn resolve_year(today: NaiveDate, month: u32, day: u32) -> Option<NaiveDate> {
    let this_year = NaiveDate::from_ymd_opt(today.year(), month, day);
    match this_year {
        // A date long past means next year's: "Jan 3" said in December.
        Some(d) if today.checked_sub_days(Days::new(90)).is_some_and(|past| d < past) => {
            NaiveDate::from_ymd_opt(today.year() + 1, month, day)
        }
        Some(d) => Some(d),
        // Feb 29 of a year without one may be next year's; else no date.
        None => NaiveDate::from_ymd_opt(today.year() + 1, month, day),
    }
}

/// Every date, weekday and time mentioned, in order.
fn mentions(tokens: &[Token<'_>], today: NaiveDate) -> Vec<Mention> {
    let mut out: Vec<Mention> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let mut push = |what: What, last: usize| {
            out.push(Mention {
                what,
                start: t.start,
                end: tokens[last].end,
            })
        };
        // "Nov 30", "November 30th, 2026".
        if t.kind == Kind::Word
            && let Some(month) = month_of(t.text)
        {
            let mut j = i + 1;
            if tokens.get(j).is_some_and(|n| n.is_sign('.')) {
                j += 1;
            }
            let day = tokens
                .get(j)
                .and_then(|d| d.number().filter(|n| (1..=31).contains(n) && d.text.len() <= 2));
            let is_time =
                tokens.get(j + 1).is_some_and(|n| n.is_sign(':')) || meridiem(tokens, j + 1).is_some();
            if let Some(day) = day
                && !is_time
            {
                let mut last = j;
                if is_ordinal_suffix(tokens.get(j + 1)) {
                    last = j + 1;
                }
                let mut date = resolve_year(today, month, day);
                if let (Some(comma), Some(year)) = (tokens.get(last + 1), tokens.get(last + 2))
                    && comma.is_sign(',')
                    && year.text.len() == 4
                    && let Some(y) = year.number()
                {
                    date = NaiveDate::from_ymd_opt(y as i32, month, day);
                    last += 2;
                }
                push(What::Date(date), last);
                i = last + 1;
                continue;
            }
        }
        if t.kind == Kind::Number && t.text.len() <= 2 {
            let n = t.number().unwrap_or(0);
            // "30 Nov", "30th of November".
            let mut j = i + 1;
            if is_ordinal_suffix(tokens.get(j)) {
                j += 1;
            }
            if tokens.get(j).is_some_and(|w| w.is_word("of")) {
                j += 1;
            }
            if (1..=31).contains(&n)
                && let Some(month) = tokens
                    .get(j)
                    .filter(|w| w.kind == Kind::Word)
                    .and_then(|w| month_of(w.text))
                && (j > i + 1 || month != 5)
            {
                push(What::Date(resolve_year(today, month, n)), j);
                i = j + 1;
                continue;
            }
            // "11/30", "12/1/2026"; "1/2 a truck" is a fraction.
            if let (Some(slash), Some(d)) = (tokens.get(i + 1), tokens.get(i + 2))
                && slash.is_sign('/')
                && slash.start == t.end
                && d.start == slash.end
                && let Some(day) = d.number().filter(|_| d.text.len() <= 2)
            {
                let mut last = i + 2;
                let mut year = None;
                if let (Some(s2), Some(y)) = (tokens.get(i + 3), tokens.get(i + 4))
                    && s2.is_sign('/')
                    && s2.start == d.end
                    && let Some(y) = y.number()
                {
                    year = Some(if y < 100 { 2000 + y as i32 } else { y as i32 });
                    last = i + 4;
                }
                let preceded_by_on = i > 0 && tokens[i - 1].is_word("on");
                let fraction = year.is_none() && !preceded_by_on && [2, 3, 4, 8].contains(&day) && n < day;
                // "a 3/2 home" is bedrooms and bathrooms.
                let a_home = tokens.get(last + 1).is_some_and(|w| {
                    matches!(
                        w.text,
                        "home"
                            | "house"
                            | "apartment"
                            | "condo"
                            | "bed"
                            | "beds"
                            | "bath"
                            | "baths"
                            | "truck"
                            | "load"
                    )
                });
                if (1..=12).contains(&n) && (1..=31).contains(&day) && !fraction && !a_home {
                    let date = match year {
                        Some(y) => NaiveDate::from_ymd_opt(y, n, day),
                        None => resolve_year(today, n, day),
                    };
                    push(What::Date(date), last);
                }
                i = last + 1;
                continue;
            }
            // "Monday the 30th", "on the 1st".
            if is_ordinal_suffix(tokens.get(i + 1))
                && i > 0
                && tokens[i - 1].is_word("the")
                && (1..=31).contains(&n)
            {
                let context = &tokens[i.saturating_sub(4)..i - 1];
                let dated = context
                    .iter()
                    .any(|w| w.is_word("on") || (w.kind == Kind::Word && weekday_of(w.text).is_some()));
                let counted_thing = tokens.get(i + 2).is_some_and(|w| {
                    matches!(
                        w.text,
                        "floor"
                            | "flight"
                            | "one"
                            | "option"
                            | "time"
                            | "slot"
                            | "opening"
                            | "choice"
                            | "visit"
                    )
                });
                if dated && !counted_thing {
                    push(What::DayOfMonth(n), i + 1);
                    i += 2;
                    continue;
                }
            }
        }
        if t.kind == Kind::Word {
            if let Some((day, only_beside_date)) = weekday_of(t.text) {
                let mut j = i + 1;
                while tokens.get(j).is_some_and(|n| n.is_sign(',') || n.is_sign('.')) {
                    j += 1;
                }
                let beside = tokens.get(j).is_some_and(|n| {
                    n.kind == Kind::Number
                        || (n.kind == Kind::Word && month_of(n.text).is_some())
                        || n.is_word("at")
                });
                if !only_beside_date || beside {
                    push(What::Weekday(day), i);
                }
                i += 1;
                continue;
            }
            let relative = match t.text {
                "tomorrow" | "tmrw" | "tmr" => today.checked_add_days(Days::new(1)),
                "tonight" => Some(today),
                // "How can I help today?" names no day; "today at 3pm" does.
                "today"
                    if tokens.get(i + 1).is_some_and(|n| {
                        n.is_word("at") || n.kind == Kind::Number || n.is_word("between")
                    }) =>
                {
                    Some(today)
                }
                _ => None,
            };
            if let Some(date) = relative {
                push(What::Relative(date), i);
                i += 1;
                continue;
            }
        }
        if let Some((times, next)) = times_at(tokens, i) {
            let start = t.start;
            let end = tokens[next - 1].end;
            for what in times {
                out.push(Mention { what, start, end });
            }
            i = next;
            continue;
        }
        i += 1;
    }
    out
}

/// The dates an owner-written text states ("Closed Dec 24").
pub(super) fn dates_in(text: &str, today: NaiveDate) -> Vec<NaiveDate> {
    let prepared = super::prepare(text);
    let tokens = super::tokens::tokenize(&prepared);
    mentions(&tokens, today)
        .into_iter()
        .filter_map(|m| match m.what {
            What::Date(date) => date,
            _ => None,
        })
        .collect()
}

/// The times of day a code-made label states ("Tue Nov 24, 8-10am").
pub(super) fn times_in_label(label: &str) -> Vec<NaiveTime> {
    let prepared = super::prepare(label);
    let tokens = super::tokens::tokenize(&prepared);
    // Only the times are kept: any date stands in for today.
    mentions(&tokens, NaiveDate::default())
        .into_iter()
        .filter_map(|m| match m.what {
            What::Time { time, .. } => Some(time),
            _ => None,
        })
        .collect()
}

fn day_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

pub(super) fn check(prepared: &str, tokens: &[Token<'_>], facts: &Facts, out: &mut Vec<Violation>) {
    let found = mentions(tokens, facts.today);
    if found.is_empty() {
        return;
    }
    // A weekday or "the 30th" alone can only mean an opening; a full date
    // may also be a closing or the quote's "valid until".
    let opening_dates = || facts.openings.iter().map(|o| o.date);
    let allowed_dates = || opening_dates().chain(facts.other_dates.iter().copied());
    let offered = if facts.openings.is_empty() {
        "no openings were offered in this conversation".to_string()
    } else {
        "it is not an opening offered in this conversation or its booking".to_string()
    };
    let mut violation = |kind, m: &Mention, reason: String| {
        out.push(Violation {
            kind,
            phrase: excerpt(prepared, m.start, m.end),
            reason,
        })
    };
    // The tokens that start in `from..to`.
    let between = |from: usize, to: usize| {
        let first = tokens.partition_point(|t| t.start < from);
        let last = tokens.partition_point(|t| t.start < to);
        &tokens[first..last.max(first)]
    };
    // A sentence or line ends between two mentions (or the second starts a
    // line of its own).
    let broken = |from: usize, to: usize| {
        between(from, to + 1)
            .iter()
            .any(|t| t.after_line_break || t.is_sign('!') || t.is_sign('?') || t.is_sign(';'))
    };
    // Whether the sentence around `from` ends in a question mark.
    let asks = |from: usize| {
        tokens[tokens.partition_point(|t| t.start < from)..]
            .iter()
            .find(|t| t.after_line_break || t.is_sign('.') || t.is_sign('!') || t.is_sign('?'))
            .is_some_and(|t| t.is_sign('?') && !t.after_line_break)
    };
    // What each time is said of: the nearest date-like mention before it
    // in the same sentence.
    let mut context: Option<What> = None;
    let mut context_end = 0usize;
    for (k, m) in found.iter().enumerate() {
        match m.what {
            What::Weekday(day) => {
                // "Tuesday, Nov 30": the weekday must be the date's.
                let named = found.get(k + 1).filter(|n| {
                    n.start > m.end
                        && between(m.end, n.start)
                            .iter()
                            .all(|t| t.is_sign(',') || t.is_sign('.') || t.is_word("the"))
                });
                // Reported as the whole phrase: "tuesday, nov 30".
                let whole = Mention {
                    end: named.map_or(m.end, |n| n.end),
                    ..*m
                };
                match named.map(|n| n.what) {
                    Some(What::Date(Some(date))) if date.weekday() != day => violation(
                        ViolationKind::Weekday,
                        &whole,
                        format!(
                            "{} is a {}, not a {}",
                            date.format("%b %-d"),
                            day_name(date.weekday()),
                            day_name(day)
                        ),
                    ),
                    Some(What::DayOfMonth(n)) => {
                        if let Some(date) = opening_dates().find(|d| d.day() == n)
                            && date.weekday() != day
                        {
                            violation(
                                ViolationKind::Weekday,
                                &whole,
                                format!(
                                    "the {n}th offered is {}, a {}, not a {}",
                                    date.format("%b %-d"),
                                    day_name(date.weekday()),
                                    day_name(day)
                                ),
                            );
                        }
                    }
                    Some(What::Date(_)) => {}
                    // A day alone in a question asks the customer's
                    // preference ("are you free Sunday?"); a day stated, or
                    // with a date or time, must be an opening's.
                    _ if asks(m.end) => {}
                    _ => {
                        if !opening_dates().any(|d| d.weekday() == day) {
                            violation(ViolationKind::Date, m, format!("{}: {offered}", day_name(day)));
                        }
                    }
                }
                context = Some(m.what);
                context_end = m.end;
            }
            What::Date(None) => violation(ViolationKind::Date, m, "no such date".into()),
            What::Date(Some(date)) | What::Relative(date) => {
                if !allowed_dates().any(|d| d == date) {
                    violation(
                        ViolationKind::Date,
                        m,
                        format!(
                            "{} ({}): {offered}",
                            date.format("%a %b %-d"),
                            day_name(date.weekday())
                        ),
                    );
                }
                context = Some(m.what);
                context_end = m.end;
            }
            What::DayOfMonth(n) => {
                if !opening_dates().any(|d| d.day() == n) {
                    violation(ViolationKind::Date, m, format!("the {n}th: {offered}"));
                }
                context = Some(m.what);
                context_end = m.end;
            }
            What::Time { time, either_half } => {
                let said_of = context.filter(|_| !broken(context_end, m.start));
                let on_day = |o: &&super::KnownOpening| match said_of {
                    Some(What::Date(Some(d)) | What::Relative(d)) => o.date == d,
                    Some(What::Weekday(w)) => o.date.weekday() == w,
                    Some(What::DayOfMonth(n)) => o.date.day() == n,
                    _ => true,
                };
                let other_half = time.overflowing_add_signed(chrono::Duration::hours(12)).0;
                let fits = facts
                    .openings
                    .iter()
                    .filter(on_day)
                    .any(|o| o.times.contains(&time) || (either_half && o.times.contains(&other_half)));
                if !fits {
                    let when = if said_of.is_some() { " on that day" } else { "" };
                    violation(
                        ViolationKind::Time,
                        m,
                        format!("{}{when}: {offered}", time.format("%-I:%M%P")),
                    );
                }
            }
        }
    }
}
