//! Issue 10: the owner's console in a real browser (Debian's Chromium,
//! driven through ChromeDriver by fantoccini), against the real app with
//! the fake Twilio and Anthropic of the API tests.
//!
//! One ChromeDriver process serves the whole binary; each test opens its
//! own headless Chromium session on it. Screenshots of every page at 1280
//! and 375 px go to `target/screenshots/`.
//!
//! Without `chromium` and `chromedriver` the tests fail and say what to
//! install, unless `TEXTDESK_SKIP_BROWSER=1` is set.

/// Which backend `helpers::TestDb` creates: SQLite (the browser test
/// drives the console, which reads the same ports on either backend).
pub const POSTGRES: bool = false;

#[allow(dead_code)]
#[path = "../api/fake_google.rs"]
mod fake_google;
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

#[path = "../support/browser.rs"]
mod browser;

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use textdesk::http::owner::password::set_owner_password;
use textdesk::store::console::ConsoleStore;
use textdesk::store::sqlite::SqliteStore;
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use browser::*;
use helpers::*;

const PASSWORD: &str = "correct horse battery";
const DANA: &str = "+15035551234";
const LEE: &str = "+15035559876";
/// Waits until the page's text contains `needle` (reloading each time if
/// `reload`), or fails with what the page said.
async fn wait_for_text(client: &Client, needle: &str, reload: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = page_text(client).await;
        if body.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {needle:?} on the page:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        if reload {
            client.refresh().await.unwrap();
        }
    }
}

