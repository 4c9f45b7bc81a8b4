//! The availability engine: which openings a crew really has. Pure and fast.
//!
//! Everything is computed in the business's IANA time zone: business hours
//! are wall-clock times, so 8am is 8am on the day the clocks change. A
//! wall-clock time that does not exist (the spring-forward gap) is skipped;
//! one that happens twice (fall back) means its first occurrence. Durations
//! are physical: a 3-hour job is 3 hours long whatever the clocks do.
//!
//! A slot for provider P starting at `s` (with arrival window `w` and job
//! duration `d`) needs P free, by P's calendar, by bookings and by holds, for
//! `[s - buffer_before, s + w + d + buffer_after)`, within business hours
//! (`s + w + d <= close`), at least `min_notice` from now and within the
//! horizon.

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayHours {
    Closed,
    Open { open: NaiveTime, close: NaiveTime },
}

impl<'de> Deserialize<'de> for DayHours {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("closed") {
            return Ok(DayHours::Closed);
        }
        let bad = || serde::de::Error::custom(format!("`{raw}` is not like \"08:00-17:00\" or \"closed\""));
        let (open, close) = raw.split_once('-').ok_or_else(bad)?;
        let parse = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| bad());
        let (open, close) = (parse(open)?, parse(close)?);
        if close <= open {
            return Err(serde::de::Error::custom(format!(
                "`{raw}`: closing time must be after opening"
            )));
        }
        Ok(DayHours::Open { open, close })
    }
}

fn hours(open: u32, close: u32) -> DayHours {
    DayHours::Open {
        open: NaiveTime::from_hms_opt(open, 0, 0).expect("valid"),
        close: NaiveTime::from_hms_opt(close, 0, 0).expect("valid"),
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WeeklyHours {
    pub mon: DayHours,
    pub tue: DayHours,
    pub wed: DayHours,
    pub thu: DayHours,
    pub fri: DayHours,
    pub sat: DayHours,
    pub sun: DayHours,
}

impl Default for WeeklyHours {
    fn default() -> Self {
        Self {
            mon: hours(8, 17),
            tue: hours(8, 17),
            wed: hours(8, 17),
            thu: hours(8, 17),
            fri: hours(8, 17),
            sat: hours(9, 14),
            sun: DayHours::Closed,
        }
    }
}

impl WeeklyHours {
    pub fn on(&self, day: Weekday) -> DayHours {
        match day {
            Weekday::Mon => self.mon,
            Weekday::Tue => self.tue,
            Weekday::Wed => self.wed,
            Weekday::Thu => self.thu,
            Weekday::Fri => self.fri,
            Weekday::Sat => self.sat,
            Weekday::Sun => self.sun,
        }
    }
}

/// Dates written bare (`2026-12-25`, a TOML date) or quoted.
fn dates<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NaiveDate>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum DateInput {
        Toml(toml::value::Datetime),
        Text(String),
    }
    Vec::<DateInput>::deserialize(d)?
        .into_iter()
        .map(|input| {
            let text = match input {
                DateInput::Toml(t) => t.to_string(),
                DateInput::Text(s) => s,
            };
            NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a date like 2026-12-25")))
        })
        .collect()
}

/// business.toml [schedule].
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    pub hours: WeeklyHours,
    /// Holidays and other closed days.
    #[serde(deserialize_with = "dates")]
    pub closed_dates: Vec<NaiveDate>,
    /// Start times fall on this grid, from opening time.
    pub slot_minutes: u32,
    /// 0: exact start times. Otherwise the customer gets a window ("8-10am")
    /// and the crew may arrive any time in it.
    pub arrival_window_minutes: u32,
    pub buffer_before_minutes: u32,
    pub buffer_after_minutes: u32,
    pub min_notice_hours: u32,
    pub horizon_days: u32,
    /// How long offered openings are kept for the customer who was offered them.
    pub hold_minutes: u32,
    /// How many openings to offer at once.
    pub offers: u32,
    /// Openings starting at or after this local time ("17:00") are after
    /// hours: a modifier with `applies = "after_hours"` is charged for them.
    /// Unset, no opening is after hours.
    #[serde(deserialize_with = "optional_time")]
    pub after_hours_from: Option<NaiveTime>,
}

