//! Prompt caching and model round trips (issue 11, parts 5 and 6), against
//! a fake Anthropic: where the `cache_control` marks sit and what stays
//! byte-identical from turn to turn, the usage that lands in the store and
//! in `/metrics`, and how many model requests each customer text costs.

use serde_json::{Value, json};
use textdesk::store::{ConversationId, TokenCounts};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::*;

const DANA: &str = "+15035551234";

/// What every fake response says it cost.
const USAGE: TokenCounts = TokenCounts {
    input: 40,
    cache_read: 1_500,
    cache_write: 300,
    output: 25,
};

fn usage() -> Value {
    json!({
        "input_tokens": USAGE.input,
        "cache_read_input_tokens": USAGE.cache_read,
        "cache_creation_input_tokens": USAGE.cache_write,
        "output_tokens": USAGE.output,
    })
}

fn text_reply(text: &str) -> Value {
    let mut body = claude_text(text);
    body["usage"] = usage();
    body
}

fn tool_reply(name: &str, input: Value) -> Value {
    json!({
        "id": "msg_tool", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [{"type": "tool_use", "id": format!("toolu_{name}"), "name": name, "input": input}],
        "stop_reason": "tool_use",
        "usage": usage(),
    })
}

/// The tool results of the request's last message, if it carries any.
fn last_tool_results(request: &Value) -> Vec<String> {
    request["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A model that calls one tool per response and follows what the tool
/// results tell it, as a capable model does: it calls `get_quote` when a
/// result says to, and answers as soon as a result gives it what the
/// customer asked for. Its request count per customer text is the number
/// of round trips the desk's tools make it need.
struct OneToolAtATime;

/// As [`OneToolAtATime`], but on the flow before this change: it always
/// follows `record_job_details` with `get_quote`, as that tool's result
/// then told it to ("Enough to quote: call get_quote").
struct BeforeTheQuoteCameWithTheRecord;

impl Respond for BeforeTheQuoteCameWithTheRecord {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        match last_tool_results(&body).last() {
            Some(result) if result.starts_with("Recorded.") => {
                ResponseTemplate::new(200).set_body_json(tool_reply("get_quote", json!({})))
            }
            _ => OneToolAtATime.respond(request),
        }
    }
}

impl Respond for OneToolAtATime {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let results = last_tool_results(&body);
        let reply = if let Some(result) = results.last() {
            if result.contains("call get_quote") {
                tool_reply("get_quote", json!({}))
            } else if let Some(total) = result
                .split("total ")
                .nth(1)
                .and_then(|rest| rest.split(['.', '\n']).next())
            {
                text_reply(&format!(
                    "That's {total} for about half a truck. Want to book a time?"
                ))
            } else if result.contains("Openings:") {
                text_reply("I found some openings. Which number works for you?")
            } else if result.starts_with("Booked:") {
                text_reply("You're booked! See you then.")
            } else {
                text_reply("Sorry, the owner will follow up.")
            }
        } else {
            let said = last_user_text(&body);
            let said = said.lines().last().unwrap_or_default().to_string();
            if said.contains("junk") {
                tool_reply(
                    "record_job_details",
                    json!({"size": "half_truck", "address": "12 Oak St, Portland", "customer_name": "Dana"}),
                )
            } else if said.contains("book") {
                tool_reply("get_available_slots", json!({}))
            } else if said.trim() == "2" {
                tool_reply("book_slot", json!({"slot_id": 2}))
            } else {
                text_reply(&format!("Re: {said}"))
            }
        };
        ResponseTemplate::new(200).set_body_json(reply)
    }
}

const LOCAL_CALENDAR: &str = r#"
[business]
name = "Rose City Junk Haulers"
phone = "+15035550142"
timezone = "America/Los_Angeles"

[schedule]
min_notice_hours = 0
horizon_days = 14

[[providers]]
id = "crew-1"
name = "Crew 1"
"#;

async fn app_with(model: impl Respond + 'static) -> TestApp {
    let app = spawn_app_with(Options {
        default_fakes: false,
        business: Some(LOCAL_CALENDAR.into()),
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(model)
        .mount(&app.anthropic)
        .await;
    app
}

/// Texts `body` and waits for its answer; returns the model requests it cost.
async fn requests_for(app: &TestApp, body: &str, answers_so_far: usize) -> usize {
    let before = app.model_requests().await.len();
    app.text(DANA, body).await;
    app.wait_for_texts(answers_so_far + 1).await;
    app.wait_until_settled(DANA).await;
    app.model_requests().await.len() - before
}

/// The request without its `cache_control` marks: what the cache matches.
fn unmarked(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            map.remove("cache_control");
            for v in map.values_mut() {
                *v = unmarked(v.take());
            }
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                *v = unmarked(v.take());
            }
        }
        _ => {}
    }
    value
}

