//! "Next Tuesday afternoon", resolved by code relative to today in the
//! business's time zone. The model passes the customer's words through; it
//! never does date arithmetic.
//!
//! Conventions, so they can be explained to an owner:
//! - a bare weekday ("Tuesday") and "this Tuesday" mean the next one on or
//!   after today; "next Tuesday" means the first one after today;
//! - "this week" runs to Sunday, "next week" is Monday to Sunday after that,
//!   "the weekend" is the coming Saturday and Sunday;
//! - dates are month-day ("March 10", "3/10", "10th"); one in the past means
//!   next year.

use chrono::{Datelike, Duration, NaiveDate, NaiveTime, Timelike, Weekday};

use super::availability::{DateFilter, PartOfDay};

const WEEKDAYS: [(&str, Weekday); 14] = [
    ("monday", Weekday::Mon),
    ("tuesday", Weekday::Tue),
    ("wednesday", Weekday::Wed),
    ("thursday", Weekday::Thu),
    ("friday", Weekday::Fri),
    ("saturday", Weekday::Sat),
    ("sunday", Weekday::Sun),
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '/'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn weekday_of(word: &str) -> Option<Weekday> {
    let word = word.trim_end_matches('s'); // "tuesdays"
    WEEKDAYS
        .iter()
        .find(|(name, _)| *name == word || (word.len() >= 3 && name.starts_with(word) && name.len() > 3))
        .map(|(_, d)| *d)
}

/// The first `day` on or after `from`.
fn on_or_after(from: NaiveDate, day: Weekday) -> NaiveDate {
    let ahead = (7 + day.num_days_from_monday() as i64 - from.weekday().num_days_from_monday() as i64) % 7;
    from + Duration::days(ahead)
}

fn month_day(words: &[String], today: NaiveDate) -> Option<NaiveDate> {
    let pick = |month: u32, day: u32| {
        let this_year = NaiveDate::from_ymd_opt(today.year(), month, day)?;
        if this_year >= today {
            Some(this_year)
        } else {
            NaiveDate::from_ymd_opt(today.year() + 1, month, day)
        }
    };
    let day_number = |w: &str| -> Option<u32> {
        let digits = w.trim_end_matches(|c: char| c.is_alphabetic());
        let suffix = &w[digits.len()..];
        if digits.is_empty() || !(suffix.is_empty() || ["st", "nd", "rd", "th"].contains(&suffix)) {
            return None;
        }
        digits.parse().ok().filter(|d| (1..=31).contains(d))
    };
    for (i, w) in words.iter().enumerate() {
        // 3/10
        if let Some((m, d)) = w.split_once('/')
            && let (Ok(m), Ok(d)) = (m.parse::<u32>(), d.parse::<u32>())
        {
            return pick(m, d);
        }
        // March 10 / 10 March
        if let Some(m) = MONTHS.iter().position(|name| w.starts_with(name) && w.len() >= 3) {
            let month = m as u32 + 1;
            let next = words.get(i + 1).and_then(|n| day_number(n));
            let prev = i.checked_sub(1).and_then(|p| day_number(&words[p]));
            if let Some(day) = next.or(prev) {
                return pick(month, day);
            }
        }
    }
    // "the 10th": this month or next.
    for w in words {
        if w.len() > 2
            && (w.ends_with("st") || w.ends_with("nd") || w.ends_with("rd") || w.ends_with("th"))
            && let Some(day) = day_number(w)
        {
            let this_month = NaiveDate::from_ymd_opt(today.year(), today.month(), day);
            if let Some(d) = this_month.filter(|d| *d >= today) {
                return Some(d);
            }
            let (y, m) = if today.month() == 12 {
                (today.year() + 1, 1)
            } else {
                (today.year(), today.month() + 1)
            };
            return NaiveDate::from_ymd_opt(y, m, day);
        }
    }
    None
}

/// Resolves a preference. The description says what was understood, for
/// the model to repeat and the customer to correct.
pub fn resolve(text: &str, today: NaiveDate) -> (DateFilter, String) {
    let w = words(text);
    let has = |s: &str| w.iter().any(|x| x == s);
    let mut filter = DateFilter::default();
    let mut said = Vec::new();

    // "am"/"pm" only next to a number ("9am", "2 pm"): "I am free" is not
    // a time of day.
    let clock_suffix = |suffix: &str| {
        w.iter().enumerate().any(|(i, x)| {
            let attached = x.len() > suffix.len()
                && x.ends_with(suffix)
                && x[..x.len() - suffix.len()]
                    .replace(':', "")
                    .parse::<u32>()
                    .is_ok();
            let separate = x == suffix && i > 0 && w[i - 1].replace(':', "").parse::<u32>().is_ok();
            attached || separate
        })
    };
    // "Early/late next week" narrows the days, not the time of day.
    let about_week = has("week");
    let part = if has("morning") || clock_suffix("am") || (has("early") && !about_week) {
        Some((PartOfDay::Morning, "morning"))
    } else if has("afternoon") || clock_suffix("pm") || has("lunch") || has("midday") {
        Some((PartOfDay::Afternoon, "afternoon"))
    } else if has("evening") || has("night") || (has("late") && !about_week) {
        Some((PartOfDay::Evening, "evening"))
    } else {
        None
    };

    let single = |d: NaiveDate| (Some(d), Some(d));
    let mut range: (Option<NaiveDate>, Option<NaiveDate>) = (None, None);
    if has("today") || has("tonight") {
        range = single(today);
    } else if has("tomorrow") || has("tmrw") || has("tmr") {
        let after = w
            .windows(3)
            .any(|x| x[0] == "day" && x[1] == "after" && x[2] == "tomorrow");
        range = single(today + Duration::days(if after { 2 } else { 1 }));
    } else if let Some(date) = month_day(&w, today) {
        range = single(date);
    } else if let Some((i, day)) = w
        .iter()
        .enumerate()
        .find_map(|(i, x)| weekday_of(x).map(|d| (i, d)))
    {
        let before = i.checked_sub(1).map(|p| w[p].as_str());
        let after_next = w.get(i + 1).map(String::as_str) == Some("after")
            && w.get(i + 2).map(String::as_str) == Some("next");
        let next_monday = on_or_after(today + Duration::days(1), Weekday::Mon);
        let mut date = if has("next") && about_week {
            // "Tuesday next week": that weekday in next week.
            next_monday + Duration::days(day.num_days_from_monday() as i64)
        } else if before == Some("next") {
            on_or_after(today + Duration::days(1), day)
        } else {
            on_or_after(today, day)
        };
        if after_next {
            date += Duration::days(7);
        }
        range = single(date);
    } else if has("weekend") {
        // On a Sunday, "this weekend" is what is left of it: today.
        range = if today.weekday() == Weekday::Sun {
            single(today)
        } else {
            let saturday = on_or_after(today, Weekday::Sat);
            (Some(saturday), Some(saturday + Duration::days(1)))
        };
    } else if has("week") {
        let sunday = on_or_after(today, Weekday::Sun);
        let (from, to) = if has("next") {
            (sunday + Duration::days(1), sunday + Duration::days(7))
        } else {
            (today, sunday)
        };
        // Early: Monday to Wednesday; late: Thursday to Sunday.
        let monday = to - Duration::days(6);
        range = if has("early") {
            (Some(from), Some(monday + Duration::days(2)))
        } else if has("late") {
            (Some(from.max(monday + Duration::days(3))), Some(to))
        } else {
            (Some(from), Some(to))
        };
    }
    filter.from = range.0;
    filter.to = range.1;
    match range {
        (Some(a), Some(b)) if a == b => said.push(a.format("%a %b %-d").to_string()),
        (Some(a), Some(b)) => said.push(format!("{} to {}", a.format("%a %b %-d"), b.format("%a %b %-d"))),
        _ => {}
    }
    if let Some((p, name)) = part {
        filter.part = Some(p);
        said.push(name.to_string());
    }
    let description = if said.is_empty() {
        "the earliest openings".to_string()
    } else {
        said.join(", ")
    };
    (filter, description)
}

/// A time of day the text names: an exact time ("2pm", "2:30 pm", "14:00",
/// "noon", "at 2") or an arrival window ("1-3pm", "11am-1pm").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockTime {
    pub start: NaiveTime,
    /// The end of a window, when one was named.
    pub end: Option<NaiveTime>,
}

