//! Calls: a WebSocket client speaking ConversationRelay's protocol against
//! the real app, a fake streaming Anthropic (SSE bodies) and a fake Twilio.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use textdesk::anthropic::stream::sse_body;
use textdesk::channel::voice::money_in_words;
use textdesk::domain::money::Money;
use textdesk::store::Direction;
use textdesk::twilio::signature;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::*;
use textdesk::clock::ManualClock;

const CALLER: &str = "+15035551234";
const OWNER: &str = "+15035550199";
const RELAY_URL: &str = "wss://desk.example.com/api/voice/relay";

/// Open every day, all day: the test does not depend on the hour it runs.
fn business(owner_phone: bool) -> String {
    let owner = if owner_phone {
        format!("owner_phone = \"{OWNER}\"\nowner_name = \"Maria\"\n")
    } else {
        String::new()
    };
    let all_day = "\"00:00-23:59\"";
    format!(
        "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\ntimezone = \"America/Los_Angeles\"\n{owner}\n\
         [schedule]\nmin_notice_hours = 0\nhorizon_days = 14\n\
         [schedule.hours]\nmon = {all_day}\ntue = {all_day}\nwed = {all_day}\nthu = {all_day}\nfri = {all_day}\nsat = {all_day}\nsun = {all_day}\n"
    )
}

type Step = Box<dyn Fn(&Value) -> String + Send + Sync>;

/// A streaming Claude that plays a script: each step makes its SSE body
/// from the request (so it can say what a tool result said, as a model
/// would).
struct StreamingClaude {
    steps: Mutex<VecDeque<Step>>,
    delay: Duration,
}

impl Respond for StreamingClaude {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["stream"], json!(true), "calls stream");
        let step = self.steps.lock().unwrap().pop_front();
        let sse = match step {
            Some(step) => step(&body),
            None => sse_body(&["Is there anything else?"], None),
        };
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/event-stream")
            .set_body_string(sse)
            .set_delay(self.delay)
    }
}

fn tool(id: &'static str, name: &'static str, input: Value) -> Step {
    Box::new(move |_| sse_body(&[], Some((id, name, &input))))
}

fn say(text: &'static str) -> Step {
    Box::new(move |_| {
        // Streamed in small pieces, as the API does.
        let pieces: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        sse_body(&pieces, None)
    })
}

