//! Delivery receipts: Twilio's status callbacks for the texts we send,
//! signed, out of order and repeated; an undelivered reminder alerts the
//! owner in words, and `textdesk jobs` shows what became of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use textdesk::domain::delivery::DeliveryStatus;
use textdesk::email::OutboxEmail;
use textdesk::jobs::plan::{EMAIL, REMINDER};
use textdesk::store::{Direction, JobStatus, Message, ReceiptApplied, StatusReport};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::*;
use crate::notifications::runner_for;

const DANA: &str = "+15035551234";
const STATUS_PATH: &str = "/api/sms/status";

/// A fake Twilio that accepts every text with a SID of Twilio's own shape.
struct TwilioWithSids(AtomicUsize);

impl Respond for TwilioWithSids {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(201).set_body_json(json!({"sid": format!("SM{n:032x}"), "status": "queued"}))
    }
}

async fn app_with(business: Option<String>, with_model: bool) -> TestApp {
    let app = spawn_app_with(Options {
        default_fakes: false,
        with_model,
        business,
        ..Options::default()
    })
    .await;
    mount_echo_claude(&app.anthropic).await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/2010-04-01/Accounts/[^/]+/Messages\.json$"))
        .respond_with(TwilioWithSids(AtomicUsize::new(0)))
        .mount(&app.twilio)
        .await;
    app
}

fn callback(sid: &str, status: &str, error_code: Option<&str>) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("From", BUSINESS_NUMBER),
        ("To", DANA),
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("MessageStatus", status),
        ("SmsStatus", status),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(code) = error_code {
        params.push(("ErrorCode".into(), code.into()));
    }
    params
}

async fn report(app: &TestApp, sid: &str, status: &str, error_code: Option<&str>) {
    let response = app
        .post_signed(STATUS_PATH, &callback(sid, status, error_code))
        .await;
    assert_eq!(response.status(), 200, "a signed receipt is taken");
}

fn outbound(messages: &[Message], kind: &str) -> Message {
    messages
        .iter()
        .find(|m| m.direction == Direction::Outbound && m.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} text in {messages:?}"))
        .clone()
}

/// Dana texts and is answered; returns the reply as stored.
async fn answered(app: &TestApp) -> Message {
    app.text(DANA, "hi").await;
    app.wait_for_texts(1).await;
    app.wait_until_settled(DANA).await;
    outbound(&app.messages(DANA).await, "reply")
}

#[tokio::test]
async fn every_send_asks_twilio_for_a_delivery_receipt() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with(None, true).await;
    answered(&app).await;
    let requests = app.twilio.received_requests().await.unwrap();
    let form: HashMap<String, String> = form_urlencoded::parse(&requests[0].body).into_owned().collect();
    assert_eq!(
        form.get("StatusCallback").map(String::as_str),
        Some("https://desk.example.com/api/sms/status")
    );
}

#[tokio::test]
async fn receipts_out_of_order_and_repeated_move_a_text_forward_only() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with(None, true).await;
    let reply = answered(&app).await;
    let sid = reply.channel_message_id.clone().unwrap();
    assert_eq!(app.store.delivery_receipt(reply.id).await.unwrap(), None);

    // Delivered arrives before sent, and both arrive twice.
    report(&app, &sid, "delivered", None).await;
    report(&app, &sid, "sent", None).await;
    report(&app, &sid, "delivered", None).await;
    report(&app, &sid, "sent", None).await;
    assert_eq!(
        app.store.delivery_receipt(reply.id).await.unwrap(),
        Some((DeliveryStatus::Delivered, None)),
        "a late `sent` does not undo `delivered`"
    );
    // Each (text, status) was applied once: a third copy is a repeat.
    let again = |status| StatusReport {
        channel_message_id: sid.clone(),
        status,
        error_code: None,
    };
    assert!(matches!(
        app.store
            .apply_status_report(&again(DeliveryStatus::Sent))
            .await
            .unwrap(),
        ReceiptApplied::Repeated
    ));
    assert!(matches!(
        app.store
            .apply_status_report(&again(DeliveryStatus::Sending))
            .await
            .unwrap(),
        ReceiptApplied::Late {
            current: Some(DeliveryStatus::Delivered)
        }
    ));
    // Delivered is not taken back by a late failure.
    report(&app, &sid, "undelivered", Some("30003")).await;
    assert_eq!(
        app.store.delivery_receipt(reply.id).await.unwrap(),
        Some((DeliveryStatus::Delivered, None))
    );
    assert!(app.store.alerts().await.unwrap().is_empty(), "nothing to alert");
}

