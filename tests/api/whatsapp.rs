//! WhatsApp through Twilio: the same webhook and Messages API, `whatsapp:`
//! addresses both ways, no GSM-7 rewrite, STOP confirmed by us, and the
//! 24-hour window judged when a text is sent (templates after it).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime};
use serde_json::{Value, json};
use textdesk::domain::availability::{Interval, local_instant};
use textdesk::domain::phone::E164;
use textdesk::email::OutboxEmail;
use textdesk::jobs::plan::{EMAIL, REMINDER};
use textdesk::store::{BookingRecord, BookingStatus, JobStatus, NewJob, Reservation};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;
use crate::notifications::runner_for;

const DANA: &str = "whatsapp:+15035551234";
const SENDER: &str = "whatsapp:+15035550199";
const REMINDER_SID: &str = "HX0123456789abcdef0123456789abcdef";
/// The owner's greeting, with a curly apostrophe and an emoji that SMS
/// would rewrite or pay UCS-2 for; WhatsApp carries them as written.
const GREETING: &str = "Hi! You\u{2019}re texting Rose City Junk Haulers \u{1F69A}";

fn business(templates: &str) -> String {
    format!(
        r#"
[business]
name = "Rose City Junk Haulers"
phone = "+15035550142"
numbers = ["{SENDER}"]
timezone = "America/Los_Angeles"
owner_email = "owner@example.com"

[assistant]
greeting = "{GREETING}"

[schedule]
min_notice_hours = 0
horizon_days = 14
arrival_window_minutes = 0

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
email = "crew1@example.com"
{templates}
"#
    )
}

async fn whatsapp_app(templates: &str) -> TestApp {
    spawn_app_with(Options {
        with_model: false,
        business: Some(business(templates)),
        ..Options::default()
    })
    .await
}

/// A WhatsApp message as Twilio posts it.
fn whatsapp_params(from: &str, to: &str, body: &str) -> Vec<(String, String)> {
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let mut params = TestApp::inbound_params(from, body, &sid);
    for (key, value) in params.iter_mut() {
        if key == "To" {
            *value = to.to_string();
        }
    }
    params.push(("ProfileName".into(), "Dana Wu".into()));
    params.push(("WaId".into(), "15035551234".into()));
    params
}

async fn whatsapp(app: &TestApp, body: &str) {
    let response = app
        .post_signed("/api/sms/inbound", &whatsapp_params(DANA, SENDER, body))
        .await;
    assert_eq!(response.status(), 200);
}

/// Every form the fake Twilio was asked to send, whole (a template has no
/// `Body`).
async fn sent_forms(app: &TestApp) -> Vec<HashMap<String, String>> {
    app.twilio
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/Messages.json"))
        .map(|r| form_urlencoded::parse(&r.body).into_owned().collect())
        .collect()
}

