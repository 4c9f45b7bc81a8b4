//! When a booked customer is reminded, and when an open quote is followed up.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};

use super::availability::local_instant;
use super::quiet_hours::QuietHours;

/// business.toml [reminders].
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ReminderConfig {
    /// Local time on the day before the job; "off" to disable.
    #[serde(deserialize_with = "optional_clock")]
    pub day_before: Option<NaiveTime>,
    /// Local time on the morning of the job; "off" to disable. Quiet hours
    /// still apply, and it is skipped if it would fall within 30 minutes of
    /// the start.
    #[serde(deserialize_with = "optional_clock")]
    pub morning_of: Option<NaiveTime>,
    /// Hours after a quote or offer without an answer before one nudge; 0
    /// to disable.
    pub quote_follow_up_hours: u32,
}

fn optional_clock<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveTime>, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    NaiveTime::parse_from_str(raw.trim(), "%H:%M")
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("`{raw}` is not a time like \"17:00\", or \"off\"")))
}

impl Default for ReminderConfig {
    fn default() -> Self {
        Self {
            day_before: NaiveTime::from_hms_opt(17, 0, 0),
            morning_of: NaiveTime::from_hms_opt(8, 0, 0),
            quote_follow_up_hours: 24,
        }
    }
}

/// Stored in a reminder job's payload by these names (`day_before`,
/// `morning_of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderKind {
    DayBefore,
    MorningOf,
}

impl ReminderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderKind::DayBefore => "day_before",
            ReminderKind::MorningOf => "morning_of",
        }
    }
}

/// The reminders for a job starting at `start`, each at its local time
/// (moved out of quiet hours), dropping any already past or too late to help.
pub fn schedule(
    start: DateTime<Utc>,
    tz: Tz,
    config: &ReminderConfig,
    quiet: &QuietHours,
    now: DateTime<Utc>,
) -> Vec<(ReminderKind, DateTime<Utc>)> {
    let day = start.with_timezone(&tz).date_naive();
    let at =
        |date, time: NaiveTime| (0..180).find_map(|m| local_instant(tz, date, time + Duration::minutes(m)));
    let mut out = Vec::new();
    if let Some(t) = config
        .day_before
        .and_then(|time| at(day - Duration::days(1), time))
    {
        let t = quiet.next_allowed(t, tz);
        if t > now && t < start - Duration::hours(1) {
            out.push((ReminderKind::DayBefore, t));
        }
    }
    if let Some(t) = config.morning_of.and_then(|time| at(day, time)) {
        let t = quiet.next_allowed(t, tz);
        if t > now && t <= start - Duration::minutes(30) {
            out.push((ReminderKind::MorningOf, t));
        }
    }
    out
}

/// When an unanswered quote gets its one nudge, if at all.
pub fn follow_up_at(
    quoted_at: DateTime<Utc>,
    tz: Tz,
    config: &ReminderConfig,
    quiet: &QuietHours,
) -> Option<DateTime<Utc>> {
    (config.quote_follow_up_hours > 0).then(|| {
        quiet.next_allowed(
            quoted_at + Duration::hours(i64::from(config.quote_follow_up_hours)),
            tz,
        )
    })
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use chrono_tz::America::{Chicago, Los_Angeles};

    use super::*;

    fn at(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        local_instant(
            tz,
            NaiveDate::from_ymd_opt(y, m, d).unwrap(),
            NaiveTime::from_hms_opt(h, min, 0).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn reminders_fall_on_local_times_across_dst() {
        let config = ReminderConfig {
            morning_of: NaiveTime::from_hms_opt(7, 0, 0),
            ..ReminderConfig::default()
        };
        let q = QuietHours::default();
        for tz in [Chicago, Los_Angeles] {
            // Spring forward on Sun Mar 8: job Mon Mar 9 at 10:00.
            let start = at(tz, 2026, 3, 9, 10, 0);
            let r = schedule(start, tz, &config, &q, at(tz, 2026, 3, 1, 12, 0));
            assert_eq!(r[0], (ReminderKind::DayBefore, at(tz, 2026, 3, 8, 17, 0)), "{tz}");
            // 07:00 is quiet: it goes at 08:00.
            assert_eq!(r[1], (ReminderKind::MorningOf, at(tz, 2026, 3, 9, 8, 0)), "{tz}");
            // The day before is 23 hours long: 17:00 Sunday is 17 h before 10:00 Monday.
            assert_eq!(start - r[0].1, Duration::hours(17));
            // Fall back on Sun Nov 1: job Mon Nov 2 at 10:00; Sunday has 25 hours.
            let start = at(tz, 2026, 11, 2, 10, 0);
            let r = schedule(start, tz, &config, &q, at(tz, 2026, 10, 25, 12, 0));
            assert_eq!(r[0].1, at(tz, 2026, 11, 1, 17, 0));
            assert_eq!(start - r[0].1, Duration::hours(17));
            // Across the change itself: a job on the Sunday, reminded Saturday.
            let start = at(tz, 2026, 3, 8, 11, 0);
            let r = schedule(start, tz, &config, &q, at(tz, 2026, 3, 1, 12, 0));
            assert_eq!(r[0].1, at(tz, 2026, 3, 7, 17, 0));
            assert_eq!(start - r[0].1, Duration::hours(17), "a 23-hour night in between");
        }
    }

    #[test]
    fn reminders_that_would_not_help_are_dropped() {
        let q = QuietHours::default();
        let c = ReminderConfig::default();
        // An 8am job: the 8am morning-of reminder would arrive at the start.
        let start = at(Chicago, 2026, 6, 10, 8, 0);
        let r = schedule(start, Chicago, &c, &q, at(Chicago, 2026, 6, 1, 12, 0));
        assert_eq!(
            r.iter().map(|x| x.0).collect::<Vec<_>>(),
            [ReminderKind::DayBefore]
        );
        // Booked at 18:00 for tomorrow: the 17:00 day-before time has passed.
        let r = schedule(
            at(Chicago, 2026, 6, 11, 13, 0),
            Chicago,
            &c,
            &q,
            at(Chicago, 2026, 6, 10, 18, 0),
        );
        assert_eq!(
            r.iter().map(|x| x.0).collect::<Vec<_>>(),
            [ReminderKind::MorningOf]
        );
        // Off means off.
        let off = ReminderConfig {
            day_before: None,
            morning_of: None,
            ..c
        };
        assert!(schedule(start, Chicago, &off, &q, at(Chicago, 2026, 6, 1, 12, 0)).is_empty());
    }

    #[test]
    fn a_follow_up_respects_quiet_hours() {
        let q = QuietHours::default();
        let c = ReminderConfig::default();
        // Quoted at 22:10: 24 h later is 22:10, quiet; it goes at 08:00 after.
        let quoted = at(Chicago, 2026, 6, 10, 22, 10);
        assert_eq!(
            follow_up_at(quoted, Chicago, &c, &q),
            Some(at(Chicago, 2026, 6, 12, 8, 0))
        );
        let none = ReminderConfig {
            quote_follow_up_hours: 0,
            ..c
        };
        assert_eq!(follow_up_at(quoted, Chicago, &none, &q), None);
    }
}