/// The last tool result the request carries.
fn last_tool_result(request: &Value) -> String {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .rfind(|b| b["type"] == "tool_result")
        .map(|b| b["content"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

async fn app_with_script(steps: Vec<Step>, owner_phone: bool, delay: Duration) -> TestApp {
    let app = spawn_app_with(Options {
        default_fakes: false,
        business: Some(business(owner_phone)),
        // Midday: the booking's confirmation text is not held for quiet
        // hours, whatever the hour the test runs.
        clock: Some(ManualClock::at(today_at(chrono_tz::America::Los_Angeles, 12, 0))),
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(StreamingClaude {
            steps: Mutex::new(steps.into()),
            delay,
        })
        .mount(&app.anthropic)
        .await;
    app
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Twilio's side of the relay.
struct Relay {
    ws: Socket,
}

impl Relay {
    async fn connect(
        app: &TestApp,
        signature: Option<&str>,
    ) -> Result<Relay, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}/api/voice/relay", app.address.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        if let Some(signature) = signature {
            request
                .headers_mut()
                .insert("x-twilio-signature", signature.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Relay { ws })
    }

    async fn signed(app: &TestApp) -> Relay {
        let signature = signature::sign(AUTH_TOKEN, RELAY_URL, &[]);
        Relay::connect(app, Some(&signature)).await.unwrap()
    }

    async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    async fn setup(&mut self, call_sid: &str, mode: Option<&str>) {
        let custom = match mode {
            Some(mode) => json!({"mode": mode}),
            None => json!({}),
        };
        self.send(json!({
            "type": "setup", "sessionId": format!("VX{}", uuid::Uuid::new_v4().simple()), "callSid": call_sid, "accountSid": ACCOUNT_SID,
            "from": CALLER, "to": BUSINESS_NUMBER, "direction": "inbound", "customParameters": custom
        }))
        .await;
    }

    async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(15), self.ws.next())
                .await
                .expect("a relay message within 15 s")
                .expect("the relay is open")
                .unwrap();
            if let Message::Text(text) = frame {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// Says `text` as the caller; returns what the desk says back, up to
    /// its `last:true`, and the `end` message if the desk ends the session.
    async fn say(&mut self, text: &str) -> (String, Option<Value>) {
        self.send(json!({"type": "prompt", "voicePrompt": text, "lang": "en-US", "last": true}))
            .await;
        self.hear().await
    }

    async fn hear(&mut self) -> (String, Option<Value>) {
        let mut said = String::new();
        loop {
            let message = self.next().await;
            match message["type"].as_str() {
                Some("text") => {
                    said.push_str(message["token"].as_str().unwrap());
                    if message["last"] == json!(true) {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}: {message}"),
            }
        }
        // An `end` follows at once when the desk ends the session.
        let end = match tokio::time::timeout(Duration::from_millis(300), self.ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => Some(serde_json::from_str::<Value>(&text).unwrap()),
            _ => None,
        };
        (said.trim().to_string(), end)
    }
}

fn call_params(call_sid: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", call_sid),
        ("From", CALLER),
        ("To", BUSINESS_NUMBER),
        ("CallStatus", "in-progress"),
        ("Direction", "inbound"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    params
}

/// Waits for a condition on the store instead of sleeping.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_whole_call_from_greeting_to_booked_and_the_confirmation_text() {
    if crate::helpers::skipped() {
        return;
    }
    let price_from_quote: Step = Box::new(|request| {
        let result = last_tool_result(request);
        let at = result
            .find("total $")
            .expect("get_quote's result states the total")
            + "total ".len();
        let amount: String = result[at..]
            .chars()
            .take_while(|c| *c == '$' || c.is_ascii_digit() || *c == ',' || *c == '.')
            .collect();
        let amount = amount.trim_end_matches('.').to_string();
        let text = format!("Sure. That's {amount} for both. Want me to find a time?");
        sse_body(&[&text[..9], &text[9..]], None)
    });
    let openings: Step = Box::new(|request| {
        let result = last_tool_result(request);
        let labels: Vec<String> = result
            .lines()
            .filter_map(|l| l.strip_prefix("1) ").or_else(|| l.strip_prefix("2) ")))
            .map(str::to_string)
            .collect();
        assert!(labels.len() >= 2, "{result}");
        let text = format!("I have {} or {}. Which suits you?", labels[0], labels[1]);
        sse_body(&[&text], None)
    });
    let app = app_with_script(
        vec![
            tool(
                "t1",
                "record_job_details",
                json!({"size": "half_truck", "notes": "a couch and a fridge", "address": "12 Oak St, Portland", "customer_name": "Dana"}),
            ),
            tool("t2", "get_quote", json!({})),
            price_from_quote,
            tool("t3", "get_available_slots", json!({})),
            openings,
            tool("t4", "book_slot", json!({"slot_id": 1})),
            say("You're all set."),
        ],
        true,
        Duration::ZERO,
    )
    .await;

    // Twilio's voice webhook: TwiML connecting the call to the relay.
    let response = app
        .post_signed("/api/voice/inbound", &call_params("CAwhole", &[]))
        .await;
    assert_eq!(response.status(), 200);
    let twiml = response.text().await.unwrap();
    assert!(
        twiml.contains("<Connect action=\"https://desk.example.com/api/voice/after\">")
            && twiml.contains("url=\"wss://desk.example.com/api/voice/relay\"")
            && twiml.contains("welcomeGreeting=\"Thank you for calling Rose City Junk Haulers."),
        "{twiml}"
    );

    let mut relay = Relay::signed(&app).await;
    relay.setup("CAwhole", None).await;
    // Twilio's malformed and unknown messages are logged; the call goes on.
    relay.send(json!({"type": "hologram"})).await;
    relay.ws.send(Message::Text("{not json".into())).await.unwrap();

    let (quoted, end) = relay.say("I need a couch and a fridge hauled away").await;
    assert!(end.is_none());
    let conversation = app.conversation(CALLER).await.expect("the caller is a customer");
    let turn = app.store.turn_input(conversation, 50).await.unwrap();
    let total: Money = turn.quotes.last().expect("the engine quoted").total;
    assert!(
        quoted.contains(&format!("That's {} for both.", money_in_words(total))),
        "the engine's price, in words: {quoted}"
    );
    assert!(!quoted.contains('$'), "{quoted}");

    let (offered, _) = relay.say("When can you come?").await;
    assert!(
        offered.starts_with("I have ") && offered.contains(" or "),
        "{offered}"
    );
    let (booked, _) = relay.say("The first one, please.").await;
    assert!(booked.contains("You're all set."), "{booked}");

    let turn = app.store.turn_input(conversation, 50).await.unwrap();
    assert_eq!(turn.state.name(), "BOOKED");
    // The confirmation text, stated by code, arrives at the fake Twilio.
    let sent = app.wait_for_texts(1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0]
            .1
            .starts_with("You're booked with Rose City Junk Haulers: ")
            && sent[0].0 == CALLER,
        "{sent:?}"
    );
    // The transcript is the conversation's history: what was said, both ways.
    let messages = app.messages(CALLER).await;
    let inbound: Vec<&str> = messages
        .iter()
        .filter(|m| m.direction == Direction::Inbound)
        .map(|m| m.body.as_str())
        .collect();
    assert_eq!(
        inbound,
        vec![
            "I need a couch and a fridge hauled away",
            "When can you come?",
            "The first one, please."
        ]
    );
    let replies: Vec<&str> = messages
        .iter()
        .filter(|m| m.direction == Direction::Outbound && m.status == "sent")
        .map(|m| m.body.as_str())
        .collect();
    assert!(replies.len() >= 3, "{replies:?}");
    assert_eq!(replies[0], quoted);
}

#[tokio::test]
async fn an_interrupt_cuts_the_stored_reply_to_what_was_heard() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with_script(
        vec![say(
            "Happy to help with that. We haul couches, fridges and more. Tell me what else is in the pile.",
        )],
        false,
        Duration::ZERO,
    )
    .await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAbarge", None).await;
    let (said, _) = relay.say("Hi, I have some junk").await;
    assert!(said.ends_with("Tell me what else is in the pile."), "{said}");
    let conversation = app.conversation(CALLER).await.unwrap();
    let reply = |messages: Vec<textdesk::store::Message>| {
        messages
            .into_iter()
            .rfind(|m| m.direction == Direction::Outbound)
            .map(|m| m.body)
    };
    let store = app.store.clone();
    eventually("the reply is stored", || {
        let store = store.clone();
        async move { reply(store.messages(conversation).await.unwrap()).is_some() }
    })
    .await;
    relay
        .send(json!({"type": "interrupt", "utteranceUntilInterrupt": "Happy to help with that. We haul couches", "durationUntilInterruptMs": 2100}))
        .await;
    eventually("the reply is cut to what was heard", || {
        let store = store.clone();
        async move {
            reply(store.messages(conversation).await.unwrap()).as_deref()
                == Some("Happy to help with that. We haul couches")
        }
    })
    .await;
}

#[tokio::test]
async fn asking_for_a_person_ends_with_handoff_data_and_the_owner_is_dialled() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with_script(Vec::new(), true, Duration::ZERO).await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAperson", None).await;
    let (said, end) = relay.say("Let me talk to someone").await;
    assert!(said.contains("put you through to Maria"), "{said}");
    let end = end.expect("the session ends");
    assert_eq!(end["type"], "end");
    let handoff_data = end["handoffData"].as_str().expect("a JSON string");
    let handoff: Value = serde_json::from_str(handoff_data).unwrap();
    assert_eq!(handoff["reason"], "transfer");
    assert!(app.model_requests().await.is_empty(), "code reads the request");
    let turn = app
        .store
        .turn_input(app.conversation(CALLER).await.unwrap(), 20)
        .await
        .unwrap();
    assert_eq!(turn.state.name(), "HANDED_OFF");

    // Twilio posts the hand-off to the <Connect action>: dial the owner.
    let response = app
        .post_signed(
            "/api/voice/after",
            &call_params(
                "CAperson",
                &[("HandoffData", handoff_data), ("SessionStatus", "ended")],
            ),
        )
        .await;
    assert_eq!(response.status(), 200);
    let twiml = response.text().await.unwrap();
    assert!(
        twiml.contains(&format!(">{OWNER}</Dial>"))
            && twiml.contains("<Dial action=\"https://desk.example.com/api/voice/after\""),
        "{twiml}"
    );
    // Nobody picks up: the caller leaves a message instead.
    let response = app
        .post_signed(
            "/api/voice/after",
            &call_params("CAperson", &[("DialCallStatus", "no-answer")]),
        )
        .await;
    let twiml = response.text().await.unwrap();
    assert!(
        twiml.contains("<ConversationRelay")
            && twiml.contains("<Parameter name=\"mode\" value=\"message\"/>"),
        "{twiml}"
    );
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAperson", Some("message")).await;
    let (said, end) = relay.say("Please call me back about the fridge").await;
    assert!(said.contains("pass your message to Maria"), "{said}");
    let handoff: Value = serde_json::from_str(end.unwrap()["handoffData"].as_str().unwrap()).unwrap();
    assert_eq!(handoff["reason"], "message_taken");
    let alerts = app.store.alerts().await.unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a.detail.contains("Please call me back about the fridge") && a.detail.contains(CALLER)),
        "{alerts:?}"
    );
}

