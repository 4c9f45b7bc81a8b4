//! Issue 8, parts 5, 7 and 8: the owner is told the truth (full numbers,
//! real calendar links, dated emails, both times of a move, each text
//! during a hand-off), the webhook refuses smuggled replays, and an opt-out
//! in plain words is honoured.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use textdesk::email::{Email, OutboxEmail};
use textdesk::jobs::plan::{EMAIL, REMINDER};
use textdesk::jobs::runner::{JobRunner, RunnerSettings};
use textdesk::store::{Direction, Job, JobStatus};
use textdesk::twilio::signature;

use crate::helpers::*;

const DANA: &str = "+15035551234";
const DANA_MASKED: &str = "+1503***1234";

/// A junk hauler with an owner to tell, one crew with an email, and a
/// `calendar_id` left in the file although Google is not configured.
fn business() -> String {
    "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\n\
     owner_email = \"owner@example.com\"\nowner_name = \"Maria\"\n\
     [schedule]\nmin_notice_hours = 48\nhorizon_days = 14\n\
     [[providers]]\nid = \"crew-1\"\nname = \"Crew 1\"\nemail = \"crew1@example.com\"\n\
     calendar_id = \"crew1@group.calendar.google.com\"\n"
        .into()
}

async fn guided_app(outbox: &Path) -> TestApp {
    spawn_app_with(Options {
        with_model: false,
        business: Some(business()),
        extra_vars: vec![("OUTBOX_DIR", outbox.display().to_string())],
        ..Options::default()
    })
    .await
}

/// Books Dana's half-truck job through the guided flow; returns the texts
/// sent so far.
async fn book(app: &TestApp) -> Vec<(String, String)> {
    for (i, text) in ["hi", "3", "1", "12 Oak St", "1"].iter().enumerate() {
        app.text(DANA, text).await;
        app.wait_for_texts(i + 1).await;
    }
    app.wait_until_settled(DANA).await;
    assert_eq!(
        app.store.bookings().await.unwrap().len(),
        1,
        "the guided flow booked"
    );
    app.sent_texts().await
}

const EVERY_STATUS: [JobStatus; 6] = [
    JobStatus::Pending,
    JobStatus::Running,
    JobStatus::Done,
    JobStatus::Dead,
    JobStatus::Suspended,
    JobStatus::Cancelled,
];

async fn email_jobs(app: &TestApp) -> Vec<Job> {
    app.store
        .jobs(&EVERY_STATUS, 200)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == EMAIL)
        .collect()
}

fn email_of(job: &Job) -> Email {
    serde_json::from_value(job.payload.clone()).unwrap()
}

