//! Surcharges that depend on the date (weekend, same day) are priced from
//! the opening chosen, in the Claude and the guided paths: the customer sees
//! the opening's own total before booking, and that total is booked.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use textdesk::calendar::LocalCalendar;
use textdesk::config::business::{BusinessConfig, BusinessKind};
use textdesk::domain::availability::DateFilter;
use textdesk::domain::conversation::{ConversationState, JobDetails};
use textdesk::domain::phone::E164;
use textdesk::domain::quote::price;
use textdesk::scheduling::{Scheduler, SchedulingError};
use textdesk::store::{InboundMessage, JobStatus, Recorded};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::helpers::*;
use crate::quotes::{ScriptedClaude, claude_tool};

/// Open on Saturdays only, with a 10% weekend surcharge: every opening is a
/// weekend one. Half a truck is $350 ($150 delivery, 2 people x 2 hours at
/// $50), so $385 at the weekend rate.
const SATURDAYS: &str = r#"
[business]
name = "Rose City Junk Haulers"
phone = "+15035550142"
timezone = "America/Los_Angeles"

[schedule]
min_notice_hours = 0
horizon_days = 14

[schedule.hours]
mon = "closed"
tue = "closed"
wed = "closed"
thu = "closed"
fri = "closed"
sat = "08:00-16:00"
sun = "closed"

[[providers]]
id = "crew-1"
name = "Crew 1"
email = "crew1@example.com"

[[pricing.modifiers]]
id = "stairs"
label = "Stairs"
kind = "per_unit"
amount = 25
unit = "flight(s)"

[[pricing.modifiers]]
id = "weekend"
label = "Weekend service"
kind = "percent"
percent = 10
applies = "weekend"
"#;

const DANA: &str = "+15035551234";

async fn booked_total(app: &TestApp) -> String {
    app.wait_until_settled(DANA).await;
    let conversation = app.conversation(DANA).await.unwrap();
    let turn = app.store.turn_input(conversation, 20).await.unwrap();
    match turn.state {
        ConversationState::Booked(b) => b.quote.total.to_string(),
        other => panic!("not booked: {}", other.name()),
    }
}

#[tokio::test]
async fn a_saturday_opening_booked_through_claude_carries_the_weekend_surcharge() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        default_fakes: false,
        business: Some(SATURDAYS.into()),
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ScriptedClaude::new(vec![
            claude_tool(
                "t1",
                "record_job_details",
                json!({"size": "half_truck", "address": "12 Oak St, Portland", "customer_name": "Dana"}),
            ),
            claude_tool("t2", "get_quote", json!({})),
            claude_text("That's $350 for about half a truck. Want to book a time?"),
            claude_tool("t3", "get_available_slots", json!({"preference": "saturday"})),
            claude_text("Our openings are on the weekend, so the total is $385 with the weekend rate. Which number works?"),
            // The booking is confirmed by code, with no model call after it.
            claude_tool("t4", "book_slot", json!({"slot_id": 1})),
        ]))
        .mount(&app.anthropic)
        .await;

    app.text(DANA, "Half a truck of junk at 12 Oak St. How much?")
        .await;
    app.wait_for_texts(1).await;
    app.text(DANA, "Saturday?").await;
    let sent = app.wait_for_texts(2).await;
    // The opening's own total reached the customer before booking: the
    // guardrail knows it as a quote of this conversation.
    assert!(sent[1].1.contains("$385"), "{}", sent[1].1);

    let requests = app.model_requests().await;
    let offered = requests
        .iter()
        .flat_map(|r| r["messages"].as_array().unwrap().clone())
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .find(|b| b["type"] == "tool_result" && b["content"].as_str().unwrap_or("").contains("Openings:"))
        .unwrap();
    let offered = offered["content"].as_str().unwrap();
    assert!(
        offered.contains("1) Sat ") && offered.contains("($385 with weekend service)"),
        "{offered}"
    );
    // The model cannot select a date-dependent surcharge as an extra.
    let schema = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "record_job_details")
        .unwrap()["input_schema"]
        .to_string();
    assert!(
        schema.contains("stairs") && !schema.contains("weekend"),
        "{schema}"
    );

    app.text(DANA, "1").await;
    let sent = app.wait_for_texts(3).await;
    assert!(
        sent[2]
            .1
            .starts_with("You're booked with Rose City Junk Haulers: Sat ")
            && sent[2].1.contains("Total $385"),
        "{}",
        sent[2].1
    );
    assert_eq!(booked_total(&app).await, "$385");
    // The crew's email states the booked total.
    let emails: Vec<_> = app
        .store
        .jobs(&[JobStatus::Pending, JobStatus::Done, JobStatus::Running], 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.recipient == "crew1@example.com")
        .collect();
    assert_eq!(emails.len(), 1);
    let email = emails[0].payload.to_string();
    assert!(email.contains("$385") && !email.contains("$350"), "{email}");
}