#[tokio::test]
async fn a_forged_or_unsigned_handshake_is_refused() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with_script(Vec::new(), false, Duration::ZERO).await;
    let forged = signature::sign("not-the-token", RELAY_URL, &[]);
    for signature in [Some(forged.as_str()), None] {
        match Relay::connect(&app, signature).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403)
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a forged handshake was accepted"),
        }
    }
    // The voice webhook is checked like the SMS webhook.
    let response = app
        .post_raw("/api/voice/inbound", &call_params("CAforged", &[]), Some(&forged))
        .await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_model_failing_mid_call_is_an_apology_within_three_seconds() {
    if crate::helpers::skipped() {
        return;
    }
    let failing: Step = Box::new(|_| {
        let mut body = sse_body(&[], None);
        // The stream breaks off: text, then an error event.
        body.truncate(body.find("event: message_delta").unwrap());
        body.push_str("event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n");
        body
    });
    let app = app_with_script(vec![failing], false, Duration::ZERO).await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAfail", None).await;
    let started = Instant::now();
    relay
        .send(json!({"type": "prompt", "voicePrompt": "How much for a couch?", "last": true}))
        .await;
    let first = relay.next().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(first["type"], "text");
    let mut said = first["token"].as_str().unwrap().to_string();
    if first["last"] != json!(true) {
        let (rest, _) = relay.hear().await;
        said.push_str(&rest);
    }
    assert!(said.contains("I'm sorry"), "{said}");
    // No owner phone: the caller is asked for a message.
    assert!(said.contains("tell me your message"), "{said}");
    let alerts = app.store.alerts().await.unwrap();
    assert!(
        alerts.iter().any(|a| a.kind.as_str() == "model_unavailable"),
        "{alerts:?}"
    );
}

