//! Scheduling and booking against a fake Google Calendar, through the real
//! google-calendar3 and yup-oauth2 clients.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{Datelike, Timelike, Utc, Weekday};
use serde_json::json;
use textdesk::calendar::google::GoogleCalendar;
use textdesk::config::business::{BusinessConfig, BusinessKind};
use textdesk::domain::availability::DateFilter;
use textdesk::domain::conversation::JobDetails;
use textdesk::domain::phone::E164;
use textdesk::domain::quote::{Quote, price};
use textdesk::scheduling::{Scheduler, SchedulingError};
use textdesk::store::{BookingStatus, ConversationId, InboundMessage, Recorded, Store};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::fake_google::FakeGoogle;
use crate::helpers::*;
use crate::quotes::{ScriptedClaude, claude_tool};

const BUSINESS: &str = r#"
[business]
name = "Rose City Junk Haulers"
phone = "+15035550142"
timezone = "America/Los_Angeles"

[schedule]
min_notice_hours = 0
horizon_days = 14

[[providers]]
id = "crew-1"
name = "Crew 1"
calendar_id = "crew1@example.com"
"#;

struct Rig {
    store: Arc<dyn Store>,
    scheduler: Scheduler,
    google: FakeGoogle,
    business: Arc<BusinessConfig>,
    _db: TestDb,
}

async fn rig(business: &str) -> Rig {
    let db = TestDb::new().await;
    let google = FakeGoogle::start().await;
    let key = google.key_file(db.dir.path());
    let store = db.store().await;
    let base = google.base_url().parse().unwrap();
    let calendar = GoogleCalendar::connect(&key, None, Some(&base), Duration::from_secs(1))
        .await
        .unwrap();
    let business = Arc::new(BusinessConfig::parse(business, std::path::Path::new("t.toml")).unwrap());
    let scheduler = Scheduler::new(store.clone(), Arc::new(calendar));
    Rig {
        store,
        scheduler,
        google,
        business,
        _db: db,
    }
}

impl Rig {
    async fn customer(&self, i: usize) -> ConversationId {
        let sms = InboundMessage {
            business_id: "test".into(),
            channel_message_id: format!("SMsched{i:030}"),
            from: E164::parse(&format!("+1503555{i:04}")).unwrap(),
            to: E164::parse("+15035550142").unwrap(),
            body: "hi".into(),
            media: vec![],
            params: json!({}),
            opt_out_keyword: None,
            profile_name: None,
        };
        match self.store.record_inbound(&sms).await.unwrap() {
            Recorded::New(c, _) | Recorded::Duplicate(c, _) => c,
        }
    }

    fn quote(&self) -> Quote {
        let job = JobDetails {
            size: Some("half_truck".into()),
            ..JobDetails::default()
        };
        price(
            &self.business.pricing,
            &job.to_spec(BusinessKind::JunkRemoval).unwrap(),
            "QTEST".into(),
            Utc::now(),
        )
        .unwrap()
    }

    async fn confirmed(&self) -> usize {
        self.store
            .bookings()
            .await
            .unwrap()
            .iter()
            .filter(|b| b.status == BookingStatus::Confirmed)
            .count()
    }
}

fn job() -> JobDetails {
    JobDetails {
        size: Some("half_truck".into()),
        address: Some("12 Oak St, Portland".into()),
        customer_name: Some("Dana".into()),
        ..JobDetails::default()
    }
}

#[tokio::test]
async fn twenty_customers_racing_for_the_last_slot_make_one_booking_and_one_event() {
    if crate::helpers::skipped() {
        return;
    }
    let rig = rig(BUSINESS).await;
    let now = Utc::now();
    let conversations: Vec<ConversationId> =
        futures::future::join_all((0..20).map(|i| rig.customer(i))).await;
    let quote = rig.quote();
    let offer = rig
        .scheduler
        .for_business(&rig.business)
        .offer(conversations[0], &quote, &DateFilter::default(), None, now)
        .await
        .unwrap();
    let slot = offer.slots[0].clone();
    // Release the first customer's hold so all twenty race on equal terms.
    rig.store
        .hold(conversations[0], &[], now, now, None)
        .await
        .unwrap();

    let mut who = Vec::new();
    for c in &conversations {
        who.push(rig.store.turn_input(*c, 5).await.unwrap().conversation);
    }
    let job = job();
    let scheduler = rig.scheduler.for_business(&rig.business);
    let attempts = who
        .iter()
        .map(|c| scheduler.book(c, &job, &quote, &slot, None, now));
    let results = futures::future::join_all(attempts).await;

    let booked = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(booked, 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(SchedulingError::Taken(_))))
    );
    assert_eq!(rig.google.events().len(), 1);
    assert_eq!(rig.confirmed().await, 1);
    let event = &rig.google.events()[0];
    assert_eq!(event.calendar, "crew1@example.com");
    let description = event.body["description"].as_str().unwrap();
    assert!(
        description.contains("12 Oak St") && description.contains("$350") && description.contains("+1503555")
    );
}

