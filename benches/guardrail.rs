//! The guardrail on a long reply: 1,600 characters with 20+ dates, times and
//! amounts, against a conversation with a quote and three offered openings.
//! Target: under 200 µs per check, so it never shows in the webhook
//! benchmark. The run fails if the checker finds other than the 4 planted
//! violations, so a broken checker cannot look fast.
//!
//! cargo bench --bench guardrail

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use textdesk::config::business::BusinessConfig;
use textdesk::domain::conversation::{ConversationState, JobDetails, OfferedSlot, Quoted, Scheduling};
use textdesk::domain::guardrail::{self, Facts, ViolationKind};
use textdesk::domain::quote::{JobSpec, JunkJob, price};

fn main() {
    let business = BusinessConfig::parse(
        include_str!("../business.toml"),
        std::path::Path::new("business.toml"),
    )
    .expect("the example business.toml parses");
    let tz = business.business.timezone;
    let now = tz
        .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    let job = JobSpec::Junk(JunkJob {
        tier: Some("half_truck".into()),
        ..JunkJob::default()
    });
    let quote = price(&business.pricing, &job, "QBENCH".into(), now).expect("half a truck prices");
    assert_eq!(quote.total.to_string(), "$350");
    let slot = |id: u8, month: u32, day: u32, hour: u32, label: &str| {
        let start = tz
            .with_ymd_and_hms(2026, month, day, hour, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        OfferedSlot {
            id,
            start,
            end: start + chrono::Duration::hours(3),
            label: label.into(),
            crew: "crew-1".into(),
            quote: None,
        }
    };
    let offered = vec![
        slot(1, 11, 30, 8, "Mon Nov 30, 8-10am"),
        slot(2, 11, 30, 13, "Mon Nov 30, 1-3pm"),
        slot(3, 12, 1, 10, "Tue Dec 1, 10am-12pm"),
    ];
    let before = ConversationState::Quoted(Quoted {
        job: JobDetails::default(),
        quote: quote.clone(),
    });
    let after = ConversationState::Scheduling(Scheduling {
        job: JobDetails::default(),
        quote: quote.clone(),
        offered,
        rescheduling: None,
        picked: None,
    });

    // 20 facts stated correctly, and 4 planted violations: an invented
    // amount, a date not offered, a time not offered, a promise.
    let true_part = "Your total is $350 ($150 delivery + $200 labour at $50/hour). \
        We can do Mon Nov 30, 8-10am, or Monday the 30th 1-3pm, or Tue Dec 1, 10am-12pm. \
        The $350 total stays the same on Monday, Nov 30 and on Tuesday 12/1. \
        Seniors get 10% off; weekends are 10% extra. ";
    let planted = "Also $20 for the extra box. Sunday, Dec 6 is open at 4:30pm, free of charge. ";
    let mut reply = String::new();
    reply.push_str(planted);
    while reply.len() < 1_600 - true_part.len() {
        reply.push_str(true_part);
    }
    while reply.len() < 1_600 {
        reply.push_str("Thanks! ");
    }
    reply.truncate(1_600);
    let reply = reply.trim_end().to_string();

    let facts = Facts::of(&business.guardrail_terms(), &before, &after, [&quote], now);
    let found = guardrail::check(&reply, &facts);
    let kinds: Vec<ViolationKind> = found.iter().map(|v| v.kind).collect();
    assert_eq!(
        kinds,
        [
            ViolationKind::Amount,
            ViolationKind::Date,
            ViolationKind::Time,
            ViolationKind::Commitment
        ],
        "the checker is broken: {found:#?}"
    );

    for _ in 0..200 {
        std::hint::black_box(guardrail::check(std::hint::black_box(&reply), &facts));
    }
    let runs = 2_000;
    let mut check_times: Vec<Duration> = Vec::with_capacity(runs);
    let mut turn_times: Vec<Duration> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let found = guardrail::check(std::hint::black_box(&reply), &facts);
        check_times.push(started.elapsed());
        assert_eq!(found.len(), 4);

        // What a turn pays: building the facts, then the check.
        let started = Instant::now();
        let facts = Facts::of(&business.guardrail_terms(), &before, &after, [&quote], now);
        let found = guardrail::check(std::hint::black_box(&reply), &facts);
        turn_times.push(started.elapsed());
        std::hint::black_box(found);
    }
    check_times.sort();
    turn_times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "guardrail: {}-character reply, 20+ dates/times/amounts, 3 offered openings, 4 planted violations",
        reply.chars().count()
    );
    for (what, times) in [("check", &check_times), ("facts + check", &turn_times)] {
        println!(
            "{what} over {runs} runs: median {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            us(times[runs / 2]),
            us(times[runs * 99 / 100]),
            us(times[runs - 1])
        );
    }
}
