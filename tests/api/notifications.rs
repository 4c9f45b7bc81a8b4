//! Notifications: emails through the real aws-sdk-sesv2 client, reminders,
//! quiet hours, STOP and START, and the job queue.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use serde_json::{Value, json};
use textdesk::clock::{Clock, ManualClock};
use textdesk::domain::availability::{Interval, local_instant};
use textdesk::email::{Email, EmailError, EmailSender, OutboxEmail, SesEmail};
use textdesk::jobs::payload::JobPayload;
use textdesk::jobs::plan::{DEFERRED_REPLY, EMAIL, REMINDER};
use textdesk::jobs::runner::{JobRunner, RunnerSettings};
use textdesk::store::{BookingRecord, BookingStatus, JobStatus, NewJob, Reservation};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn ses_client(server: &MockServer) -> aws_sdk_sesv2::Client {
    let config = aws_sdk_sesv2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .endpoint_url(server.uri())
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(
            aws_sdk_sesv2::config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .build();
    aws_sdk_sesv2::Client::from_conf(config)
}

fn sample_email() -> Email {
    Email {
        to: vec!["crew1@rosecityjunk.example".into()],
        subject: "New booking for Crew 1: Tue Nov 24, 8-10am".into(),
        html: "<p>12 Oak St</p>".into(),
        text: "12 Oak St".into(),
        date: Some(Utc.with_ymd_and_hms(2026, 11, 28, 17, 5, 9).unwrap()),
        attach_photos: false,
        attachments: Vec::new(),
    }
}

#[tokio::test]
async fn emails_go_through_the_real_ses_client() {
    if crate::helpers::skipped() {
        return;
    }
    let ses = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/email/outbound-emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"MessageId": "ses-1"})))
        .mount(&ses)
        .await;
    let sender = SesEmail::new(ses_client(&ses), "desk@rosecityjunk.example".into());

    // A real provider email, rendered from the templates.
    let business = textdesk::config::business::BusinessConfig::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/business.toml"
    )))
    .unwrap();
    let job = textdesk::domain::quote::JobSpec::Junk(textdesk::domain::quote::JunkJob {
        tier: Some("half_truck".into()),
        ..Default::default()
    });
    let quote = textdesk::domain::quote::price(&business.pricing, &job, "Q1".into(), Utc::now()).unwrap();
    let notice = textdesk::templates::BookingNotice {
        headline: "New booking for Crew 1".into(),
        when: "Tue Nov 24, 8-10am",
        previous: None,
        address: "12 Oak St, Portland",
        customer: "Dana",
        phone: "+15035551234",
        job: "Based on about half a truck",
        quote: &quote,
        notes: Some("Side gate"),
        calendar_link: Some("https://www.google.com/calendar/event?eid=abc".into()),
    };
    let (subject, html, text) = textdesk::templates::booking_email(&business, &notice);
    let email = Email {
        to: vec!["crew1@rosecityjunk.example".into()],
        subject,
        html,
        text,
        date: None,
        attach_photos: false,
        attachments: Vec::new(),
    };
    assert_eq!(sender.send("email:1", &email).await.unwrap(), "ses-1");

    let request = &ses.received_requests().await.unwrap()[0];
    assert!(
        request.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256")
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["FromEmailAddress"], "desk@rosecityjunk.example");
    assert_eq!(
        body["Destination"]["ToAddresses"],
        json!(["crew1@rosecityjunk.example"])
    );
    let simple = &body["Content"]["Simple"];
    // SES sets its own Message-ID and Date; the job's identity rides along.
    assert_eq!(
        simple["Headers"],
        json!([{"Name": "X-Textdesk-Id", "Value": "<email_1@rosecityjunk.example>"}])
    );
    assert_eq!(
        simple["Subject"]["Data"],
        "New booking for Crew 1: Tue Nov 24, 8-10am"
    );
    let text = simple["Body"]["Text"]["Data"].as_str().unwrap();
    let html = simple["Body"]["Html"]["Data"].as_str().unwrap();
    for part in [
        "12 Oak St, Portland",
        "+15035551234",
        "Dana",
        "$350",
        "Side gate",
        "eid=abc",
    ] {
        assert!(text.contains(part), "text body lacks {part}: {text}");
        assert!(html.contains(part), "html body lacks {part}: {html}");
    }
    assert!(html.contains("<table") && !text.contains("<table"));
}