#[tokio::test]
async fn an_insert_that_times_out_after_google_created_the_event_books_once() {
    if crate::helpers::skipped() {
        return;
    }
    let rig = rig(BUSINESS).await;
    let now = Utc::now();
    let c = rig.customer(1).await;
    let quote = rig.quote();
    let slot = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap()
        .slots[0]
        .clone();
    // Google stores the event, then answers after our 1 s timeout.
    *rig.google.state.slow_next_insert.lock().unwrap() = Some(Duration::from_secs(2));
    let conversation = rig.store.turn_input(c, 5).await.unwrap().conversation;
    let booking = rig
        .scheduler
        .for_business(&rig.business)
        .book(&conversation, &job(), &quote, &slot, None, now)
        .await
        .unwrap();

    assert_eq!(
        rig.google.state.insert_attempts.load(Ordering::SeqCst),
        2,
        "retried with the same id"
    );
    assert_eq!(rig.google.events().len(), 1);
    assert_eq!(rig.google.events()[0].id, booking.calendar_event_id);
    assert_eq!(rig.confirmed().await, 1);
    // Booking the same slot again (a rerun of the turn) changes nothing.
    let again = rig
        .scheduler
        .for_business(&rig.business)
        .book(&conversation, &job(), &quote, &slot, None, now)
        .await
        .unwrap();
    assert_eq!(again.id, booking.id);
    assert_eq!(rig.google.events().len(), 1);
}

#[tokio::test]
async fn calendar_down_offers_nothing_and_books_nothing() {
    if crate::helpers::skipped() {
        return;
    }
    let rig = rig(BUSINESS).await;
    let now = Utc::now();
    let c = rig.customer(1).await;
    let quote = rig.quote();
    let slot = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap()
        .slots[0]
        .clone();
    rig.google.state.down.store(true, Ordering::SeqCst);
    let offer = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &quote, &DateFilter::default(), None, now)
        .await;
    assert!(matches!(offer, Err(SchedulingError::Calendar(_))), "{offer:?}");
    let conversation = rig.store.turn_input(c, 5).await.unwrap().conversation;
    let booked = rig
        .scheduler
        .for_business(&rig.business)
        .book(&conversation, &job(), &quote, &slot, None, now)
        .await;
    assert!(matches!(booked, Err(SchedulingError::Calendar(_))), "{booked:?}");
    assert!(rig.store.bookings().await.unwrap().is_empty());
    assert!(rig.google.events().is_empty());
}

#[tokio::test]
async fn a_calendar_reporting_errors_is_never_treated_as_free() {
    if crate::helpers::skipped() {
        return;
    }
    let two_crews = format!(
        "{BUSINESS}\n[[providers]]\nid = \"crew-2\"\nname = \"Crew 2\"\ncalendar_id = \"crew2@example.com\"\n"
    );
    let rig = rig(&two_crews).await;
    let now = Utc::now();
    let c = rig.customer(1).await;
    rig.google
        .state
        .broken_calendars
        .lock()
        .unwrap()
        .insert("crew1@example.com".into());
    let offer = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &rig.quote(), &DateFilter::default(), None, now)
        .await
        .unwrap();
    assert!(!offer.slots.is_empty());
    assert!(
        offer.slots.iter().all(|s| s.crew == "crew-2"),
        "{:?}",
        offer.slots
    );
    // With every calendar unknown there is nothing to offer, and it says so.
    rig.google
        .state
        .broken_calendars
        .lock()
        .unwrap()
        .insert("crew2@example.com".into());
    let offer = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &rig.quote(), &DateFilter::default(), None, now)
        .await;
    assert!(matches!(offer, Err(SchedulingError::Calendar(_))));
}

