//! Issue 10 part 8: approval before sending. A reply the policy holds
//! reaches the customer only through the owner's Approve or Edit-and-send,
//! once; Reject and the timeout send nothing.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use textdesk::clock::{Clock, ManualClock};
use textdesk::http::owner::password::set_owner_password;
use textdesk::store::{AlertKind, ConversationId, Direction, Message};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::helpers::*;
use crate::quotes::{ScriptedClaude, claude_tool};

const PASSWORD: &str = "correct horse battery";
const DANA: &str = "+15035551234";

fn business(assistant: &str) -> String {
    format!(
        "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\ntimezone = \"America/Chicago\"\n\n[assistant]\n{assistant}\n"
    )
}

/// Claude records half a truck, prices it ($350 for the test business) and
/// says so; then `later` for every further request.
fn quoting_script(later: &str) -> Vec<Value> {
    vec![
        claude_tool("t1", "record_job_details", json!({"size": "half_truck"})),
        claude_tool("t2", "get_quote", json!({})),
        claude_text("For about half a truck it's $350, all in. Want to book?"),
        claude_text(later),
    ]
}

async fn app_with(assistant: &str, script: Vec<Value>, clock: Option<ManualClock>) -> TestApp {
    app_of(business(assistant), script, clock).await
}

/// As [`app_with`], for a whole `business.toml`.
async fn app_of(business: String, script: Vec<Value>, clock: Option<ManualClock>) -> TestApp {
    let app = spawn_app_with(Options {
        default_fakes: false,
        business: Some(business),
        clock,
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ScriptedClaude::new(script))
        .mount(&app.anthropic)
        .await;
    set_owner_password(app.console().await.as_ref(), PASSWORD)
        .await
        .unwrap();
    app
}

/// Midday in the test business's zone: quiet hours hold nothing back.
fn midday() -> ManualClock {
    ManualClock::at(today_at(chrono_tz::America::Chicago, 12, 0))
}

fn held(messages: &[Message]) -> Option<&Message> {
    messages
        .iter()
        .find(|m| m.direction == Direction::Outbound && m.status == "held")
}

/// Texts DANA, waits for the turn, and returns the reply it held.
async fn text_and_hold(app: &TestApp, body: &str) -> (ConversationId, Message) {
    app.text(DANA, body).await;
    app.wait_until_settled(DANA).await;
    // The held reply is stored before the turn's lease is released: wait
    // for that too, or the owner's decision meets `Busy`.
    app.wait_until_idle().await;
    let messages = app.messages(DANA).await;
    let reply = held(&messages)
        .unwrap_or_else(|| panic!("no held reply in {messages:?}"))
        .clone();
    (app.conversation(DANA).await.unwrap(), reply)
}

async fn alerts_of(app: &TestApp, kind: AlertKind) -> Vec<String> {
    app.store
        .alerts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == kind)
        .map(|a| a.detail)
        .collect()
}

/// Waits until nothing is left that could send (no lease, no text
/// queued or mid-send, no job due) before counting sends.
async fn settle(app: &TestApp) {
    app.wait_until_idle().await;
}

/// A signed-in owner's browser: keeps the session cookie, follows no
/// redirects.
struct Owner {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Owner {
    async fn log_in(app: &TestApp) -> Self {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap();
        let form = http
            .get(format!("{}/owner/login", app.address))
            .send()
            .await
            .unwrap();
        let cookie = session_cookie(&form).expect("a session cookie");
        let csrf = csrf_of(&form.text().await.unwrap());
        let login = http
            .post(format!("{}/owner/login", app.address))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str()), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), StatusCode::SEE_OTHER);
        let cookie = session_cookie(&login).unwrap_or(cookie);
        let mut owner = Self {
            http,
            base: app.address.clone(),
            cookie,
            csrf: String::new(),
        };
        let inbox = owner.get("/owner/").await;
        owner.csrf = csrf_of(&inbox.body);
        owner
    }

    async fn get(&self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        page(request.header("cookie", &self.cookie).send().await.unwrap()).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let mut fields = vec![("csrf", self.csrf.as_str())];
        fields.extend_from_slice(form);
        self.post_raw(path, &fields).await
    }

    async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.http.post(format!("{}{path}", self.base)).form(form);
        page(request.header("cookie", &self.cookie).send().await.unwrap()).await
    }
}

fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("textdesk_owner="))
        .map(|c| c.split(';').next().unwrap().to_string())
}

fn csrf_of(body: &str) -> String {
    let at = body
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    body[at..].split('"').next().unwrap().to_string()
}

async fn page(response: reqwest::Response) -> Page {
    Page {
        status: response.status(),
        location: response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string()),
        body: response.text().await.unwrap(),
    }
}

fn action(conversation: ConversationId, reply: &Message, what: &str) -> String {
    format!(
        "/owner/conversations/{}/held/{}/{what}",
        conversation.0, reply.id.0
    )
}

#[tokio::test]
async fn with_approval_off_a_quote_goes_out_at_once() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with("", quoting_script("Happy to help."), Some(midday())).await;
    app.text(DANA, "Half a truck of junk, how much?").await;
    let sent = app.wait_for_texts(1).await;
    assert!(sent[0].1.contains("$350"), "{sent:?}");
    app.wait_until_settled(DANA).await;
    assert!(held(&app.messages(DANA).await).is_none());
    assert!(alerts_of(&app, AlertKind::ApprovalNeeded).await.is_empty());
}

#[tokio::test]
async fn quotes_holds_a_new_price_and_approving_twice_sends_it_once() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with(
        "approval = \"quotes\"",
        quoting_script("Happy to help."),
        Some(midday()),
    )
    .await;
    let (conversation, reply) = text_and_hold(&app, "Half a truck of junk, how much?").await;
    assert!(reply.body.contains("$350"), "{}", reply.body);
    settle(&app).await;
    assert!(app.sent_texts().await.is_empty(), "nothing reaches the customer");
    let alerts = alerts_of(&app, AlertKind::ApprovalNeeded).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].contains(DANA) && alerts[0].contains("$350"),
        "{}",
        alerts[0]
    );

    let owner = Owner::log_in(&app).await;
    // The inbox counts it as needing the owner; the page offers the actions.
    let needs_you = owner.get("/owner/?filter=needs_you").await;
    assert!(
        needs_you
            .body
            .contains(&format!("/owner/conversations/{}", conversation.0))
    );
    let page = owner
        .get(&format!("/owner/conversations/{}", conversation.0))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    for id in ["held-approve", "held-edit-body", "held-edit-send", "held-reject"] {
        assert!(page.body.contains(&format!("id=\"{id}\"")), "{id}");
    }

    let approved = owner.post(&action(conversation, &reply, "approve"), &[]).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    assert_eq!(
        approved.location.as_deref(),
        Some(format!("/owner/conversations/{}", conversation.0).as_str())
    );
    let sent = app.wait_for_texts(1).await;
    assert_eq!(sent[0], (DANA.to_string(), reply.body.clone()));

    let again = owner.post(&action(conversation, &reply, "approve"), &[]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("already dealt with"), "{}", again.body);
    settle(&app).await;
    assert_eq!(app.sent_texts().await.len(), 1, "approved once, sent once");
    let page = owner
        .get(&format!("/owner/conversations/{}", conversation.0))
        .await;
    assert!(!page.body.contains("id=\"held-approve\""));
}

#[tokio::test]
async fn quotes_lets_a_reply_without_a_new_price_through() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with(
        "approval = \"quotes\"",
        vec![claude_text("Hi! What would you like hauled away?")],
        Some(midday()),
    )
    .await;
    app.text(DANA, "hi").await;
    let sent = app.wait_for_texts(1).await;
    assert_eq!(sent[0].1, "Hi! What would you like hauled away?");
    app.wait_until_settled(DANA).await;
    assert!(held(&app.messages(DANA).await).is_none());
}

#[tokio::test]
async fn over_an_amount_holds_only_quotes_above_it() {
    if crate::helpers::skipped() {
        return;
    }
    let below = app_with("approval = \"over:400\"", quoting_script("Sure."), Some(midday())).await;
    below.text(DANA, "Half a truck of junk, how much?").await;
    let sent = below.wait_for_texts(1).await;
    assert!(sent[0].1.contains("$350"), "$350 is not over 400: {sent:?}");

    let above = app_with("approval = \"over:300\"", quoting_script("Sure."), Some(midday())).await;
    let (_, reply) = text_and_hold(&above, "Half a truck of junk, how much?").await;
    assert!(reply.body.contains("$350"));
    settle(&above).await;
    assert!(above.sent_texts().await.is_empty(), "$350 is over 300");
}