#[tokio::test]
async fn a_saturday_opening_picked_by_number_in_the_guided_flow_carries_the_weekend_surcharge() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        with_model: false,
        business: Some(SATURDAYS.into()),
        ..Options::default()
    })
    .await;
    // Answer whatever the guided flow asks until it offers openings.
    app.text(DANA, "hi").await;
    let mut offer = None;
    for n in 1..=10 {
        let sent = app.wait_for_texts(n).await;
        let asked = sent[n - 1].1.clone();
        if asked.contains("Openings:") {
            offer = Some(asked);
            break;
        }
        let lower = asked.to_lowercase();
        let answer = if lower.contains("to book a time") {
            "1".into()
        } else if let Some(line) = asked.lines().find(|l| l.contains("half a truck")) {
            line.split(')').next().unwrap().trim().to_string()
        } else if lower.contains("any of these") {
            "0".into()
        } else if lower.contains("address") {
            "12 Oak St, Portland".into()
        } else if lower.contains("name") {
            "Dana".into()
        } else {
            "no".into()
        };
        app.text(DANA, &answer).await;
    }
    let Some(offer) = offer else {
        panic!("no openings offered: {:?}", app.sent_texts().await);
    };
    assert!(
        offer.contains("\n1) Sat ") && offer.contains("($385 with weekend service)"),
        "{offer}"
    );
    // An unclear answer repeats the list with the same prices.
    let before = app.sent_texts().await.len();
    app.text(DANA, "hmm").await;
    let sent = app.wait_for_texts(before + 1).await;
    let repeated = &sent[before].1;
    assert!(
        repeated.contains("didn't catch") && repeated.contains("\n1) Sat ") && repeated.contains("($385)"),
        "{repeated}"
    );
    let before = sent.len() + 1;
    app.text(DANA, "1").await;
    let sent = app.wait_for_texts(before).await;
    let confirmation = &sent[before - 1].1;
    assert!(
        confirmation.starts_with("You're booked with Rose City Junk Haulers: Sat ")
            && confirmation.contains("Total $385"),
        "{confirmation}"
    );
    assert_eq!(booked_total(&app).await, "$385");
}

/// Open every day 08:00-17:00, with a 20% same-day surcharge.
const EVERY_DAY: &str = r#"
[business]
name = "Rose City Junk Haulers"
phone = "+15035550142"
timezone = "America/Los_Angeles"

[schedule]
min_notice_hours = 0
horizon_days = 6
buffer_before_minutes = 0
buffer_after_minutes = 0

[schedule.hours]
mon = "08:00-17:00"
tue = "08:00-17:00"
wed = "08:00-17:00"
thu = "08:00-17:00"
fri = "08:00-17:00"
sat = "08:00-17:00"
sun = "08:00-17:00"

[[providers]]
id = "crew-1"
name = "Crew 1"

[[pricing.modifiers]]
id = "same_day"
label = "Same-day service"
kind = "percent"
percent = 20
applies = "same_day"
"#;

fn portland(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    chrono_tz::America::Los_Angeles
        .with_ymd_and_hms(2026, 12, d, h, m, 0)
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn a_same_day_opening_is_offered_and_booked_at_its_own_total() {
    if crate::helpers::skipped() {
        return;
    }
    let db = TestDb::new().await;
    let store = db.store().await;
    let business = Arc::new(BusinessConfig::parse(EVERY_DAY, std::path::Path::new("t.toml")).unwrap());
    let scheduler = Scheduler::new(store.clone(), Arc::new(LocalCalendar));
    let sms = InboundMessage {
        business_id: "test".into(),
        channel_message_id: format!("SM{:032}", 1),
        from: E164::parse(DANA).unwrap(),
        to: E164::parse("+15035550142").unwrap(),
        body: "hi".into(),
        media: vec![],
        params: json!({}),
        opt_out_keyword: None,
        profile_name: None,
    };
    let (Recorded::New(c, _) | Recorded::Duplicate(c, _)) = store.record_inbound(&sms).await.unwrap();
    let conversation = store.turn_input(c, 5).await.unwrap().conversation;
    let job = JobDetails {
        size: Some("half_truck".into()),
        address: Some("12 Oak St, Portland".into()),
        ..JobDetails::default()
    };
    // Friday Dec 4, 9:30am in Portland.
    let now = portland(4, 9, 30);
    let quote = price(
        &business.pricing,
        &job.to_spec(BusinessKind::JunkRemoval).unwrap(),
        "QSAME".into(),
        now,
    )
    .unwrap();
    assert_eq!(quote.total.to_string(), "$350");

    let offer = scheduler
        .for_business(&business)
        .offer(c, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap();
    assert_eq!(
        offer.numbered(),
        "1) Fri Dec 4, 10am ($420 with same-day service)\n2) Sat Dec 5, 8am\n3) Sun Dec 6, 8am"
    );
    let booking = scheduler
        .for_business(&business)
        .book(&conversation, &job, &quote, &offer.slots[0], None, now)
        .await
        .unwrap();
    assert_eq!(booking.slot.quote.as_ref().unwrap().total.to_string(), "$420");

    // Saturday 8am was offered at the regular price on Friday; on Saturday
    // morning it is same-day, and is not booked at a price never shown.
    let saturday = portland(5, 7, 0);
    let refused = scheduler
        .for_business(&business)
        .book(&conversation, &job, &quote, &offer.slots[1], None, saturday)
        .await;
    assert!(
        matches!(&refused, Err(SchedulingError::Taken(why)) if why.contains("$420")),
        "{refused:?}"
    );
}