#[tokio::test]
async fn ses_throttling_is_retried_and_delivered_once() {
    if crate::helpers::skipped() {
        return;
    }
    let ses = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/email/outbound-emails"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-amzn-ErrorType", "TooManyRequestsException")
                .set_body_json(json!({"message": "Maximum sending rate exceeded."})),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&ses)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/email/outbound-emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"MessageId": "ses-2"})))
        .mount(&ses)
        .await;
    let sender = SesEmail::new(ses_client(&ses), "desk@example.com".into());
    assert_eq!(sender.send("email:2", &sample_email()).await.unwrap(), "ses-2");
    assert_eq!(ses.received_requests().await.unwrap().len(), 3);

    // Throttled past the SDK's own retries: the job queue retries later,
    // and the email is still sent once.
    let ses = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-amzn-ErrorType", "TooManyRequestsException")
                .set_body_json(json!({"message": "slow down"})),
        )
        .up_to_n_times(6)
        .with_priority(1)
        .mount(&ses)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"MessageId": "ses-3"})))
        .mount(&ses)
        .await;
    let sender = SesEmail::new(ses_client(&ses), "desk@example.com".into());
    assert!(matches!(
        sender.send("email:2", &sample_email()).await,
        Err(EmailError::Unavailable(_))
    ));

    let app = spawn_app().await;
    let runner = runner_for(&app, Arc::new(sender)).await;
    app.store
        .enqueue_jobs(&[NewJob {
            kind: EMAIL,
            dedupe_key: "email:test".into(),
            conversation_id: None,
            customer_id: None,
            recipient: "crew1@rosecityjunk.example".into(),
            payload: serde_json::to_value(sample_email()).unwrap(),
            // Well ahead, so the app's own runner (on the real clock) leaves it
            // to this test's runner.
            run_at: Utc::now() + chrono::Duration::days(10),
            max_attempts: 5,
        }])
        .await
        .unwrap();
    // The same effect enqueued again is not a second job.
    let again = app
        .store
        .enqueue_jobs(&[NewJob {
            kind: EMAIL,
            dedupe_key: "email:test".into(),
            conversation_id: None,
            customer_id: None,
            recipient: "x".into(),
            payload: json!({}),
            run_at: Utc::now(),
            max_attempts: 5,
        }])
        .await
        .unwrap();
    assert_eq!(again, 0);
    let later = Utc::now() + chrono::Duration::days(10) + chrono::Duration::hours(1);
    runner.run_due(later).await.unwrap();
    runner.run_due(later + chrono::Duration::hours(1)).await.unwrap();
    let done = app.store.jobs(&[JobStatus::Done], 10).await.unwrap();
    assert_eq!(
        done.len(),
        1,
        "{:?}",
        app.store.jobs(&[JobStatus::Pending, JobStatus::Dead], 10).await
    );
    assert_eq!(done[0].attempts, 2);
    let requests = ses.received_requests().await.unwrap().len();
    // 3 throttled for the direct call, 3 for the job's first attempt (the
    // SDK's own retries), then the job's second attempt is accepted: sent once.
    assert_eq!(requests, 7)
}

/// A runner on the app's database and clock, run by the test.
pub async fn runner_for(app: &TestApp, email: Arc<dyn EmailSender>) -> JobRunner {
    let services = app.services().await;
    JobRunner {
        store: services.store.clone(),
        desks: services.desks.clone(),
        email,
        settings: RunnerSettings {
            retry_base: Duration::from_secs(60),
            ..RunnerSettings::default()
        },
        media: textdesk::app::media_fetcher(&app.settings()),
        clock: services.clock.clone(),
    }
}

