//! Invariants of ARCHITECTURE.md that a fleet leans on, each proven by a
//! test that fails when the invariant is broken (issue 11, part 7): two
//! schedulers on two connections racing for one opening, an abandoned
//! `pending` booking, leases, a turn committed twice, a crash mid-send,
//! a send that timed out, a webhook while the model hangs, and the number
//! a reply goes out from. On SQLite here, on Postgres in `api_postgres`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use textdesk::calendar::LocalCalendar;
use textdesk::clock::{Clock, ManualClock};
use textdesk::config::business::{BusinessConfig, BusinessKind};
use textdesk::domain::availability::{DateFilter, Interval};
use textdesk::domain::conversation::JobDetails;
use textdesk::domain::phone::E164;
use textdesk::domain::quote::{Quote, price};
use textdesk::scheduling::{Scheduler, SchedulingError};
use textdesk::store::{
    AlertKind, BookingRecord, BookingStatus, ConversationId, InboundMessage, MessageId, MessageKind,
    OutboundDraft, Recorded, Reservation, Store, TurnCommit,
};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, Request, ResponseTemplate};

use crate::helpers::*;

const ALICE: &str = "+15035551001";
const BOB: &str = "+15035551002";

/// One crew, open Mondays 08:00-10:00, one-hour jobs: on Sunday the only
/// openings are Monday 8am and 9am.
const ONE_CREW: &str = r#"
[business]
name = "Rose City Junk Haulers"
phone = "+15035550142"
timezone = "America/Los_Angeles"

[schedule]
min_notice_hours = 0
horizon_days = 6
slot_minutes = 60
arrival_window_minutes = 0
buffer_before_minutes = 0
buffer_after_minutes = 0

[schedule.hours]
mon = "08:00-10:00"
tue = "closed"
wed = "closed"
thu = "closed"
fri = "closed"
sat = "closed"
sun = "closed"

[[providers]]
id = "crew-1"
name = "Crew 1"
"#;