/// Where a request's marks are: (tool indexes, system indexes, message
/// indexes), each mark on the last block of its message.
fn marks(request: &Value) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let marked = |v: &Value| v.get("cache_control") == Some(&json!({"type": "ephemeral"}));
    let tools: Vec<usize> = request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, t)| marked(t))
        .map(|(i, _)| i)
        .collect();
    let system: Vec<usize> = request["system"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, b)| marked(b))
        .map(|(i, _)| i)
        .collect();
    let mut messages = Vec::new();
    for (i, m) in request["messages"].as_array().unwrap().iter().enumerate() {
        assert!(
            m.get("cache_control").is_none(),
            "a mark on a message, not a block"
        );
        let blocks = m["content"].as_array().unwrap();
        for (j, b) in blocks.iter().enumerate() {
            if marked(b) {
                assert_eq!(j, blocks.len() - 1, "a mark not on its message's last block");
                messages.push(i);
            }
        }
    }
    (tools, system, messages)
}

/// One value of a Prometheus counter in `rendered`, zero when absent.
fn counter(rendered: &str, series: &str) -> u64 {
    rendered
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn tokens(kind: &str) -> u64 {
    let rendered = textdesk::meters::install().render();
    counter(
        &rendered,
        &format!("textdesk_model_tokens_total{{kind=\"{kind}\"}}"),
    )
}

/// The tests of this file run one at a time, so the token counters' delta
/// in each is its own (no other file's fake reports cache tokens).
static METERED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_three_turn_conversation_reuses_its_cached_prefix() {
    if crate::helpers::skipped() {
        return;
    }
    let _one_at_a_time = METERED.lock().await;
    textdesk::meters::install();
    let app = app_with(OneToolAtATime).await;
    let cache_read_before = tokens("cache_read");
    let cache_write_before = tokens("cache_write");
    for (i, text) in ["hi there", "what do you take?", "thanks!"].iter().enumerate() {
        assert_eq!(requests_for(&app, text, i).await, 1);
    }
    let requests = app.model_requests().await;
    assert_eq!(requests.len(), 3);

    for (i, request) in requests.iter().enumerate() {
        let (tools, system, messages) = marks(request);
        let count = tools.len() + system.len() + messages.len();
        assert!(count <= 4, "request {i}: {count} marks");
        // The last tool, the (one, stable) system block, and from the second
        // turn on the last message of the earlier turns: the owner's reply
        // just before the customer's new text.
        assert_eq!(
            tools,
            vec![request["tools"].as_array().unwrap().len() - 1],
            "request {i}"
        );
        assert_eq!(system, vec![0], "request {i}");
        let n = request["messages"].as_array().unwrap().len();
        let expected: Vec<usize> = if n >= 2 { vec![n - 2] } else { Vec::new() };
        assert_eq!(messages, expected, "request {i}");
        if n >= 2 {
            assert_eq!(request["messages"][n - 2]["role"], "assistant", "request {i}");
        }
    }
    let (second, third) = (&requests[1], &requests[2]);
    // Byte-identical tools and system: nothing per turn in them.
    assert_eq!(second["tools"].to_string(), third["tools"].to_string());
    assert_eq!(second["system"].to_string(), third["system"].to_string());
    assert_eq!(requests[0]["system"].to_string(), second["system"].to_string());
    let system = second["system"][0]["text"].as_str().unwrap();
    assert!(!system.contains("Local time now") && !system.contains("Conversation state"));
    // The third request's messages repeat the second's up to the second's
    // breakpoint, byte for byte once the moved mark is set aside: the cache
    // entry the second wrote is the one the third reads.
    let second_messages = second["messages"].as_array().unwrap();
    let third_messages = third["messages"].as_array().unwrap();
    let breakpoint = second_messages.len() - 2;
    for i in 0..=breakpoint {
        assert_eq!(
            unmarked(second_messages[i].clone()).to_string(),
            unmarked(third_messages[i].clone()).to_string(),
            "message {i}"
        );
    }
    // Up to its own breakpoint the third holds stored texts only (the
    // per-turn context rides on the newest text alone), so the fourth turn
    // will read it from the cache in turn.
    let third_breakpoint = third_messages.len() - 2;
    assert!(
        !third_messages[..=third_breakpoint]
            .iter()
            .any(|m| m.to_string().contains("[textdesk context")),
        "{third_messages:?}"
    );
    assert!(
        third_messages
            .last()
            .unwrap()
            .to_string()
            .contains("[textdesk context"),
    );

    // Usage: each turn's row in the store, and the counters moved by as much.
    let conversation: ConversationId = app.conversation(DANA).await.unwrap();
    let turns = app.store.turn_usages(conversation).await.unwrap();
    assert_eq!(turns.len(), 3);
    for turn in &turns {
        assert_eq!((turn.model_calls, turn.tokens), (1, USAGE));
    }
    let totals = app.store.conversation_usage(conversation).await.unwrap();
    assert_eq!(totals.model_calls, 3);
    assert_eq!(totals.tokens.cache_read, 4_500);
    assert_eq!(tokens("cache_read") - cache_read_before, 4_500);
    assert_eq!(tokens("cache_write") - cache_write_before, 900);
}

#[tokio::test]
async fn quoting_and_booking_texts_take_at_most_two_model_calls_each() {
    if crate::helpers::skipped() {
        return;
    }
    let _one_at_a_time = METERED.lock().await;
    let app = app_with(OneToolAtATime).await;
    let cache_write_before = tokens("cache_write");
    // Before this change the quoting text took 3 requests: record_job_details
    // (whose result said "call get_quote"), get_quote, then the answer.
    let quoting = requests_for(&app, "Hi, about half a truck of junk at 12 Oak St. How much?", 0).await;
    let offering = requests_for(&app, "Great, can I book a time?", 1).await;
    let picking = requests_for(&app, "2", 2).await;
    // Picking an opening is one call: the booking's result ends the turn,
    // and code's confirmation is the reply (the model's next answer, asked
    // for before, was never sent).
    assert_eq!((quoting, offering, picking), (2, 2, 1));

    let sent = app.sent_texts().await;
    assert_eq!(
        sent[0].1,
        "That's $350 for about half a truck. Want to book a time?"
    );
    // The booking is confirmed by code: its day, time and price.
    assert!(
        sent[2]
            .1
            .starts_with("You're booked with Rose City Junk Haulers: ")
            && sent[2].1.contains("Total $350"),
        "{}",
        sent[2].1
    );
    let conversation = app.conversation(DANA).await.unwrap();
    let turn = app.store.turn_input(conversation, 20).await.unwrap();
    assert_eq!(turn.state.name(), "BOOKED");
    // One quote for one job: the tool that recorded it issued it once.
    assert_eq!(turn.quotes.len(), 1);
    let usages = app.store.turn_usages(conversation).await.unwrap();
    let calls: Vec<u32> = usages.iter().map(|u| u.model_calls).collect();
    assert_eq!(calls, vec![2, 2, 1]);
    assert_eq!(usages[0].tokens.cache_write, 2 * USAGE.cache_write);
    assert_eq!(tokens("cache_write") - cache_write_before, 5 * USAGE.cache_write);
}

#[tokio::test]
async fn the_flow_before_took_three_calls_to_quote_and_still_quotes_once() {
    if crate::helpers::skipped() {
        return;
    }
    let _one_at_a_time = METERED.lock().await;
    let app = app_with(BeforeTheQuoteCameWithTheRecord).await;
    let quoting = requests_for(&app, "Hi, about half a truck of junk at 12 Oak St. How much?", 0).await;
    let offering = requests_for(&app, "Great, can I book a time?", 1).await;
    let picking = requests_for(&app, "2", 2).await;
    assert_eq!((quoting, offering, picking), (3, 2, 1));
    let sent = app.sent_texts().await;
    assert_eq!(
        sent[0].1,
        "That's $350 for about half a truck. Want to book a time?"
    );
    let conversation = app.conversation(DANA).await.unwrap();
    let turn = app.store.turn_input(conversation, 20).await.unwrap();
    assert_eq!(turn.state.name(), "BOOKED");
    // The extra get_quote repeated the recorded quote: still one.
    assert_eq!(turn.quotes.len(), 1);
}

#[tokio::test]
async fn the_guardrail_still_checks_a_price_after_the_quote_came_with_the_record() {
    if crate::helpers::skipped() {
        return;
    }
    let _one_at_a_time = METERED.lock().await;
    // The model is handed the quote by record_job_details and then states
    // another price: the engine's guardrail does not let it out.
    struct WrongPrice;
    impl Respond for WrongPrice {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let rewriting = last_user_text(&body).contains("[textdesk check");
            let reply = if last_tool_results(&body).is_empty() && !rewriting {
                tool_reply("record_job_details", json!({"size": "half_truck"}))
            } else {
                text_reply("That's $20 for about half a truck.")
            };
            ResponseTemplate::new(200).set_body_json(reply)
        }
    }
    let app = app_with(WrongPrice).await;
    app.text(DANA, "half a truck of junk, how much?").await;
    let sent = app.wait_for_texts(1).await;
    assert!(!sent[0].1.contains("$20"), "{}", sent[0].1);
    app.wait_until_settled(DANA).await;
    let alerts = app.store.alerts().await.unwrap();
    assert!(
        alerts.iter().any(|a| a.kind.as_str() == "price_guardrail"),
        "{alerts:?}"
    );
}