/// A time of day written "17:00".
fn optional_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveTime>, D::Error> {
    let raw = String::deserialize(d)?;
    NaiveTime::parse_from_str(raw.trim(), "%H:%M")
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("`{raw}` is not a time of day like \"17:00\"")))
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            hours: WeeklyHours::default(),
            closed_dates: Vec::new(),
            slot_minutes: 60,
            arrival_window_minutes: 0,
            buffer_before_minutes: 30,
            buffer_after_minutes: 15,
            min_notice_hours: 12,
            horizon_days: 30,
            hold_minutes: 10,
            offers: 3,
            after_hours_from: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Interval {
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// One provider's (crew's) known busy time. A provider whose calendar could
/// not be read must be left out by the caller, never passed as free.
#[derive(Debug, Clone)]
pub struct ProviderBusy {
    pub provider: String,
    pub busy: Vec<Interval>,
}

/// Busy intervals sorted and merged, for binary search.
#[derive(Debug, Clone)]
struct Timeline(Vec<Interval>);

impl Timeline {
    fn new(mut intervals: Vec<Interval>) -> Self {
        intervals.retain(|i| i.end > i.start);
        intervals.sort();
        let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
        for i in intervals {
            match merged.last_mut() {
                Some(last) if i.start <= last.end => last.end = last.end.max(i.end),
                _ => merged.push(i),
            }
        }
        Timeline(merged)
    }

    fn is_free(&self, wanted: &Interval) -> bool {
        // The first merged interval ending after `wanted` starts is the only
        // one that can overlap it.
        let i = self.0.partition_point(|b| b.end <= wanted.start);
        self.0.get(i).is_none_or(|b| b.start >= wanted.end)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartOfDay {
    Morning,
    Afternoon,
    Evening,
}

impl PartOfDay {
    fn contains(self, t: NaiveTime) -> bool {
        let h = t.hour();
        match self {
            PartOfDay::Morning => h < 12,
            PartOfDay::Afternoon => (12..17).contains(&h),
            PartOfDay::Evening => h >= 17,
        }
    }
}

/// A customer's preference, already resolved to dates by code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DateFilter {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub part: Option<PartOfDay>,
}

impl DateFilter {
    pub fn admits(&self, local_start: chrono::NaiveDateTime) -> bool {
        let d = local_start.date();
        self.from.is_none_or(|f| d >= f)
            && self.to.is_none_or(|t| d <= t)
            && self.part.is_none_or(|p| p.contains(local_start.time()))
    }

    pub fn is_empty(&self) -> bool {
        self == &DateFilter::default()
    }
}

/// An opening: when, who, and what it blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub provider: String,
    /// Start of the arrival window (or the exact start).
    pub start: DateTime<Utc>,
    /// End of the arrival window (= `start` without windows).
    pub window_end: DateTime<Utc>,
    /// When the job is done at the latest: window end plus the job.
    pub end: DateTime<Utc>,
}

/// What the engine needs to know about the request.
#[derive(Debug, Clone)]
pub struct SlotQuery {
    pub now: DateTime<Utc>,
    pub duration: Duration,
    pub filter: DateFilter,
}

/// Resolves a wall-clock time on a date to an instant: the first
/// occurrence if it happens twice, `None` if it does not exist.
pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&date.and_time(time)) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => None,
    }
}

/// Why one particular slot cannot be booked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotProblem {
    #[error("the business is closed then")]
    Closed,
    #[error("it is too soon: bookings need {0} hours' notice")]
    TooSoon(u32),
    #[error("it is too far ahead: bookings are taken {0} days out")]
    BeyondHorizon(u32),
    #[error("the crew is busy then")]
    Busy,
    #[error("that time is not on the schedule's grid")]
    OffGrid,
}

impl ScheduleConfig {
    fn window(&self) -> Duration {
        Duration::minutes(i64::from(self.arrival_window_minutes))
    }