/// Sunday 2030-03-03, noon in Portland.
fn sunday_noon() -> DateTime<Utc> {
    chrono_tz::America::Los_Angeles
        .with_ymd_and_hms(2030, 3, 3, 12, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
}

/// Monday 2030-03-04 at `hour`:00 in Portland.
fn monday_at(hour: u32) -> DateTime<Utc> {
    chrono_tz::America::Los_Angeles
        .with_ymd_and_hms(2030, 3, 4, hour, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn inbound(i: usize) -> InboundMessage {
    InboundMessage {
        business_id: "test".into(),
        channel_message_id: format!("SMproof{i:028}"),
        from: E164::parse(&format!("+1503555{i:04}")).unwrap(),
        to: E164::parse(BUSINESS_NUMBER).unwrap(),
        body: "hi".into(),
        media: vec![],
        params: json!({}),
        opt_out_keyword: None,
        profile_name: None,
    }
}

async fn customer(store: &dyn Store, i: usize) -> (ConversationId, MessageId) {
    match store.record_inbound(&inbound(i)).await.unwrap() {
        Recorded::New(c, m) | Recorded::Duplicate(c, m) => (c, m),
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

fn quote(business: &BusinessConfig, now: DateTime<Utc>) -> Quote {
    price(
        &business.pricing,
        &job().to_spec(BusinessKind::JunkRemoval).unwrap(),
        "QPROOF".into(),
        now,
    )
    .unwrap()
}

/// Two instances on one database: each has its own store (its own pool)
/// and its own scheduler, so the per-crew lock inside a scheduler does not
/// serialize them. Twenty customers, ten on each, book the same opening at
/// once: only the store's atomic overlap check in `reserve_booking` keeps
/// the crew from being booked twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_on_two_connections_book_the_last_opening_once() {
    if crate::helpers::skipped() {
        return;
    }
    for round in 0..5 {
        let db = TestDb::new().await;
        let stores = [db.store().await, db.store().await];
        let schedulers = [
            Arc::new(Scheduler::new(stores[0].clone(), Arc::new(LocalCalendar))),
            Arc::new(Scheduler::new(stores[1].clone(), Arc::new(LocalCalendar))),
        ];
        let business = Arc::new(BusinessConfig::parse(ONE_CREW, std::path::Path::new("t.toml")).unwrap());
        let now = sunday_noon();
        let quote = quote(&business, now);
        let mut conversations = Vec::new();
        for i in 0..20 {
            conversations.push(customer(stores[0].as_ref(), i).await.0);
        }
        let offer = schedulers[0]
            .for_business(&business)
            .offer(conversations[0], &quote, &DateFilter::default(), None, now)
            .await
            .unwrap();
        let slot = offer
            .slots
            .iter()
            .find(|s| s.start == monday_at(8))
            .expect("Monday 8am is open")
            .clone();
        // Release the offer's hold so all twenty race on equal terms.
        stores[0]
            .hold(conversations[0], &[], now, now, None)
            .await
            .unwrap();

        let mut attempts = Vec::new();
        for (i, c) in conversations.iter().enumerate() {
            let store = stores[i % 2].clone();
            let scheduler = schedulers[i % 2].clone();
            let business = business.clone();
            let quote = quote.clone();
            let slot = slot.clone();
            let c = *c;
            attempts.push(tokio::spawn(async move {
                let conversation = store.turn_input(c, 5).await.unwrap().conversation;
                scheduler
                    .for_business(&business)
                    .book(&conversation, &job(), &quote, &slot, None, now)
                    .await
            }));
        }
        let results: Vec<_> = futures::future::join_all(attempts)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(results.len(), 20);
        let booked = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(booked, 1, "round {round}: {results:?}");
        let refused: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
        assert_eq!(refused.len(), 19);
        for r in refused {
            assert!(
                matches!(r, Err(SchedulingError::Taken(_))),
                "round {round}: {r:?}"
            );
        }
        let live: Vec<_> = stores[1]
            .bookings()
            .await
            .unwrap()
            .into_iter()
            .filter(|b| b.status != BookingStatus::Cancelled)
            .collect();
        assert_eq!(live.len(), 1, "round {round}: {live:?}");
        assert_eq!(live[0].status, BookingStatus::Confirmed);
        assert_eq!(live[0].slot.start, monday_at(8));
    }
}

/// A `pending` booking is what a crash between recording a booking and
/// writing its calendar event leaves. It blocks its slot for 15 minutes,
/// then stops blocking: 14 minutes on, another customer is refused; 16
/// minutes on, that customer gets the slot.
#[tokio::test]
async fn a_pending_booking_blocks_its_slot_for_fifteen_minutes_and_no_longer() {
    if crate::helpers::skipped() {
        return;
    }
    let db = TestDb::new().await;
    let clock = ManualClock::at(sunday_noon());
    let store = db.store_with_clock(Arc::new(clock.clone())).await;
    let (abandoned, _) = customer(store.as_ref(), 1).await;
    let (latecomer, _) = customer(store.as_ref(), 2).await;
    let slot = Interval {
        start: monday_at(8),
        end: monday_at(9),
    };
    let record = |id: &str, conversation| BookingRecord {
        id: id.into(),
        conversation_id: conversation,
        provider_id: "crew-1".into(),
        calendar_id: "local".into(),
        slot,
        label: "Junk removal".into(),
        status: BookingStatus::Pending,
    };
    let first = store
        .reserve_booking(&record("td-abandoned", abandoned), slot, clock.now())
        .await
        .unwrap();
    assert!(matches!(first, Reservation::Reserved(_)), "{first:?}");

    clock.advance(chrono::Duration::minutes(14));
    let at_14 = store
        .reserve_booking(&record("td-latecomer", latecomer), slot, clock.now())
        .await
        .unwrap();
    assert_eq!(
        at_14,
        Reservation::Conflict,
        "a 14-minute-old pending booking still blocks"
    );

    clock.advance(chrono::Duration::minutes(2));
    let at_16 = store
        .reserve_booking(&record("td-latecomer", latecomer), slot, clock.now())
        .await
        .unwrap();
    match at_16 {
        Reservation::Reserved(b) => {
            assert_eq!(b.id, "td-latecomer");
            assert_eq!(b.conversation_id, latecomer);
        }
        other => panic!("a 16-minute-old pending booking still blocked: {other:?}"),
    }
    // A slot that overlaps only partly is refused the same way while the
    // new booking is live.
    let overlapping = Interval {
        start: monday_at(8) + chrono::Duration::minutes(30),
        end: monday_at(9) + chrono::Duration::minutes(30),
    };
    let (third, _) = customer(store.as_ref(), 3).await;
    let mut partial = record("td-third", third);
    partial.slot = overlapping;
    assert_eq!(
        store
            .reserve_booking(&partial, overlapping, clock.now())
            .await
            .unwrap(),
        Reservation::Conflict
    );
}

/// A lease belongs to the claim that took it: nobody else claims the
/// conversation or frees it until it expires (by the store's clock), and a
/// late release by a holder whose lease ran out frees nothing.
#[tokio::test]
async fn a_lease_is_its_claims_alone_until_it_expires() {
    if crate::helpers::skipped() {
        return;
    }
    let db = TestDb::new().await;
    let clock = ManualClock::at(sunday_noon());
    let store = db.store_with_clock(Arc::new(clock.clone())).await;
    let (conversation, _) = customer(store.as_ref(), 1).await;
    let lease = Duration::from_secs(60);

    let first = store.claim_next_pending("first", lease).await.unwrap();
    assert_eq!(first.map(|c| c.id), Some(conversation));
    assert!(!store.claim(conversation, "second", lease).await.unwrap());
    // A release by someone who does not hold the lease frees nothing.
    store.release(conversation, "second").await.unwrap();
    assert_eq!(store.claim_next_pending("third", lease).await.unwrap(), None);
    assert!(!store.claim(conversation, "third", lease).await.unwrap());

    // Not yet expired at 59 s; expired at 61 s.
    clock.advance(chrono::Duration::seconds(59));
    assert!(!store.claim(conversation, "second", lease).await.unwrap());
    clock.advance(chrono::Duration::seconds(2));
    assert!(store.claim(conversation, "second", lease).await.unwrap());

    // The first holder's late release does not free the second's lease.
    store.release(conversation, "first").await.unwrap();
    assert!(!store.claim(conversation, "third", lease).await.unwrap());
    assert_eq!(store.claim_next_pending("third", lease).await.unwrap(), None);

    // The holder's own release does.
    store.release(conversation, "second").await.unwrap();
    assert!(store.claim(conversation, "third", lease).await.unwrap());
}

/// One turn run twice (a crash after the commit, a second instance that
/// took over an expired lease) commits at the same moment on two
/// connections: one reply is stored, answering the turn's last text, and
/// a third run finds the turn done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_committed_twice_at_once_stores_one_reply() {
    if crate::helpers::skipped() {
        return;
    }
    let db = TestDb::new().await;
    let a = db.store().await;
    let b = db.store().await;
    let (conversation, text) = customer(a.as_ref(), 1).await;
    let turn = a.turn_input(conversation, 10).await.unwrap();
    let commit = TurnCommit {
        through: text,
        reply: Some(OutboundDraft {
            kind: MessageKind::Reply,
            body: "Hi! What would you like hauled away?".into(),
        }),
        held: None,
        state: turn.state.clone(),
        new_quotes: vec![],
        alerts: vec![],
        jobs: vec![],
        cancel_jobs: vec![],
        model_calls: None,
        spoken: None,
    };
    let (one, two) = tokio::join!(
        a.finish_turn(conversation, commit.clone()),
        b.finish_turn(conversation, commit.clone())
    );
    let claimed: Vec<_> = [one.unwrap(), two.unwrap()].into_iter().flatten().collect();
    assert_eq!(claimed.len(), 1, "both runs claimed a reply: {claimed:?}");
    assert_eq!(claimed[0].body, "Hi! What would you like hauled away?");
    assert_eq!(
        a.finish_turn(conversation, commit).await.unwrap().map(|m| m.id),
        None
    );

    let sql = db.sql().await;
    assert_eq!(
        sql.count(
            "SELECT COUNT(*) FROM messages WHERE reply_to_id = $1",
            &[text.0.into()]
        )
        .await,
        1
    );
    assert_eq!(
        sql.count(
            "SELECT COUNT(*) FROM messages WHERE direction = 'outbound' AND conversation_id = $1",
            &[conversation.0.into()]
        )
        .await,
        1
    );
    let outbound = a
        .messages(conversation)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Reply)
        .count();
    assert_eq!(outbound, 1);
    sql.close().await;
}

/// Mounts a Twilio whose send endpoint records the POST and then never
/// answers (as if the process died mid-send, or Twilio hung).
async fn mount_parking_twilio(app: &TestApp) {
    Mock::given(method("POST"))
        .and(path_regex(r"^/2010-04-01/Accounts/[^/]+/Messages\.json$"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"sid": "SMparked000000000000000000000000", "status": "queued"}))
                .set_delay(Duration::from_secs(3600)),
        )
        .mount(&app.twilio)
        .await;
}

