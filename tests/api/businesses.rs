//! Several businesses in one process, routed by the number texted; live
//! reloads; the upgrade of a database written before businesses existed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use textdesk::domain::phone::E164;
use textdesk::store::ConversationId;

use crate::helpers::{BUSINESS_NUMBER, Options, TestApp, spawn_app_with};

const JUNK: &str = include_str!("../../business.toml");
const MAID: &str = include_str!("../../examples/maid.toml");
const MAID_NUMBER: &str = "+12175550187";
const CUSTOMER: &str = "+15555550123";

async fn two_businesses() -> TestApp {
    spawn_app_with(Options {
        business_files: vec![("junk.toml", JUNK.to_string()), ("maid.toml", MAID.to_string())],
        ..Options::default()
    })
    .await
}

/// Sends a text to `to` (not necessarily the junk number), signed.
async fn text_to(app: &TestApp, to: &str, from: &str, body: &str) -> reqwest::Response {
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let params: Vec<(String, String)> = TestApp::inbound_params(from, body, &sid)
        .into_iter()
        .map(|(k, v)| if k == "To" { (k, to.to_string()) } else { (k, v) })
        .collect();
    app.post_signed("/api/sms/inbound", &params).await
}

/// Every send Twilio was asked for, as its form (From, To, Body...).
async fn sends(app: &TestApp) -> Vec<HashMap<String, String>> {
    app.twilio
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().ends_with("/Messages.json"))
        .map(|r| form_urlencoded::parse(&r.body).into_owned().collect())
        .collect()
}