#[tokio::test]
async fn a_reminder_due_at_22_30_goes_out_at_8() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        business: Some(
            "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\ntimezone = \"America/Chicago\"\n".into(),
        ),
        ..Options::default()
    })
    .await;
    const DANA: &str = "+15035551234";
    app.text(DANA, "hi").await;
    app.wait_for_texts(1).await;
    app.wait_until_settled(DANA).await;
    let conversation = app.conversation(DANA).await.unwrap();
    let customer = app
        .store
        .turn_input(conversation, 5)
        .await
        .unwrap()
        .conversation
        .customer_id;

    // A confirmed booking far enough ahead that the app's own runner (on
    // the real clock) leaves its reminder alone.
    let tz = chrono_tz::America::Chicago;
    let day = NaiveDate::from_ymd_opt(2031, 3, 10).unwrap();
    let at = |d: NaiveDate, h, m| local_instant(tz, d, NaiveTime::from_hms_opt(h, m, 0).unwrap()).unwrap();
    let start = at(day, 10, 0);
    let record = BookingRecord {
        id: "tdtestbooking".into(),
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
    let due = at(day - chrono::Duration::days(1), 22, 30);
    app.store
        .enqueue_jobs(&[NewJob {
            kind: REMINDER,
            dedupe_key: "reminder:tdtestbooking:day_before".into(),
            conversation_id: Some(conversation),
            customer_id: Some(customer),
            recipient: DANA.into(),
            payload: json!({"booking_id": "tdtestbooking", "reminder": "day_before", "start": start,
                            "label": "Mon Mar 10, 10am", "total": "350"}),
            run_at: due,
            max_attempts: 5,
        }])
        .await
        .unwrap();
    let outbox = tempfile::tempdir().unwrap();
    let runner = runner_for(
        &app,
        Arc::new(OutboxEmail {
            dir: outbox.path().into(),
            from: "t@x".into(),
            clock: textdesk::clock::system(),
        }),
    )
    .await;

    runner.run_due(due).await.unwrap();
    let pending = app.store.jobs(&[JobStatus::Pending], 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].run_at, at(day, 8, 0), "deferred to 08:00 local");
    assert_eq!(
        pending[0].attempts, 0,
        "a quiet-hours deferral is not a failed attempt"
    );
    assert_eq!(app.sent_texts().await.len(), 1, "nothing sent at 22:30");

    runner.run_due(at(day, 8, 0)).await.unwrap();
    let sent = app.wait_for_texts(2).await;
    assert_eq!(
        sent[1].1,
        "Reminder from Rose City Junk Haulers: tomorrow, Mon Mar 10, 10am. Total $350. Reply C to confirm, R to reschedule or CANCEL BOOKING to cancel."
    );
    // Run again: the job is done and its text is never sent twice.
    runner.run_due(at(day, 9, 0)).await.unwrap();
    app.wait_until_idle().await;
    assert_eq!(app.sent_texts().await.len(), 2);
    let _ = Utc.timestamp_opt(0, 0);
}

/// 17:00 local the day before a job starting at `start`, and 08:00 local
/// that morning: the default reminder times, written out.
fn expected_reminders(app: &TestApp, start: chrono::DateTime<Utc>) -> Vec<chrono::DateTime<Utc>> {
    let tz = app.business.business.timezone;
    let day = start.with_timezone(&tz).date_naive();
    let local = |date: chrono::NaiveDate, h: u32| {
        date.and_hms_opt(h, 0, 0)
            .unwrap()
            .and_local_timezone(tz)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    };
    vec![local(day - chrono::Duration::days(1), 17), local(day, 8)]
}