async fn twilio_requests(app: &TestApp, verb: &str) -> Vec<Request> {
    app.twilio
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path().ends_with("/Messages.json"))
        .collect()
}

async fn wait_for_posts(app: &TestApp, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while twilio_requests(app, "POST").await.len() < n {
        assert!(Instant::now() < deadline, "Twilio never got {n} sends");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The customer's reply row, once its status is one of `statuses`.
async fn wait_for_reply_status(app: &TestApp, customer: &str, statuses: &[&str]) -> textdesk::store::Message {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let messages = app.messages(customer).await;
        if let Some(reply) = messages
            .iter()
            .find(|m| m.kind == MessageKind::Reply && statuses.contains(&m.status.as_str()))
        {
            return reply.clone();
        }
        let seen: Vec<_> = messages
            .iter()
            .map(|m| (m.kind.clone(), m.status.clone()))
            .collect();
        assert!(
            Instant::now() < deadline,
            "no reply reached {statuses:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The process dies while Twilio holds the POST of a reply: the row the
/// product left is `sending`, attempts 1. At restart the text is claimed a
/// second time, so textdesk asks Twilio's message list, finds it went out,
/// records that SID, and never POSTs it again.
#[tokio::test]
async fn a_crash_mid_send_is_reconciled_with_twilios_list_and_never_posted_twice() {
    if crate::helpers::skipped() {
        return;
    }
    let mut app = spawn_app_with(Options {
        default_fakes: false,
        // Long enough that the parked POST is still in flight at the kill.
        // On Postgres the restart waits out the dead send's lease (twice
        // this plus 5 s) before taking it over, so keep it short there.
        extra_vars: vec![(
            "TWILIO_TIMEOUT_SECS",
            if crate::POSTGRES { "3" } else { "60" }.into(),
        )],
        ..Options::default()
    })
    .await;
    mount_echo_claude(&app.anthropic).await;
    mount_parking_twilio(&app).await;

    app.text(ALICE, "is anyone there").await;
    wait_for_posts(&app, 1).await;
    // Twilio has the POST and has not answered: kill the process now.
    app.crash().await;
    let sql = app.sql().await;
    let (status, attempts): (String, i64) = (
        sql.scalar("SELECT status FROM messages WHERE kind = 'reply'", &[])
            .await,
        sql.count(
            "SELECT CAST(attempts AS BIGINT) FROM messages WHERE kind = 'reply'",
            &[],
        )
        .await,
    );
    sql.close().await;
    assert_eq!(
        (status.as_str(), attempts),
        ("sending", 1),
        "the state a crash mid-send leaves"
    );

    // What Twilio's list says: the reply went out.
    Mock::given(method("GET"))
        .and(path(format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messages": [{
                "sid": "SMlisted0000000000000000000000001",
                "body": "Re: is anyone there",
                "date_created": Utc::now().to_rfc2822(),
            }]
        })))
        .mount(&app.twilio)
        .await;
    app.restart().await;

    let reply = wait_for_reply_status(&app, ALICE, &["sent"]).await;
    app.wait_until_idle().await;
    assert_eq!(
        reply.channel_message_id.as_deref(),
        Some("SMlisted0000000000000000000000001"),
        "the SID from Twilio's list is recorded"
    );
    assert_eq!(
        twilio_requests(&app, "POST").await.len(),
        1,
        "the reply was POSTed again"
    );
    assert!(
        !twilio_requests(&app, "GET").await.is_empty(),
        "Twilio's list was not asked"
    );
}