#[tokio::test]
async fn all_holds_every_reply_sends_the_holding_text_once_and_reject_sends_nothing() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with(
        "approval = \"all\"\napproval_holding_text = \"Thanks! We'll text you back shortly.\"",
        vec![claude_text("Hi! What would you like hauled away?")],
        Some(midday()),
    )
    .await;
    let (conversation, reply) = text_and_hold(&app, "hi").await;
    assert_eq!(reply.body, "Hi! What would you like hauled away?");
    let sent = app.wait_for_texts(1).await;
    assert_eq!(sent[0].1, "Thanks! We'll text you back shortly.");

    // While it waits, more texts get nothing, not even the holding text,
    // and the model is not asked again.
    app.text(DANA, "hello?").await;
    app.wait_until_settled(DANA).await;
    settle(&app).await;
    assert_eq!(app.sent_texts().await.len(), 1, "the holding text, once");
    assert_eq!(app.model_requests().await.len(), 1);
    let alerts = alerts_of(&app, AlertKind::ApprovalNeeded).await;
    assert!(alerts.iter().any(|a| a.contains("hello?")), "{alerts:?}");

    let owner = Owner::log_in(&app).await;
    let rejected = owner.post(&action(conversation, &reply, "reject"), &[]).await;
    assert_eq!(rejected.status, StatusCode::SEE_OTHER, "{}", rejected.body);
    settle(&app).await;
    assert_eq!(app.sent_texts().await.len(), 1, "rejecting sends nothing");
    let messages = app.messages(DANA).await;
    assert!(held(&messages).is_none());
    assert!(
        messages
            .iter()
            .any(|m| m.id == reply.id && m.status == "rejected")
    );
    let again = owner.post(&action(conversation, &reply, "approve"), &[]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    settle(&app).await;
    assert_eq!(app.sent_texts().await.len(), 1);
}

#[tokio::test]
async fn an_edited_reply_passes_the_same_guardrail_before_it_is_sent() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with(
        "approval = \"quotes\"",
        quoting_script("Happy to help."),
        Some(midday()),
    )
    .await;
    let (conversation, reply) = text_and_hold(&app, "Half a truck of junk, how much?").await;
    let owner = Owner::log_in(&app).await;

    let wrong = owner
        .post(
            &action(conversation, &reply, "edit"),
            &[("body", "Special for you: $20 all in!")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.body.contains("Not sent"), "{}", wrong.body);
    assert!(
        wrong.body.contains("$20 is not in the current quote"),
        "{}",
        wrong.body
    );
    assert!(
        wrong.body.contains("Special for you: $20 all in!"),
        "the form comes back with the owner's wording"
    );
    let empty = owner
        .post(&action(conversation, &reply, "edit"), &[("body", "  ")])
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    settle(&app).await;
    assert!(app.sent_texts().await.is_empty(), "a refused edit sends nothing");
    assert!(
        held(&app.messages(DANA).await).is_some(),
        "and leaves the reply held"
    );

    let edited = "Good news: $350 covers the whole half truck. Want to book a time?";
    let sent_page = owner
        .post(&action(conversation, &reply, "edit"), &[("body", edited)])
        .await;
    assert_eq!(sent_page.status, StatusCode::SEE_OTHER, "{}", sent_page.body);
    let sent = app.wait_for_texts(1).await;
    assert_eq!(sent[0], (DANA.to_string(), edited.to_string()));
    let again = owner
        .post(&action(conversation, &reply, "edit"), &[("body", edited)])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    settle(&app).await;
    assert_eq!(app.sent_texts().await.len(), 1);
}

