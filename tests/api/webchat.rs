//! The web chat through the real app: sessions and tokens, the bounded
//! wait and polling, CORS, rate limits, bad input, and the phone
//! verification a web visitor needs before the desk books them.

use std::time::{Duration, Instant};

use chrono::TimeZone;
use serde_json::{Value, json};
use textdesk::channel::webchat::ASK_FOR_PHONE;
use textdesk::clock::ManualClock;
use textdesk::domain::phone::E164;
use textdesk::jobs::verification::{
    CODE_EXPIRED, CODE_SENT, CODE_WRONG, PICK_AGAIN, TOO_MANY_ATTEMPTS, VERIFIED,
};
use textdesk::store::BookingStatus;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const SHOP: &str = "https://shop.example.com";
const VISITOR_PHONE: &str = "+15035557788";

/// A junk hauler with exact start times whose site is `SHOP`.
const JUNK: &str = r#"
[business]
id = "haul"
name = "Rose City Junk Haulers"
phone = "+15035550142"
timezone = "America/Los_Angeles"

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
sat = "closed"
sun = "closed"

[[providers]]
id = "crew-1"
name = "Crew 1"

[webchat]
allowed_origins = ["https://shop.example.com/"]
"#;

/// Monday 30 November 2026, 10:00 in Portland.
fn monday_morning() -> ManualClock {
    ManualClock::at(chrono::Utc.with_ymd_and_hms(2026, 11, 30, 18, 0, 0).unwrap())
}

async fn chat_app(vars: Vec<(&'static str, String)>, clock: Option<ManualClock>) -> TestApp {
    let mut extra_vars = vec![("WEBCHAT_RATE_PER_SESSION", "100".to_string())];
    extra_vars.extend(vars);
    spawn_app_with(Options {
        with_model: false,
        business: Some(JUNK.to_string()),
        extra_vars,
        clock,
        ..Options::default()
    })
    .await
}

fn url(app: &TestApp, path: &str) -> String {
    format!("{}{path}", app.address)
}

async fn post(app: &TestApp, origin: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = app.http.post(url(app, "/api/chat/messages")).json(&body);
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    request.send().await.unwrap()
}

/// Sends one visitor message (with the session's token, if any) and
/// returns the answer, which must be a 200.
async fn say(app: &TestApp, token: Option<&str>, text: &str) -> Value {
    let body = match token {
        Some(token) => json!({"token": token, "text": text}),
        None => json!({"text": text, "business": "haul"}),
    };
    let response = post(app, Some(SHOP), body).await;
    assert_eq!(response.status(), 200, "{text}");
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        SHOP,
        "an allowed origin reads the answer"
    );
    response.json().await.unwrap()
}

fn replies(answer: &Value) -> Vec<String> {
    answer["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect()
}

/// The one reply to a visitor's message.
async fn reply(app: &TestApp, token: &str, text: &str) -> String {
    let answer = say(app, Some(token), text).await;
    let got = replies(&answer);
    assert_eq!(got.len(), 1, "{text}: {got:?}");
    got[0].clone()
}

/// A new session taken to the openings; returns its token.
async fn to_openings(app: &TestApp) -> String {
    to_openings_listed(app).await.0
}

/// A new session taken to the openings: its token, and the numbered
/// openings as offered ("1) Mon Nov 30, 11am", one a line).
async fn to_openings_listed(app: &TestApp) -> (String, Vec<String>) {
    let first = say(app, None, "hi").await;
    let token = first["token"].as_str().unwrap().to_string();
    let mut last = String::new();
    for text in ["3", "1", "Dana", "12 Oak St, Portland"] {
        last = reply(app, &token, text).await;
    }
    let listed: Vec<String> = last
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(") "))
        .map(str::to_string)
        .collect();
    assert!(!listed.is_empty(), "openings offered: {last}");
    (token, listed)
}