/// A send that times out may have reached Twilio: it is marked `unknown`,
/// the owner is alerted, and it is never sent again, not even by a
/// restart's recovery.
#[tokio::test]
async fn a_send_that_times_out_is_unknown_alerted_and_never_resent() {
    if crate::helpers::skipped() {
        return;
    }
    let mut app = spawn_app_with(Options {
        default_fakes: false,
        extra_vars: vec![("TWILIO_TIMEOUT_SECS", "1".into())],
        ..Options::default()
    })
    .await;
    mount_echo_claude(&app.anthropic).await;
    mount_parking_twilio(&app).await;

    app.text(ALICE, "hello").await;
    let reply = wait_for_reply_status(&app, ALICE, &["unknown", "sent", "failed", "queued"]).await;
    assert_eq!(reply.status, "unknown");
    app.wait_until_idle().await;
    assert_eq!(twilio_requests(&app, "POST").await.len(), 1);
    let alerts = app.store.alerts().await.unwrap();
    assert_eq!(
        alerts.iter().filter(|a| a.kind == AlertKind::SendUnknown).count(),
        1,
        "{alerts:?}"
    );

    app.crash_and_restart().await;
    app.wait_until_idle().await;
    assert_eq!(
        twilio_requests(&app, "POST").await.len(),
        1,
        "a restart resent a text that may have gone out"
    );
    let reply = wait_for_reply_status(&app, ALICE, &["unknown"]).await;
    assert_eq!(reply.status, "unknown");
}