#[tokio::test]
async fn a_model_that_never_answers_never_leaves_three_seconds_of_silence_and_ends_in_an_apology() {
    if crate::helpers::skipped() {
        return;
    }
    // The model's response would start after 30 s: the call must fill the
    // line and, at the stall limit (8 s), apologise and take a message.
    let app = app_with_script(vec![say("Too late.")], false, Duration::from_secs(30)).await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAhung", None).await;
    relay
        .send(json!({"type": "prompt", "voicePrompt": "How much for a couch?", "last": true}))
        .await;
    let started = Instant::now();
    let mut last_sound = started;
    let mut longest_silence = Duration::ZERO;
    let mut said = String::new();
    loop {
        let message = relay.next().await;
        longest_silence = longest_silence.max(last_sound.elapsed());
        last_sound = Instant::now();
        assert_eq!(message["type"], "text", "{message}");
        said.push_str(message["token"].as_str().unwrap());
        if message["last"] == json!(true) {
            break;
        }
    }
    assert!(
        longest_silence < Duration::from_secs(3),
        "{longest_silence:?} of silence: {said}"
    );
    assert!(said.starts_with("One moment. Still with you."), "{said}");
    assert!(said.contains("I'm sorry"), "{said}");
    assert!(said.contains("tell me your message"), "{said}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_model_is_covered_before_three_seconds_of_silence() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with_script(vec![say("Sure, I can help.")], false, Duration::from_millis(2200)).await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAslow", None).await;
    let started = Instant::now();
    relay
        .send(json!({"type": "prompt", "voicePrompt": "Hello?", "last": true}))
        .await;
    let first = relay.next().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(first["token"], "One moment. ");
    let (rest, _) = relay.hear().await;
    assert_eq!(rest, "Sure, I can help.");
}