/// The page's visible text, read in one script call (an element handle
/// would go stale when a click navigates).
async fn page_text(client: &Client) -> String {
    client
        .execute("return document.body ? document.body.innerText : ''", vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn path_of(client: &Client) -> String {
    client.current_url().await.unwrap().path().to_string()
}

async fn with_password(app: &TestApp) -> SqliteStore {
    let store = SqliteStore::connect(&app.database_url).await.unwrap();
    set_owner_password(&store, PASSWORD).await.unwrap();
    store
}

/// Types the password into the login page and submits it.
async fn log_in(client: &Client, app: &TestApp) {
    client
        .goto(&format!("{}/owner/login", app.address))
        .await
        .unwrap();
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    client
        .find(Locator::Css("form[action='/owner/login'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(client, "Log out", false).await;
    assert_eq!(path_of(client).await, "/owner/", "logging in lands on the inbox");
}

/// Claude as the tests need it: a customer who asks for a person is handed
/// to the owner (the real `escalate_to_owner` tool); anything else is
/// echoed. The turn after the tool call gets a short acknowledgement.
struct HandoffClaude;

impl Respond for HandoffClaude {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let messages = body["messages"].as_array().unwrap();
        let after_tool = messages.last().is_some_and(|m| {
            m["content"]
                .as_array()
                .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
        });
        let last = last_user_text(&body);
        let reply = if after_tool {
            claude_text("The owner will text you soon.")
        } else if last.contains("person") {
            json!({
                "id": "msg_tool", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
                "content": [{"type": "tool_use", "id": "t1", "name": "escalate_to_owner",
                             "input": {"reason": "customer_asked_for_person", "summary": "Lee wants to talk to a person."}}],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 10, "output_tokens": 10}
            })
        } else {
            claude_text(&format!("Re: {}", last.lines().last().unwrap_or_default()))
        };
        ResponseTemplate::new(200).set_body_json(reply)
    }
}

async fn console_app() -> TestApp {
    let app = spawn_app_with(Options {
        default_fakes: false,
        // Midday where the business is: at night the owner's reply would
        // wait for the end of quiet hours, and the test would depend on
        // the hour it runs at.
        running_from: Some(today_at(chrono_tz::America::Los_Angeles, 12, 0)),
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(HandoffClaude)
        .mount(&app.anthropic)
        .await;
    app
}

#[tokio::test]
async fn the_owner_logs_in_sees_a_text_arrive_opens_it_and_resolves_an_alert() {
    let app = console_app().await;
    let store = with_password(&app).await;
    with_browser(|client| async move {
        client.goto(&format!("{}/owner/", app.address)).await.unwrap();
        assert_eq!(
            path_of(&client).await,
            "/owner/login",
            "no session: the login page"
        );
        screenshot(&client, "login").await;
        log_in(&client, &app).await;
        screenshot(&client, "inbox-empty").await;

        // A text through the real webhook, signed as Twilio signs it.
        app.text(DANA, "Hi, can you haul away an old couch?").await;
        app.wait_until_settled(DANA).await;
        wait_for_text(&client, "+15035551234", true).await;
        wait_for_text(&client, "Re: Hi, can you haul away an old couch?", false).await;

        // Another customer asks for a person: a hand-off, and its alert.
        app.text(LEE, "Can I talk to a person please").await;
        app.wait_until_settled(LEE).await;
        wait_for_text(&client, "+15035559876", true).await;
        let pinned = client
            .find(Locator::Css("ul.inbox > li"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            pinned.contains("+15035559876") && pinned.contains("Needs you"),
            "the handed-off conversation is pinned first: {pinned}"
        );
        screenshot(&client, "inbox").await;

        // Open Dana's conversation from the inbox.
        client
            .find(Locator::XPath(
                "//ul[@class='inbox']//a[contains(., '+15035551234')]",
            ))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_text(&client, "Hi, can you haul away an old couch?", false).await;
        assert!(path_of(&client).await.starts_with("/owner/conversations/"));
        let thread = page_text(&client).await;
        assert!(
            thread.contains("Re: Hi, can you haul away an old couch?"),
            "{thread}"
        );
        screenshot(&client, "conversation").await;

        // The alerts page: the hand-off, then resolved with its button.
        client
            .find(Locator::Css(".top nav a[href^='/owner/alerts']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_text(&client, "Lee wants to talk to a person.", false).await;
        assert_eq!(store.open_alert_count(None).await.unwrap(), 1);
        screenshot(&client, "alerts").await;
        client
            .find(Locator::XPath("//form[contains(@action, '/resolve')]/button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_text(&client, "No open alerts.", false).await;
        assert_eq!(
            store.open_alert_count(None).await.unwrap(),
            0,
            "resolved in the database"
        );
        client
            .find(Locator::LinkText("Resolved"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_text(&client, "Lee wants to talk to a person.", false).await;
        screenshot(&client, "alerts-resolved").await;

        for (name, page) in [("schedule", "/owner/schedule"), ("jobs", "/owner/jobs")] {
            client.goto(&format!("{}{page}", app.address)).await.unwrap();
            assert_eq!(path_of(&client).await, page);
            screenshot(&client, name).await;
        }
        // The settings page comes with another branch: photographed once
        // it is there.
        client
            .goto(&format!("{}/owner/settings", app.address))
            .await
            .unwrap();
        if !page_text(&client).await.contains("There is no such page.") {
            screenshot(&client, "settings").await;
        }

        // Logging out ends the session.
        client.goto(&format!("{}/owner/", app.address)).await.unwrap();
        client
            .find(Locator::Css("form[action='/owner/logout'] button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client.goto(&format!("{}/owner/", app.address)).await.unwrap();
        assert_eq!(path_of(&client).await, "/owner/login");
    })
    .await;
}

/// A junk hauler with one crew and no model: the guided flow books.
fn guided_business() -> String {
    "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\n\
     owner_email = \"owner@example.com\"\nowner_name = \"Maria\"\n\
     [schedule]\nmin_notice_hours = 48\nhorizon_days = 14\n\
     [[providers]]\nid = \"crew-1\"\nname = \"Crew 1\"\nemail = \"crew1@example.com\"\n"
        .into()
}

#[tokio::test]
async fn a_booked_job_reads_well_on_the_conversation_schedule_and_jobs_pages() {
    let outbox = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Options {
        with_model: false,
        business: Some(guided_business()),
        extra_vars: vec![("OUTBOX_DIR", outbox.path().display().to_string())],
        ..Options::default()
    })
    .await;
    with_password(&app).await;
    // Size, half a truck, the address, the first opening: booked, with a
    // quote, a crew's day and reminders queued.
    for (i, text) in ["hi", "3", "1", "12 Oak St, Portland", "1"].iter().enumerate() {
        app.text(DANA, text).await;
        app.wait_for_texts(i + 1).await;
    }
    app.wait_until_settled(DANA).await;
    assert_eq!(
        app.store.bookings().await.unwrap().len(),
        1,
        "the guided flow booked"
    );
    let label = app.store.bookings().await.unwrap()[0].label.clone();
    let conversation = app.conversation(DANA).await.unwrap();
    with_browser(|client| async move {
        log_in(&client, &app).await;
        client
            .goto(&format!("{}/owner/conversations/{}", app.address, conversation.0))
            .await
            .unwrap();
        wait_for_text(&client, "12 Oak St, Portland", false).await;
        screenshot(&client, "conversation-booked").await;
        client
            .goto(&format!("{}/owner/schedule", app.address))
            .await
            .unwrap();
        wait_for_text(&client, "Crew 1", false).await;
        screenshot(&client, "schedule-booked").await;
        client.goto(&format!("{}/owner/jobs", app.address)).await.unwrap();
        screenshot(&client, "jobs-pending").await;

        // Taken over, the booking still shows, and can be cancelled there.
        client
            .goto(&format!("{}/owner/conversations/{}", app.address, conversation.0))
            .await
            .unwrap();
        click(&client, "take-over").await;
        wait_for_text(&client, "hand the conversation back first", false).await;
        let text = page_text(&client).await;
        assert!(text.contains(&format!("Booking: {label}")), "{text}");
        screenshot(&client, "conversation-booked-taken-over").await;
        click(&client, "cancel-booking").await;
        wait_for_text(&client, "Cancelled the booking", false).await;
        assert!(page_text(&client).await.contains("The customer was texted."));
        screenshot(&client, "conversation-cancelled-by-owner").await;
        let sent = app.wait_for_texts(6).await;
        assert!(
            sent[5].1.contains(&format!("cancelled your booking for {label}")),
            "{:?}",
            sent[5]
        );
    })
    .await;
}

/// The system prompt of a Messages API request, whether sent as text or
/// as blocks.
fn system_prompt(request: &Value) -> String {
    match &request["system"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

async fn wait_for_model_requests(app: &TestApp, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let requests = app.model_requests().await;
        if requests.len() >= n {
            return requests;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} model requests, got {}",
            requests.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The prompt text the settings page shows, without its labels and counts:
/// the sections' bodies, as the model receives them. The page's script
/// swaps the preview in while we read it, so a section gone stale mid-read
/// means reading the new one again.
async fn assembled_prompt(client: &Client) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut text = String::new();
        let mut stale = false;
        for section in client
            .find_all(Locator::Css("#assembled-prompt pre"))
            .await
            .unwrap()
        {
            match section.text().await {
                Ok(body) => {
                    text.push_str(&body);
                    text.push('\n');
                }
                Err(_) => {
                    stale = true;
                    break;
                }
            }
        }
        if !stale {
            return text;
        }
        assert!(Instant::now() < deadline, "the preview never held still");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_owner_takes_over_replies_hands_back_and_retunes_the_assistant() {
    let app = console_app().await;
    with_password(&app).await;
    with_browser(|client| async move {
        log_in(&client, &app).await;
        app.text(DANA, "Hi, can you haul away an old couch?").await;
        app.wait_until_settled(DANA).await;
        let conversation = app.conversation(DANA).await.unwrap();
        client
            .goto(&format!("{}/owner/conversations/{}", app.address, conversation.0))
            .await
            .unwrap();

        // Take over: the assistant stays silent while the owner has it.
        click(&client, "take-over").await;
        client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id("hand-back"))
            .await
            .unwrap();
        let asked = app.model_requests().await.len();
        app.text(DANA, "Hello? Anyone there?").await;
        app.wait_until_settled(DANA).await;
        assert_eq!(app.model_requests().await.len(), asked, "the model was not asked");
        screenshot(&client, "conversation-taken-over").await;

        // The owner's reply reaches the customer through the fake Twilio.
        let reply = "Hi Dana, this is Maria from Rose City. I will call you shortly.";
        client.refresh().await.unwrap();
        client
            .find(Locator::Id("reply-body"))
            .await
            .unwrap()
            .send_keys(reply)
            .await
            .unwrap();
        click(&client, "reply-send").await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let sent = app.sent_texts().await;
            if sent.iter().any(|(to, body)| to == DANA && body == reply) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the owner's reply never reached Twilio: {sent:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        wait_for_text(&client, reply, true).await;

        // Hand back: the assistant answers the next text again.
        click(&client, "hand-back").await;
        client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id("take-over"))
            .await
            .unwrap();
        app.text(DANA, "Thanks, talk soon").await;
        app.wait_until_settled(DANA).await;
        wait_for_model_requests(&app, asked + 1).await;

        // Settings: a new tone changes the assembled prompt as it is picked,
        // and once saved, the next model request carries it.
        client
            .goto(&format!("{}/owner/settings", app.address))
            .await
            .unwrap();
        screenshot(&client, "settings").await;
        let before = assembled_prompt(&client).await;
        let mut other_tone = None;
        for radio in client.find_all(Locator::Css("input[name='tone']")).await.unwrap() {
            if !radio.is_selected().await.unwrap() {
                other_tone = Some(radio);
                break;
            }
        }
        let other_tone = other_tone.expect("a tone other than the current one");
        let id = other_tone.attr("id").await.unwrap();
        // A card's radio may be visually hidden: click its label then.
        if other_tone.click().await.is_err() {
            let label = match id {
                Some(id) => format!("label[for='{id}']"),
                None => panic!("a hidden tone radio without an id has no label to click"),
            };
            client
                .find(Locator::Css(&label))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let after = loop {
            let now = assembled_prompt(&client).await;
            if now != before {
                break now;
            }
            assert!(
                Instant::now() < deadline,
                "the preview did not change with the tone"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let changed: Vec<&str> = after
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !before.contains(*l))
            .collect();
        assert!(!changed.is_empty(), "the preview changed only in whitespace");
        click(&client, "save").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let asked = app.model_requests().await.len();
        app.text(DANA, "One more question").await;
        app.wait_until_settled(DANA).await;
        let requests = wait_for_model_requests(&app, asked + 1).await;
        let prompt = system_prompt(requests.last().unwrap());
        for line in changed {
            assert!(
                prompt.contains(line),
                "the saved tone ({line:?}) is in the next system prompt:\n{prompt}"
            );
        }
    })
    .await;
}