/// The webhook stores, wakes the worker and answers: while the model hangs
/// on a turn, more texts (the same customer's and another's) are answered
/// 200 at once and stored.
#[tokio::test]
async fn the_webhook_answers_while_the_model_hangs() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        default_fakes: false,
        extra_vars: vec![("ANTHROPIC_TIMEOUT_SECS", "120".into())],
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(claude_text("too late"))
                .set_delay(Duration::from_secs(3600)),
        )
        .mount(&app.anthropic)
        .await;

    app.text(ALICE, "first").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.model_requests().await.is_empty() {
        assert!(Instant::now() < deadline, "the turn never called the model");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The model now hangs (for an hour); a webhook that waited on it
    // would not answer within these five seconds.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for (i, from) in [ALICE, BOB].into_iter().enumerate() {
        let sid = format!("SM{:032}", 900 + i);
        let params = TestApp::inbound_params(from, "are you there?", &sid);
        let url = format!("{PUBLIC_BASE_URL}/api/sms/inbound");
        let signature = textdesk::twilio::signature::sign(AUTH_TOKEN, &url, &params);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let response = client
            .post(format!("{}/api/sms/inbound", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(body)
            .send()
            .await
            .expect("the webhook answered while the model hung");
        assert_eq!(response.status(), 200);
        assert!(
            app.messages(from)
                .await
                .iter()
                .any(|m| m.channel_message_id.as_deref() == Some(sid.as_str())),
            "acknowledged but not stored"
        );
    }
    assert!(app.sent_texts().await.is_empty(), "the model answered after all");
}

/// Sends a text to `to` (one of the business's numbers), signed.
async fn text_to(app: &TestApp, to: &str, from: &str, body: &str) {
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let params: Vec<(String, String)> = TestApp::inbound_params(from, body, &sid)
        .into_iter()
        .map(|(k, v)| if k == "To" { (k, to.to_string()) } else { (k, v) })
        .collect();
    assert_eq!(app.post_signed("/api/sms/inbound", &params).await.status(), 200);
}

/// One business with two numbers: each customer's reply goes out from the
/// number that customer texted, not from the business's main number or
/// `TWILIO_FROM_NUMBER`.
#[tokio::test]
async fn replies_go_out_from_the_number_texted() {
    if crate::helpers::skipped() {
        return;
    }
    const SECOND_NUMBER: &str = "+15035550199";
    let app = spawn_app_with(Options {
        business: Some(format!(
            "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"{BUSINESS_NUMBER}\"\nnumbers = [\"{SECOND_NUMBER}\"]\n"
        )),
        ..Options::default()
    })
    .await;
    text_to(&app, SECOND_NUMBER, BOB, "bob to the second number").await;
    text_to(&app, BUSINESS_NUMBER, ALICE, "alice to the main number").await;
    app.wait_for_texts(2).await;
    app.wait_until_idle().await;
    let sends: Vec<HashMap<String, String>> = twilio_requests(&app, "POST")
        .await
        .iter()
        .map(|r| form_urlencoded::parse(&r.body).into_owned().collect())
        .collect();
    assert_eq!(sends.len(), 2, "{sends:?}");
    let from_of = |to: &str| {
        sends
            .iter()
            .find(|s| s["To"] == to)
            .unwrap_or_else(|| panic!("no reply to {to}: {sends:?}"))["From"]
            .clone()
    };
    assert_eq!(from_of(BOB), SECOND_NUMBER);
    assert_eq!(from_of(ALICE), BUSINESS_NUMBER);
}

/// The project's Rust sources under `dir`, each as its code before its
/// first `#[cfg(test)]`, without comment lines; test-only files skipped.
fn sources(dir: &str) -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut stack = vec![root.join(dir)];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".rs") || name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code: Vec<&str> = text
            .lines()
            .take_while(|l| l.trim() != "#[cfg(test)]")
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        let shown = path.strip_prefix(root).unwrap().display().to_string();
        out.push((shown, code.join("\n")));
    }
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

/// Files among `files` whose code contains any of `words`, as (file, word).
fn mentions(files: &[(String, String)], words: &[&str]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (file, code) in files {
        let lower = code.to_lowercase();
        for word in words {
            if lower.contains(&word.to_lowercase()) {
                found.push((file.clone(), word.to_string()));
            }
        }
    }
    found
}