async fn wait_for_sends(app: &TestApp, n: usize) -> Vec<HashMap<String, String>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sent = sends(app).await;
        if sent.len() >= n {
            return sent;
        }
        assert!(Instant::now() < deadline, "expected {n} sends, got {sent:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_model_requests(app: &TestApp, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let requests = app.model_requests().await;
        if requests.len() >= n {
            return requests;
        }
        assert!(Instant::now() < deadline, "expected {n} model requests");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn system(request: &Value) -> String {
    crate::helpers::prompt_text(request)
}

fn tools(request: &Value) -> String {
    request["tools"].to_string()
}

async fn conversation_at(app: &TestApp, customer: &str, number: &str) -> Option<ConversationId> {
    app.store
        .find_conversation(&E164::parse(customer).unwrap(), &E164::parse(number).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn two_businesses_each_answer_from_their_own_number_with_their_own_prompt_and_catalog() {
    if crate::helpers::skipped() {
        return;
    }
    let app = two_businesses().await;

    assert_eq!(
        text_to(&app, BUSINESS_NUMBER, CUSTOMER, "junk in my garage")
            .await
            .status(),
        200
    );
    wait_for_sends(&app, 1).await;
    assert_eq!(
        text_to(&app, MAID_NUMBER, CUSTOMER, "need a house cleaned")
            .await
            .status(),
        200
    );
    let sent = wait_for_sends(&app, 2).await;

    // Each reply goes out from the number the customer wrote to.
    assert_eq!(sent[0]["From"], BUSINESS_NUMBER);
    assert_eq!(sent[0]["Body"], "Re: junk in my garage");
    assert_eq!(sent[1]["From"], MAID_NUMBER);
    assert_eq!(sent[1]["Body"], "Re: need a house cleaned");

    let requests = wait_for_model_requests(&app, 2).await;
    let junk = requests
        .iter()
        .find(|r| system(r).contains("Rose City Junk Haulers"))
        .expect("a request for the junk business");
    let maid = requests
        .iter()
        .find(|r| system(r).contains("Effingham Sparkle Maids"))
        .expect("a request for the maid business");
    assert!(!system(junk).contains("Effingham"), "{}", system(junk));
    assert!(!system(maid).contains("Rose City"), "{}", system(maid));
    // The tools' schemas carry each one's own catalog.
    assert!(tools(junk).contains("half_truck"), "{}", tools(junk));
    assert!(!tools(junk).contains("move_out"), "{}", tools(junk));
    assert!(tools(maid).contains("move_out"), "{}", tools(maid));
    assert!(!tools(maid).contains("half_truck"), "{}", tools(maid));

    // One customer, two businesses: two customers, two conversations.
    let at_junk = conversation_at(&app, CUSTOMER, BUSINESS_NUMBER).await.unwrap();
    let at_maid = conversation_at(&app, CUSTOMER, MAID_NUMBER).await.unwrap();
    assert_ne!(at_junk, at_maid);
    assert_eq!(
        app.store.conversation_business(at_junk).await.unwrap().as_deref(),
        Some("junk")
    );
    assert_eq!(
        app.store.conversation_business(at_maid).await.unwrap().as_deref(),
        Some("maid")
    );
}

#[tokio::test]
async fn a_stop_to_one_business_leaves_the_other_answering() {
    if crate::helpers::skipped() {
        return;
    }
    let app = two_businesses().await;

    assert_eq!(
        text_to(&app, BUSINESS_NUMBER, CUSTOMER, "STOP").await.status(),
        200
    );
    assert_eq!(
        text_to(&app, MAID_NUMBER, CUSTOMER, "hello maids").await.status(),
        200
    );
    let sent = wait_for_sends(&app, 1).await;
    assert_eq!(sent[0]["From"], MAID_NUMBER);
    assert_eq!(sent[0]["Body"], "Re: hello maids");

    // The junk business stays silent for this customer...
    assert_eq!(
        text_to(&app, BUSINESS_NUMBER, CUSTOMER, "hello junk")
            .await
            .status(),
        200
    );
    app.wait_until_settled(CUSTOMER).await;
    // ...while the maid business goes on answering.
    assert_eq!(
        text_to(&app, MAID_NUMBER, CUSTOMER, "still there?")
            .await
            .status(),
        200
    );
    let sent = wait_for_sends(&app, 2).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|s| s["From"] == MAID_NUMBER), "{sent:?}");
    assert_eq!(sent[1]["Body"], "Re: still there?");
}

#[tokio::test]
async fn a_text_to_a_number_no_business_claims_is_acknowledged_and_dropped() {
    if crate::helpers::skipped() {
        return;
    }
    let app = two_businesses().await;
    let unclaimed = "+15035550999";

    let response = text_to(&app, unclaimed, CUSTOMER, "anyone there?").await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(body.contains("<Response></Response>"), "{body}");
    assert_eq!(conversation_at(&app, CUSTOMER, unclaimed).await, None);

    // A later text to a claimed number is the only one answered.
    text_to(&app, MAID_NUMBER, CUSTOMER, "hello").await;
    let sent = wait_for_sends(&app, 1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["From"], MAID_NUMBER);
    assert!(
        app.model_requests()
            .await
            .iter()
            .all(|r| !last_user(r).contains("anyone there"))
    );
}

fn last_user(request: &Value) -> String {
    crate::helpers::last_user_text(request)
}

fn junk_with_rule(rule: &str) -> String {
    format!(
        "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"{BUSINESS_NUMBER}\"\nowner_email = \"owner@example.com\"\n\n[assistant]\nadditional_rules = [\"{rule}\"]\n"
    )
}

#[tokio::test]
async fn a_reload_with_a_good_edit_changes_the_next_model_requests_prompt() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        business_files: vec![("junk.toml", junk_with_rule("Always mention RULE-ONE."))],
        ..Options::default()
    })
    .await;
    app.text(CUSTOMER, "first").await;
    let requests = wait_for_model_requests(&app, 1).await;
    assert!(system(&requests[0]).contains("RULE-ONE"));

    let file = app.business_dir.as_ref().unwrap().join("junk.toml");
    std::fs::write(&file, junk_with_rule("Always mention RULE-TWO.")).unwrap();
    app.app.as_ref().unwrap().reload_configuration().await.unwrap();

    app.text(CUSTOMER, "second").await;
    let requests = wait_for_model_requests(&app, 2).await;
    let last = requests.last().unwrap();
    assert!(system(last).contains("RULE-TWO"), "{}", system(last));
    assert!(!system(last).contains("RULE-ONE"), "{}", system(last));
}