/// Waits until the outbox holds a `.eml` file whose name contains `part`.
async fn wait_for_eml(dir: &Path, part: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                // Only finished emails: one being written is a hidden `.partial`.
                name.ends_with(".eml") && name.contains(part)
            });
        if let Some(path) = found {
            return std::fs::read_to_string(path).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no .eml named like {part} in the outbox"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The header block of an `.eml`, as (name, value) pairs.
fn headers(eml: &str) -> Vec<(String, String)> {
    let head = eml.split("\r\n\r\n").next().unwrap();
    head.split("\r\n")
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line");
            (name.to_string(), value.trim().to_string())
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn a_message_sid_with_a_smuggled_parameter_is_refused_and_nothing_is_stored() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let sid = "SM1342fe1b2c904d1ab04f0fc7a58abca9";
    let captured = TestApp::inbound_params(DANA, "how much for a couch?", sid);
    let url = format!("{PUBLIC_BASE_URL}/api/sms/inbound");
    let signature = signature::sign(AUTH_TOKEN, &url, &captured);
    assert_eq!(
        app.post_raw("/api/sms/inbound", &captured, Some(&signature))
            .await
            .status(),
        200
    );
    app.wait_for_texts(1).await;

    // The attack: `NumMedia=0` moved into the end of `MessageSid`. Names and
    // values are concatenated with no separator, so the captured signature
    // still verifies.
    let smuggled: Vec<(String, String)> = captured
        .iter()
        .filter(|(k, _)| k != "NumMedia")
        .map(|(k, v)| {
            if k == "MessageSid" {
                (k.clone(), format!("{v}NumMedia0"))
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    assert_eq!(signature::sign(AUTH_TOKEN, &url, &smuggled), signature);
    let response = app
        .post_raw("/api/sms/inbound", &smuggled, Some(&signature))
        .await;
    assert_eq!(response.status(), 400);

    // Without the SmsSid copies, the SID's shape alone refuses it.
    let bare: Vec<(String, String)> = smuggled
        .iter()
        .filter(|(k, _)| k != "SmsSid" && k != "SmsMessageSid")
        .cloned()
        .collect();
    let bare_signature = signature::sign(AUTH_TOKEN, &url, &bare);
    assert_eq!(
        app.post_raw("/api/sms/inbound", &bare, Some(&bare_signature))
            .await
            .status(),
        400
    );
    // A MessageSid that disagrees with its SmsSid copy.
    let mut disagreeing = TestApp::inbound_params(DANA, "again", "SM00000000000000000000000000000bad");
    disagreeing.iter_mut().find(|(k, _)| k == "SmsSid").unwrap().1 =
        "SM00000000000000000000000000000abc".into();
    assert_eq!(
        app.post_signed("/api/sms/inbound", &disagreeing).await.status(),
        400
    );

    app.wait_until_idle().await;
    let inbound = app
        .messages(DANA)
        .await
        .into_iter()
        .filter(|m| m.direction == Direction::Inbound)
        .count();
    assert_eq!(inbound, 1, "the replay was stored");
    assert_eq!(app.sent_texts().await.len(), 1, "the replay got a reply");
}

#[tokio::test]
async fn an_opt_out_in_words_with_a_booking_is_confirmed_once_and_the_owner_can_call() {
    if crate::helpers::skipped() {
        return;
    }
    let outbox = tempfile::tempdir().unwrap();
    let app = guided_app(outbox.path()).await;
    let before = book(&app).await.len();
    let booking = app.store.bookings().await.unwrap().remove(0);
    let reminders = |jobs: Vec<Job>| jobs.into_iter().filter(|j| j.kind == REMINDER).count();
    let planned = reminders(app.store.jobs(&[JobStatus::Pending], 50).await.unwrap());
    assert!(planned > 0);

    app.text(DANA, "Please stop texting me").await;
    let sent = app.wait_for_texts(before + 1).await;
    app.wait_until_settled(DANA).await;
    let confirmation = &sent[before].1;
    assert!(
        confirmation.contains("will not text you again") && confirmation.contains(&booking.label),
        "{confirmation}"
    );
    assert!(app.model_requests().await.is_empty());

    // No more texts: not to a second opt-out in words, nor to anything else.
    app.text(DANA, "seriously, don't text me again").await;
    app.text(DANA, "hello?").await;
    app.wait_until_settled(DANA).await;
    // The reminders are suspended, and a runner far in the future sends none.
    assert_eq!(
        reminders(app.store.jobs(&[JobStatus::Suspended], 50).await.unwrap()),
        planned
    );
    assert_eq!(
        reminders(app.store.jobs(&[JobStatus::Pending], 50).await.unwrap()),
        0
    );
    let services = app.services().await;
    let runner = JobRunner {
        store: services.store.clone(),
        desks: services.desks.clone(),
        email: Arc::new(OutboxEmail {
            dir: outbox.path().into(),
            from: "desk@example.com".into(),
            clock: textdesk::clock::system(),
        }),
        settings: RunnerSettings::default(),
        media: None,
        clock: services.clock.clone(),
    };
    runner
        .run_due(booking.slot.start - chrono::Duration::hours(1))
        .await
        .unwrap();
    app.wait_until_idle().await;
    assert_eq!(
        app.sent_texts().await.len(),
        before + 1,
        "{:?}",
        app.sent_texts().await
    );

    // The owner is told, with a number they can call.
    let alerts = app.store.alerts().await.unwrap();
    let alert = alerts
        .iter()
        .find(|a| a.kind == "opted_out_with_booking")
        .expect("an opted_out_with_booking alert");
    assert!(alert.detail.contains(DANA), "{}", alert.detail);
    assert!(!alert.detail.contains(DANA_MASKED), "{}", alert.detail);
    assert!(alert.detail.contains(&booking.label), "{}", alert.detail);
    let email = email_jobs(&app)
        .await
        .into_iter()
        .find(|j| j.dedupe_key.ends_with(":opted_out_with_booking"))
        .map(|j| email_of(&j))
        .expect("the owner's email");
    assert_eq!(email.to, vec!["owner@example.com".to_string()]);
    assert!(
        email.html.contains(&format!("href=\"tel:{DANA}\"")),
        "{}",
        email.html
    );
    assert!(email.text.contains(DANA) && !email.text.contains(DANA_MASKED));
}

#[tokio::test]
async fn booking_emails_link_no_calendar_that_is_not_google_carry_date_and_id_and_a_move_states_both_times() {
    if crate::helpers::skipped() {
        return;
    }
    let outbox = tempfile::tempdir().unwrap();
    let app = guided_app(outbox.path()).await;
    book(&app).await;
    let booked = app.store.bookings().await.unwrap().remove(0);
    let new_booking = email_jobs(&app)
        .await
        .into_iter()
        .find(|j| j.recipient == "crew1@example.com")
        .expect("the crew's email");
    let email = email_of(&new_booking);
    // The crew's calendar is textdesk's own table: there is no Google event.
    for body in [&email.html, &email.text] {
        assert!(!body.contains("Google Calendar"), "{body}");
        assert!(!body.contains("google.com/calendar"), "{body}");
    }

    // The written file is a dated message with an id.
    let eml = wait_for_eml(outbox.path(), "New_booking").await;
    let fields = headers(&eml);
    let date = header(&fields, "Date").expect("a Date header");
    let date = chrono::DateTime::parse_from_rfc2822(date).expect("an RFC 2822 date");
    let age = Utc::now().signed_duration_since(date);
    assert!(
        age >= chrono::Duration::zero() && age < chrono::Duration::minutes(5),
        "{date}"
    );
    // Dated when the turn planned it, not when the runner wrote it.
    assert_eq!(
        date.timestamp(),
        email.date.expect("dated when planned").timestamp()
    );
    let id = header(&fields, "Message-ID").expect("a Message-ID header");
    assert!(
        id.starts_with('<') && id.ends_with('>') && id.contains('@') && !id.contains(' '),
        "{id}"
    );
    assert_eq!(header(&fields, "To"), Some("crew1@example.com"));

    // Moved: the crew reads where it was and where it is now.
    app.text(DANA, "R").await;
    app.wait_until_settled(DANA).await;
    app.text(DANA, "3").await;
    app.wait_until_settled(DANA).await;
    let moved = app.store.bookings().await.unwrap().remove(0);
    assert_ne!(moved.slot.start, booked.slot.start);
    let email = email_jobs(&app)
        .await
        .into_iter()
        .map(|j| email_of(&j))
        .find(|e| e.subject.starts_with("Booking moved for Crew 1"))
        .expect("a booking moved email");
    for body in [&email.text, &email.html] {
        assert!(body.contains(&booked.label), "the old time is missing: {body}");
        assert!(body.contains(&moved.label), "the new time is missing: {body}");
    }
    assert!(
        email.text.contains(&format!("Was:      {}", booked.label)),
        "{}",
        email.text
    );
    assert!(
        email.text.contains(&format!("Now:      {}", moved.label)),
        "{}",
        email.text
    );
    let eml = wait_for_eml(outbox.path(), "Booking_moved").await;
    assert!(header(&headers(&eml), "Date").is_some());
}

#[tokio::test]
async fn a_customer_texting_during_a_hand_off_hears_once_and_the_owner_hears_every_text() {
    if crate::helpers::skipped() {
        return;
    }
    let outbox = tempfile::tempdir().unwrap();
    let app = guided_app(outbox.path()).await;
    app.text(DANA, "can I talk to a person").await;
    app.wait_for_texts(1).await;
    app.wait_until_settled(DANA).await;
    let conversation = app.conversation(DANA).await.unwrap();
    let state = app.store.turn_input(conversation, 5).await.unwrap().state;
    assert_eq!(state.name(), "HANDED_OFF");

    app.text(DANA, "hello? the couch is by the garage").await;
    let sent = app.wait_for_texts(2).await;
    assert_eq!(sent[1].1, "Maria has your message and will reply here.");
    app.wait_until_settled(DANA).await;
    app.text(DANA, "are you there").await;
    app.wait_until_settled(DANA).await;
    app.wait_until_idle().await;
    assert_eq!(app.sent_texts().await.len(), 2, "acknowledged twice within hours");

    let told: Vec<_> = app
        .store
        .alerts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "handed_off_text")
        .collect();
    assert_eq!(told.len(), 2);
    assert!(
        told[0].detail.contains("the couch is by the garage"),
        "{}",
        told[0].detail
    );
    assert!(told[1].detail.contains("are you there"), "{}", told[1].detail);
    assert!(told.iter().all(|a| a.detail.contains(DANA)), "{told:?}");
    assert_eq!(
        email_jobs(&app)
            .await
            .iter()
            .filter(|j| j.dedupe_key.ends_with(":handed_off_text"))
            .count(),
        2,
        "the owner is emailed each text"
    );

    // Hours later (as the stored texts tell it), one more acknowledgement.
    app.sql()
        .await
        .execute(
            "UPDATE messages SET created_at = $1 WHERE kind = 'handoff_ack'",
            &[(Utc::now() - chrono::Duration::hours(5)).into()],
        )
        .await;
    app.text(DANA, "still waiting").await;
    let sent = app.wait_for_texts(3).await;
    assert_eq!(sent[2].1, "Maria has your message and will reply here.");
}

#[tokio::test]
async fn a_google_booking_email_links_its_calendar_event() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        with_model: false,
        google: true,
        business: Some(business()),
        ..Options::default()
    })
    .await;
    book(&app).await;
    let booking = app.store.bookings().await.unwrap().remove(0);
    let email = email_jobs(&app)
        .await
        .into_iter()
        .find(|j| j.recipient == "crew1@example.com")
        .map(|j| email_of(&j))
        .expect("the crew's email");
    assert!(email.html.contains("Open in Google Calendar"), "{}", email.html);
    let eid = email
        .text
        .split("https://www.google.com/calendar/event?eid=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a calendar link in the text");
    use base64::Engine;
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(eid)
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        format!("{} crew1@group.calendar.google.com", booking.id)
    );
}
