//! Property test: nothing `check-config` accepts can panic the quote engine
//! or the availability engine, or make a price negative.
//!
//! Each generated business.toml sets every bounded number, mostly inside its
//! range (edges included), sometimes just outside or far outside. The file
//! must be accepted exactly when every value is in range; an accepted one is
//! then priced and scheduled on jobs from the smallest to the largest a
//! quote admits.

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::business::{BusinessConfig, ConfigError};
use crate::domain::availability::{DateFilter, Interval, ProviderBusy, SlotQuery};
use crate::domain::conversation::{self, ConversationState};
use crate::domain::quote::{JobSpec, JunkJob, Labour, MaidJob, Selected, hours_to_minutes, price};
use crate::domain::reminders;

/// A TOML value and whether validation must accept it.
type Field = (String, bool);

fn whole(min: i64, max: i64) -> BoxedStrategy<Field> {
    let bad: Vec<i64> = [min - 1, max + 1, -1, i64::from(u32::MAX), i64::MAX]
        .into_iter()
        .filter(|v| !(min..=max).contains(v))
        .collect();
    prop_oneof![
        90 => (min..=max).prop_map(|v| (v.to_string(), true)),
        5 => prop::sample::select(vec![min, max]).prop_map(|v| (v.to_string(), true)),
        1 => prop::sample::select(bad).prop_map(|v| (v.to_string(), false)),
    ]
    .boxed()
}

/// Decimals from `min` (or just above it) to `max`, in hundredths.
fn decimal(max: i64, above_zero: bool) -> BoxedStrategy<Field> {
    let low = i64::from(above_zero);
    let cents = move |c: i64| (Decimal::new(c, 2).normalize().to_string(), true);
    let mut bad = vec!["-1", "-0.01", "1000000000"];
    if above_zero {
        bad.push("0");
    }
    let max_plus = Decimal::new(max * 100 + 1, 2).to_string();
    prop_oneof![
        90 => (low..=max * 100).prop_map(cents),
        5 => prop::sample::select(vec![low, max * 100]).prop_map(cents),
        1 => prop::sample::select(bad).prop_map(|v| (v.to_string(), false)),
        1 => Just((max_plus, false)),
    ]
    .boxed()
}

fn money() -> BoxedStrategy<Field> {
    decimal(100_000, false)
}

/// Writes `key = value` lines and notes whether every value is in range.
struct File {
    text: String,
    valid: bool,
}

impl File {
    fn new() -> Self {
        Self {
            text: "[business]\nname = \"Fuzzed Hauling\"\n".into(),
            valid: true,
        }
    }

    fn table(&mut self, header: &str) {
        self.text.push_str(&format!("\n{header}\n"));
    }