#[tokio::test]
async fn no_decision_in_time_hands_off_alerts_and_sends_nothing() {
    if crate::helpers::skipped() {
        return;
    }
    let clock = midday();
    let app = app_with(
        "approval = \"quotes\"\napproval_timeout_minutes = 30",
        quoting_script("Happy to help."),
        Some(clock.clone()),
    )
    .await;
    let (conversation, reply) = text_and_hold(&app, "Half a truck of junk, how much?").await;

    clock.advance(chrono::Duration::minutes(29));
    settle(&app).await;
    assert!(held(&app.messages(DANA).await).is_some(), "not yet due");

    clock.advance(chrono::Duration::minutes(2));
    let deadline = Instant::now() + Duration::from_secs(15);
    while alerts_of(&app, AlertKind::ApprovalTimedOut).await.is_empty() {
        assert!(Instant::now() < deadline, "the timeout never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alert = &alerts_of(&app, AlertKind::ApprovalTimedOut).await[0];
    assert!(alert.contains(DANA) && alert.contains("30 minutes"), "{alert}");
    let turn = app.store.turn_input(conversation, 5).await.unwrap();
    assert_eq!(turn.state.name(), "HANDED_OFF");
    let messages = app.messages(DANA).await;
    assert!(messages.iter().any(|m| m.id == reply.id && m.status == "expired"));
    settle(&app).await;
    assert!(app.sent_texts().await.is_empty(), "never sent unapproved");

    let owner = Owner::log_in(&app).await;
    let late = owner.post(&action(conversation, &reply, "approve"), &[]).await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    settle(&app).await;
    assert!(app.sent_texts().await.is_empty());
}

#[tokio::test]
async fn a_timeouts_alert_and_its_email_are_stored_by_the_commit_that_hands_off() {
    if crate::helpers::skipped() {
        return;
    }
    let clock = midday();
    let with_owner_email = business("approval = \"quotes\"\napproval_timeout_minutes = 30").replace(
        "[business]\n",
        "[business]\nowner_email = \"owner@rosecity.example\"\n",
    );
    let app = app_of(
        with_owner_email,
        quoting_script("Happy to help."),
        Some(clock.clone()),
    )
    .await;
    let (conversation, _) = text_and_hold(&app, "Half a truck of junk, how much?").await;
    let held = app.store.held_reply(conversation).await.unwrap().unwrap();
    let emails_before = app
        .sql()
        .await
        .count("SELECT COUNT(*) FROM jobs WHERE kind = 'email'", &[])
        .await;

    // The timeout's use case alone, as the job runs it, with nothing after
    // it: what a crash right after its commit would leave.
    let expire = || {
        textdesk::desk::approval::expire(
            app.store.as_ref(),
            &app.business,
            conversation,
            held.reply_to,
            30,
            clock.now(),
        )
    };
    let expired = expire().await.unwrap();
    let (_, alert) = expired.expect("the reply was still held");
    assert_eq!(alert.kind, AlertKind::ApprovalTimedOut);
    let stored = alerts_of(&app, AlertKind::ApprovalTimedOut).await;
    assert_eq!(stored, vec![alert.detail.clone()]);
    assert!(
        stored[0].contains(DANA) && stored[0].contains("30 minutes"),
        "{}",
        stored[0]
    );
    let emails = app
        .sql()
        .await
        .count("SELECT COUNT(*) FROM jobs WHERE kind = 'email'", &[])
        .await;
    assert_eq!(
        emails,
        emails_before + 1,
        "the owner's alert email is queued with it"
    );
    let turn = app.store.turn_input(conversation, 5).await.unwrap();
    assert_eq!(turn.state.name(), "HANDED_OFF");

    // Run again (the job rerun after such a crash): decided, nothing more.
    assert!(expire().await.unwrap().is_none());
    assert_eq!(alerts_of(&app, AlertKind::ApprovalTimedOut).await.len(), 1);
}

#[tokio::test]
async fn a_decision_without_the_csrf_token_is_403_and_changes_nothing() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with(
        "approval = \"quotes\"",
        quoting_script("Happy to help."),
        Some(midday()),
    )
    .await;
    let (conversation, reply) = text_and_hold(&app, "Half a truck of junk, how much?").await;
    let owner = Owner::log_in(&app).await;
    for what in ["approve", "reject"] {
        let forged = owner.post_raw(&action(conversation, &reply, what), &[]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{what}");
    }
    let forged = owner
        .post_raw(
            &action(conversation, &reply, "edit"),
            &[("csrf", "nope"), ("body", "hi")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    settle(&app).await;
    assert!(app.sent_texts().await.is_empty());
    assert!(held(&app.messages(DANA).await).is_some());
}

#[tokio::test]
async fn a_reply_approved_in_quiet_hours_waits_for_morning_when_replies_do() {
    if crate::helpers::skipped() {
        return;
    }
    let clock = midday();
    let app = spawn_app_with(Options {
        default_fakes: false,
        business: Some(format!(
            "{}\n[quiet_hours]\nreplies_allowed = false\n",
            business("approval = \"quotes\"\napproval_timeout_minutes = 1440")
        )),
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ScriptedClaude::new(quoting_script("Sure.")))
        .mount(&app.anthropic)
        .await;
    set_owner_password(app.console().await.as_ref(), PASSWORD)
        .await
        .unwrap();
    let (conversation, reply) = text_and_hold(&app, "Half a truck of junk, how much?").await;

    // 10 pm: the owner approves, and the reply waits for 8 am.
    clock.advance(chrono::Duration::hours(10));
    let owner = Owner::log_in(&app).await;
    let approved = owner.post(&action(conversation, &reply, "approve"), &[]).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    settle(&app).await;
    assert!(app.sent_texts().await.is_empty(), "not at night");
    let again = owner.post(&action(conversation, &reply, "approve"), &[]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    clock.advance(chrono::Duration::hours(10) + chrono::Duration::minutes(30));
    let sent = app.wait_for_texts(1).await;
    assert_eq!(sent[0], (DANA.to_string(), reply.body.clone()));
    settle(&app).await;
    assert_eq!(app.sent_texts().await.len(), 1, "sent once");
}

#[tokio::test]
async fn an_approval_cut_off_by_a_crash_before_sending_is_sent_once_at_start() {
    if crate::helpers::skipped() {
        return;
    }
    let clock = midday();
    let mut app = app_with(
        "approval = \"quotes\"",
        quoting_script("Sure."),
        Some(clock.clone()),
    )
    .await;
    let (conversation, reply) = text_and_hold(&app, "Half a truck of junk, how much?").await;
    // Approved (claimed for sending) by the desk, and the process dies
    // before the Dispatcher runs.
    let approved = textdesk::desk::approval::approve(
        app.store.as_ref(),
        &app.business,
        conversation,
        reply.id,
        app.clock.now(),
    )
    .await
    .unwrap();
    assert!(matches!(approved, textdesk::desk::approval::Approved::Send(_)));
    app.crash().await;
    if crate::POSTGRES {
        // On Postgres the restarted app takes the claimed reply over only
        // once its send lease has passed (another instance may be sending
        // it): move the store's clock past it.
        clock.advance(chrono::Duration::minutes(1));
    }
    app.restart().await;
    // Claimed before the crash, so textdesk may first ask Twilio's Messages
    // list whether it went out: a GET, not a send.
    let deadline = Instant::now() + Duration::from_secs(15);
    while posted_texts(&app).await.is_empty() {
        assert!(Instant::now() < deadline, "the approved reply was never sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle(&app).await;
    assert_eq!(posted_texts(&app).await, vec![reply.body.clone()], "sent once");
    let again = textdesk::desk::approval::approve(
        app.store.as_ref(),
        &app.business,
        conversation,
        reply.id,
        app.clock.now(),
    )
    .await;
    assert!(
        matches!(again, Err(textdesk::desk::DeskError::NotHeld)),
        "{again:?}"
    );
}

/// Bodies of the texts Twilio was asked to send (POSTs only).
async fn posted_texts(app: &TestApp) -> Vec<String> {
    app.twilio
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/Messages.json"))
        .filter_map(|r| {
            form_urlencoded::parse(&r.body)
                .find(|(k, _)| k == "Body")
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_held_reply_keeps_its_conversation_needing_the_owner_after_its_alert_is_resolved() {
    if crate::helpers::skipped() {
        return;
    }
    use textdesk::store::console::{InboxFilter, InboxQuery};
    let app = app_with("approval = \"quotes\"", quoting_script("Sure."), Some(midday())).await;
    let (conversation, _) = text_and_hold(&app, "Half a truck of junk, how much?").await;
    let console = app.console().await;
    for alert in console.console_alerts(None, true, 50).await.unwrap() {
        console
            .resolve_alert(alert.id, "owner", app.clock.now())
            .await
            .unwrap();
    }
    assert_eq!(console.open_alert_count(None).await.unwrap(), 0);
    let needs_you = console
        .inbox(&InboxQuery {
            business_id: None,
            filter: InboxFilter::NeedsYou,
            search: None,
            limit: 50,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(needs_you.len(), 1);
    assert_eq!(needs_you[0].id, conversation);
    assert!(needs_you[0].needs_you);
}

/// The conversation's open alerts, by kind, and its pending jobs' kinds.
async fn open_alerts_and_pending_jobs(
    app: &TestApp,
    conversation: ConversationId,
) -> (Vec<String>, Vec<String>) {
    use textdesk::store::{JobStatus, Store};
    let console = app.console().await;
    let alerts = console
        .console_alerts(None, true, 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.conversation_id == Some(conversation))
        .map(|a| a.kind)
        .collect();
    let store: &dyn Store = app.store.as_ref();
    let jobs = store
        .jobs(&[JobStatus::Pending], 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.conversation_id == Some(conversation))
        .map(|j| j.kind)
        .collect();
    (alerts, jobs)
}

#[tokio::test]
async fn deciding_a_held_reply_resolves_its_alerts_and_cancels_its_timeout() {
    if crate::helpers::skipped() {
        return;
    }
    for decision in ["approve", "reject", "edit"] {
        let app = app_with("approval = \"quotes\"", quoting_script("Sure."), Some(midday())).await;
        let (conversation, reply) = text_and_hold(&app, "Half a truck of junk, how much?").await;
        let (alerts, jobs) = open_alerts_and_pending_jobs(&app, conversation).await;
        assert_eq!(alerts, vec!["approval_needed".to_string()], "{decision}");
        assert!(
            jobs.contains(&"approval_timeout".to_string()),
            "{decision}: {jobs:?}"
        );

        let owner = Owner::log_in(&app).await;
        let form: &[(&str, &str)] = match decision {
            "edit" => &[("body", "Thanks, we will be in touch.")],
            _ => &[],
        };
        let decided = owner.post(&action(conversation, &reply, decision), form).await;
        assert_eq!(
            decided.status,
            StatusCode::SEE_OTHER,
            "{decision}: {}",
            decided.body
        );
        let (alerts, jobs) = open_alerts_and_pending_jobs(&app, conversation).await;
        assert!(alerts.is_empty(), "{decision}: {alerts:?}");
        assert!(
            !jobs.contains(&"approval_timeout".to_string()),
            "{decision}: {jobs:?}"
        );
        let needs_you = owner.get("/owner/?filter=needs_you").await;
        assert!(
            !needs_you
                .body
                .contains(&format!("/owner/conversations/{}", conversation.0)),
            "{decision}: {}",
            needs_you.body
        );
    }
}

#[tokio::test]
async fn the_owners_approval_text_says_it_once_in_whole_words() {
    if crate::helpers::skipped() {
        return;
    }
    const OWNER: &str = "+15035550111";
    let long_reply = "Thanks for reaching out! We haul furniture, appliances, yard waste and \
                      just about anything else two people can carry, and we recycle or donate \
                      whatever we can so very little ends up in the landfill. What would you like \
                      us to take away, and roughly how much of it is there?";
    let app = spawn_app_with(Options {
        default_fakes: false,
        business: Some(format!(
            "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\n\
             owner_phone = \"{OWNER}\"\ntimezone = \"America/Chicago\"\n\n\
             [assistant]\napproval = \"all\"\napproval_timeout_minutes = 1\n"
        )),
        clock: Some(midday()),
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ScriptedClaude::new(vec![claude_text(long_reply)]))
        .mount(&app.anthropic)
        .await;
    text_and_hold(&app, "hi").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let told = loop {
        let to_owner: Vec<String> = app
            .sent_texts()
            .await
            .into_iter()
            .filter(|(to, _)| to == OWNER)
            .map(|(_, body)| body)
            .collect();
        if let Some(first) = to_owner.first() {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no text to the owner");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        told.starts_with("A reply waits for your approval: For "),
        "{told}"
    );
    assert_eq!(told.matches("approval").count(), 1, "said once: {told}");
    assert!(told.contains("unanswered in 1 minute the"), "{told}");
    assert!(!told.contains("1 minutes"), "{told}");
    // The reply is cut after a whole word, and says so.
    let quoted = told.split('"').nth(1).expect("the reply, quoted");
    assert!(quoted.ends_with("..."), "{quoted}");
    let words = quoted.trim_end_matches("...");
    assert!(long_reply.starts_with(words), "{words}");
    let next = &long_reply[words.len()..];
    assert!(next.starts_with([' ', ',', '.', '!']), "cut mid-word: {words}");
}