impl ClockTime {
    /// Which part of the day it starts in, for a search by part of day.
    pub fn part(&self) -> PartOfDay {
        match self.start.hour() {
            0..12 => PartOfDay::Morning,
            12..17 => PartOfDay::Afternoon,
            _ => PartOfDay::Evening,
        }
    }
}

/// Splits into number runs (with ':'), letter runs and dashes; "a.m." is
/// read as "am".
fn clock_tokens(text: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, tokens: &mut Vec<String>| {
        if !current.is_empty() {
            tokens.push(std::mem::take(current));
        }
    };
    for c in text.to_lowercase().chars() {
        let same_kind = current.chars().next().is_some_and(|first| {
            (first.is_ascii_digit() && (c.is_ascii_digit() || c == ':'))
                || (first.is_alphabetic() && c.is_alphabetic())
        });
        if !same_kind {
            flush(&mut current, &mut tokens);
        }
        if c.is_alphanumeric() || c == ':' && !current.is_empty() {
            current.push(c);
        } else if c == '-' || c == '\u{2013}' {
            tokens.push("-".into());
        }
    }
    flush(&mut current, &mut tokens);
    // "a.m." arrives as "a", "m".
    let mut joined: Vec<String> = Vec::new();
    for t in tokens {
        if t == "m" && joined.last().is_some_and(|l| l == "a" || l == "p") {
            let meridiem = format!("{}m", joined.pop().unwrap_or_default());
            joined.push(meridiem);
        } else {
            joined.push(t);
        }
    }
    joined
}