#[tokio::test]
async fn the_conversation_page_shows_its_tokens_and_an_estimated_cost() {
    if crate::helpers::skipped() {
        return;
    }
    let _one_at_a_time = METERED.lock().await;
    let app = spawn_app_with(Options {
        default_fakes: false,
        business: Some(LOCAL_CALENDAR.into()),
        extra_vars: vec![
            ("MODEL_PRICE_INPUT_PER_MTOK", "10".into()),
            ("MODEL_PRICE_OUTPUT_PER_MTOK", "50".into()),
        ],
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(OneToolAtATime)
        .mount(&app.anthropic)
        .await;
    crate::console::with_password(&app).await;
    let conversation = {
        assert_eq!(requests_for(&app, "hello", 0).await, 1);
        app.conversation(DANA).await.unwrap()
    };
    let (mut browser, _) = crate::console::Browser::logged_in(&app).await;
    let page = browser
        .get(&format!("/owner/conversations/{}", conversation.0))
        .await;
    assert_eq!(page.status, reqwest::StatusCode::OK);
    let body = &page.body;
    assert!(body.contains("Model usage"), "{body}");
    assert!(
        body.contains("<td>Model calls</td><td class=\"amount\">1</td>"),
        "{body}"
    );
    assert!(
        body.contains("<td>Read from cache</td><td class=\"amount\">1,500</td>"),
        "{body}"
    );
    assert!(
        body.contains("<td>Written to cache</td><td class=\"amount\">300</td>"),
        "{body}"
    );
    // 40 x $10 + 1,500 x $1 (a tenth of input) + 300 x $12.50 (1.25 times
    // input) + 25 x $50, per million tokens: $0.0069.
    assert!(body.contains("id=\"model-cost\">$0.0069<"), "{body}");
    assert!(body.contains("an estimate"), "{body}");
    assert!(body.contains("82% of input read from the prompt cache"), "{body}");

    // A conversation the model never answered shows no usage card.
    let quiet = spawn_app_with(Options {
        with_model: false,
        ..Options::default()
    })
    .await;
    crate::console::with_password(&quiet).await;
    quiet.text(DANA, "hello").await;
    quiet.wait_until_settled(DANA).await;
    let id = quiet.conversation(DANA).await.unwrap();
    let (mut browser, _) = crate::console::Browser::logged_in(&quiet).await;
    let page = browser.get(&format!("/owner/conversations/{}", id.0)).await;
    assert_eq!(page.status, reqwest::StatusCode::OK);
    assert!(!page.body.contains("Model usage"), "{}", page.body);
}

#[tokio::test]
async fn a_turn_whose_model_fails_half_way_still_records_the_tokens_it_spent() {
    if crate::helpers::skipped() {
        return;
    }
    let _one_at_a_time = METERED.lock().await;
    // The first request calls a tool; the second is refused for good (400):
    // the guided flow answers, and the first request's tokens are counted.
    struct ToolThenRejected;
    impl Respond for ToolThenRejected {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            if last_tool_results(&body).is_empty() {
                ResponseTemplate::new(200)
                    .set_body_json(tool_reply("record_job_details", json!({"notes": "third floor"})))
            } else {
                ResponseTemplate::new(400).set_body_json(
                    json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}),
                )
            }
        }
    }
    let app = app_with(ToolThenRejected).await;
    app.text(DANA, "a couch on the third floor").await;
    app.wait_for_texts(1).await;
    app.wait_until_settled(DANA).await;
    assert_eq!(app.model_requests().await.len(), 2);
    let conversation = app.conversation(DANA).await.unwrap();
    let usages = app.store.turn_usages(conversation).await.unwrap();
    assert_eq!(usages.len(), 1);
    assert_eq!((usages[0].model_calls, usages[0].tokens), (2, USAGE));
    let messages = app.messages(DANA).await;
    assert_eq!(messages.last().unwrap().kind.as_str(), "guided");
}
