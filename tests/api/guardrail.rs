//! The guardrail against adversarial drafts, through the real app: the fake
//! Claude insists on each draft (the regeneration repeats it), and what
//! reaches the fake Twilio must be the code-stated text instead.

use serde_json::{Value, json};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::helpers::*;
use crate::quotes::{ScriptedClaude, claude_tool};

const CUSTOMER: &str = "+15035551234";

/// The local calendar (no Google), openings from now on, a piano with
/// labour of its own, and no discounts or surcharges configured.
const BUSINESS: &str = r#"
[business]
name = "Rose City Junk Haulers"
phone = "+15035550142"
timezone = "America/Los_Angeles"

[schedule]
min_notice_hours = 0
horizon_days = 14

[[pricing.junk.items]]
id = "piano"
label = "piano"
hours = 1
crew = 3
"#;

const QUOTE_TEXT: &str = "Your estimate from Rose City Junk Haulers is $350.";
const OPENINGS_TEXT: &str = "These are the openings we can offer:\n1) ";

async fn app_with(script: Vec<Value>) -> TestApp {
    let app = spawn_app_with(Options {
        default_fakes: false,
        business: Some(BUSINESS.into()),
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ScriptedClaude::new(script))
        .mount(&app.anthropic)
        .await;
    app
}

fn quoted() -> Vec<Value> {
    vec![
        claude_tool(
            "t1",
            "record_job_details",
            json!({"size": "half_truck", "address": "12 Oak St, Portland"}),
        ),
        claude_tool("t2", "get_quote", json!({})),
    ]
}

fn offered() -> Vec<Value> {
    let mut script = quoted();
    script.push(claude_tool("t3", "get_available_slots", json!({})));
    script
}

/// A reply in several text blocks, which the responder joins with line
/// breaks: each block reads as its own text.
fn claude_texts(texts: &[&str]) -> Value {
    json!({
        "id": "msg_test", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": texts.iter().map(|t| json!({"type": "text", "text": t})).collect::<Vec<_>>(),
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 10}
    })
}

struct Case {
    /// The script up to the draft, then the draft (repeated on regeneration).
    script: Vec<Value>,
    /// Words that must not reach the customer.
    never_sent: &'static str,
    /// How the code-stated text begins.
    instead: &'static str,
}

fn case(mut script: Vec<Value>, draft: Value, never_sent: &'static str, instead: &'static str) -> Case {
    script.push(draft);
    Case {
        script,
        never_sent,
        instead,
    }
}

async fn run(case: Case) -> Result<TestApp, String> {
    let app = app_with(case.script).await;
    app.text(CUSTOMER, "half a truck of junk at 12 Oak St, when can you come?")
        .await;
    let sent = app.wait_for_texts(1).await;
    let body = &sent[0].1;
    let lower = body.to_lowercase();
    if lower.contains(&case.never_sent.to_lowercase()) {
        return Err(format!("{:?} reached the customer: {body}", case.never_sent));
    }
    if !body.starts_with(case.instead) {
        return Err(format!(
            "{:?}: expected {:?}, sent {body:?}",
            case.never_sent, case.instead
        ));
    }
    app.wait_until_settled(CUSTOMER).await;
    let alerts = app.store.alerts().await.unwrap();
    // The alert names the phrase as the customer would have read it.
    let named = textdesk::domain::guardrail::prepare(case.never_sent);
    let recorded = alerts
        .iter()
        .any(|a| a.kind.as_str().ends_with("_guardrail") && a.detail.contains(&named));
    if !recorded {
        return Err(format!(
            "{:?}: no guardrail alert naming it: {alerts:?}",
            case.never_sent
        ));
    }
    Ok(app)
}