#[tokio::test]
async fn revoked_credentials_are_reported_as_such() {
    if crate::helpers::skipped() {
        return;
    }
    let rig = rig(BUSINESS).await;
    rig.google.state.revoked.store(true, Ordering::SeqCst);
    let c = rig.customer(1).await;
    let offer = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &rig.quote(), &DateFilter::default(), None, Utc::now())
        .await;
    match offer {
        Err(SchedulingError::Calendar(textdesk::calendar::CalendarError::CredentialsRevoked(why))) => {
            assert!(why.contains("invalid_grant"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn offered_slots_are_held_from_other_customers() {
    if crate::helpers::skipped() {
        return;
    }
    let rig = rig(BUSINESS).await;
    let now = Utc::now();
    let (a, b) = (rig.customer(1).await, rig.customer(2).await);
    let quote = rig.quote();
    let for_a = rig
        .scheduler
        .for_business(&rig.business)
        .offer(a, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap();
    let for_b = rig
        .scheduler
        .for_business(&rig.business)
        .offer(b, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap();
    assert!(!for_a.slots.is_empty() && !for_b.slots.is_empty());
    for s in &for_b.slots {
        assert!(
            for_a.slots.iter().all(|t| t.start >= s.end || s.start >= t.end),
            "{s:?} overlaps a hold"
        );
    }
    // B cannot book A's held slot, even by guessing it.
    let conversation_b = rig.store.turn_input(b, 5).await.unwrap().conversation;
    let taken = rig
        .scheduler
        .for_business(&rig.business)
        .book(&conversation_b, &job(), &quote, &for_a.slots[0], None, now)
        .await;
    assert!(matches!(taken, Err(SchedulingError::Taken(_))), "{taken:?}");
}

#[tokio::test]
async fn rebooking_after_a_cancel_makes_a_new_event() {
    if crate::helpers::skipped() {
        return;
    }
    let rig = rig(BUSINESS).await;
    let now = Utc::now();
    let c = rig.customer(1).await;
    let quote = rig.quote();
    let conversation = rig.store.turn_input(c, 5).await.unwrap().conversation;
    let slot = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap()
        .slots[0]
        .clone();
    let first = rig
        .scheduler
        .for_business(&rig.business)
        .book(&conversation, &job(), &quote, &slot, None, now)
        .await
        .unwrap();
    rig.scheduler
        .for_business(&rig.business)
        .cancel(&first)
        .await
        .unwrap();
    assert!(rig.google.events().is_empty());
    // The same customer books the very same slot again: Google keeps the
    // deleted id reserved, so a reused id would "succeed" with no event.
    let slot = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap()
        .slots[0]
        .clone();
    let second = rig
        .scheduler
        .for_business(&rig.business)
        .book(&conversation, &job(), &quote, &slot, None, now)
        .await
        .unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(rig.google.events().len(), 1);
    assert_eq!(rig.google.events()[0].id, second.id);
    assert_eq!(rig.confirmed().await, 1);
}

#[tokio::test]
async fn a_reschedule_moves_the_event_and_the_booking_together() {
    if crate::helpers::skipped() {
        return;
    }
    let rig = rig(BUSINESS).await;
    let now = Utc::now();
    let c = rig.customer(1).await;
    let quote = rig.quote();
    let conversation = rig.store.turn_input(c, 5).await.unwrap().conversation;
    let offer = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap();
    let booking = rig
        .scheduler
        .for_business(&rig.business)
        .book(&conversation, &job(), &quote, &offer.slots[0], None, now)
        .await
        .unwrap();
    // The time being moved off is not offered as a new one.
    let moving = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &quote, &DateFilter::default(), Some(&booking), now)
        .await
        .unwrap();
    assert!(
        moving.slots.iter().all(|s| s.start != booking.slot.start),
        "its own time is not a new opening: {}",
        moving.numbered()
    );
    let new_slot = moving
        .slots
        .iter()
        .find(|s| s.start != booking.slot.start)
        .unwrap()
        .clone();
    let moved = rig
        .scheduler
        .for_business(&rig.business)
        .book(&conversation, &job(), &quote, &new_slot, Some(&booking), now)
        .await
        .unwrap();
    assert_eq!(moved.id, booking.id);
    let events = rig.google.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].start, new_slot.start);
    assert!(
        events[0].body["description"]
            .as_str()
            .unwrap()
            .contains(&new_slot.label),
        "the crew sees the new time"
    );
    let stored = rig.store.booking(&booking.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.slot.start, stored.status),
        (new_slot.start, BookingStatus::Confirmed)
    );
}

#[tokio::test]
async fn a_failed_insert_leaves_no_booking_or_says_it_needs_a_look() {
    if crate::helpers::skipped() {
        return;
    }
    let rig = rig(BUSINESS).await;
    let now = Utc::now();
    let c = rig.customer(1).await;
    let quote = rig.quote();
    let conversation = rig.store.turn_input(c, 5).await.unwrap().conversation;
    let slot = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap()
        .slots[0]
        .clone();
    rig.google.state.fail_inserts.store(true, Ordering::SeqCst);
    let failed = rig
        .scheduler
        .for_business(&rig.business)
        .book(&conversation, &job(), &quote, &slot, None, now)
        .await;
    assert!(matches!(failed, Err(SchedulingError::Calendar(_))), "{failed:?}");
    assert_eq!(rig.confirmed().await, 0);
    // The booking recorded before the insert is there, and cancelled.
    let statuses: Vec<_> = rig
        .store
        .bookings()
        .await
        .unwrap()
        .iter()
        .map(|b| b.status)
        .collect();
    assert_eq!(statuses, vec![BookingStatus::Cancelled]);
    // If the cleanup cannot be confirmed either, nothing is marked cancelled
    // on a guess: the owner is told to look.
    rig.google.state.fail_deletes.store(true, Ordering::SeqCst);
    let slot = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap()
        .slots[0]
        .clone();
    let unsure = rig
        .scheduler
        .for_business(&rig.business)
        .book(&conversation, &job(), &quote, &slot, None, now)
        .await;
    assert!(
        matches!(unsure, Err(SchedulingError::Incomplete(_))),
        "{unsure:?}"
    );
}

#[tokio::test]
async fn a_full_conversation_from_first_text_to_booked() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        default_fakes: false,
        google: true,
        business: Some(BUSINESS.into()),
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
            claude_tool(
                "t3",
                "get_available_slots",
                json!({"preference": "next Tuesday afternoon"}),
            ),
            claude_text("Here are the openings I found. Which number works for you?"),
            // Confirmed by code, with no model call after the booking.
            claude_tool("t4", "book_slot", json!({"slot_id": 2})),
        ]))
        .mount(&app.anthropic)
        .await;
    const DANA: &str = "+15035551234";
    app.text(DANA, "Hi, about half a truck of junk at 12 Oak St. How much?")
        .await;
    app.wait_for_texts(1).await;
    app.text(DANA, "Great, next Tuesday afternoon?").await;
    app.wait_for_texts(2).await;
    app.text(DANA, "2").await;
    let sent = app.wait_for_texts(3).await;
    // The booking is confirmed by code: its day, time and price.
    assert!(
        sent[2]
            .1
            .starts_with("You're booked with Rose City Junk Haulers: Tue "),
        "{}",
        sent[2].1
    );
    assert!(
        sent[2].1.contains("Total $350")
            && sent[2]
                .1
                .ends_with("Reply R to reschedule, or CANCEL BOOKING to cancel it."),
        "{}",
        sent[2].1
    );

    let requests = app.model_requests().await;
    let slots_result = requests
        .iter()
        .flat_map(|r| r["messages"].as_array().unwrap().clone())
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .find(|b| b["type"] == "tool_result" && b["content"].as_str().unwrap_or("").contains("Openings:"))
        .unwrap();
    let text = slots_result["content"].as_str().unwrap();
    assert!(
        text.contains("Looked for: Tue") && text.contains("afternoon"),
        "{text}"
    );
    assert!(
        !text.contains("Nothing is open then"),
        "the preference was not honoured: {text}"
    );

    app.wait_until_settled(DANA).await;
    let conversation = app.conversation(DANA).await.unwrap();
    let turn = app.store.turn_input(conversation, 20).await.unwrap();
    assert_eq!(turn.state.name(), "BOOKED");
    let google = app.google.as_ref().unwrap();
    let events = google.events();
    assert_eq!(events.len(), 1);
    let la = chrono_tz::America::Los_Angeles;
    let start = events[0].start.with_timezone(&la);
    assert_eq!(start.weekday(), Weekday::Tue, "{start}");
    assert!(start.hour() >= 12, "{start}");
    let today = Utc::now().with_timezone(&la).date_naive();
    assert!(
        start.date_naive() > today && start.date_naive() <= today + chrono::Duration::days(7),
        "{start}"
    );
    let description = events[0].body["description"].as_str().unwrap();
    assert!(description.contains(DANA) && description.contains("12 Oak St") && description.contains("$350"));
    assert_eq!(events[0].body["location"], "12 Oak St, Portland");
}