    /// The interval a job starting at `start` takes, with buffers.
    fn blocked(&self, start: DateTime<Utc>, duration: Duration) -> Interval {
        Interval {
            start: start - Duration::minutes(i64::from(self.buffer_before_minutes)),
            end: start + self.window() + duration + Duration::minutes(i64::from(self.buffer_after_minutes)),
        }
    }

    fn opening(&self, provider: &str, start: DateTime<Utc>, duration: Duration) -> Opening {
        Opening {
            provider: provider.to_string(),
            start,
            window_end: start + self.window(),
            end: start + self.window() + duration,
        }
    }

    /// Grid start times of one local day that fit in its hours, as instants.
    fn day_starts(&self, tz: Tz, date: NaiveDate, duration: Duration) -> Vec<DateTime<Utc>> {
        if self.closed_dates.contains(&date) {
            return Vec::new();
        }
        let DayHours::Open { open, close } = self.hours.on(date.weekday()) else {
            return Vec::new();
        };
        let Some(close_at) = local_instant(tz, date, close) else {
            return Vec::new();
        };
        let step = Duration::minutes(i64::from(self.slot_minutes.max(5)));
        let mut starts = Vec::new();
        let mut t = open;
        loop {
            if let Some(start) = local_instant(tz, date, t)
                && start + self.window() + duration <= close_at
            {
                starts.push(start);
            }
            let (next, wrapped) = t.overflowing_add_signed(step);
            if wrapped != 0 || next >= close {
                break;
            }
            t = next;
        }
        starts
    }

    /// Every bookable opening, earliest first; per start time, the first
    /// free provider in the order given.
    pub fn openings(&self, tz: Tz, providers: &[ProviderBusy], query: &SlotQuery) -> Vec<Opening> {
        let timelines: Vec<(&str, Timeline)> = providers
            .iter()
            .map(|p| (p.provider.as_str(), Timeline::new(p.busy.clone())))
            .collect();
        // Configuration bounds these; saturating keeps any other values
        // from panicking the engine.
        let after = |d: Duration| {
            query
                .now
                .checked_add_signed(d)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        };
        let earliest = after(Duration::hours(i64::from(self.min_notice_hours)));
        let latest = after(Duration::days(i64::from(self.horizon_days)));
        let first_day = query.now.with_timezone(&tz).date_naive();
        let mut out = Vec::new();
        for offset in 0..=i64::from(self.horizon_days) {
            let Some(date) = first_day.checked_add_signed(Duration::days(offset)) else {
                break;
            };
            for start in self.day_starts(tz, date, query.duration) {
                if start < earliest || start > latest {
                    continue;
                }
                let local = start.with_timezone(&tz).naive_local();
                if !query.filter.admits(local) {
                    continue;
                }
                let blocked = self.blocked(start, query.duration);
                if let Some((provider, _)) = timelines.iter().find(|(_, t)| t.is_free(&blocked)) {
                    out.push(self.opening(provider, start, query.duration));
                }
            }
        }
        out
    }

    /// Picks the openings to offer: the earliest on as many different days
    /// as possible, then the next earliest, in time order.
    pub fn offers(&self, openings: &[Opening], tz: Tz) -> Vec<Opening> {
        let limit = self.offers.max(1) as usize;
        let mut days = BTreeSet::new();
        let mut picked: Vec<&Opening> = Vec::new();
        for o in openings {
            if picked.len() == limit {
                break;
            }
            if days.insert(o.start.with_timezone(&tz).date_naive()) {
                picked.push(o);
            }
        }
        for o in openings {
            if picked.len() == limit {
                break;
            }
            if !picked.iter().any(|p| p.start == o.start) {
                picked.push(o);
            }
        }
        let mut picked: Vec<Opening> = picked.into_iter().cloned().collect();
        picked.sort_by_key(|o| o.start);
        picked
    }