#[tokio::test]
async fn a_booking_schedules_reminders_and_stop_and_start_suspend_and_restore_them() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        with_model: false,
        business: Some(
            "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\nowner_email = \"owner@example.com\"\n\
             [schedule]\nmin_notice_hours = 48\nhorizon_days = 14\n\
             [schedule.hours]\nmon = \"10:00-16:00\"\ntue = \"10:00-16:00\"\nwed = \"10:00-16:00\"\nthu = \"10:00-16:00\"\nfri = \"10:00-16:00\"\nsat = \"10:00-16:00\"\nsun = \"10:00-16:00\"\n\
             [[providers]]\nid = \"crew-1\"\nname = \"Crew 1\"\nemail = \"crew1@example.com\"\n"
                .into(),
        ),
        ..Options::default()
    })
    .await;
    const DANA: &str = "+15035551234";
    for (i, text) in ["hi", "3", "1", "12 Oak St", "1"].iter().enumerate() {
        app.text(DANA, text).await;
        app.wait_for_texts(i + 1).await;
    }
    app.wait_until_settled(DANA).await;
    let booking = app.store.bookings().await.unwrap().remove(0);
    let pending = app.store.jobs(&[JobStatus::Pending], 50).await.unwrap();
    let reminders: Vec<_> = pending.iter().filter(|j| j.kind == REMINDER).collect();
    // Pinned, not computed by the code under test: 17:00 the day before
    // and 08:00 the morning of (openings start at 10:00 or later).
    let expected = expected_reminders(&app, booking.slot.start);
    let got: Vec<_> = reminders.iter().map(|j| j.run_at).collect();
    assert_eq!(got, expected);
    // The crew was emailed (to the outbox: SES is not configured here).
    let emails: Vec<_> = app
        .store
        .jobs(&[JobStatus::Pending, JobStatus::Done, JobStatus::Running], 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == EMAIL)
        .collect();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].recipient, "crew1@example.com");
    assert!(
        emails[0].payload["subject"]
            .as_str()
            .unwrap()
            .starts_with("New booking for Crew 1")
    );

    app.text(DANA, "STOP").await;
    app.wait_until_settled(DANA).await;
    let suspended = app.store.jobs(&[JobStatus::Suspended], 50).await.unwrap();
    assert_eq!(
        suspended.iter().filter(|j| j.kind == REMINDER).count(),
        reminders.len()
    );
    assert!(
        app.store
            .jobs(&[JobStatus::Pending], 50)
            .await
            .unwrap()
            .iter()
            .all(|j| j.kind != REMINDER)
    );
    // The owner hears that a booked customer opted out.
    let alerts = app.store.alerts().await.unwrap();
    assert!(
        alerts.iter().any(|a| a.kind == "opted_out_with_booking"),
        "{alerts:?}"
    );

    app.text(DANA, "START").await;
    app.wait_until_settled(DANA).await;
    let restored = app.store.jobs(&[JobStatus::Pending], 50).await.unwrap();
    assert_eq!(
        restored.iter().filter(|j| j.kind == REMINDER).count(),
        reminders.len()
    );

    // Rescheduling moves the reminders; cancelling removes them.
    app.text(DANA, "R").await;
    app.wait_until_settled(DANA).await;
    // The current time is not offered again: two others remain.
    app.text(DANA, "2").await;
    app.wait_until_settled(DANA).await;
    let moved = app.store.bookings().await.unwrap().remove(0);
    assert_ne!(moved.slot.start, booking.slot.start);
    let now_pending = app.store.jobs(&[JobStatus::Pending], 50).await.unwrap();
    let moved_reminders: Vec<_> = now_pending.iter().filter(|j| j.kind == REMINDER).collect();
    let expected_moved = expected_reminders(&app, moved.slot.start);
    let got: Vec<_> = moved_reminders.iter().map(|j| j.run_at).collect();
    assert_eq!(got, expected_moved);
    for job in &moved_reminders {
        let start: chrono::DateTime<Utc> = job.payload["start"].as_str().unwrap().parse().unwrap();
        assert_eq!(start, moved.slot.start);
    }
    let cancelled = app.store.jobs(&[JobStatus::Cancelled], 50).await.unwrap();
    assert_eq!(
        cancelled.iter().filter(|j| j.kind == REMINDER).count(),
        reminders.len(),
        "the old reminders"
    );
    let subjects = |jobs: Vec<textdesk::store::Job>| -> Vec<String> {
        jobs.into_iter()
            .filter(|j| j.kind == EMAIL)
            .map(|j| j.payload["subject"].as_str().unwrap().to_string())
            .collect()
    };
    let all = [
        JobStatus::Pending,
        JobStatus::Done,
        JobStatus::Running,
        JobStatus::Dead,
    ];
    assert!(
        subjects(app.store.jobs(&all, 50).await.unwrap())
            .iter()
            .any(|s| s.starts_with("Booking moved for Crew 1"))
    );
    app.text(DANA, "please cancel my booking").await;
    app.wait_until_settled(DANA).await;
    assert!(
        app.store
            .jobs(&[JobStatus::Pending], 50)
            .await
            .unwrap()
            .iter()
            .all(|j| j.kind != REMINDER)
    );
    assert!(
        subjects(app.store.jobs(&all, 50).await.unwrap())
            .iter()
            .any(|s| s.starts_with("Booking cancelled for Crew 1"))
    );
}

type Sent = Arc<std::sync::Mutex<Vec<(String, String, String)>>>;

/// Twilio that records every message it accepts (slowly, so a kill can
/// land mid-send) and lists them back like the Messages list API.
struct RecordingTwilio {
    sent: Sent,
}