/// The source is the same on both backends: these run in `api` only.
fn source_test_skipped() -> bool {
    if crate::helpers::skipped() {
        return true;
    }
    if crate::POSTGRES {
        eprintln!("skipped: a test of the source, run once by the `api` binary");
        return true;
    }
    false
}

#[tokio::test]
async fn the_domain_reads_no_configuration_and_does_no_io() {
    if source_test_skipped() {
        return;
    }
    let domain = sources("src/domain");
    let found = mentions(
        &domain,
        &[
            "crate::config",
            "sqlx",
            "reqwest",
            "std::fs",
            "std::net",
            "tokio::",
            "Utc::now()",
            "SystemTime::now",
            "std::env::var",
        ],
    );
    assert!(
        found.is_empty(),
        "src/domain reads configuration or does IO: {found:?}"
    );
}

#[tokio::test]
async fn only_the_clock_the_cli_and_the_store_read_the_system_time() {
    if source_test_skipped() {
        return;
    }
    let found: Vec<_> = mentions(&sources("src"), &["Utc::now()", "SystemTime::now", "Local::now"])
        .into_iter()
        .filter(|(file, _)| file != "src/clock.rs" && file != "src/cli.rs" && !file.starts_with("src/store/"))
        .collect();
    assert!(
        found.is_empty(),
        "logic reads the system time, not its Clock: {found:?}"
    );
}

#[tokio::test]
async fn the_store_names_no_provider() {
    if source_test_skipped() {
        return;
    }
    let found = mentions(
        &sources("src/store"),
        &["twilio", "whatsapp:", "MessageSid", "anthropic"],
    );
    assert!(found.is_empty(), "the store names a provider: {found:?}");
}

/// Twilio's retries of one text, arriving together at two instances: one
/// is stored (`New`), the rest are duplicates naming the same row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_text_retried_at_two_instances_at_once_is_stored_once() {
    if crate::helpers::skipped() {
        return;
    }
    let db = TestDb::new().await;
    let stores = [db.store().await, db.store().await];
    let text = inbound(7);
    let attempts = (0..10).map(|i| {
        let store = stores[i % 2].clone();
        let text = text.clone();
        tokio::spawn(async move { store.record_inbound(&text).await.unwrap() })
    });
    let outcomes: Vec<Recorded> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let new: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Recorded::New(_, id) => Some(*id),
            Recorded::Duplicate(..) => None,
        })
        .collect();
    assert_eq!(new.len(), 1, "{outcomes:?}");
    for o in &outcomes {
        let (Recorded::New(_, id) | Recorded::Duplicate(_, id)) = o;
        assert_eq!(*id, new[0], "every copy names the one stored text");
    }
    let sql = db.sql().await;
    assert_eq!(sql.count("SELECT COUNT(*) FROM messages", &[]).await, 1);
    sql.close().await;
}

/// Due jobs claimed from two instances at once: each job is claimed by
/// one of them, once; and a job enqueued again by the other instance (same
/// dedupe key) is not a second job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn due_jobs_claimed_from_two_instances_are_each_claimed_once() {
    if crate::helpers::skipped() {
        return;
    }
    const JOBS: usize = 40;
    let db = TestDb::new().await;
    let stores = [db.store().await, db.store().await];
    let now = Utc::now();
    let jobs: Vec<textdesk::store::NewJob> = (0..JOBS)
        .map(|i| textdesk::store::NewJob {
            kind: textdesk::jobs::plan::DEFERRED_REPLY,
            dedupe_key: format!("proof:{i}"),
            conversation_id: None,
            customer_id: None,
            recipient: "+15035551234".into(),
            payload: json!({"body": format!("Job {i}")}),
            run_at: now - chrono::Duration::seconds(1),
            max_attempts: 5,
        })
        .collect();
    assert_eq!(stores[0].enqueue_jobs(&jobs).await.unwrap(), JOBS);
    assert_eq!(
        stores[1].enqueue_jobs(&jobs).await.unwrap(),
        0,
        "dedupe keys hold across instances"
    );

    let claimers = stores.iter().map(|store| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim_due_jobs(Utc::now(), 3, Duration::from_secs(60))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|j| j.id));
            }
        })
    });
    let claimed: Vec<Vec<i64>> = futures::future::join_all(claimers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let mut all: Vec<i64> = claimed.concat();
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(total, JOBS, "claims: {claimed:?}");
    assert_eq!(all.len(), JOBS, "a job was claimed twice: {claimed:?}");
}