    /// Re-checks one slot for one provider against every rule, at booking
    /// time, with fresh busy time.
    pub fn check_slot(
        &self,
        tz: Tz,
        provider: &ProviderBusy,
        start: DateTime<Utc>,
        duration: Duration,
        now: DateTime<Utc>,
    ) -> Result<Opening, SlotProblem> {
        if start < now + Duration::hours(i64::from(self.min_notice_hours)) {
            return Err(SlotProblem::TooSoon(self.min_notice_hours));
        }
        if start > now + Duration::days(i64::from(self.horizon_days)) {
            return Err(SlotProblem::BeyondHorizon(self.horizon_days));
        }
        let date = start.with_timezone(&tz).date_naive();
        let starts = self.day_starts(tz, date, duration);
        if starts.is_empty() {
            return Err(SlotProblem::Closed);
        }
        if !starts.contains(&start) {
            return Err(SlotProblem::OffGrid);
        }
        if !Timeline::new(provider.busy.clone()).is_free(&self.blocked(start, duration)) {
            return Err(SlotProblem::Busy);
        }
        Ok(self.opening(&provider.provider, start, duration))
    }

    /// The interval a booking at `start` keeps busy, buffers included.
    pub fn blocked_interval(&self, start: DateTime<Utc>, duration: Duration) -> Interval {
        self.blocked(start, duration)
    }
}

fn clock(t: NaiveTime, with_meridiem: bool) -> String {
    let (pm, h) = t.hour12();
    let mut s = if t.minute() == 0 {
        format!("{h}")
    } else {
        format!("{h}:{:02}", t.minute())
    };
    if with_meridiem {
        s.push_str(if pm { "pm" } else { "am" });
    }
    s
}

/// "Tue Mar 10, 8-10am", "Tue Mar 10, 11am-1pm", "Sat Mar 14, 9:30am".
pub fn label(opening: &Opening, tz: Tz) -> String {
    let start = opening.start.with_timezone(&tz);
    let day = start.format("%a %b %-d");
    if opening.window_end == opening.start {
        return format!("{day}, {}", clock(start.time(), true));
    }
    let end = opening.window_end.with_timezone(&tz);
    let same_half = start.time().hour12().0 == end.time().hour12().0;
    format!(
        "{day}, {}-{}",
        clock(start.time(), !same_half),
        clock(end.time(), true)
    )
}

#[cfg(test)]
mod tests {
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

    fn crew(busy: Vec<Interval>) -> ProviderBusy {
        ProviderBusy {
            provider: "crew-1".into(),
            busy,
        }
    }

    fn query(now: DateTime<Utc>, hours: i64) -> SlotQuery {
        SlotQuery {
            now,
            duration: Duration::hours(hours),
            filter: DateFilter::default(),
        }
    }

    fn simple() -> ScheduleConfig {
        ScheduleConfig {
            buffer_before_minutes: 0,
            buffer_after_minutes: 0,
            min_notice_hours: 0,
            ..ScheduleConfig::default()
        }
    }