#[tokio::test]
async fn a_socket_dropped_mid_turn_keeps_the_turn_and_a_call_back_books_nothing_twice() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with_script(
        vec![
            tool(
                "t1",
                "record_job_details",
                json!({"size": "half_truck", "address": "12 Oak St, Portland", "customer_name": "Dana"}),
            ),
            tool("t2", "get_quote", json!({})),
            tool("t3", "get_available_slots", json!({})),
            say("I have a few openings. Which suits you?"),
            tool("t4", "book_slot", json!({"slot_id": 1})),
            say("You're all set."),
            // The call-back: the model tries to book again.
            tool("t5", "book_slot", json!({"slot_id": 1})),
            say("You're already booked."),
        ],
        false,
        Duration::ZERO,
    )
    .await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAdrop", None).await;
    relay
        .say("Half a truck of junk at 12 Oak St, when can you come?")
        .await;
    // The caller picks one and the line drops before a word comes back.
    relay
        .send(json!({"type": "prompt", "voicePrompt": "The first one.", "last": true}))
        .await;
    drop(relay);
    let conversation = app.conversation(CALLER).await.unwrap();
    let store = app.store.clone();
    eventually("the dropped turn commits its booking", || {
        let store = store.clone();
        async move { store.turn_input(conversation, 20).await.unwrap().state.name() == "BOOKED" }
    })
    .await;
    app.wait_for_texts(1).await;

    let mut relay = Relay::signed(&app).await;
    relay.setup("CAback", None).await;
    let (said, _) = relay
        .say("Did that booking go through? Book the first one.")
        .await;
    assert!(said.contains("already booked"), "{said}");
    let confirmed = app
        .store
        .bookings()
        .await
        .unwrap()
        .into_iter()
        .filter(|b| b.status == textdesk::store::BookingStatus::Confirmed)
        .count();
    assert_eq!(confirmed, 1);
    let refused = last_tool_result(app.model_requests().await.last().unwrap());
    assert!(
        refused.contains("not available while the conversation is BOOKED"),
        "{refused}"
    );
    assert_eq!(app.sent_texts().await.len(), 1, "one confirmation text");
}

#[tokio::test]
async fn with_no_model_the_guided_questions_are_spoken() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        with_model: false,
        business: Some(business(false)),
        ..Options::default()
    })
    .await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAguided", None).await;
    let (said, end) = relay.say("I need a couch and a fridge hauled away").await;
    assert!(end.is_none());
    // The guided flow's own words and the engine's price, said for a call.
    assert!(
        said.contains("Thanks for calling Rose City Junk Haulers") && said.contains("Say 1 to book a time"),
        "{said}"
    );
    assert!(!said.contains('$') && !said.contains("texting"), "{said}");
    let messages = app.messages(CALLER).await;
    assert!(
        messages
            .iter()
            .any(|m| m.direction == Direction::Outbound && m.body == said)
    );
    assert!(app.model_requests().await.is_empty());
}

