//! Quiet hours: when no proactive text may go out.
//!
//! Counted in the recipient's local time (the business's zone: its
//! customers are local). The owner may widen quiet hours but never narrow
//! them past TCPA's window: proactive texts go out only between 8am and 9pm.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};

use super::availability::local_instant;

/// business.toml [quiet_hours].
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QuietHours {
    /// Quiet from this local time...
    #[serde(deserialize_with = "clock")]
    pub start: NaiveTime,
    /// ...until this local time the next morning.
    #[serde(deserialize_with = "clock")]
    pub end: NaiveTime,
    /// Whether a reply to the customer's own text may go out during quiet
    /// hours (it is not a proactive text).
    pub replies_allowed: bool,
}

fn clock<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
    let raw = String::deserialize(d)?;
    NaiveTime::parse_from_str(raw.trim(), "%H:%M")
        .map_err(|_| serde::de::Error::custom(format!("`{raw}` is not a time like \"21:00\"")))
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("valid time")
}

/// TCPA: no marketing or reminder texts before 8am or after 9pm, local.
pub const EARLIEST: (u32, u32) = (8, 0);
pub const LATEST: (u32, u32) = (21, 0);

impl Default for QuietHours {
    fn default() -> Self {
        Self {
            start: hm(21, 0),
            end: hm(8, 0),
            replies_allowed: true,
        }
    }
}

impl QuietHours {
    /// The window in which proactive texts may go out, each day:
    /// [opens, closes), never wider than 8am-9pm.
    pub fn sending_window(&self) -> (NaiveTime, NaiveTime) {
        let earliest = hm(EARLIEST.0, EARLIEST.1);
        let latest = hm(LATEST.0, LATEST.1);
        // Quiet hours that wrap midnight (21:00-08:00) leave [end, start).
        let (opens, closes) = if self.start > self.end {
            (self.end, self.start)
        } else {
            // Quiet hours inside one day (e.g. 12:00-13:00) are unusual;
            // treat the allowed window as the TCPA window minus nothing.
            (earliest, latest)
        };
        (opens.max(earliest), closes.min(latest))
    }

    pub fn is_quiet(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        self.next_allowed(at, tz) != at
    }

    /// `at` itself if a proactive text may go out then, else the next
    /// moment one may.
    pub fn next_allowed(&self, at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let (opens, closes) = self.sending_window();
        let local = at.with_timezone(&tz);
        let mut day = local.date_naive();
        let time = local.time();
        if time >= opens && time < closes {
            return at;
        }
        if time >= closes {
            day += Duration::days(1);
        }
        // The window opens at `opens` local time on `day`; if that time does
        // not exist (a DST gap), the next minute that does.
        for minutes in 0..180 {
            if let Some(t) = local_instant(tz, day, opens + Duration::minutes(minutes)) {
                return t;
            }
        }
        at + Duration::hours(12)
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use chrono_tz::America::{Chicago, Los_Angeles};

    use super::*;

    fn at(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        local_instant(tz, NaiveDate::from_ymd_opt(y, m, d).unwrap(), hm(h, min)).unwrap()
    }

    #[test]
    fn a_text_due_at_22_30_goes_out_at_8() {
        let q = QuietHours::default();
        for tz in [Chicago, Los_Angeles] {
            let due = at(tz, 2026, 11, 20, 22, 30);
            assert_eq!(q.next_allowed(due, tz), at(tz, 2026, 11, 21, 8, 0), "{tz}");
            let early = at(tz, 2026, 11, 21, 6, 15);
            assert_eq!(q.next_allowed(early, tz), at(tz, 2026, 11, 21, 8, 0));
            let fine = at(tz, 2026, 11, 21, 12, 0);
            assert_eq!(q.next_allowed(fine, tz), fine);
            assert!(!q.is_quiet(fine, tz));
            assert!(q.is_quiet(at(tz, 2026, 11, 21, 21, 0), tz));
        }
    }

    #[test]
    fn no_setting_allows_texts_outside_8am_to_9pm() {
        let loose = QuietHours {
            start: hm(23, 30),
            end: hm(6, 0),
            replies_allowed: true,
        };
        assert_eq!(loose.sending_window(), (hm(8, 0), hm(21, 0)));
        let tz = Chicago;
        assert_eq!(
            loose.next_allowed(at(tz, 2026, 5, 1, 22, 0), tz),
            at(tz, 2026, 5, 2, 8, 0)
        );
        let strict = QuietHours {
            start: hm(20, 0),
            end: hm(9, 0),
            replies_allowed: false,
        };
        assert_eq!(strict.sending_window(), (hm(9, 0), hm(20, 0)));
        assert_eq!(
            strict.next_allowed(at(tz, 2026, 5, 1, 8, 30), tz),
            at(tz, 2026, 5, 1, 9, 0)
        );
    }

    #[test]
    fn dst_nights_end_at_8_local() {
        let q = QuietHours::default();
        for tz in [Chicago, Los_Angeles] {
            // Spring forward (Mar 8) and fall back (Nov 1), 2026.
            assert_eq!(
                q.next_allowed(at(tz, 2026, 3, 7, 23, 0), tz),
                at(tz, 2026, 3, 8, 8, 0)
            );
            assert_eq!(
                q.next_allowed(at(tz, 2026, 10, 31, 23, 0), tz),
                at(tz, 2026, 11, 1, 8, 0)
            );
            let spring = q.next_allowed(at(tz, 2026, 3, 7, 23, 0), tz) - at(tz, 2026, 3, 7, 23, 0);
            assert_eq!(spring, Duration::hours(8), "one hour less that night");
        }
    }
}