impl wiremock::Respond for RecordingTwilio {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        if request.method == wiremock::http::Method::GET {
            let to = request
                .url
                .query_pairs()
                .find(|(k, _)| k == "To")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            let messages: Vec<Value> = self
                .sent
                .lock()
                .unwrap()
                .iter()
                .filter(|(t, _, _)| *t == to)
                .map(|(to, body, sid)| json!({"sid": sid, "to": to, "body": body}))
                .collect();
            return ResponseTemplate::new(200).set_body_json(json!({"messages": messages}));
        }
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(&request.body).into_owned().collect();
        let mut sent = self.sent.lock().unwrap();
        let sid = format!("SMrec{:030}", sent.len());
        sent.push((form["To"].clone(), form["Body"].clone(), sid.clone()));
        ResponseTemplate::new(201)
            .set_body_json(json!({"sid": sid}))
            .set_delay(Duration::from_millis(60))
    }
}

#[tokio::test]
async fn a_kill_and_restart_with_due_jobs_loses_none_and_duplicates_none() {
    if crate::helpers::skipped() {
        return;
    }
    // Midday, so quiet hours never hold the jobs' texts back.
    let clock = ManualClock::at(today_at(chrono_tz::America::Chicago, 12, 0));
    let mut app = spawn_app_with(Options {
        default_fakes: false,
        business: Some(
            "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\ntimezone = \"America/Chicago\"\n"
                .into(),
        ),
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    mount_echo_claude(&app.anthropic).await;
    let sent: Sent = Default::default();
    Mock::given(wiremock::matchers::path_regex(r"/Messages\.json$"))
        .respond_with(RecordingTwilio { sent: sent.clone() })
        .mount(&app.twilio)
        .await;
    const DANA: &str = "+15035551234";
    app.text(DANA, "hi").await;
    app.wait_until_settled(DANA).await;
    let conversation = app.conversation(DANA).await.unwrap();
    let customer = app
        .store
        .turn_input(conversation, 5)
        .await
        .unwrap()
        .conversation
        .customer_id;

    const JOBS: usize = 30;
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|i| NewJob {
            kind: textdesk::jobs::plan::DEFERRED_REPLY,
            dedupe_key: format!("test:{i}"),
            conversation_id: Some(conversation),
            customer_id: Some(customer),
            recipient: DANA.into(),
            payload: json!({"body": format!("Job {i}")}),
            run_at: app.clock.now(),
            max_attempts: 5,
        })
        .collect();
    app.store.enqueue_jobs(&jobs).await.unwrap();

    // Kill once a few have gone out, most likely in the middle of a send.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sent.lock().unwrap().len() < 6 {
        assert!(std::time::Instant::now() < deadline, "jobs never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.crash().await;
    let at_kill = sent.lock().unwrap().len();
    if crate::POSTGRES {
        // On Postgres a restart takes over only expired leases (another
        // instance may be alive): move the store's clock past the dead
        // process's job and send leases.
        clock.advance(chrono::Duration::minutes(1));
    }
    app.restart().await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done = app.store.jobs(&[JobStatus::Done], 100).await.unwrap().len();
        if done == JOBS {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {done} of {JOBS} jobs finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.wait_until_idle().await;
    let sent = sent.lock().unwrap().clone();
    for i in 0..JOBS {
        let body = format!("Job {i}");
        let copies = sent.iter().filter(|(_, b, _)| *b == body).count();
        assert_eq!(
            copies, 1,
            "`{body}` was sent {copies} times (killed after {at_kill} sends)"
        );
    }
    assert!(
        app.store
            .jobs(&[JobStatus::Dead, JobStatus::Pending, JobStatus::Running], 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_outbox_writes_each_email_once() {
    if crate::helpers::skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxEmail {
        dir: dir.path().into(),
        from: "desk@example.com".into(),
        clock: textdesk::clock::system(),
    };
    assert!(outbox.idempotent());
    outbox
        .send("email:td1:New booking:1", &sample_email())
        .await
        .unwrap();
    // A job rerun after a crash sends the same key again: still one email.
    outbox
        .send("email:td1:New booking:1", &sample_email())
        .await
        .unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let eml = std::fs::read_to_string(file).unwrap();
    assert!(
        eml.contains("To: crew1@rosecityjunk.example") && eml.contains("Subject: New booking for Crew 1")
    );
    assert!(eml.contains("Content-Type: text/plain") && eml.contains("Content-Type: text/html"));
}

#[tokio::test]
async fn a_reply_held_by_quiet_hours_goes_out_when_the_clock_reaches_morning() {
    if crate::helpers::skipped() {
        return;
    }
    let tz = chrono_tz::America::Chicago;
    let clock = ManualClock::at(today_at(tz, 22, 30));
    let app = spawn_app_with(Options {
        with_model: false,
        business: Some(
            "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\ntimezone = \"America/Chicago\"\n\
             [quiet_hours]\nstart = \"21:00\"\nend = \"08:00\"\nreplies_allowed = false\n"
                .into(),
        ),
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    const DANA: &str = "+15035551234";
    app.text(DANA, "hi").await;

    // The reply waits as a job for 08:00 the next morning, local time.
    let tomorrow = clock.now().with_timezone(&tz).date_naive() + chrono::Duration::days(1);
    let morning = local_instant(tz, tomorrow, NaiveTime::from_hms_opt(8, 0, 0).unwrap()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let held = loop {
        let pending = app.store.jobs(&[JobStatus::Pending], 10).await.unwrap();
        if let Some(job) = pending.into_iter().find(|j| j.kind == DEFERRED_REPLY) {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "no reply was held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(held.run_at, morning);
    // The app's own runner reads the same clock: at 22:30 nothing goes out.
    app.wait_until_idle().await;
    assert!(app.sent_texts().await.is_empty());

    clock.set(morning + chrono::Duration::minutes(5));
    let sent = app.wait_for_texts(1).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, DANA);
    let JobPayload::DeferredReply(reply) = JobPayload::of(&held).unwrap() else {
        panic!("not a deferred reply: {held:?}");
    };
    assert_eq!(sent[0].1, reply.body);
}

#[tokio::test]
async fn a_job_whose_payload_does_not_read_is_dead_with_the_reason() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    const DANA: &str = "+15035551234";
    app.store
        .enqueue_jobs(&[NewJob {
            kind: REMINDER,
            dedupe_key: "reminder:tdbroken:day_before".into(),
            conversation_id: None,
            customer_id: None,
            recipient: DANA.into(),
            // No start, label or total: not a reminder this release can send.
            payload: json!({"booking_id": "tdbroken"}),
            run_at: app.clock.now(),
            max_attempts: 5,
        }])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let dead = loop {
        let dead = app.store.jobs(&[JobStatus::Dead], 10).await.unwrap();
        if let Some(job) = dead.into_iter().next() {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "the job never died");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead.attempts, 1, "not retried: it would fail the same way");
    let error = dead.last_error.unwrap_or_default();
    assert!(
        error.starts_with("a `reminder` job's payload cannot be read: missing field"),
        "{error}"
    );
    let alerts = app.store.alerts().await.unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == "dead_job" && a.detail.contains("payload cannot be read")),
        "{alerts:?}"
    );
    assert!(app.sent_texts().await.is_empty());
}

#[tokio::test]
async fn every_job_the_previous_release_stored_reads_as_a_typed_payload() {
    // An old release's SQLite file.
    if crate::helpers::skipped() || crate::helpers::sqlite_only() {
        return;
    }
    // The fixture was written by the release that read payloads by key:
    // follow-ups, a reminder and a crew email among its jobs.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-businesses.db");
    let app = spawn_app_with(Options {
        with_model: false,
        database: Some(fixture),
        ..Options::default()
    })
    .await;
    let every = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Dead,
        JobStatus::Cancelled,
        JobStatus::Suspended,
    ];
    let jobs = app.store.jobs(&every, 100).await.unwrap();
    assert_eq!(jobs.len(), 8, "{jobs:?}");
    let mut kinds = std::collections::BTreeSet::new();
    for job in &jobs {
        let payload = JobPayload::of(job).unwrap_or_else(|e| panic!("job {}: {e}", job.id));
        assert_eq!(payload.kind(), job.kind);
        kinds.insert(payload.kind());
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        vec![EMAIL, textdesk::jobs::plan::FOLLOW_UP, REMINDER]
    );
    let reminder = jobs.iter().find(|j| j.kind == REMINDER).unwrap();
    let JobPayload::Reminder(reminder) = JobPayload::of(reminder).unwrap() else {
        panic!("not a reminder");
    };
    assert_eq!(reminder.label, "Mon Nov 30, 8-10am");
    assert_eq!(reminder.total, "650".parse().unwrap());
}