#[tokio::test]
async fn an_unsigned_or_forged_receipt_is_refused() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with(None, true).await;
    let reply = answered(&app).await;
    let params = callback(
        reply.channel_message_id.as_deref().unwrap(),
        "undelivered",
        Some("30006"),
    );
    assert_eq!(app.post_raw(STATUS_PATH, &params, None).await.status(), 403);
    let forged = signature_for(&params, "not-the-auth-token");
    assert_eq!(
        app.post_raw(STATUS_PATH, &params, Some(&forged)).await.status(),
        403
    );
    // Signed for another path (the inbound webhook's): refused too.
    let elsewhere =
        textdesk::twilio::signature::sign(AUTH_TOKEN, &format!("{PUBLIC_BASE_URL}/api/sms/inbound"), &params);
    assert_eq!(
        app.post_raw(STATUS_PATH, &params, Some(&elsewhere))
            .await
            .status(),
        403
    );
    assert_eq!(app.store.delivery_receipt(reply.id).await.unwrap(), None);
    assert!(app.store.alerts().await.unwrap().is_empty());

    // Signed but malformed: 400.
    let no_status: Vec<_> = params
        .iter()
        .filter(|(k, _)| k != "MessageStatus")
        .cloned()
        .collect();
    assert_eq!(app.post_signed(STATUS_PATH, &no_status).await.status(), 400);
    // Far bigger than any receipt: refused before it is read.
    let mut huge = params.clone();
    huge.push(("Padding".into(), "x".repeat(70 * 1024)));
    assert_eq!(app.post_signed(STATUS_PATH, &huge).await.status(), 413);
}

fn signature_for(params: &[(String, String)], token: &str) -> String {
    textdesk::twilio::signature::sign(token, &format!("{PUBLIC_BASE_URL}{STATUS_PATH}"), params)
}

#[tokio::test]
async fn a_receipt_for_a_text_we_never_sent_is_acknowledged_and_ignored() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with(None, true).await;
    let reply = answered(&app).await;
    let stranger = "SMffffffffffffffffffffffffffffffff";
    report(&app, stranger, "undelivered", Some("30006")).await;
    // The inbound text's own SID is not a text we sent either.
    let inbound = app
        .messages(DANA)
        .await
        .into_iter()
        .find(|m| m.direction == Direction::Inbound)
        .unwrap();
    report(
        &app,
        inbound.channel_message_id.as_deref().unwrap(),
        "failed",
        Some("30005"),
    )
    .await;
    assert!(app.store.alerts().await.unwrap().is_empty());
    for message in app.messages(DANA).await {
        assert_eq!(app.store.delivery_receipt(message.id).await.unwrap(), None);
    }
    assert!(matches!(
        app.store
            .apply_status_report(&StatusReport {
                channel_message_id: stranger.into(),
                status: DeliveryStatus::Sent,
                error_code: None,
            })
            .await
            .unwrap(),
        ReceiptApplied::UnknownMessage
    ));
    assert_eq!(reply.status, "sent");
}

fn booking_business() -> String {
    "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\n\
     owner_email = \"owner@example.com\"\n\
     [schedule]\nmin_notice_hours = 48\nhorizon_days = 14\n\
     [[providers]]\nid = \"crew-1\"\nname = \"Crew 1\"\nemail = \"crew1@example.com\"\n"
        .into()
}