#[tokio::test]
async fn calendar_down_mid_conversation_the_owner_will_follow_up() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        default_fakes: false,
        google: true,
        business: Some(BUSINESS.into()),
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
                json!({"size": "half_truck", "address": "12 Oak St"}),
            ),
            claude_tool("t2", "get_quote", json!({})),
            claude_text("That's $350. Want to book?"),
            claude_tool("t3", "get_available_slots", json!({})),
            claude_text("Sorry, our calendar is down. The owner will text you to set a time."),
        ]))
        .mount(&app.anthropic)
        .await;
    app.google
        .as_ref()
        .unwrap()
        .state
        .down
        .store(true, Ordering::SeqCst);
    const DANA: &str = "+15035551234";
    app.text(DANA, "half a truck at 12 Oak St").await;
    app.wait_for_texts(1).await;
    app.text(DANA, "yes book me").await;
    let sent = app.wait_for_texts(2).await;
    assert!(sent[1].1.contains("owner will text you"), "{}", sent[1].1);
    let requests = app.model_requests().await;
    let last = requests.last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["content"][0]["is_error"], true);
    assert!(
        last["content"][0]["content"]
            .as_str()
            .unwrap()
            .contains("owner will text them")
    );
    app.wait_until_settled(DANA).await;
    assert!(app.store.bookings().await.unwrap().is_empty());
    let alerts = app.store.alerts().await.unwrap();
    assert!(
        alerts.iter().any(|a| a.kind == "calendar_unavailable"),
        "{alerts:?}"
    );
}