async fn wait_for_forms(app: &TestApp, n: usize) -> Vec<HashMap<String, String>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let sent = sent_forms(app).await;
        if sent.len() >= n {
            return sent;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {n} sends, got {sent:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Sends each text and waits for its reply; returns the reply bodies.
async fn converse(app: &TestApp, texts: &[&str]) -> Vec<String> {
    let already = sent_forms(app).await.len();
    for (i, text) in texts.iter().enumerate() {
        whatsapp(app, text).await;
        wait_for_forms(app, already + i + 1).await;
    }
    sent_forms(app)
        .await
        .into_iter()
        .map(|f| f["Body"].clone())
        .collect()
}

async fn conversation(app: &TestApp) -> textdesk::store::ConversationId {
    app.store
        .find_conversation(
            &E164::parse_address(DANA).unwrap(),
            &E164::parse_address(SENDER).unwrap(),
        )
        .await
        .unwrap()
        .expect("the WhatsApp conversation is stored")
}

#[tokio::test]
async fn a_whatsapp_conversation_goes_from_first_text_to_booked() {
    if crate::helpers::skipped() {
        return;
    }
    let app = whatsapp_app("").await;
    let sent = converse(&app, &["hi", "3", "1", "12 Oak St, Portland"]).await;
    assert!(
        sent[0].starts_with(GREETING),
        "the greeting reaches WhatsApp unrewritten: {}",
        sent[0]
    );
    assert!(
        sent.iter().all(|body| !body.contains("What name")),
        "ProfileName is the customer's name, so it is not asked: {sent:?}"
    );
    let openings = sent.last().unwrap();
    assert!(openings.contains("1) "), "{openings}");
    let sent = converse(&app, &["1"]).await;
    let bookings = app.store.bookings().await.unwrap();
    assert_eq!(bookings.len(), 1, "{:?}", sent.last());
    assert_eq!(bookings[0].status, BookingStatus::Confirmed);
    assert!(sent.last().unwrap().contains(&bookings[0].label));

    // Every reply went from the sender Dana wrote to, to her WhatsApp address.
    for form in sent_forms(&app).await {
        assert_eq!(form["From"], SENDER);
        assert_eq!(form["To"], DANA);
        assert!(!form.contains_key("ContentSid"), "inside the window: free-form");
    }

    // The crew's email names her by her WhatsApp profile.
    let conversation = conversation(&app).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let emails = loop {
        let emails: Vec<_> = app
            .store
            .jobs(&[JobStatus::Pending, JobStatus::Running, JobStatus::Done], 50)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.kind == EMAIL && j.conversation_id == Some(conversation))
            .collect();
        if !emails.is_empty() || std::time::Instant::now() > deadline {
            break emails;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let body = emails[0].payload["text"].as_str().unwrap();
    assert!(body.contains("Customer: Dana Wu,"), "{body}");
}

#[tokio::test]
async fn a_from_and_to_of_different_channels_is_refused_and_nothing_is_stored() {
    if crate::helpers::skipped() {
        return;
    }
    let app = whatsapp_app("").await;
    for (from, to) in [(DANA, BUSINESS_NUMBER), ("+15035551234", SENDER)] {
        let response = app
            .post_signed("/api/sms/inbound", &whatsapp_params(from, to, "hi"))
            .await;
        assert_eq!(response.status(), 400, "{from} -> {to}");
    }
    for (from, to) in [(DANA, BUSINESS_NUMBER), ("+15035551234", SENDER)] {
        let found = app
            .store
            .find_conversation(
                &E164::parse_address(from).unwrap(),
                &E164::parse_address(to).unwrap(),
            )
            .await
            .unwrap();
        assert!(found.is_none(), "{from} -> {to} was stored");
    }
    assert!(sent_forms(&app).await.is_empty());
    // The same addresses, each on its own channel, are accepted: what was
    // refused is the crossing, not the addresses.
    whatsapp(&app, "hi").await;
    let sent = wait_for_forms(&app, 1).await;
    assert_eq!((sent[0]["From"].as_str(), sent[0]["To"].as_str()), (SENDER, DANA));
}

#[tokio::test]
async fn stop_start_and_help_work_on_whatsapp() {
    if crate::helpers::skipped() {
        return;
    }
    let app = whatsapp_app("").await;
    whatsapp(&app, "HELP").await;
    let sent = wait_for_forms(&app, 1).await;
    assert!(sent[0]["Body"].contains("Reply STOP to opt out"), "{:?}", sent[0]);
    assert_eq!(sent[0]["To"], DANA);

    // WhatsApp has no Advanced Opt-Out to confirm STOP: we do, once.
    whatsapp(&app, "STOP").await;
    let sent = wait_for_forms(&app, 2).await;
    assert_eq!(sent[1]["To"], DANA);
    assert_eq!(sent[1]["From"], SENDER);
    let conversation = conversation(&app).await;
    assert!(
        app.store
            .turn_input(conversation, 5)
            .await
            .unwrap()
            .conversation
            .opted_out
    );

    whatsapp(&app, "are you there?").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while app
        .store
        .messages(conversation)
        .await
        .unwrap()
        .iter()
        .any(|m| m.status == "pending")
    {
        assert!(std::time::Instant::now() < deadline, "the text was never handled");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        sent_forms(&app).await.len(),
        2,
        "an opted-out customer got a text"
    );

    // HELP is answered even now: WhatsApp answers nothing itself.
    whatsapp(&app, "HELP").await;
    let sent = wait_for_forms(&app, 3).await;
    assert!(sent[2]["Body"].contains("Reply STOP to opt out"), "{:?}", sent[2]);
    assert_eq!(sent[2]["To"], DANA);

    // START is confirmed by us too, and the customer is answered again.
    whatsapp(&app, "START").await;
    let sent = wait_for_forms(&app, 4).await;
    assert!(
        sent[3]["Body"].contains("you will get our texts again"),
        "{:?}",
        sent[3]
    );
    whatsapp(&app, "I need a couch hauled").await;
    let sent = wait_for_forms(&app, 5).await;
    assert_eq!(sent[4]["To"], DANA);
    assert!(
        !sent[4]["Body"].contains("you will get our texts again"),
        "{:?}",
        sent[4]
    );
    assert!(
        !app.store
            .turn_input(conversation, 5)
            .await
            .unwrap()
            .conversation
            .opted_out
    );
}

/// A confirmed booking for the WhatsApp customer and its reminder, due in
/// daytime years from now (long after her last message).
async fn reminder_due_after_the_window(app: &TestApp) -> chrono::DateTime<chrono::Utc> {
    whatsapp(app, "hi").await;
    wait_for_forms(app, 1).await;
    let conversation = conversation(app).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while app
        .store
        .messages(conversation)
        .await
        .unwrap()
        .iter()
        .any(|m| ["pending", "queued", "sending"].contains(&m.status.as_str()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first reply never settled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let customer = app
        .store
        .turn_input(conversation, 5)
        .await
        .unwrap()
        .conversation
        .customer_id;
    let tz = chrono_tz::America::Los_Angeles;
    let day = NaiveDate::from_ymd_opt(2031, 3, 10).unwrap();
    let start = local_instant(tz, day, NaiveTime::from_hms_opt(10, 0, 0).unwrap()).unwrap();
    let record = BookingRecord {
        id: "tdwhatsappbooking".into(),
        conversation_id: conversation,
        provider_id: "crew-1".into(),
        calendar_id: "crew-1".into(),
        slot: Interval {
            start,
            end: start + chrono::Duration::hours(2),
        },
        label: "Mon Mar 10, 10am".into(),
        status: BookingStatus::Pending,
    };
    assert!(matches!(
        app.store
            .reserve_booking(&record, record.slot, chrono::Utc::now())
            .await
            .unwrap(),
        Reservation::Reserved(_)
    ));
    app.store
        .update_booking(&record.id, BookingStatus::Confirmed, None)
        .await
        .unwrap();
    let due = local_instant(
        tz,
        day - chrono::Duration::days(1),
        NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
    )
    .unwrap();
    app.store
        .enqueue_jobs(&[NewJob {
            kind: REMINDER,
            dedupe_key: "reminder:tdwhatsappbooking:day_before".into(),
            conversation_id: Some(conversation),
            customer_id: Some(customer),
            recipient: DANA.into(),
            payload: json!({"booking_id": "tdwhatsappbooking", "reminder": "day_before", "start": start,
                            "label": "Mon Mar 10, 10am", "total": "350"}),
            run_at: due,
            max_attempts: 5,
        }])
        .await
        .unwrap();
    due
}

async fn run_jobs_at(app: &TestApp, at: chrono::DateTime<chrono::Utc>) {
    let outbox = tempfile::tempdir().unwrap();
    let runner = runner_for(
        app,
        Arc::new(OutboxEmail {
            dir: outbox.path().into(),
            from: "t@x".into(),
            clock: textdesk::clock::system(),
        }),
    )
    .await;
    runner.run_due(at).await.unwrap();
}

#[tokio::test]
async fn a_reminder_after_the_window_goes_as_the_approved_template() {
    if crate::helpers::skipped() {
        return;
    }
    let app = whatsapp_app(&format!("[whatsapp.templates]\nreminder = \"{REMINDER_SID}\"\n")).await;
    let due = reminder_due_after_the_window(&app).await;
    run_jobs_at(&app, due).await;

    let sent = wait_for_forms(&app, 2).await;
    let reminder = &sent[1];
    assert_eq!(reminder["ContentSid"], REMINDER_SID);
    assert!(
        !reminder.contains_key("Body"),
        "free-form text outside the window: {reminder:?}"
    );
    assert_eq!(reminder["From"], SENDER);
    assert_eq!(reminder["To"], DANA);
    let variables: Value = serde_json::from_str(&reminder["ContentVariables"]).unwrap();
    assert_eq!(variables["1"], "Rose City Junk Haulers");
    let text = variables["2"].as_str().unwrap();
    assert!(
        text.contains("Mon Mar 10, 10am") && text.contains("$350"),
        "{text}"
    );
    let done = app.store.jobs(&[JobStatus::Done], 50).await.unwrap();
    assert!(done.iter().any(|j| j.kind == REMINDER), "{done:?}");
}

#[tokio::test]
async fn with_no_template_the_owner_is_alerted_and_nothing_is_sent() {
    if crate::helpers::skipped() {
        return;
    }
    let app = whatsapp_app("").await;
    let due = reminder_due_after_the_window(&app).await;
    run_jobs_at(&app, due).await;
    // Run again later: the reminder is not retried.
    run_jobs_at(&app, due + chrono::Duration::hours(2)).await;

    assert_eq!(sent_forms(&app).await.len(), 1, "only the first reply went out");
    let alerts = app.store.alerts().await.unwrap();
    let window: Vec<_> = alerts.iter().filter(|a| a.kind == "whatsapp_window").collect();
    assert_eq!(window.len(), 1, "{alerts:?}");
    assert!(
        window[0].detail.contains("[whatsapp.templates] reminder"),
        "{}",
        window[0].detail
    );
    let emails = app
        .store
        .jobs(&[JobStatus::Pending, JobStatus::Running, JobStatus::Done], 50)
        .await
        .unwrap();
    assert!(
        emails
            .iter()
            .any(|j| j.kind == EMAIL && j.payload.to_string().contains("24 hours")),
        "the owner is emailed: {emails:?}"
    );
    let reminders: Vec<_> = app
        .store
        .jobs(
            &[
                JobStatus::Pending,
                JobStatus::Running,
                JobStatus::Done,
                JobStatus::Cancelled,
            ],
            50,
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == REMINDER)
        .collect();
    assert_eq!(reminders[0].status, JobStatus::Cancelled, "{reminders:?}");
}

#[tokio::test]
async fn twilio_63016_alerts_the_owner_and_is_not_retried() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        with_model: false,
        default_fakes: false,
        business: Some(business("")),
        ..Options::default()
    })
    .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/2010-04-01/Accounts/[^/]+/Messages\.json$"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 63016,
            "message": "Failed to send freeform message because you are outside the allowed window.",
        })))
        .mount(&app.twilio)
        .await;
    whatsapp(&app, "hi").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let alert = loop {
        let alerts = app.store.alerts().await.unwrap();
        if let Some(a) = alerts.into_iter().find(|a| a.kind == "whatsapp_window") {
            break a;
        }
        assert!(std::time::Instant::now() < deadline, "no alert");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(alert.detail.contains("63016"), "{}", alert.detail);
    // Once the refusal is recorded the send is over: no retry can follow.
    let conversation = conversation(&app).await;
    while !app
        .store
        .messages(conversation)
        .await
        .unwrap()
        .iter()
        .any(|m| m.status == "failed")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the refusal was never recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(sent_forms(&app).await.len(), 1, "a 63016 is never retried");
}