#[tokio::test]
async fn an_undelivered_reminder_alerts_the_owner_in_words_and_shows_in_the_job_list() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with(Some(booking_business()), false).await;
    for (i, text) in ["hi", "3", "1", "12 Oak St", "1"].iter().enumerate() {
        app.text(DANA, text).await;
        app.wait_for_texts(i + 1).await;
    }
    app.wait_until_settled(DANA).await;
    let booking = app.store.bookings().await.unwrap().remove(0);

    // The day-before reminder, run at its own time by a runner on the
    // app's database.
    let reminder = app
        .store
        .jobs(&[JobStatus::Pending], 50)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.kind == REMINDER)
        .expect("the booking scheduled a reminder");
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
    let texts_before = app.sent_texts().await.len();
    runner.run_due(reminder.run_at).await.unwrap();
    app.wait_for_texts(texts_before + 1).await;
    let sms = outbound(&app.messages(DANA).await, "reminder");
    let sid = sms.channel_message_id.clone().expect("the reminder was sent");

    report(&app, &sid, "undelivered", Some("30006")).await;
    // Late and repeated: no second alert, no change.
    report(&app, &sid, "sent", None).await;
    report(&app, &sid, "undelivered", Some("30006")).await;
    assert_eq!(
        app.store.delivery_receipt(sms.id).await.unwrap(),
        Some((DeliveryStatus::Undelivered, Some(30006)))
    );
    let alerts: Vec<_> = app
        .store
        .alerts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "text_undelivered")
        .collect();
    assert_eq!(alerts.len(), 1, "one alert per undelivered text: {alerts:?}");
    let detail = &alerts[0].detail;
    assert!(
        detail.contains("reminder")
            && detail.contains(DANA)
            && detail.contains("landline or its carrier is unreachable")
            && detail.contains("may not know about their booking")
            && detail.contains(&booking.label),
        "{detail}"
    );

    // The owner is emailed, naming the customer.
    let emails: Vec<_> = app
        .store
        .jobs(
            &[
                JobStatus::Pending,
                JobStatus::Running,
                JobStatus::Done,
                JobStatus::Dead,
            ],
            200,
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == EMAIL && j.dedupe_key.ends_with(":text_undelivered"))
        .collect();
    assert_eq!(emails.len(), 1, "{emails:?}");
    let email: textdesk::email::Email = serde_json::from_value(emails[0].payload.clone()).unwrap();
    assert_eq!(email.to, vec!["owner@example.com".to_string()]);
    assert!(
        email.text.contains("landline") && email.text.contains(DANA),
        "{}",
        email.text
    );

    // `textdesk jobs` lists the done reminder because its text did not arrive.
    let config = outbox.path().join("business.toml");
    std::fs::write(&config, booking_business()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_textdesk"))
        .arg("jobs")
        .current_dir(outbox.path())
        .env("DATABASE_URL", &app.database_url)
        .env("BUSINESS_CONFIG", &config)
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = listed
        .lines()
        .find(|l| l.contains("reminder") && l.contains("done"))
        .unwrap_or_else(|| panic!("the undelivered reminder is listed:\n{listed}"));
    assert!(line.contains("undelivered: the number is a landline"), "{line}");
}

#[tokio::test]
async fn a_receipt_saying_opted_out_marks_the_customer_opted_out() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with(None, true).await;
    let reply = answered(&app).await;
    report(
        &app,
        reply.channel_message_id.as_deref().unwrap(),
        "failed",
        Some("21610"),
    )
    .await;
    let conversation = app.conversation(DANA).await.unwrap();
    let turn = app.store.turn_input(conversation, 5).await.unwrap();
    assert!(turn.conversation.opted_out);
    let alerts = app.store.alerts().await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].detail.contains("opted out") && alerts[0].detail.contains(DANA),
        "{}",
        alerts[0].detail
    );
}