/// The code the fake Twilio was asked to text to `phone`, the `n`th (from 1).
async fn texted_code(app: &TestApp, phone: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let codes: Vec<String> = app
            .sent_texts()
            .await
            .into_iter()
            .filter(|(to, _)| to == phone)
            .map(|(_, body)| {
                let at = body.find("code is ").expect("a code text") + "code is ".len();
                body[at..at + 6].to_string()
            })
            .collect();
        if codes.len() >= n {
            return codes[n - 1].clone();
        }
        assert!(Instant::now() < deadline, "no code texted to {phone}: {codes:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_first_message_issues_a_token_and_the_next_reuses_its_conversation() {
    if crate::helpers::skipped() {
        return;
    }
    let app = chat_app(Vec::new(), None).await;
    let first = say(&app, None, "hi").await;
    let token = first["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(replies(&first).len(), 1, "{first}");

    let second = say(&app, Some(&token), "3").await;
    assert_eq!(second["token"], token.as_str());
    assert_eq!(replies(&second).len(), 1);
    assert!(second["after"].as_i64().unwrap() > first["after"].as_i64().unwrap());

    // One web customer, one conversation, holding both texts and both
    // replies; the token itself is not stored.
    let sql = app.sql().await;
    let customers = sql
        .count("SELECT COUNT(*) FROM customers WHERE phone LIKE 'web:%'", &[])
        .await;
    let stored = sql
        .count(
            "SELECT COUNT(*) FROM webchat_sessions WHERE token_hash = $1",
            &[token.as_str().into()],
        )
        .await;
    assert_eq!((customers, stored), (1, 0), "the token is stored hashed");
    let messages = sql
        .count(
            "SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
             JOIN customers u ON u.id = c.customer_id WHERE u.phone LIKE 'web:%'",
            &[],
        )
        .await;
    assert_eq!(messages, 4);

    // A token nobody issued starts nothing.
    let forged = post(&app, Some(SHOP), json!({"token": "ab".repeat(32), "text": "hi"})).await;
    assert_eq!(forged.status(), 401);
    let body: Value = forged.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("unknown session"),
        "{body}"
    );
}

#[tokio::test]
async fn with_no_time_to_wait_the_answer_is_empty_and_polling_after_finds_the_reply() {
    if crate::helpers::skipped() {
        return;
    }
    let app = slow_model_app("0", Duration::from_millis(300)).await;
    let first = say(&app, None, "hi").await;
    let token = first["token"].as_str().unwrap();
    let after = first["after"].as_i64().unwrap();
    assert!(replies(&first).is_empty(), "{first}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let polled = loop {
        let response = app
            .http
            .get(url(
                &app,
                &format!("/api/chat/messages?token={token}&after={after}"),
            ))
            .header("Origin", SHOP)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["access-control-allow-origin"], SHOP);
        let answer: Value = response.json().await.unwrap();
        if !replies(&answer).is_empty() {
            break answer;
        }
        assert!(Instant::now() < deadline, "no reply to poll");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(replies(&polled).len(), 1);
    let last = polled["after"].as_i64().unwrap();
    assert!(last > after);

    // After the last reply, nothing more.
    let again: Value = app
        .http
        .get(url(
            &app,
            &format!("/api/chat/messages?token={token}&after={last}"),
        ))
        .header("Origin", SHOP)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(replies(&again).is_empty());
    assert_eq!(again["after"], last);

    // A bad `after` or no token is a readable 400.
    for query in [format!("token={token}&after=soon"), "after=3".to_string()] {
        let response = app
            .http
            .get(url(&app, &format!("/api/chat/messages?{query}")))
            .header("Origin", SHOP)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{body}");
    }
}

/// Claude answers after `delay`; the web chat waits `wait_ms`.
async fn slow_model_app(wait_ms: &str, delay: Duration) -> TestApp {
    let app = spawn_app_with(Options {
        business: Some(JUNK.to_string()),
        default_fakes: false,
        extra_vars: vec![("WEBCHAT_REPLY_WAIT_MS", wait_ms.to_string())],
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(claude_text("Happy to help with that."))
                .set_delay(delay),
        )
        .mount(&app.anthropic)
        .await;
    app
}

#[tokio::test]
async fn a_slow_turn_is_waited_for_only_as_long_as_configured() {
    if crate::helpers::skipped() {
        return;
    }
    let app = slow_model_app("400", Duration::from_secs(3)).await;

    let started = Instant::now();
    let answer = say(&app, None, "I need a couch hauled").await;
    let waited = started.elapsed();
    assert!(replies(&answer).is_empty(), "{answer}");
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert!(
        waited < Duration::from_millis(2500),
        "the wait is bounded: {waited:?}"
    );

    // The reply comes later, to the poll.
    let token = answer["token"].as_str().unwrap();
    let after = answer["after"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let polled: Value = app
            .http
            .get(url(
                &app,
                &format!("/api/chat/messages?token={token}&after={after}"),
            ))
            .header("Origin", SHOP)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(text) = replies(&polled).first() {
            assert_eq!(text, "Happy to help with that.");
            break;
        }
        assert!(Instant::now() < deadline, "the slow reply never came");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn only_the_allowed_origin_gets_cors_and_others_are_refused() {
    if crate::helpers::skipped() {
        return;
    }
    let app = chat_app(Vec::new(), None).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, url(&app, "/api/chat/messages"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
    };
    let allowed = preflight(SHOP).await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["access-control-allow-origin"], SHOP);
    assert!(
        allowed.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        allowed.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("content-type")
    );

    let refused = preflight("https://evil.example.net").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("access-control-allow-origin").is_none());

    let other = post(
        &app,
        Some("https://evil.example.net"),
        json!({"text": "hi", "business": "haul"}),
    )
    .await;
    assert_eq!(other.status(), 403);
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let none = post(&app, None, json!({"text": "hi", "business": "haul"})).await;
    assert_eq!(none.status(), 403);

    // Nothing was stored for the refused requests.
    let sessions = app
        .sql()
        .await
        .count("SELECT COUNT(*) FROM webchat_sessions", &[])
        .await;
    assert_eq!(sessions, 0);

    // The widget itself is served to anyone, as a script.
    let widget = app.http.get(url(&app, "/chat/widget.js")).send().await.unwrap();
    assert_eq!(widget.status(), 200);
    assert!(
        widget.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let script = widget.text().await.unwrap();
    assert!(script.contains("data-business"));
    assert!(
        !script.contains("innerHTML"),
        "message text is never parsed as HTML"
    );
}

#[tokio::test]
async fn sessions_and_addresses_are_rate_limited_with_retry_after() {
    if crate::helpers::skipped() {
        return;
    }
    let app = chat_app(
        vec![
            ("WEBCHAT_RATE_PER_SESSION", "2".into()),
            ("WEBCHAT_RATE_PER_ADDRESS", "3".into()),
            ("WEBCHAT_REPLY_WAIT_MS", "0".into()),
        ],
        None,
    )
    .await;
    let first = say(&app, None, "hi").await;
    let token = first["token"].as_str().unwrap();
    say(&app, Some(token), "3").await;
    let limited = post(&app, Some(SHOP), json!({"token": token, "text": "1"})).await;
    assert_eq!(limited.status(), 429, "the session's third message in a minute");
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(limited.headers()["access-control-allow-origin"], SHOP);

    // A new session from the same address has its own session budget, but
    // the address has used its three requests.
    let limited = post(&app, Some(SHOP), json!({"text": "hi", "business": "haul"})).await;
    assert_eq!(limited.status(), 429, "the address's fourth request in a minute");
    assert!(limited.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn oversized_bodies_bad_json_and_empty_texts_get_clear_errors() {
    if crate::helpers::skipped() {
        return;
    }
    let app = chat_app(Vec::new(), None).await;
    let big = json!({"text": "a".repeat(9 * 1024), "business": "haul"});
    let response = post(&app, Some(SHOP), big).await;
    assert_eq!(response.status(), 413);

    let response = app
        .http
        .post(url(&app, "/api/chat/messages"))
        .header("Origin", SHOP)
        .header("Content-Type", "application/json")
        .body("{\"text\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["access-control-allow-origin"], SHOP);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("JSON"), "{body}");

    for (body, says) in [
        (json!({"text": "   ", "business": "haul"}), "empty"),
        (
            json!({"text": "a".repeat(1001), "business": "haul"}),
            "longer than 1000",
        ),
        (json!({"text": "hi", "business": "nobody"}), "no business"),
        (
            json!({"text": "hi", "business": "haul", "extra": 1}),
            "unknown field",
        ),
        (json!({"text": 5}), "JSON"),
    ] {
        let response = post(&app, Some(SHOP), body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].as_str().unwrap().contains(says), "{body}: {error}");
    }
}

#[tokio::test]
async fn an_unverified_visitor_is_not_booked_and_a_texted_code_lets_them_book() {
    if crate::helpers::skipped() {
        return;
    }
    let app = chat_app(Vec::new(), Some(monday_morning())).await;
    let (token, openings) = to_openings_listed(&app).await;

    // Picking an opening before proving a number books nothing.
    assert_eq!(reply(&app, &token, "1").await, ASK_FOR_PHONE);
    assert!(app.store.bookings().await.unwrap().is_empty());

    // The number typed gets a code by text, through the outbox.
    assert_eq!(
        reply(&app, &token, "my number is (503) 555-7788").await,
        CODE_SENT
    );
    let code = texted_code(&app, VISITOR_PHONE, 1).await;
    let (_, body) = app
        .sent_texts()
        .await
        .into_iter()
        .find(|(to, _)| to == VISITOR_PHONE)
        .unwrap();
    assert!(
        body.starts_with("Rose City Junk Haulers: your web chat code is"),
        "{body}"
    );

    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(reply(&app, &token, wrong).await, CODE_WRONG);
    assert!(app.store.bookings().await.unwrap().is_empty());
    // The right code books the opening picked before it was asked for: no
    // second pick. The number's own SMS conversation (the customer its
    // texts use) is linked to the chat.
    let booked = reply(&app, &token, &code).await;
    let first = openings[0].split_once(") ").unwrap().1;
    assert!(
        booked.starts_with("You're booked with Rose City Junk Haulers: ") && booked.contains(first),
        "{booked} (picked {first})"
    );
    let bookings = app.store.bookings().await.unwrap();
    assert_eq!(bookings.len(), 1);
    assert_eq!(bookings[0].status, BookingStatus::Confirmed);
    let phone = E164::parse(VISITOR_PHONE).unwrap();
    let business = E164::parse(BUSINESS_NUMBER).unwrap();
    let sms = app.store.find_conversation(&phone, &business).await.unwrap();
    assert!(sms.is_some(), "the verified number has its customer record");
    let sql = app.sql().await;
    let verified: String = sql
        .scalar("SELECT verified_phone FROM webchat_sessions", &[])
        .await;
    let linked: i64 = sql
        .scalar("SELECT linked_conversation_id FROM webchat_sessions", &[])
        .await;
    assert_eq!(verified, VISITOR_PHONE);
    let sms = sms.unwrap().0;
    assert_eq!(linked, sms);

    // The console links the two conversations of the one customer.
    let chat: i64 = sql
        .scalar(
            "SELECT c.id FROM conversations c JOIN customers u ON u.id = c.customer_id
             WHERE u.phone LIKE 'web:%'",
            &[],
        )
        .await;
    crate::console::with_password(&app).await;
    let (mut browser, _) = crate::console::Browser::logged_in(&app).await;
    let web_page = browser.get(&format!("/owner/conversations/{chat}")).await;
    assert!(
        web_page
            .body
            .contains(&format!("href=\"/owner/conversations/{sms}\"")),
        "the web chat links to the verified number's texts: {}",
        web_page.body
    );
    let sms_page = browser.get(&format!("/owner/conversations/{sms}")).await;
    assert!(
        sms_page
            .body
            .contains(&format!("href=\"/owner/conversations/{chat}\"")),
        "the number's texts link back to the web chat: {}",
        sms_page.body
    );
}

#[tokio::test]
async fn an_expired_code_is_refused_and_a_new_one_works() {
    if crate::helpers::skipped() {
        return;
    }
    let clock = monday_morning();
    let app = chat_app(Vec::new(), Some(clock.clone())).await;
    let token = to_openings(&app).await;
    assert_eq!(reply(&app, &token, "503-555-7788").await, CODE_SENT);
    let code = texted_code(&app, VISITOR_PHONE, 1).await;

    clock.advance(chrono::Duration::minutes(11));
    assert_eq!(reply(&app, &token, &code).await, CODE_EXPIRED);
    assert_eq!(
        reply(&app, &token, "1").await,
        ASK_FOR_PHONE,
        "still not verified"
    );

    assert_eq!(reply(&app, &token, "503-555-7788").await, CODE_SENT);
    let fresh = texted_code(&app, VISITOR_PHONE, 2).await;
    // The opening picked at 10am started at 10am: by now it has passed, so
    // the number is verified and today's openings are offered instead.
    let verified = reply(&app, &token, &fresh).await;
    assert!(
        verified.starts_with(VERIFIED) && verified.contains("Openings:\n1) Mon Nov 30, 11am"),
        "{verified}"
    );
    assert!(app.store.bookings().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_verification_cut_off_before_its_commit_is_completed_by_the_code_typed_again() {
    if crate::helpers::skipped() {
        return;
    }
    let app = chat_app(Vec::new(), Some(monday_morning())).await;
    let (token, openings) = to_openings_listed(&app).await;
    assert_eq!(reply(&app, &token, "1").await, ASK_FOR_PHONE);
    assert_eq!(reply(&app, &token, "503-555-7788").await, CODE_SENT);
    let code = texted_code(&app, VISITOR_PHONE, 1).await;
    // What a turn cut off after storing the proof and before its commit
    // leaves: the session verified and its code spent, the conversation's
    // job without the number.
    let touched = app
        .sql()
        .await
        .execute(
            &format!(
                "UPDATE webchat_sessions SET verified_phone = '{VISITOR_PHONE}', code_phone = NULL,
                 code_hash = NULL, code_expires_ms = NULL, code_attempts = 0"
            ),
            &[],
        )
        .await;
    assert_eq!(touched, 1);
    // The code typed again (or the turn run again) completes it: the pick
    // is booked, once.
    let booked = reply(&app, &token, &code).await;
    let first = openings[0].split_once(") ").unwrap().1;
    assert!(
        booked.starts_with("You're booked with Rose City Junk Haulers: ") && booked.contains(first),
        "{booked}"
    );
    assert_eq!(app.store.bookings().await.unwrap().len(), 1);
}

#[tokio::test]
async fn too_many_wrong_codes_end_that_code() {
    if crate::helpers::skipped() {
        return;
    }
    let app = chat_app(Vec::new(), Some(monday_morning())).await;
    let token = to_openings(&app).await;
    assert_eq!(reply(&app, &token, "5035557788").await, CODE_SENT);
    let code = texted_code(&app, VISITOR_PHONE, 1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..4 {
        assert_eq!(reply(&app, &token, wrong).await, CODE_WRONG);
    }
    assert_eq!(reply(&app, &token, wrong).await, TOO_MANY_ATTEMPTS);
    // Even the right code is refused now: a new code is needed.
    assert_eq!(reply(&app, &token, &code).await, TOO_MANY_ATTEMPTS);
    assert_eq!(reply(&app, &token, "1").await, ASK_FOR_PHONE);
    assert!(app.store.bookings().await.unwrap().is_empty());
}

#[tokio::test]
async fn with_claude_the_book_tool_is_refused_until_the_phone_is_verified() {
    if crate::helpers::skipped() {
        return;
    }
    use crate::quotes::{ScriptedClaude, claude_tool};
    let app = spawn_app_with(Options {
        default_fakes: false,
        business: Some(JUNK.to_string()),
        clock: Some(monday_morning()),
        extra_vars: vec![("WEBCHAT_RATE_PER_SESSION", "100".to_string())],
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
            claude_tool("t3", "get_available_slots", json!({"preference": "tomorrow"})),
            claude_text("Here are the openings I found. Which number works for you?"),
            claude_tool("t4", "book_slot", json!({"slot_id": 1})),
            claude_text("To book online, please type your mobile number here first."),
        ]))
        .mount(&app.anthropic)
        .await;

    let first = say(
        &app,
        None,
        "Hi, about half a truck of junk at 12 Oak St. How much?",
    )
    .await;
    let token = first["token"].as_str().unwrap().to_string();
    assert_eq!(
        replies(&first),
        ["That's $350 for about half a truck. Want to book a time?"]
    );
    // The model is told, per turn (outside the cached system prompt), that
    // this customer is in the web chat, not texting.
    let asked = app.model_requests().await;
    assert!(
        asked[0]
            .to_string()
            .contains("in the web chat on the business's website"),
        "{}",
        asked[0]
    );
    assert!(
        !asked[0]["system"].to_string().contains("web chat"),
        "the cached prompt is the same on every channel"
    );
    reply(&app, &token, "Tomorrow?").await;

    // The model's booking is refused by the desk, and the model is told why.
    assert_eq!(
        reply(&app, &token, "1").await,
        "To book online, please type your mobile number here first."
    );
    assert!(app.store.bookings().await.unwrap().is_empty());
    let requests = app.model_requests().await;
    let told = requests.last().unwrap().to_string();
    assert!(told.contains("has not verified a phone number"), "{told}");

    // The number and the code are handled by code, with no model call.
    let asked = app.model_requests().await.len();
    assert_eq!(reply(&app, &token, "503 555 7788").await, CODE_SENT);
    let code = texted_code(&app, VISITOR_PHONE, 1).await;
    // The code books the opening the model tried to book: by code, with no
    // model call, and no second pick.
    let booked = reply(&app, &token, &code).await;
    assert!(
        booked.starts_with("You're booked with Rose City Junk Haulers"),
        "{booked}"
    );
    assert_eq!(app.model_requests().await.len(), asked);
    assert_eq!(app.store.bookings().await.unwrap().len(), 1);
}

/// The web chat port on Postgres, on a database of its own (`webchat_...`)
/// of the server `TEST_DATABASE_URL` names; skipped, saying so, without it.
#[tokio::test]
async fn the_postgres_port_keeps_sessions_codes_and_verification() {
    if crate::helpers::skipped() {
        return;
    }
    use sqlx::Connection;
    use textdesk::store::ConversationId;
    use textdesk::store::postgres::PgStore;
    use textdesk::store::webchat::{PendingCode, WebChatStore};

    let Some(server) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
    else {
        eprintln!("TEST_DATABASE_URL names no Postgres server: the Postgres web chat port is not tested");
        return;
    };
    let name = format!("webchat_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = &server[..server.rfind('/').unwrap() + 1];
    let store = PgStore::connect(&format!("{base}{name}")).await.unwrap();

    let address = E164::web("0123456789abcdef0123456789abcdef").unwrap();
    store
        .create_web_session("hash-1", "haul", &address)
        .await
        .unwrap();
    assert!(store.web_session("hash-2").await.unwrap().is_none());
    let session = store.web_session("hash-1").await.unwrap().unwrap();
    assert_eq!(
        (session.business_id.as_str(), &session.address),
        ("haul", &address)
    );
    assert_eq!((session.code.clone(), session.codes_sent), (None, 0));
    assert_eq!(store.web_session_of(&address).await.unwrap(), Some(session));

    let phone = E164::parse(VISITOR_PHONE).unwrap();
    let code = PendingCode {
        phone: phone.clone(),
        code_hash: "abc".into(),
        expires_at: chrono::Utc.with_ymd_and_hms(2026, 11, 30, 18, 10, 0).unwrap(),
        attempts: 0,
    };
    store.web_code_sent(&address, &code).await.unwrap();
    assert_eq!(store.web_code_failed(&address).await.unwrap(), 1);
    assert_eq!(store.web_code_failed(&address).await.unwrap(), 2);
    let session = store.web_session_of(&address).await.unwrap().unwrap();
    assert_eq!(session.code, Some(PendingCode { attempts: 2, ..code }));
    assert_eq!(session.codes_sent, 1);

    let conversation: i64 = sqlx::query_scalar(
        "WITH c AS (INSERT INTO customers (business_id, phone, created_at) VALUES ('haul', $1, now()) RETURNING id)
         INSERT INTO conversations (customer_id, business_number, business_id, created_at, updated_at)
         SELECT id, '+15035550142', 'haul', now(), now() FROM c RETURNING id",
    )
    .bind(VISITOR_PHONE)
    .fetch_one(store.pool())
    .await
    .unwrap();
    store
        .web_phone_verified(&address, &phone, ConversationId(conversation))
        .await
        .unwrap();
    let session = store.web_session_of(&address).await.unwrap().unwrap();
    assert_eq!(session.verified_phone, Some(phone));
    assert_eq!(session.linked_conversation, Some(ConversationId(conversation)));
    assert_eq!(session.code, None, "the code is spent");
    let linked = store
        .web_sessions_linked_to(ConversationId(conversation))
        .await
        .unwrap();
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].address, address);
    assert!(
        store
            .web_sessions_linked_to(ConversationId(conversation + 1))
            .await
            .unwrap()
            .is_empty()
    );

    store.pool().close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_verified_visitors_reminder_goes_by_text_to_their_phone() {
    if crate::helpers::skipped() {
        return;
    }
    let clock = monday_morning();
    let app = chat_app(Vec::new(), Some(clock.clone())).await;
    let token = to_openings(&app).await;
    assert_eq!(reply(&app, &token, "5035557788").await, CODE_SENT);
    let code = texted_code(&app, VISITOR_PHONE, 1).await;
    // Nothing was picked before the number: the openings again, to pick.
    let verified = reply(&app, &token, &code).await;
    assert!(
        verified.starts_with(&format!("{VERIFIED}{PICK_AGAIN}\n1) ")),
        "{verified}"
    );
    // Tuesday 8am: a reminder falls before it.
    let booked = reply(&app, &token, "2").await;
    assert!(
        booked.contains("You're booked") && booked.contains("Tue Dec 1"),
        "{booked}"
    );

    let sql = app.sql().await;
    let recipient: String = sql
        .scalar(
            "SELECT recipient FROM jobs WHERE kind = 'reminder' ORDER BY run_at_ms LIMIT 1",
            &[],
        )
        .await;
    let run_at: i64 = sql
        .scalar(
            "SELECT run_at_ms FROM jobs WHERE kind = 'reminder' ORDER BY run_at_ms LIMIT 1",
            &[],
        )
        .await;
    assert!(recipient.starts_with("web:"), "{recipient}");
    clock.set(chrono::DateTime::from_timestamp_millis(run_at + 1_000).unwrap());

    let deadline = Instant::now() + Duration::from_secs(15);
    let reminder = loop {
        let texts: Vec<String> = app
            .sent_texts()
            .await
            .into_iter()
            .filter(|(to, body)| to == VISITOR_PHONE && !body.contains("code is"))
            .map(|(_, body)| body)
            .collect();
        if let Some(text) = texts.first() {
            break text.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no reminder texted to the verified phone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        reminder.contains("8am") || reminder.contains("8:00"),
        "{reminder}"
    );
}

#[tokio::test]
async fn every_error_answer_is_json_with_cors_for_an_allowed_origin() {
    if crate::helpers::skipped() {
        return;
    }
    let app = chat_app(Vec::new(), None).await;
    // Too large: refused before the JSON is read, still readable by the page.
    let big = json!({"text": "a".repeat(9 * 1024), "business": "haul"});
    let response = post(&app, Some(SHOP), big.clone()).await;
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["access-control-allow-origin"], SHOP);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("larger than 8192 bytes"),
        "{body}"
    );
    // A method or a path the API does not have.
    let put = app
        .http
        .put(url(&app, "/api/chat/messages"))
        .header("Origin", SHOP)
        .send()
        .await
        .unwrap();
    let nowhere = app
        .http
        .get(url(&app, "/api/chat/nowhere"))
        .header("Origin", SHOP)
        .send()
        .await
        .unwrap();
    for (response, status) in [(put, 405), (nowhere, 404)] {
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["access-control-allow-origin"], SHOP);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{status}: {body}");
    }
    // Another site is refused first, and still gets no CORS headers.
    let other = post(&app, Some("https://evil.example.net"), big).await;
    assert_eq!(other.status(), 403);
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_message_sent_again_with_its_id_is_stored_once_and_gets_the_same_answer() {
    if crate::helpers::skipped() {
        return;
    }
    let app = chat_app(Vec::new(), None).await;
    let first = post(
        &app,
        Some(SHOP),
        json!({"text": "hi", "business": "haul", "id": "m-1"}),
    )
    .await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let token = first["token"].as_str().unwrap().to_string();
    let sent = json!({"token": token, "text": "3", "id": "a1b2c3d4e5f6"});
    let answer = post(&app, Some(SHOP), sent.clone()).await;
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    // The browser lost that answer and sends the same message again.
    let again = post(&app, Some(SHOP), sent).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(replies(&again), replies(&answer));
    assert_eq!(again["after"], answer["after"]);
    assert_eq!(replies(&answer).len(), 1);

    let sql = app.sql().await;
    let stored = sql
        .count(
            "SELECT COUNT(*) FROM messages WHERE direction = 'inbound' AND body = '3'",
            &[],
        )
        .await;
    let answered = sql
        .count("SELECT COUNT(*) FROM messages WHERE direction = 'outbound'", &[])
        .await;
    assert_eq!((stored, answered), (1, 2), "one text, one reply to it");

    // The same id in another message of the session is that message again;
    // a new id is a new message.
    let next = reply(&app, &token, "1").await;
    assert!(!next.is_empty());
    for bad in ["", "has space", &"x".repeat(65)] {
        let response = post(&app, Some(SHOP), json!({"token": token, "text": "hi", "id": bad})).await;
        assert_eq!(response.status(), 400, "{bad:?}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("`id`"), "{body}");
    }
}

/// A maid service with the web chat, open on Monday 30 November 2026.
const MAID: &str = r#"
[business]
id = "maids"
name = "Effingham Sparkle Maids"
kind = "maid"
phone = "+15035550142"
timezone = "America/Los_Angeles"

[pricing]
minimum_charge = 120
rounding = "dollar"

[pricing.maid]
hourly_rate_per_person = 38
crew = 2

[[pricing.maid.clean_types]]
id = "standard"
label = "standard clean"
multiplier = 1

[[pricing.maid.clean_types]]
id = "deep"
label = "deep clean"
multiplier = 1.5

[[pricing.modifiers]]
id = "pets"
label = "Pet hair"
kind = "flat"
amount = 20

[[pricing.modifiers]]
id = "windows"
label = "Interior windows"
kind = "per_unit"
amount = 5
unit = "windows"

[[pricing.discounts]]
id = "first_deep_clean"
label = "New-customer deep clean"
kind = "percent"
percent = 10
services = ["deep"]
question = "Is this your first deep clean with us?"

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
sat = "closed"
sun = "closed"

[[providers]]
id = "team-a"
name = "Team A"

[webchat]
allowed_origins = ["https://shop.example.com"]
"#;

#[tokio::test]
async fn a_quick_guided_booking_stays_under_the_session_limit_and_a_flood_does_not() {
    if crate::helpers::skipped() {
        return;
    }
    // The default limits: nothing set but how long a POST waits for its
    // reply (a flood may be answered slowly, or not at all).
    let app = spawn_app_with(Options {
        with_model: false,
        business: Some(MAID.to_string()),
        clock: Some(monday_morning()),
        extra_vars: vec![("WEBCHAT_REPLY_WAIT_MS", "5000".to_string())],
        ..Options::default()
    })
    .await;
    let first = post(&app, Some(SHOP), json!({"text": "hi", "business": "maids"})).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let token = first["token"].as_str().unwrap().to_string();
    let greeting = replies(&first).join(" ");
    assert!(
        greeting.contains("Thanks for reaching out to Effingham Sparkle Maids")
            && !greeting.contains("texting"),
        "{greeting}"
    );
    // As fast as the answers come: the longest guided flow, with a phone check.
    let mut sent = 1;
    for text in [
        "3",
        "2",
        "2",
        "1 2",
        "8",
        "yes",
        "1",
        "Dana",
        "12 Oak St, Effingham",
    ] {
        reply(&app, &token, text).await;
        sent += 1;
    }
    assert_eq!(reply(&app, &token, "1").await, ASK_FOR_PHONE);
    assert_eq!(reply(&app, &token, "503-555-7788").await, CODE_SENT);
    let code = texted_code(&app, VISITOR_PHONE, 1).await;
    // The code books the opening picked before it.
    let booked = reply(&app, &token, &code).await;
    sent += 3;
    assert!(booked.contains("You're booked"), "{booked}");
    // Booking management in the chat's words, and the discount for a deep clean.
    assert!(booked.contains("Type R here to reschedule"), "{booked}");
    assert!(!booked.contains("Reply R"), "{booked}");
    assert_eq!(app.store.bookings().await.unwrap().len(), 1);
    assert!(
        sent > 12,
        "the flow sent {sent} messages: more than the old limit"
    );

    // Past the limit within the minute, a script's flood is refused.
    let mut refused = None;
    for n in 0..40 {
        let response = post(&app, Some(SHOP), json!({"token": token, "text": "hello?"})).await;
        if response.status() == 429 {
            refused = Some(sent + n);
            assert_eq!(response.headers()["access-control-allow-origin"], SHOP);
            assert!(response.headers().get("retry-after").is_some());
            break;
        }
        assert_eq!(response.status(), 200);
    }
    assert_eq!(refused, Some(30), "the 31st message in a minute is refused");
}

#[tokio::test]
async fn the_owners_cancel_of_a_web_booking_is_texted_to_the_verified_phone() {
    if crate::helpers::skipped() {
        return;
    }
    let clock = monday_morning();
    let app = chat_app(Vec::new(), Some(clock.clone())).await;
    let token = to_openings(&app).await;
    assert_eq!(reply(&app, &token, "5035557788").await, CODE_SENT);
    let code = texted_code(&app, VISITOR_PHONE, 1).await;
    reply(&app, &token, &code).await;
    let booked = reply(&app, &token, "2").await;
    assert!(booked.contains("You're booked"), "{booked}");
    let booking = app.store.bookings().await.unwrap().remove(0);

    crate::console::with_password(&app).await;
    let (mut browser, csrf) = crate::console::Browser::logged_in(&app).await;
    let page = format!("/owner/conversations/{}", booking.conversation_id.0);
    let done = browser
        .post(&format!("{page}/cancel"), &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(done.status, reqwest::StatusCode::SEE_OTHER, "{}", done.body);
    let after = browser.get(&page).await;
    assert!(
        after
            .body
            .contains("The customer will be texted at the number they verified"),
        "{}",
        after.body
    );
    assert_eq!(
        app.store.booking(&booking.id).await.unwrap().unwrap().status,
        BookingStatus::Cancelled
    );

    // By text, to the phone, in that number's conversation: not only to a
    // chat page that is rarely open.
    let expected = format!(
        "Rose City Junk Haulers cancelled your booking for {}. We're sorry for the change. Text us any time to book again.",
        booking.label
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let texted = app
            .sent_texts()
            .await
            .into_iter()
            .any(|(to, body)| to == VISITOR_PHONE && body == expected);
        if texted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no cancellation texted to the verified phone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.wait_until_idle().await;
    let to_phone = app
        .sent_texts()
        .await
        .into_iter()
        .filter(|(to, body)| to == VISITOR_PHONE && body.contains("cancelled"))
        .count();
    assert_eq!(to_phone, 1);
}
