//! Issue 12: the web chat widget in a real browser (Debian's Chromium,
//! driven through ChromeDriver by fantoccini, set up as `tests/browser`),
//! on a test page served from another origin that the business allows,
//! against the real app with the fake Twilio of the API tests: a
//! conversation to a quote, a phone verification (the code read from the
//! fake Twilio) and a booking. Screenshots at 1280 and 375 px go to
//! `target/screenshots/webchat-*.png`.
//!
//! Without `chromium` and `chromedriver` the test fails and says what to
//! install, unless `TEXTDESK_SKIP_BROWSER=1` is set.

/// The browser test runs on SQLite (the shared helpers ask).
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

use chrono::TimeZone;
use fantoccini::{Client, Locator};
use serde_json::json;
use textdesk::channel::webchat::ASK_FOR_PHONE;
use textdesk::clock::ManualClock;
use textdesk::jobs::verification::CODE_SENT;
use textdesk::store::BookingStatus;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use browser::*;
use helpers::*;

const VISITOR_PHONE: &str = "+15035557788";
/// The widget's transcript, one entry per message, read in one script call.
async fn transcript(client: &Client) -> Vec<String> {
    let value = client
        .execute(
            "return Array.from(document.querySelectorAll('.tdc-log .tdc-msg')).map(e => e.textContent)",
            vec![],
        )
        .await
        .unwrap();
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Types `text` into the widget, sends it, and waits for the reply that
/// follows it; returns that reply (without its screen-reader prefix).
async fn say(client: &Client, text: &str) -> String {
    let before = transcript(client).await.len();
    let input = client.find(Locator::Id("tdc-input")).await.unwrap();
    input.send_keys(text).await.unwrap();
    client
        .find(Locator::Css(".tdc-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let now = transcript(client).await;
        if now.len() >= before + 2 {
            assert_eq!(now[before], format!("You: {text}"), "{now:?}");
            return now[before + 1].trim_start_matches("Reply: ").to_string();
        }
        assert!(Instant::now() < deadline, "no reply to {text:?}: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The code the fake Twilio was asked to text to the visitor's phone.
async fn texted_code(app: &TestApp) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some((_, body)) = app
            .sent_texts()
            .await
            .into_iter()
            .find(|(to, _)| to == VISITOR_PHONE)
        {
            let at = body.find("code is ").expect("a code text") + "code is ".len();
            return body[at..at + 6].to_string();
        }
        assert!(Instant::now() < deadline, "no code was texted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn business(origin: &str) -> String {
    format!(
        r#"
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
allowed_origins = ["{origin}"]
"#
    )
}

#[tokio::test]
async fn a_visitor_on_the_owners_site_gets_a_quote_verifies_a_phone_and_books() {
    // The owner's site: another origin (its own port), allowed by the
    // business, with the one script tag.
    let site = MockServer::start().await;
    let app = spawn_app_with(Options {
        with_model: false,
        business: Some(business(&site.uri())),
        clock: Some(ManualClock::at(
            chrono::Utc.with_ymd_and_hms(2026, 11, 30, 18, 0, 0).unwrap(),
        )),
        ..Options::default()
    })
    .await;
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Rose City Junk Haulers</title>\
         <style>body{{font:16px/1.5 Georgia,serif;margin:0;padding:24px;background:#faf7f2}}</style></head>\
         <body><h1>Rose City Junk Haulers</h1><p>Couches, fridges, whole garages: we haul it away.</p>\
         <script src=\"{}/chat/widget.js\" data-business=\"haul\" data-title=\"Chat with us\" async></script>\
         </body></html>",
        app.address
    );
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(page, "text/html; charset=utf-8"))
        .mount(&site)
        .await;

    with_browser(|client| async move {
        client.goto(&format!("{}/", site.uri())).await.unwrap();
        let bubble = client
            .wait()
            .for_element(Locator::Css(".tdc-bubble"))
            .await
            .unwrap();
        assert_eq!(
            bubble.attr("aria-expanded").await.unwrap().as_deref(),
            Some("false")
        );
        screenshot(&client, "webchat-closed").await;
        bubble.click().await.unwrap();
        assert_eq!(
            bubble.attr("aria-expanded").await.unwrap().as_deref(),
            Some("true")
        );

        // A conversation to a quote, typed in the widget; the visitor's
        // own text shows as text, not markup.
        let first = say(&client, "<b>hi</b>").await;
        assert!(first.contains("What needs to go?"), "{first}");
        let quoted = say(&client, "3").await;
        let mut replies = vec![quoted];
        replies.push(say(&client, "1").await);
        // The answer to the next message is lost on the way (the request
        // reached the server): the widget sends it again, with its id, and
        // the server stores it once and answers it the same.
        client
            .execute(
                "window.__lost = 0;
                 const real = window.fetch;
                 window.fetch = function (url, options) {
                     const sent = real(url, options);
                     if (options && options.method === 'POST' && window.__lose) {
                         window.__lose = false;
                         window.__lost += 1;
                         return sent.then(() => { throw new TypeError('Failed to fetch'); });
                     }
                     return sent;
                 };
                 window.__lose = true;",
                vec![],
            )
            .await
            .unwrap();
        replies.push(say(&client, "Dana").await);
        let lost = client.execute("return window.__lost", vec![]).await.unwrap();
        assert_eq!(lost, json!(1), "one answer was lost");
        let stored = app
            .sql()
            .await
            .count(
                "SELECT COUNT(*) FROM messages WHERE direction = 'inbound' AND body = 'Dana'",
                &[],
            )
            .await;
        assert_eq!(stored, 1, "the message sent again is stored once");
        replies.push(say(&client, "12 Oak St, Portland").await);
        assert!(
            replies.iter().any(|r| r.contains('$')),
            "a price from the quote engine: {replies:?}"
        );
        let bold = client
            .execute("return document.querySelectorAll('.tdc-log b').length", vec![])
            .await
            .unwrap();
        assert_eq!(bold, json!(0), "customer text is never parsed as HTML");
        screenshot(&client, "webchat-quote").await;

        // Booking needs a verified phone: the code comes by text.
        assert_eq!(say(&client, "1").await, ASK_FOR_PHONE);
        assert_eq!(say(&client, "503-555-7788").await, CODE_SENT);
        let code = texted_code(&app).await;
        // The code books the opening picked before it: no second pick.
        let booked = say(&client, &code).await;
        assert!(booked.contains("You're booked"), "{booked}");
        screenshot(&client, "webchat-booked").await;

        let bookings = app.store.bookings().await.unwrap();
        assert_eq!(bookings.len(), 1);
        assert_eq!(bookings[0].status, BookingStatus::Confirmed);

        // Escape closes the panel and gives focus back to the bubble.
        client
            .find(Locator::Id("tdc-input"))
            .await
            .unwrap()
            .send_keys("\u{e00c}")
            .await
            .unwrap();
        let hidden = client
            .execute("return document.getElementById('tdc-panel').hidden", vec![])
            .await
            .unwrap();
        assert_eq!(hidden, json!(true));
    })
    .await;
}