/// `CallRecords` on Postgres: run when `TEST_DATABASE_URL` names a server
/// (`postgres://postgres@127.0.0.1:5432/postgres`); a database of its own.
#[tokio::test]
async fn a_spoken_reply_is_cut_on_postgres_too() {
    if crate::helpers::skipped() {
        return;
    }
    use sqlx::Connection;
    use textdesk::store::postgres::PgStore;
    use textdesk::store::{CallRecords, MessageId};
    let Ok(server) = std::env::var("TEST_DATABASE_URL") else {
        return;
    };
    if !server.starts_with("postgres") {
        return;
    }
    let name = format!("voice_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
    let store = PgStore::connect(&url).await.unwrap();
    let ids: (i64, i64) = sqlx::query_as(
        "WITH k AS (INSERT INTO customers (phone, created_at) VALUES ('+15035551234', now()) RETURNING id),
              c AS (INSERT INTO conversations (customer_id, business_number, created_at, updated_at)
                    SELECT id, '+15035550142', now(), now() FROM k RETURNING id),
              i AS (INSERT INTO messages (conversation_id, direction, kind, body, status, created_at)
                    SELECT id, 'inbound', 'customer', 'Hi there', 'answered', now() FROM c RETURNING id),
              o AS (INSERT INTO messages (conversation_id, direction, kind, body, status, created_at)
                    SELECT id, 'outbound', 'reply', 'Happy to help. We haul it all.', 'sent', now() FROM c RETURNING id)
         SELECT (SELECT id FROM i), (SELECT id FROM o)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(
        store
            .cut_spoken_reply(MessageId(ids.1), "Happy to help.")
            .await
            .unwrap()
    );
    assert!(
        !store.cut_spoken_reply(MessageId(ids.0), "Hi").await.unwrap(),
        "a caller's words never change"
    );
    let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM messages ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(bodies, vec!["Hi there", "Happy to help."]);
    store.pool().close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_spoken_reply_is_stored_delivered_in_its_commit_and_a_restart_never_texts_it() {
    if crate::helpers::skipped() {
        return;
    }
    let mut app = app_with_script(
        vec![say("Happy to help with that. What is in the pile?")],
        false,
        Duration::ZERO,
    )
    .await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAspoken", None).await;
    let (said, _) = relay.say("Hi, I have some junk").await;
    assert_eq!(said, "Happy to help with that. What is in the pile?");
    let conversation = app.conversation(CALLER).await.unwrap();
    let store = app.store.clone();
    eventually("the turn commits", || {
        let store = store.clone();
        async move {
            store
                .messages(conversation)
                .await
                .unwrap()
                .iter()
                .any(|m| m.direction == Direction::Outbound)
        }
    })
    .await;
    // The commit itself stored it delivered on the call: no later write
    // (which a crash could cut off) is needed.
    let reply = app
        .messages(CALLER)
        .await
        .into_iter()
        .find(|m| m.direction == Direction::Outbound)
        .unwrap();
    assert_eq!(reply.status, "sent");
    let spoken_id = reply.channel_message_id.clone().unwrap();
    assert!(
        spoken_id.starts_with("CAspoken:") && spoken_id.ends_with(":r1"),
        "{spoken_id}"
    );
    drop(relay);
    // A crash now, and the start's recovery of interrupted sends: the
    // spoken reply is not a text to send.
    app.crash_and_restart().await;
    app.wait_until_idle().await;
    assert!(app.sent_texts().await.is_empty(), "{:?}", app.sent_texts().await);
    let after = app
        .messages(CALLER)
        .await
        .into_iter()
        .find(|m| m.direction == Direction::Outbound)
        .unwrap();
    assert_eq!(
        (after.status.as_str(), after.body.as_str()),
        ("sent", said.as_str())
    );
}

#[tokio::test]
async fn a_caller_saying_stop_is_opted_out_by_code_confirmed_and_the_call_ends() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with_script(Vec::new(), false, Duration::ZERO).await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAstop", None).await;
    let (said, end) = relay.say("Stop.").await;
    assert!(said.contains("will not text you again"), "{said}");
    let end = end.expect("the call ends");
    let handoff: Value = serde_json::from_str(end["handoffData"].as_str().unwrap()).unwrap();
    assert_eq!(handoff["reason"], "opted_out");
    assert!(
        app.model_requests().await.is_empty(),
        "code reads STOP, not the model"
    );
    let conversation = app.conversation(CALLER).await.unwrap();
    let store = app.store.clone();
    eventually("the opt-out is committed", || {
        let store = store.clone();
        async move {
            let turn = store.turn_input(conversation, 20).await.unwrap();
            turn.conversation.opted_out && turn.state.name() == "OPTED_OUT"
        }
    })
    .await;
    let confirmation = app
        .messages(CALLER)
        .await
        .into_iter()
        .rfind(|m| m.direction == Direction::Outbound)
        .unwrap();
    assert_eq!(confirmation.kind.as_str(), "opt_out_confirmation");
    assert_eq!(confirmation.body, said);

    // An opt-out in plain words on a later call: confirmed again, still
    // without the model.
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAstop2", None).await;
    let (said, end) = relay.say("Please stop texting me.").await;
    assert!(said.contains("will not text you again"), "{said}");
    assert!(end.is_some());
    assert!(app.model_requests().await.is_empty());
    app.wait_until_idle().await;
    assert!(
        app.sent_texts().await.is_empty(),
        "a call's opt-out is spoken, not texted"
    );
}

#[tokio::test]
async fn a_caller_saying_help_hears_the_help_and_the_call_goes_on() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with_script(vec![say("Sure, what needs hauling?")], false, Duration::ZERO).await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAhelp", None).await;
    let (said, end) = relay.say("Help").await;
    assert!(
        said.contains("assistant for Rose City Junk Haulers") && said.contains("say stop"),
        "{said}"
    );
    assert!(end.is_none(), "HELP does not end the call");
    assert!(app.model_requests().await.is_empty(), "code reads HELP");
    let (said, _) = relay.say("I have some junk").await;
    assert_eq!(said, "Sure, what needs hauling?");
    assert_eq!(app.model_requests().await.len(), 1);
    let turn = app
        .store
        .turn_input(app.conversation(CALLER).await.unwrap(), 20)
        .await
        .unwrap();
    assert!(!turn.conversation.opted_out);
}

#[tokio::test]
async fn pressing_zero_asks_for_a_person() {
    if crate::helpers::skipped() {
        return;
    }
    let app = app_with_script(Vec::new(), true, Duration::ZERO).await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAzero", None).await;
    relay.send(json!({"type": "dtmf", "digit": "5"})).await;
    relay.send(json!({"type": "dtmf", "digit": "0"})).await;
    let (said, end) = relay.hear().await;
    assert!(said.contains("put you through to Maria"), "{said}");
    let handoff: Value =
        serde_json::from_str(end.expect("the session ends")["handoffData"].as_str().unwrap()).unwrap();
    assert_eq!(handoff["reason"], "transfer");
    assert!(app.model_requests().await.is_empty());
    let messages = app.messages(CALLER).await;
    assert!(
        messages
            .iter()
            .any(|m| m.direction == Direction::Inbound && m.body.contains("pressed 0")),
        "{messages:?}"
    );
}

#[tokio::test]
async fn call_turns_record_their_model_usage_and_mark_the_prompt_cache() {
    if crate::helpers::skipped() {
        return;
    }
    use textdesk::anthropic::Usage;
    use textdesk::anthropic::stream::sse_body_with_usage;
    let spent = |input, cache_read, cache_write, output| Usage {
        input_tokens: input,
        cache_read_input_tokens: cache_read,
        cache_creation_input_tokens: cache_write,
        output_tokens: output,
    };
    let first = spent(40, 0, 1800, 12);
    let second = spent(35, 1800, 60, 9);
    let app = app_with_script(
        vec![
            Box::new(move |_| {
                sse_body_with_usage(&["Happy to help. ", "What is in the pile?"], None, Some(&first))
            }),
            Box::new(move |_| sse_body_with_usage(&["Got it. ", "Where are you?"], None, Some(&second))),
        ],
        false,
        Duration::ZERO,
    )
    .await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAusage", None).await;
    let (said, _) = relay.say("Hi, I have some junk").await;
    assert_eq!(said, "Happy to help. What is in the pile?");
    let (said, _) = relay.say("A couch and a fridge").await;
    assert_eq!(said, "Got it. Where are you?");
    let conversation = app.conversation(CALLER).await.unwrap();
    let store = app.store.clone();
    eventually("both turns' usage is recorded", || {
        let store = store.clone();
        async move { store.turn_usages(conversation).await.unwrap().len() == 2 }
    })
    .await;
    let usages = app.store.turn_usages(conversation).await.unwrap();
    let tokens: Vec<(u32, u64, u64, u64, u64)> = usages
        .iter()
        .map(|u| {
            (
                u.model_calls,
                u.tokens.input,
                u.tokens.cache_read,
                u.tokens.cache_write,
                u.tokens.output,
            )
        })
        .collect();
    assert_eq!(tokens, vec![(1, 40, 0, 1800, 12), (1, 35, 1800, 60, 9)]);

    // Laid out as a text turn's request: the last tool and the stable
    // system cached, the per-turn facts with the caller's words, and the
    // second turn reading the first from the cache.
    let requests = app.model_requests().await;
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(
            request["system"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert!(
            !request["system"][0]["text"]
                .as_str()
                .unwrap()
                .contains("Local time now"),
            "no clock in the cached system prompt"
        );
        let tools = request["tools"].as_array().unwrap();
        assert_eq!(
            tools.last().unwrap()["cache_control"],
            json!({"type": "ephemeral"})
        );
    }
    assert_eq!(
        requests[0]["system"], requests[1]["system"],
        "the cached system prompt is byte-identical across turns"
    );
    assert_eq!(requests[0]["tools"], requests[1]["tools"]);
    let messages = requests[1]["messages"].as_array().unwrap();
    let earlier = &messages[messages.len() - 2];
    assert_eq!(
        earlier["content"].as_array().unwrap().last().unwrap()["cache_control"],
        json!({"type": "ephemeral"}),
        "{messages:?}"
    );
    let latest = messages.last().unwrap()["content"][0]["text"].as_str().unwrap();
    assert!(
        latest.starts_with("[textdesk context, not from the customer]"),
        "{latest}"
    );
}

#[tokio::test]
async fn the_callers_words_are_stored_before_the_first_word_is_spoken() {
    if crate::helpers::skipped() {
        return;
    }
    // The model answers at once: its request is sent while the words are
    // still being stored, and speaking waits for the store.
    let app = app_with_script(
        vec![say("Happy to help. What is in the pile?")],
        false,
        Duration::ZERO,
    )
    .await;
    let mut relay = Relay::signed(&app).await;
    relay.setup("CAorder", None).await;
    relay
        .send(json!({"type": "prompt", "voicePrompt": "A couch and a fridge", "last": true}))
        .await;
    let first = relay.next().await;
    assert_eq!(first["type"], "text");
    let messages = app.messages(CALLER).await;
    assert!(
        messages
            .iter()
            .any(|m| m.direction == Direction::Inbound && m.body == "A couch and a fridge"),
        "spoken before the caller's words were stored: {messages:?}"
    );
    let (rest, _) = relay.hear().await;
    assert!(rest.ends_with("What is in the pile?"), "{rest}");
    // The model read the words once, though the conversation was read
    // before they were stored.
    let request = &app.model_requests().await[0];
    assert_eq!(
        request.to_string().matches("A couch and a fridge").count(),
        1,
        "{request}"
    );
}