    fn starts_on(openings: &[Opening], tz: Tz, date: NaiveDate) -> Vec<String> {
        openings
            .iter()
            .filter(|o| o.start.with_timezone(&tz).date_naive() == date)
            .map(|o| o.start.with_timezone(&tz).format("%H:%M").to_string())
            .collect()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn business_hours_bound_the_job() {
        // Mon-Fri 8-17: a 3-hour job can start 8:00..14:00 on the hour.
        let c = simple();
        let now = at(Chicago, 2026, 11, 22, 20, 0); // Sunday evening
        let o = c.openings(Chicago, &[crew(vec![])], &query(now, 3));
        assert_eq!(
            starts_on(&o, Chicago, date(2026, 11, 23)),
            ["08:00", "09:00", "10:00", "11:00", "12:00", "13:00", "14:00"]
        );
        // Saturday 9-14, Sunday closed.
        assert_eq!(
            starts_on(&o, Chicago, date(2026, 11, 28)),
            ["09:00", "10:00", "11:00"]
        );
        assert!(starts_on(&o, Chicago, date(2026, 11, 29)).is_empty());
    }

    #[test]
    fn dst_days_keep_wall_clock_hours_in_both_zones() {
        for tz in [Chicago, Los_Angeles] {
            let c = ScheduleConfig {
                hours: WeeklyHours {
                    sat: hours(8, 12),
                    sun: hours(8, 12),
                    ..WeeklyHours::default()
                },
                ..simple()
            };
            // Spring forward: Sunday 2026-03-08. Fall back: Sunday 2026-11-01.
            for (before, day) in [
                (date(2026, 3, 7), date(2026, 3, 8)),
                (date(2026, 10, 31), date(2026, 11, 1)),
            ] {
                let now = at(tz, before.year(), before.month(), before.day(), 0, 0) - Duration::days(1);
                let o = c.openings(tz, &[crew(vec![])], &query(now, 2));
                assert_eq!(
                    starts_on(&o, tz, before),
                    ["08:00", "09:00", "10:00"],
                    "{tz} {before}"
                );
                assert_eq!(starts_on(&o, tz, day), ["08:00", "09:00", "10:00"], "{tz} {day}");
                // The UTC offset moved by an hour across the change.
                let first = |d: NaiveDate| {
                    o.iter()
                        .find(|x| x.start.with_timezone(&tz).date_naive() == d)
                        .unwrap()
                        .start
                };
                let gap = first(day) - first(before);
                let expected = if day.month() == 3 {
                    Duration::hours(23)
                } else {
                    Duration::hours(25)
                };
                assert_eq!(gap, expected, "{tz} {day}");
                // Jobs last their physical duration.
                assert!(o.iter().all(|x| x.end - x.start == Duration::hours(2)));
            }
        }
    }

    #[test]
    fn the_spring_forward_gap_is_skipped_and_fall_back_counted_once() {
        let night = ScheduleConfig {
            hours: WeeklyHours {
                sun: DayHours::Open {
                    open: NaiveTime::from_hms_opt(0, 0, 0).unwrap(),
                    close: NaiveTime::from_hms_opt(5, 0, 0).unwrap(),
                },
                ..WeeklyHours::default()
            },
            ..simple()
        };
        let now = at(Chicago, 2026, 3, 7, 12, 0);
        let o = night.openings(Chicago, &[crew(vec![])], &query(now, 1));
        // 02:00 does not exist on 2026-03-08 in Chicago.
        assert_eq!(
            starts_on(&o, Chicago, date(2026, 3, 8)),
            ["00:00", "01:00", "03:00", "04:00"]
        );
        let now = at(Chicago, 2026, 10, 31, 12, 0);
        let o = night.openings(Chicago, &[crew(vec![])], &query(now, 1));
        // 01:00 happens twice on 2026-11-01; it is offered once (its first
        // occurrence), and the day still closes at 05:00 on the wall clock.
        assert_eq!(
            starts_on(&o, Chicago, date(2026, 11, 1)),
            ["00:00", "01:00", "02:00", "03:00", "04:00"]
        );
        let one_am = o
            .iter()
            .find(|x| x.start.with_timezone(&Chicago).hour() == 1)
            .unwrap();
        assert_eq!(
            one_am.start,
            "2026-11-01T06:00:00Z".parse::<DateTime<Utc>>().unwrap(),
            "01:00 CDT, not CST"
        );
    }

    #[test]
    fn buffers_keep_travel_time_around_busy_blocks() {
        let c = ScheduleConfig {
            buffer_before_minutes: 30,
            buffer_after_minutes: 30,
            ..simple()
        };
        let now = at(Chicago, 2026, 11, 22, 20, 0);
        // Busy 11:00-12:00 Monday.
        let busy = Interval {
            start: at(Chicago, 2026, 11, 23, 11, 0),
            end: at(Chicago, 2026, 11, 23, 12, 0),
        };
        let o = c.openings(Chicago, &[crew(vec![busy])], &query(now, 2));
        // 8:00 ends 10:00 (+30 = 10:30 < 11:00) ok; 9:00 ends 11:00 +30 overlaps.
        // Next start must begin >= 12:30 (30 min after): 13:00 on the grid.
        assert_eq!(
            starts_on(&o, Chicago, date(2026, 11, 23)),
            ["08:00", "13:00", "14:00", "15:00"]
        );
        // The first start of the day also needs its buffer inside busy-free time only.
        assert!(
            c.check_slot(
                Chicago,
                &crew(vec![busy]),
                at(Chicago, 2026, 11, 23, 9, 0),
                Duration::hours(2),
                now
            ) == Err(SlotProblem::Busy)
        );
    }

    #[test]
    fn notice_and_horizon() {
        let c = ScheduleConfig {
            min_notice_hours: 24,
            horizon_days: 3,
            ..simple()
        };
        let now = at(Chicago, 2026, 11, 23, 10, 30); // Monday 10:30
        let o = c.openings(Chicago, &[crew(vec![])], &query(now, 1));
        assert!(o.iter().all(|x| x.start >= now + Duration::hours(24)));
        assert_eq!(o.first().unwrap().start, at(Chicago, 2026, 11, 24, 11, 0));
        assert!(o.iter().all(|x| x.start <= now + Duration::days(3)));
        assert_eq!(o.last().unwrap().start, at(Chicago, 2026, 11, 26, 10, 0));
        let p = crew(vec![]);
        assert_eq!(
            c.check_slot(
                Chicago,
                &p,
                at(Chicago, 2026, 11, 23, 14, 0),
                Duration::hours(1),
                now
            ),
            Err(SlotProblem::TooSoon(24))
        );
        assert_eq!(
            c.check_slot(
                Chicago,
                &p,
                at(Chicago, 2026, 11, 30, 9, 0),
                Duration::hours(1),
                now
            ),
            Err(SlotProblem::BeyondHorizon(3))
        );
        assert_eq!(
            c.check_slot(
                Chicago,
                &p,
                at(Chicago, 2026, 11, 25, 9, 30),
                Duration::hours(1),
                now
            ),
            Err(SlotProblem::OffGrid)
        );
        assert!(
            c.check_slot(
                Chicago,
                &p,
                at(Chicago, 2026, 11, 25, 9, 0),
                Duration::hours(1),
                now
            )
            .is_ok()
        );
    }

    #[test]
    fn holidays_are_closed() {
        let c = ScheduleConfig {
            closed_dates: vec![date(2026, 11, 26)], // Thanksgiving
            ..simple()
        };
        let now = at(Chicago, 2026, 11, 22, 20, 0);
        let o = c.openings(Chicago, &[crew(vec![])], &query(now, 1));
        assert!(starts_on(&o, Chicago, date(2026, 11, 26)).is_empty());
        assert!(!starts_on(&o, Chicago, date(2026, 11, 27)).is_empty());
        assert_eq!(
            c.check_slot(
                Chicago,
                &crew(vec![]),
                at(Chicago, 2026, 11, 26, 9, 0),
                Duration::hours(1),
                now
            ),
            Err(SlotProblem::Closed)
        );
    }

    #[test]
    fn capacity_is_one_job_per_crew() {
        let c = simple();
        let now = at(Chicago, 2026, 11, 22, 20, 0);
        let monday = |h| at(Chicago, 2026, 11, 23, h, 0);
        let busy_all_day = Interval {
            start: monday(0),
            end: monday(23),
        };
        let morning = Interval {
            start: monday(8),
            end: monday(12),
        };
        let crews = [
            ProviderBusy {
                provider: "a".into(),
                busy: vec![busy_all_day],
            },
            ProviderBusy {
                provider: "b".into(),
                busy: vec![morning],
            },
        ];
        let o = c.openings(Chicago, &crews, &query(now, 2));
        let monday_openings: Vec<_> = o
            .iter()
            .filter(|x| x.start.with_timezone(&Chicago).date_naive() == date(2026, 11, 23))
            .collect();
        assert!(monday_openings.iter().all(|x| x.provider == "b"));
        assert_eq!(monday_openings.first().unwrap().start, monday(12));
        // Tuesday: both free; the first listed crew gets it.
        let tuesday = o
            .iter()
            .find(|x| x.start.with_timezone(&Chicago).date_naive() == date(2026, 11, 24))
            .unwrap();
        assert_eq!(tuesday.provider, "a");
        // With no crew (e.g. every calendar unreadable) there is nothing.
        assert!(c.openings(Chicago, &[], &query(now, 2)).is_empty());
    }

    #[test]
    fn windows_and_labels() {
        let c = ScheduleConfig {
            slot_minutes: 120,
            arrival_window_minutes: 120,
            ..simple()
        };
        let now = at(Los_Angeles, 2026, 3, 8, 20, 0);
        let o = c.openings(Los_Angeles, &[crew(vec![])], &query(now, 2));
        let labels: Vec<String> = o.iter().take(3).map(|x| label(x, Los_Angeles)).collect();
        assert_eq!(
            labels,
            ["Mon Mar 9, 8-10am", "Mon Mar 9, 10am-12pm", "Mon Mar 9, 12-2pm"]
        );
        // A window plus the job must end by closing time: 2h window + 2h job.
        assert_eq!(
            starts_on(&o, Los_Angeles, date(2026, 3, 9)),
            ["08:00", "10:00", "12:00"]
        );
        let exact = Opening {
            provider: "a".into(),
            start: at(Los_Angeles, 2026, 3, 14, 9, 30),
            window_end: at(Los_Angeles, 2026, 3, 14, 9, 30),
            end: at(Los_Angeles, 2026, 3, 14, 11, 30),
        };
        assert_eq!(label(&exact, Los_Angeles), "Sat Mar 14, 9:30am");
    }

    #[test]
    fn offers_spread_over_days_and_filters_narrow() {
        let c = simple();
        let now = at(Chicago, 2026, 11, 22, 20, 0);
        let o = c.openings(Chicago, &[crew(vec![])], &query(now, 2));
        let offers = c.offers(&o, Chicago);
        let labels: Vec<String> = offers.iter().map(|x| label(x, Chicago)).collect();
        assert_eq!(labels, ["Mon Nov 23, 8am", "Tue Nov 24, 8am", "Wed Nov 25, 8am"]);
        let afternoon = SlotQuery {
            filter: DateFilter {
                from: Some(date(2026, 11, 24)),
                to: Some(date(2026, 11, 24)),
                part: Some(PartOfDay::Afternoon),
            },
            ..query(now, 2)
        };
        let o = c.openings(Chicago, &[crew(vec![])], &afternoon);
        let offers = c.offers(&o, Chicago);
        let labels: Vec<String> = offers.iter().map(|x| label(x, Chicago)).collect();
        assert_eq!(labels, ["Tue Nov 24, 12pm", "Tue Nov 24, 1pm", "Tue Nov 24, 2pm"]);
    }

    #[test]
    fn timeline_merges_and_searches() {
        let t0 = at(Chicago, 2026, 11, 23, 8, 0);
        let iv = |a: i64, b: i64| Interval {
            start: t0 + Duration::minutes(a),
            end: t0 + Duration::minutes(b),
        };
        let t = Timeline::new(vec![iv(60, 120), iv(0, 30), iv(100, 150), iv(300, 310)]);
        assert_eq!(t.0, vec![iv(0, 30), iv(60, 150), iv(300, 310)]);
        assert!(t.is_free(&iv(30, 60)));
        assert!(!t.is_free(&iv(29, 61)));
        assert!(t.is_free(&iv(150, 300)));
        assert!(!t.is_free(&iv(149, 151)));
        assert!(t.is_free(&iv(310, 400)));
    }

    #[test]
    fn after_hours_start_at_a_time_of_day() {
        let parsed: ScheduleConfig = toml::from_str("after_hours_from = \"17:30\"").unwrap();
        assert_eq!(parsed.after_hours_from, NaiveTime::from_hms_opt(17, 30, 0));
        assert_eq!(
            toml::from_str::<ScheduleConfig>("").unwrap().after_hours_from,
            None
        );
        let err = toml::from_str::<ScheduleConfig>("after_hours_from = \"5pm\"").unwrap_err();
        assert!(
            err.to_string().contains("not a time of day like \"17:00\""),
            "{err}"
        );
    }
}