#[tokio::test]
async fn a_reload_with_a_bad_edit_keeps_the_old_configuration_and_alerts_the_owner() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        business_files: vec![("junk.toml", junk_with_rule("Always mention RULE-ONE."))],
        ..Options::default()
    })
    .await;
    let file = app.business_dir.as_ref().unwrap().join("junk.toml");
    std::fs::write(
        &file,
        format!(
            "{}reply_length = \"epic\"\n",
            junk_with_rule("Always mention RULE-TWO.")
        ),
    )
    .unwrap();
    let error = app
        .app
        .as_ref()
        .unwrap()
        .reload_configuration()
        .await
        .unwrap_err();
    assert!(
        error.contains("junk.toml:8:") && error.contains("assistant.reply_length"),
        "{error}"
    );

    app.text(CUSTOMER, "hello").await;
    let requests = wait_for_model_requests(&app, 1).await;
    assert!(
        system(&requests[0]).contains("RULE-ONE"),
        "{}",
        system(&requests[0])
    );
    assert!(!system(&requests[0]).contains("RULE-TWO"));

    let alerts = app.store.alerts().await.unwrap();
    let alert = alerts
        .iter()
        .find(|a| a.kind == "config_rejected")
        .expect("the owner is alerted");
    assert!(
        alert.detail.contains("assistant.reply_length"),
        "{}",
        alert.detail
    );
    let jobs = app
        .store
        .jobs(
            &[
                textdesk::store::JobStatus::Pending,
                textdesk::store::JobStatus::Done,
                textdesk::store::JobStatus::Running,
            ],
            50,
        )
        .await
        .unwrap();
    assert!(
        jobs.iter()
            .any(|j| j.kind == "email" && j.recipient == "owner@example.com"),
        "{jobs:?}"
    );
}

#[tokio::test]
async fn a_directory_with_one_number_claimed_twice_does_not_start() {
    if crate::helpers::skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), JUNK).unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        format!("[business]\nname = \"Copycat\"\nnumbers = [\"{BUSINESS_NUMBER}\"]\n"),
    )
    .unwrap();
    let err = textdesk::config::directory::BusinessDirectory::load(dir.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("b.toml:3:") && err.contains("a.toml:"), "{err}");
}

/// The first request of each turn asks for a tool, slowly; the second ends it.
struct SlowToolThenText {
    requests: std::sync::atomic::AtomicUsize,
}

impl wiremock::Respond for SlowToolThenText {
    fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
        let n = self.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n.is_multiple_of(2) {
            wiremock::ResponseTemplate::new(200)
                .set_body_json(crate::quotes::claude_tool(
                    &format!("t{n}"),
                    "record_job_details",
                    serde_json::json!({"size": "half_truck"}),
                ))
                // Room for the reload to land while this turn is in flight.
                .set_delay(Duration::from_millis(800))
        } else {
            wiremock::ResponseTemplate::new(200).set_body_json(crate::helpers::claude_text("Noted."))
        }
    }
}

#[tokio::test]
async fn a_turn_in_progress_finishes_on_the_configuration_it_started_with() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        business_files: vec![("junk.toml", junk_with_rule("Always mention RULE-ONE."))],
        default_fakes: false,
        ..Options::default()
    })
    .await;
    crate::helpers::mount_twilio_accepting(&app.twilio).await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/messages"))
        .respond_with(SlowToolThenText {
            requests: Default::default(),
        })
        .mount(&app.anthropic)
        .await;

    app.text(CUSTOMER, "half a truck of junk").await;
    // The turn has asked the model once: it started on RULE-ONE.
    wait_for_model_requests(&app, 1).await;
    let file = app.business_dir.as_ref().unwrap().join("junk.toml");
    std::fs::write(&file, junk_with_rule("Always mention RULE-TWO.")).unwrap();
    app.app.as_ref().unwrap().reload_configuration().await.unwrap();

    let requests = wait_for_model_requests(&app, 2).await;
    assert!(
        system(&requests[1]).contains("RULE-ONE"),
        "{}",
        system(&requests[1])
    );
    app.wait_for_texts(1).await;

    app.text(CUSTOMER, "and a couch").await;
    let requests = wait_for_model_requests(&app, 3).await;
    assert!(
        system(&requests[2]).contains("RULE-TWO"),
        "{}",
        system(&requests[2])
    );
}