#[tokio::test]
async fn the_guided_flow_books_reschedules_and_cancels_on_the_local_calendar() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        with_model: false,
        business: Some(BUSINESS.replace("calendar_id = \"crew1@example.com\"\n", "")),
        ..Options::default()
    })
    .await;
    const DANA: &str = "+15035551234";
    for (i, text) in ["hi", "3", "1", "12 Oak St, Portland"].iter().enumerate() {
        app.text(DANA, text).await;
        app.wait_for_texts(i + 1).await;
    }
    let sent = app.sent_texts().await;
    assert_eq!(sent[2].1, "What name should I put the booking under?");
    assert!(sent[3].1.starts_with("Thanks! Openings:\n1) "), "{}", sent[3].1);
    // Never tell a customer to reply CANCEL: carriers treat it as STOP.
    assert!(sent.iter().all(|(_, body)| !body.contains("CANCEL")));

    app.text(DANA, "2").await;
    let sent = app.wait_for_texts(5).await;
    assert!(
        sent[4]
            .1
            .starts_with("You're booked with Rose City Junk Haulers: "),
        "{}",
        sent[4].1
    );
    assert!(
        sent[4].1.contains("Total $350")
            && sent[4]
                .1
                .ends_with("Reply R to reschedule, or CANCEL BOOKING to cancel it."),
        "{}",
        sent[4].1
    );
    let bookings = app.store.bookings().await.unwrap();
    assert_eq!(bookings.len(), 1);
    assert_eq!(bookings[0].status, BookingStatus::Confirmed);
    let first = bookings[0].slot;

    app.text(DANA, "R").await;
    let sent = app.wait_for_texts(6).await;
    assert!(sent[5].1.starts_with("Sure. Openings:"), "{}", sent[5].1);
    // The time being moved off is not offered again as a new one.
    assert!(
        sent[5].1.lines().all(|line| line
            .split_once(") ")
            .is_none_or(|(_, label)| label != bookings[0].label)),
        "{} re-offered: {}",
        bookings[0].label,
        sent[5].1
    );
    app.text(DANA, "3").await;
    let sent = app.wait_for_texts(7).await;
    assert!(
        sent[6]
            .1
            .starts_with("You're booked with Rose City Junk Haulers: "),
        "{}",
        sent[6].1
    );
    let bookings = app.store.bookings().await.unwrap();
    assert_eq!(
        bookings.len(),
        1,
        "a reschedule moves the booking, it does not add one"
    );
    assert_ne!(bookings[0].slot, first);

    app.text(DANA, "please cancel my booking").await;
    let sent = app.wait_for_texts(8).await;
    assert!(sent[7].1.contains("is cancelled"), "{}", sent[7].1);
    assert_eq!(
        app.store.bookings().await.unwrap()[0].status,
        BookingStatus::Cancelled
    );
}