    fn raw(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn set(&mut self, key: &str, (value, ok): &Field) {
        self.text.push_str(&format!("{key} = {value}\n"));
        self.valid &= ok;
    }
}

fn pricing_fields() -> impl Strategy<Value = Vec<Field>> {
    let days = whole(1, 365);
    let hours = || decimal(24, false);
    let increment = || decimal(24, true);
    let crew = || whole(1, 100);
    let percent = || decimal(100, false);
    (
        (days, money(), money(), money(), increment(), hours(), crew()),
        (increment(), crew(), hours(), crew()),
        (
            money(),
            money(),
            crew(),
            increment(),
            // base_hours: above zero, so every visit takes time.
            increment(),
            hours(),
            hours(),
            hours(),
        ),
        (decimal(10, true), money(), whole(0, 100), decimal(100, false)),
        (money(), money(), money(), percent(), percent(), money()),
    )
        .prop_map(|(a, b, c, d, e)| {
            let mut all = vec![a.0, a.1, a.2, a.3, a.4, a.5, a.6];
            all.extend([b.0, b.1, b.2, b.3]);
            all.extend([c.0, c.1, c.2, c.3, c.4, c.5, c.6, c.7]);
            all.extend([d.0, d.1, d.2, d.3]);
            all.extend([e.0, e.1, e.2, e.3, e.4, e.5]);
            all
        })
}

fn schedule_fields() -> impl Strategy<Value = Vec<Field>> {
    (
        whole(5, 720),
        whole(0, 720),
        whole(0, 720),
        whole(0, 720),
        whole(0, 720),
        whole(1, 365),
        whole(1, 1440),
        whole(1, 10),
        whole(1, 365),
        whole(1, 365),
        whole(0, 720),
    )
        .prop_map(|f| vec![f.0, f.1, f.2, f.3, f.4, f.5, f.6, f.7, f.8, f.9, f.10])
}

fn business_file(pricing: &[Field], schedule: &[Field], rounding: &str) -> File {
    let mut f = File::new();
    let mut p = pricing.iter();
    let mut next = || p.next().expect("enough pricing fields");
    f.table("[pricing]");
    f.raw(&format!("rounding = \"{rounding}\""));
    f.set("quote_valid_days", next());
    f.set("minimum_charge", next());
    f.table("[pricing.junk]");
    f.set("delivery_fee", next());
    f.set("hourly_rate_per_person", next());
    f.set("billing_increment_hours", next());
    f.set("minimum_hours", next());
    f.set("default_crew", next());
    f.table("[[pricing.junk.tiers]]");
    f.raw("id = \"load\"\nlabel = \"a load\"");
    f.set("hours", next());
    f.set("crew", next());
    f.table("[[pricing.junk.items]]");
    f.raw("id = \"piano\"\nlabel = \"piano\"");
    f.set("hours", next());
    f.set("crew", next());
    f.table("[pricing.maid]");
    f.set("hourly_rate_per_person", next());
    f.set("trip_fee", next());
    f.set("crew", next());
    f.set("billing_increment_hours", next());
    f.set("base_hours", next());
    f.set("hours_per_bedroom", next());
    f.set("hours_per_bathroom", next());
    f.set("hours_per_1000_sqft", next());
    f.table("[[pricing.maid.clean_types]]");
    f.raw("id = \"standard\"\nlabel = \"standard clean\"");
    f.set("multiplier", next());
    f.table("[[pricing.maid.flat_rates]]");
    f.raw("clean_type = \"standard\"");
    f.set("price", next());
    f.set("bedrooms", next());
    f.set("bathrooms", next());
    for (id, kind) in [
        ("heavy", "flat"),
        ("stairs", "per_unit"),
        ("mattress", "per_item"),
    ] {
        f.table("[[pricing.modifiers]]");
        f.raw(&format!("id = \"{id}\"\nlabel = \"{id}\"\nkind = \"{kind}\""));
        f.set("amount", next());
    }
    f.table("[[pricing.modifiers]]");
    f.raw("id = \"rush\"\nlabel = \"Rush\"\nkind = \"percent\"");
    f.set("percent", next());
    f.table("[[pricing.discounts]]");
    f.raw("id = \"senior\"\nlabel = \"Senior\"\nkind = \"percent\"");
    f.set("percent", next());
    f.table("[[pricing.discounts]]");
    f.raw("id = \"coupon\"\nlabel = \"Coupon\"\nkind = \"amount\"");
    f.set("amount", next());
    assert!(p.next().is_none(), "every pricing field is written");

    let mut s = schedule.iter();
    let mut next = || s.next().expect("enough schedule fields");
    f.table("[schedule]");
    for key in [
        "slot_minutes",
        "arrival_window_minutes",
        "buffer_before_minutes",
        "buffer_after_minutes",
        "min_notice_hours",
        "horizon_days",
        "hold_minutes",
        "offers",
    ] {
        f.set(key, next());
    }
    f.table("[conversation]");
    f.set("idle_days", next());
    f.set("handoff_days", next());
    f.table("[reminders]");
    f.set("quote_follow_up_hours", next());
    assert!(s.next().is_none(), "every schedule field is written");
    f
}

fn selected(id: &str, quantity: u32) -> Selected {
    Selected {
        id: id.into(),
        quantity,
    }
}

/// From the smallest job to the largest a quote admits.
fn jobs() -> Vec<JobSpec> {
    let extras = vec![
        selected("heavy", 1),
        selected("stairs", 1000),
        selected("mattress", 1000),
        selected("rush", 1),
    ];
    let discounts = vec!["senior".to_string(), "coupon".to_string()];
    vec![
        JobSpec::Junk(JunkJob {
            tier: Some("load".into()),
            ..JunkJob::default()
        }),
        JobSpec::Junk(JunkJob {
            tier: Some("load".into()),
            items: vec![selected("piano", 1000)],
            modifiers: extras.clone(),
            discounts: discounts.clone(),
            ..JunkJob::default()
        }),
        JobSpec::Junk(JunkJob {
            labour: Some(Labour {
                hours: Decimal::new(1, 2),
                crew: 1,
            }),
            ..JunkJob::default()
        }),
        JobSpec::Junk(JunkJob {
            labour: Some(Labour {
                hours: Decimal::from(1000),
                crew: 100,
            }),
            modifiers: extras.clone(),
            ..JunkJob::default()
        }),
        JobSpec::Maid(MaidJob {
            bedrooms: 2,
            bathrooms: Decimal::ONE,
            clean_type: "standard".into(),
            discounts: vec!["coupon".into()],
            ..MaidJob::default()
        }),
        JobSpec::Maid(MaidJob {
            bedrooms: 100,
            bathrooms: Decimal::from(100),
            square_feet: Some(1_000_000),
            clean_type: "standard".into(),
            modifiers: extras,
            discounts,
            ..MaidJob::default()
        }),
    ]
}

fn exercise(config: &BusinessConfig, now: DateTime<Utc>) -> Result<(), TestCaseError> {
    let tz = config.business.timezone;
    let schedule = &config.schedule;
    let busy = |offset_days: i64| Interval {
        start: now + Duration::days(offset_days),
        end: now + Duration::days(offset_days) + Duration::hours(5),
    };
    let providers = [
        ProviderBusy {
            provider: "a".into(),
            busy: vec![busy(1), busy(3)],
        },
        ProviderBusy {
            provider: "b".into(),
            busy: Vec::new(),
        },
    ];
    for (i, job) in jobs().iter().enumerate() {
        let Ok(quote) = price(&config.pricing, job, format!("q{i}"), now) else {
            continue;
        };
        prop_assert!(!quote.total.is_negative(), "{job:?}: {}", quote.breakdown());
        prop_assert!(
            quote
                .lines
                .iter()
                .map(|l| l.amount)
                .sum::<crate::domain::money::Money>()
                == quote.total
        );
        prop_assert!(quote.expires_at > now);
        prop_assert!(quote.hours > Decimal::ZERO && quote.crew >= 1);
        // Scheduling the smallest and the largest job is enough: the
        // engine's cost grows with the horizon, not the job.
        if i != 0 && i != 3 {
            continue;
        }
        let query = SlotQuery {
            now,
            duration: Duration::minutes(hours_to_minutes(quote.hours)),
            filter: DateFilter::default(),
        };
        let openings = schedule.openings(tz, &providers, &query);
        for offer in schedule.offers(&openings, tz) {
            prop_assert!(offer.start >= now);
            let provider = providers.iter().find(|p| p.provider == offer.provider).unwrap();
            prop_assert!(
                schedule
                    .check_slot(tz, provider, offer.start, query.duration, now)
                    .is_ok()
            );
            let _ = reminders::schedule(offer.start, tz, &config.reminders, &config.quiet_hours, now);
        }
        let _ = reminders::follow_up_at(now, tz, &config.reminders, &config.quiet_hours);
    }
    // A customer texting after the longest silence the file allows.
    let long_ago = now - Duration::days(3650);
    let _ = conversation::on_customer_text(
        ConversationState::default(),
        now,
        Some(long_ago),
        config.conversation.lifetimes(),
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn nothing_check_config_accepts_can_panic_or_misprice(
        pricing in pricing_fields(),
        schedule in schedule_fields(),
        rounding in prop::sample::select(vec!["cent", "dollar", "five_dollars"]),
        hour in 0u32..24,
    ) {
        let file = business_file(&pricing, &schedule, rounding);
        let parsed = BusinessConfig::parse(&file.text, Path::new("fuzz.toml"));
        match parsed {
            Ok(config) => {
                prop_assert!(file.valid, "accepted an out-of-range value:\n{}", file.text);
                let now = Utc.with_ymd_and_hms(2026, 11, 27, hour, 7, 0).unwrap();
                exercise(&config, now)?;
            }
            Err(ConfigError::Invalid { message, .. }) => {
                prop_assert!(!file.valid, "refused a valid file ({message}):\n{}", file.text);
                prop_assert!(message.contains("expected"), "{message}");
            }
            Err(other) => prop_assert!(false, "{other}"),
        }
    }
}

/// Defence in depth: the values the issue found panicking inside a turn no
/// longer pass validation, and the arithmetic they reached saturates even
/// for a configuration built without it.
#[test]
fn unvalidated_extremes_saturate_instead_of_panicking() {
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 18, 0, 0).unwrap();
    let mut config = BusinessConfig::default();
    config.pricing.quote_valid_days = u32::MAX;
    let half_truck = JobSpec::Junk(JunkJob {
        tier: Some("half_truck".into()),
        ..JunkJob::default()
    });
    let quote = price(&config.pricing, &half_truck, "q".into(), now).unwrap();
    assert_eq!(quote.expires_at, DateTime::<Utc>::MAX_UTC);

    config.schedule.min_notice_hours = u32::MAX;
    let query = SlotQuery {
        now,
        duration: Duration::hours(2),
        filter: DateFilter::default(),
    };
    let providers = [ProviderBusy {
        provider: "a".into(),
        busy: Vec::new(),
    }];
    let tz = config.business.timezone;
    assert!(config.schedule.openings(tz, &providers, &query).is_empty());
}

/// `approval`: a policy word or `over:` and an amount, in or out of range.
fn approval_field() -> BoxedStrategy<Field> {
    let quoted = |v: String, ok: bool| (format!("\"{v}\""), ok);
    prop_oneof![
        4 => prop::sample::select(vec!["off", "quotes", "all"]).prop_map(move |w| quoted(w.to_string(), true)),
        4 => decimal(1_000_000, true).prop_map(move |(amount, ok)| {
            let ok = ok && amount.parse::<Decimal>().is_ok_and(|a| a >= Decimal::ONE);
            quoted(format!("over:{amount}"), ok)
        }),
        1 => prop::sample::select(vec!["over:", "over:x", "sometimes", "", "over:-3"])
            .prop_map(move |w| quoted(w.to_string(), false)),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn approval_settings_are_accepted_exactly_when_in_range(
        approval in approval_field(),
        timeout in whole(1, 1440),
    ) {
        let mut file = File::new();
        file.table("[assistant]");
        file.set("approval", &approval);
        file.set("approval_timeout_minutes", &timeout);
        match BusinessConfig::parse(&file.text, Path::new("fuzz.toml")) {
            Ok(config) => {
                prop_assert!(file.valid, "accepted an out-of-range value:\n{}", file.text);
                prop_assert!(config.assistant.approval_timeout_minutes >= 1);
            }
            Err(ConfigError::Invalid { message, .. }) => {
                prop_assert!(!file.valid, "refused a valid file ({message}):\n{}", file.text);
                prop_assert!(message.contains("expected"), "{message}");
            }
            Err(other) => prop_assert!(false, "{other}"),
        }
    }
}