/// Two businesses may both call a crew `crew-1`: they are two crews, and
/// one's booking never blocks (or shows in) the other's calendar.
#[tokio::test]
async fn same_named_crews_of_two_businesses_never_block_each_other() {
    if crate::helpers::skipped() {
        return;
    }
    use chrono::{TimeZone, Utc};
    use textdesk::domain::availability::Interval;
    use textdesk::store::{BookingRecord, BookingStatus, InboundMessage, Recorded, Reservation};

    let app = two_businesses().await;
    let mut conversations = Vec::new();
    for (business, to) in [("junk", BUSINESS_NUMBER), ("maid", MAID_NUMBER)] {
        let sms = InboundMessage {
            business_id: business.into(),
            channel_message_id: format!("SM{}", uuid::Uuid::new_v4().simple()),
            from: E164::parse(CUSTOMER).unwrap(),
            to: E164::parse(to).unwrap(),
            body: "hi".into(),
            media: vec![],
            params: serde_json::json!({}),
            opt_out_keyword: None,
            profile_name: None,
        };
        let (Recorded::New(id, _) | Recorded::Duplicate(id, _)) =
            app.store.record_inbound(&sms).await.unwrap();
        conversations.push(id);
    }
    let start = Utc.with_ymd_and_hms(2030, 6, 3, 16, 0, 0).unwrap();
    let slot = Interval {
        start,
        end: start + chrono::Duration::hours(2),
    };
    for (i, conversation) in conversations.iter().enumerate() {
        let booking = BookingRecord {
            id: format!("td-crews-{i}"),
            conversation_id: *conversation,
            provider_id: "crew-1".into(),
            calendar_id: "crew-1".into(),
            slot,
            label: "Mon Jun 3".into(),
            status: BookingStatus::Pending,
        };
        let reserved = app
            .store
            .reserve_booking(&booking, slot, Utc::now())
            .await
            .unwrap();
        assert!(
            matches!(reserved, Reservation::Reserved(_)),
            "business {i}: {reserved:?}"
        );
    }
    for business in ["junk", "maid"] {
        let busy = app
            .store
            .provider_bookings(business, "crew-1", slot, None)
            .await
            .unwrap();
        assert_eq!(busy.len(), 1, "{business} sees only its own crew's booking");
    }
}

#[tokio::test]
async fn a_renamed_business_id_leaves_its_conversations_unanswered_and_the_owner_is_told() {
    if crate::helpers::skipped() {
        return;
    }
    let app = two_businesses().await;
    text_to(&app, MAID_NUMBER, CUSTOMER, "Hi, how much for a deep clean?").await;
    wait_for_sends(&app, 1).await;

    // The owner gives the maid business an id of its own: its stored
    // conversations are under `maid` (the file's stem), which no file has now.
    let file = app.business_dir.as_ref().unwrap().join("maid.toml");
    let renamed = MAID.replacen("[business]\n", "[business]\nid = \"sparkle\"\n", 1);
    assert_ne!(renamed, MAID, "the example must start with [business]");
    std::fs::write(&file, renamed).unwrap();
    app.app.as_ref().unwrap().reload_configuration().await.unwrap();

    let alerts = app.store.alerts().await.unwrap();
    let alert = alerts
        .iter()
        .find(|a| a.kind == textdesk::store::AlertKind::UnansweredBusiness)
        .unwrap_or_else(|| panic!("no alert in {alerts:?}"));
    assert!(
        alert.detail.contains("`maid`") && alert.detail.contains("id = \"maid\""),
        "{}",
        alert.detail
    );
    // The junk business, still configured, raises nothing.
    assert!(!alerts.iter().any(|a| a.detail.contains("`junk`")), "{alerts:?}");
}