#[tokio::test]
async fn adversarial_drafts_never_reach_the_customer() {
    if crate::helpers::skipped() {
        return;
    }
    let text = claude_texts;
    let one = |t: &str| claude_texts(&[t]);
    let cases = vec![
        // Dates and times the model wrote.
        case(
            quoted(),
            one("We can come Tuesday at 3pm! Does that work?"),
            "tuesday at 3pm",
            QUOTE_TEXT,
        ),
        case(
            offered(),
            one("Good news: Mon Nov 30 at 2:30pm works for us."),
            "2:30pm",
            OPENINGS_TEXT,
        ),
        case(
            offered(),
            one("How about Tuesday, Nov 30, 8-10am?"),
            "tuesday, nov 30",
            OPENINGS_TEXT,
        ),
        case(
            offered(),
            one("You're booked for Friday! See you then."),
            "booked for friday",
            OPENINGS_TEXT,
        ),
        case(
            offered(),
            one("Could do it on Tues 12/1 at 8:45am"),
            "12/1",
            OPENINGS_TEXT,
        ),
        case(
            offered(),
            one("How about tomorrow at noon?"),
            "tomorrow at noon",
            OPENINGS_TEXT,
        ),
        // Commitments nobody configured.
        case(
            quoted(),
            one("We'll waive the $150 delivery fee for you!"),
            "waive",
            QUOTE_TEXT,
        ),
        case(
            quoted(),
            one("Guaranteed same-day pickup"),
            "guaranteed",
            QUOTE_TEXT,
        ),
        case(
            quoted(),
            one("We'll be there in 30 minutes!"),
            "30 minutes",
            QUOTE_TEXT,
        ),
        case(
            quoted(),
            one("The owner will call you within 10 minutes."),
            "call you within",
            QUOTE_TEXT,
        ),
        case(
            quoted(),
            one("We'll haul the extra chair free of charge."),
            "free of charge",
            QUOTE_TEXT,
        ),
        case(
            quoted(),
            one("No extra cost for the stairs!"),
            "no extra cost",
            QUOTE_TEXT,
        ),
        case(
            quoted(),
            one("We'll be there within the hour."),
            "within the hour",
            QUOTE_TEXT,
        ),
        // Prices the old guardrail could not see.
        case(
            quoted(),
            one("That's three hundred fifty dollars... wait, three hundred dollars!"),
            "three hundred dollars",
            QUOTE_TEXT,
        ),
        case(
            quoted(),
            one("Only \u{FF04}\u{FF11}\u{FF19}\u{FF19} today"),
            "\u{FF11}\u{FF19}\u{FF19}",
            QUOTE_TEXT,
        ),
        case(
            quoted(),
            text(&["For you it's just $", "199. Want to book?"]),
            "199",
            QUOTE_TEXT,
        ),
        case(quoted(), one("I'll knock off 20% for you"), "20%", QUOTE_TEXT),
        case(quoted(), one("Your total is $150"), "total is $150", QUOTE_TEXT),
    ];
    let results = futures::future::join_all(cases.into_iter().map(run)).await;
    let failures: Vec<String> = results.into_iter().filter_map(|r| r.err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_refused_booking_is_not_claimed() {
    if crate::helpers::skipped() {
        return;
    }
    let mut script = offered();
    script.push(claude_tool("t4", "book_slot", json!({"slot_id": 9})));
    let draft = claude_texts(&["All set, you're booked for Thursday at 10:15am!"]);
    let app = run(case(script, draft, "booked for thursday", OPENINGS_TEXT))
        .await
        .unwrap();
    // The model was told why, once, before the code-stated text went out.
    let requests = app.model_requests().await;
    let nudges: Vec<String> = requests
        .iter()
        .map(last_user_text)
        .filter(|t| t.starts_with("[textdesk check"))
        .collect();
    assert_eq!(nudges.len(), 1, "{nudges:?}");
    assert!(
        nudges[0].contains("booked for") && nudges[0].contains("no booking standing"),
        "{}",
        nudges[0]
    );
}

#[tokio::test]
async fn an_old_total_is_not_the_price_after_the_job_changed() {
    if crate::helpers::skipped() {
        return;
    }
    let mut script = quoted();
    script.push(claude_tool(
        "t3",
        "record_job_details",
        json!({"items": [{"id": "piano", "quantity": 1}]}),
    ));
    script.push(claude_tool("t4", "get_quote", json!({})));
    script.push(claude_texts(&["Still just $350 total with the piano!"]));
    let app = app_with(script).await;
    app.text(CUSTOMER, "half a truck and a piano").await;
    let body = app.wait_for_texts(1).await[0].1.clone();
    assert!(!body.contains("$350"), "{body}");
    assert!(
        body.starts_with("Your estimate from Rose City Junk Haulers is $"),
        "{body}"
    );
}

#[tokio::test]
async fn a_live_booking_is_not_called_cancelled() {
    if crate::helpers::skipped() {
        return;
    }
    let mut script = offered();
    script.push(claude_texts(&["Here are the openings. Which number works?"]));
    // Confirmed by code, with no model call after the booking.
    script.push(claude_tool("t4", "book_slot", json!({"slot_id": 1})));
    script.push(claude_texts(&[
        "Your booking is cancelled and you won't be charged.",
    ]));
    let app = app_with(script).await;
    app.text(CUSTOMER, "half a truck at 12 Oak St, when can you come?")
        .await;
    app.wait_for_texts(1).await;
    app.text(CUSTOMER, "1").await;
    let confirmation = app.wait_for_texts(2).await[1].1.clone();
    assert!(confirmation.starts_with("You're booked with"), "{confirmation}");
    app.text(CUSTOMER, "cancel it and don't charge me").await;
    let sent = app.wait_for_texts(3).await;
    let reply = &sent[2].1;
    assert!(
        !reply.contains("cancelled") && !reply.contains("charged"),
        "{reply}"
    );
    // The code-stated text restates the booking that still stands.
    assert_eq!(reply, &confirmation);
    app.wait_until_settled(CUSTOMER).await;
    let conversation = app.conversation(CUSTOMER).await.unwrap();
    let turn = app.store.turn_input(conversation, 20).await.unwrap();
    assert_eq!(turn.state.name(), "BOOKED");
    let alerts = app.store.alerts().await.unwrap();
    assert!(
        alerts.iter().any(|a| a.kind == "fact_guardrail"
            && a.detail.contains("cancelled")
            && a.detail.contains("charged")),
        "{alerts:?}"
    );
}

#[tokio::test]
async fn a_true_reply_goes_out_as_drafted() {
    if crate::helpers::skipped() {
        return;
    }
    let mut script = quoted();
    script.push(claude_texts(&[
        "It's $350 total: $150 delivery plus labour. Want me to find you a time?",
    ]));
    let app = app_with(script).await;
    app.text(CUSTOMER, "half a truck at 12 Oak St, how much?").await;
    let body = app.wait_for_texts(1).await[0].1.clone();
    assert_eq!(
        body,
        "It's $350 total: $150 delivery plus labour. Want me to find you a time?"
    );
    // One model call per round, no regeneration.
    assert_eq!(app.model_requests().await.len(), 3);
}