/// "2", "2:30", "14:00" as (hour, minute).
fn hour_minute(token: &str) -> Option<(u32, u32)> {
    let (h, m) = token.split_once(':').unwrap_or((token, "0"));
    let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
    (h <= 23 && m <= 59 && !token.ends_with(':')).then_some((h, m))
}

fn with_meridiem((h, m): (u32, u32), meridiem: &str) -> Option<NaiveTime> {
    if h == 0 || h > 12 {
        return None;
    }
    let h = match (meridiem, h) {
        ("am", 12) => 0,
        ("am", h) => h,
        (_, 12) => 12,
        (_, h) => h + 12,
    };
    NaiveTime::from_hms_opt(h, m, 0)
}

/// A time with no am/pm, in business hours: 7 to 11 is morning, 12 to 6 is
/// afternoon; 13:00 and later is a 24-hour time.
fn business_hour((h, m): (u32, u32)) -> Option<NaiveTime> {
    let h = match h {
        1..=6 => h + 12,
        7..=23 => h,
        _ => return None,
    };
    NaiveTime::from_hms_opt(h, m, 0)
}

/// The first time of day the text names. A bare number counts only after
/// "at", "around" or "by", or with minutes ("10:30"): "2" alone is a menu
/// choice and "the 2nd" a date.
pub fn clock(text: &str) -> Option<ClockTime> {
    let t = clock_tokens(text);
    let meridiem = |i: usize| t.get(i).map(String::as_str).filter(|m| *m == "am" || *m == "pm");
    for i in 0..t.len() {
        if t[i] == "noon" || t[i] == "midday" {
            return NaiveTime::from_hms_opt(12, 0, 0).map(|start| ClockTime { start, end: None });
        }
        let Some(first) = hour_minute(&t[i]) else {
            continue;
        };
        // A window: "1-3pm", "11am-1pm", "8 to 10am".
        let first_meridiem = meridiem(i + 1);
        let dash = i + 1 + usize::from(first_meridiem.is_some());
        if matches!(t.get(dash).map(String::as_str), Some("-" | "to"))
            && let Some(second) = t.get(dash + 1).and_then(|s| hour_minute(s))
            && let Some(end_meridiem) = meridiem(dash + 2).or(first_meridiem)
            && let Some(end) = with_meridiem(second, end_meridiem)
        {
            let start = match first_meridiem {
                Some(m) => with_meridiem(first, m),
                // "11-1pm": the start is the morning before a later end.
                None => with_meridiem(first, end_meridiem)
                    .filter(|s| *s < end)
                    .or_else(|| with_meridiem(first, "am")),
            };
            if let Some(start) = start {
                return Some(ClockTime {
                    start,
                    end: Some(end),
                });
            }
        }
        let start = match first_meridiem {
            Some(m) => with_meridiem(first, m),
            None if t[i].contains(':') => business_hour(first),
            None if i > 0 && ["at", "around", "by", "about"].contains(&t[i - 1].as_str()) => {
                business_hour(first)
            }
            None => None,
        };
        if let Some(start) = start {
            return Some(ClockTime { start, end: None });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    // Wednesday, Nov 25 2026.
    const WED: (i32, u32, u32) = (2026, 11, 25);

    fn on(text: &str) -> (Option<NaiveDate>, Option<NaiveDate>, Option<PartOfDay>) {
        let (f, _) = resolve(text, d(WED.0, WED.1, WED.2));
        (f.from, f.to, f.part)
    }

    #[test]
    fn next_tuesday_on_a_wednesday_is_six_days_out() {
        assert_eq!(
            on("next Tuesday afternoon"),
            (
                Some(d(2026, 12, 1)),
                Some(d(2026, 12, 1)),
                Some(PartOfDay::Afternoon)
            )
        );
        assert_eq!(on("tuesday").0, Some(d(2026, 12, 1)));
        assert_eq!(on("this wednesday").0, Some(d(2026, 11, 25)));
        assert_eq!(on("next wednesday").0, Some(d(2026, 12, 2)));
        assert_eq!(on("Thursday after next").0, Some(d(2026, 12, 3)));
        assert_eq!(
            on("fri morning"),
            (
                Some(d(2026, 11, 27)),
                Some(d(2026, 11, 27)),
                Some(PartOfDay::Morning)
            )
        );
    }

    #[test]
    fn relative_days_and_weeks() {
        assert_eq!(on("today").0, Some(d(2026, 11, 25)));
        assert_eq!(on("tomorrow am").0, Some(d(2026, 11, 26)));
        assert_eq!(on("day after tomorrow").0, Some(d(2026, 11, 27)));
        assert_eq!(
            (on("this weekend").0, on("this weekend").1),
            (Some(d(2026, 11, 28)), Some(d(2026, 11, 29)))
        );
        assert_eq!(
            (on("this week").0, on("this week").1),
            (Some(d(2026, 11, 25)), Some(d(2026, 11, 29)))
        );
        assert_eq!(
            (on("sometime next week").0, on("sometime next week").1),
            (Some(d(2026, 11, 30)), Some(d(2026, 12, 6)))
        );
    }

    #[test]
    fn phrases_customers_actually_send() {
        // "am" is only a time next to a number.
        assert_eq!(
            on("I am free next Tuesday afternoon").2,
            Some(PartOfDay::Afternoon)
        );
        assert_eq!(on("tuesday 9am").2, Some(PartOfDay::Morning));
        assert_eq!(on("tuesday at 2 pm").2, Some(PartOfDay::Afternoon));
        // Early and late next week narrow the days.
        assert_eq!(
            on("early next week"),
            (Some(d(2026, 11, 30)), Some(d(2026, 12, 2)), None)
        );
        assert_eq!(
            on("late next week"),
            (Some(d(2026, 12, 3)), Some(d(2026, 12, 6)), None)
        );
        // "Tuesday next week" is in next week, even on a Monday.
        let monday = d(2026, 11, 23);
        let (f, _) = resolve("Tuesday next week", monday);
        assert_eq!(f.from, Some(d(2026, 12, 1)));
        // "This weekend" on a Sunday is today.
        let sunday = d(2026, 11, 29);
        let (f, _) = resolve("this weekend", sunday);
        assert_eq!((f.from, f.to), (Some(sunday), Some(sunday)));
    }

    #[test]
    fn dates() {
        assert_eq!(on("December 3rd").0, Some(d(2026, 12, 3)));
        assert_eq!(on("dec 3").0, Some(d(2026, 12, 3)));
        assert_eq!(on("3 Dec").0, Some(d(2026, 12, 3)));
        assert_eq!(on("12/3").0, Some(d(2026, 12, 3)));
        assert_eq!(
            on("March 10").0,
            Some(d(2027, 3, 10)),
            "past dates mean next year"
        );
        assert_eq!(on("the 28th").0, Some(d(2026, 11, 28)));
        assert_eq!(on("the 2nd").0, Some(d(2026, 12, 2)));
    }

    #[test]
    fn no_preference_means_earliest() {
        let (f, said) = resolve("whenever works, asap", d(WED.0, WED.1, WED.2));
        assert!(f.is_empty());
        assert_eq!(said, "the earliest openings");
        let (_, said) = resolve("next Tuesday afternoon", d(WED.0, WED.1, WED.2));
        assert_eq!(said, "Tue Dec 1, afternoon");
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn clock_times_and_windows() {
        let at = |t: &str| clock(t).map(|c| (c.start, c.end));
        assert_eq!(at("monday at 2pm"), Some((hm(14, 0), None)));
        assert_eq!(at("2 pm works"), Some((hm(14, 0), None)));
        assert_eq!(at("2:30PM"), Some((hm(14, 30), None)));
        assert_eq!(at("8:30 a.m."), Some((hm(8, 30), None)));
        assert_eq!(at("12pm"), Some((hm(12, 0), None)));
        assert_eq!(at("12am"), Some((hm(0, 0), None)));
        assert_eq!(at("noon tuesday"), Some((hm(12, 0), None)));
        assert_eq!(at("Tue Dec 1, 1-3pm"), Some((hm(13, 0), Some(hm(15, 0)))));
        assert_eq!(at("Tue Dec 1, 8-10am"), Some((hm(8, 0), Some(hm(10, 0)))));
        assert_eq!(at("Tue Dec 1, 11am-1pm"), Some((hm(11, 0), Some(hm(13, 0)))));
        assert_eq!(at("11-1pm"), Some((hm(11, 0), Some(hm(13, 0)))));
        assert_eq!(at("8 to 10am"), Some((hm(8, 0), Some(hm(10, 0)))));
        assert_eq!(at("at 2"), Some((hm(14, 0), None)));
        assert_eq!(at("around 9"), Some((hm(9, 0), None)));
        assert_eq!(at("10:30"), Some((hm(10, 30), None)));
        assert_eq!(at("14:00"), Some((hm(14, 0), None)));
        // Not times: a menu choice, a date, a quantity.
        assert_eq!(at("2"), None);
        assert_eq!(at("the 2nd"), None);
        assert_eq!(at("12/3"), None);
        assert_eq!(at("2 mattresses"), None);
        assert_eq!(at("I am free"), None);
        assert_eq!(at("13pm"), None);
    }
}
