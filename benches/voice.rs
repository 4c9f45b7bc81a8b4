//! Calls under load (a harness, not a timed test).
//!
//! Starts the real application in this process (SQLite in a temp dir)
//! against a fake streaming Claude whose reply (three sentences in 40 text
//! deltas) starts 300 ms after the request, then runs rounds of concurrent
//! calls over the real relay WebSocket: each call connects with a signed
//! handshake, sends `setup`, and at the same moment as every other call a
//! `prompt`. It measures, per call turn:
//! - **first token**: from sending the prompt to the first `text` message;
//! - **overhead per token**: (time to `last:true` − the model's 300 ms) ÷
//!   the 40 streamed deltas: everything textdesk does for the turn (the
//!   utterance stored, the lease, the turn's read, the prompt, SSE parsing,
//!   the guardrail per sentence, the WebSocket sends), spread over the
//!   tokens; an upper bound on the cost of one token.
//!
//! Targets: first token p99 within 350 ms; overhead per token under 1 ms.
//! Exits non-zero when one is missed.
//!
//! cargo bench --bench voice -- [calls] [rounds]     (default 50 calls, 4 rounds)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use textdesk::anthropic::stream::sse_body;
use textdesk::app::Application;
use textdesk::config::business::BusinessConfig;
use textdesk::config::directory::BusinessDirectory;
use textdesk::config::settings::Settings;
use textdesk::twilio::signature;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const AUTH_TOKEN: &str = "bench-auth-token";
const BUSINESS_NUMBER: &str = "+15035550142";
const MODEL_DELAY: Duration = Duration::from_millis(300);
const FIRST_TOKEN_TARGET: Duration = Duration::from_millis(350);
const PER_TOKEN_TARGET: Duration = Duration::from_millis(1);
const REPLY: &str = "Sure, we can haul that away for you. We take couches, fridges, mattresses and most household \
                     junk. What else is in the pile?";

fn pieces() -> Vec<String> {
    // 40 deltas, cut on word boundaries like the API's.
    let words: Vec<&str> = REPLY.split_inclusive(' ').collect();
    let per = words.len().div_ceil(40);
    words.chunks(per).map(|c| c.concat()).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Sample {
    first_token: Duration,
    last: Duration,
}

async fn one_call(port: u16, i: usize, round: usize, start: Arc<tokio::sync::Barrier>) -> Sample {
    let url = format!("ws://127.0.0.1:{port}/api/voice/relay");
    let mut request = url.into_client_request().unwrap();
    let sig = signature::sign(AUTH_TOKEN, "ws://127.0.0.1/api/voice/relay", &[]);
    request
        .headers_mut()
        .insert("x-twilio-signature", sig.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let caller = format!("+1503555{:04}", round * 1000 + i);
    let setup = json!({"type": "setup", "sessionId": format!("VX{round}-{i}"), "callSid": format!("CA{round}-{i}"),
                       "from": caller, "to": BUSINESS_NUMBER, "customParameters": {}});
    ws.send(Message::Text(setup.to_string().into())).await.unwrap();
    start.wait().await;
    let prompt =
        json!({"type": "prompt", "voicePrompt": "I need a couch and a fridge hauled away", "last": true});
    let sent = Instant::now();
    ws.send(Message::Text(prompt.to_string().into())).await.unwrap();
    let mut first_token = None;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("an answer within 30 s")
            .unwrap()
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["type"] != "text" {
            continue;
        }
        first_token.get_or_insert_with(|| sent.elapsed());
        if message["last"] == json!(true) {
            break;
        }
    }
    let last = sent.elapsed();
    let _ = ws.close(None).await;
    Sample {
        first_token: first_token.unwrap(),
        last,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    let calls = args.first().copied().unwrap_or(50);
    let rounds = args.get(1).copied().unwrap_or(4);

    let anthropic = MockServer::start().await;
    let pieces = pieces();
    let deltas = pieces.len();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(sse_body(&refs, None))
                .set_delay(MODEL_DELAY),
        )
        .mount(&anthropic)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let vars: HashMap<&str, String> = [
        ("HOST", "127.0.0.1".to_string()),
        ("PORT", "0".to_string()),
        ("PUBLIC_BASE_URL", "http://127.0.0.1".to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}/voice.db", dir.path().display()),
        ),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_string()),
        ("ANTHROPIC_API_KEY", "bench-key".to_string()),
        ("ANTHROPIC_BASE_URL", anthropic.uri()),
    ]
    .into_iter()
    .collect();
    let settings = Settings::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let business = BusinessConfig::parse(
        "[business]\nid = \"bench\"\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\n",
        std::path::Path::new("bench.toml"),
    )
    .unwrap();
    let directory = BusinessDirectory::from_configs(
        &settings.business_config,
        vec![(settings.business_config.clone(), business)],
    )
    .unwrap();
    let app = Application::build_with_clock(settings, Arc::new(directory), textdesk::clock::system())
        .await
        .unwrap();
    let port = app.port();

    let mut samples = Vec::new();
    for round in 0..rounds {
        let start = Arc::new(tokio::sync::Barrier::new(calls));
        let tasks: Vec<_> = (0..calls)
            .map(|i| tokio::spawn(one_call(port, i, round, start.clone())))
            .collect();
        for task in tasks {
            samples.push(task.await.unwrap());
        }
    }
    let mut first: Vec<Duration> = samples.iter().map(|s| s.first_token).collect();
    first.sort();
    let mut per_token: Vec<Duration> = samples
        .iter()
        .map(|s| s.last.saturating_sub(MODEL_DELAY) / deltas as u32)
        .collect();
    per_token.sort();
    println!(
        "{calls} concurrent calls x {rounds} rounds ({} turns), model's first token after {MODEL_DELAY:?}, {deltas} deltas a reply",
        samples.len()
    );
    println!(
        "first text token: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 {:?})",
        percentile(&first, 0.5).as_secs_f64() * 1e3,
        percentile(&first, 0.99).as_secs_f64() * 1e3,
        first.last().unwrap().as_secs_f64() * 1e3,
        FIRST_TOKEN_TARGET
    );
    println!(
        "textdesk overhead per token: p50 {:.3} ms, p99 {:.3} ms (target {:?})",
        percentile(&per_token, 0.5).as_secs_f64() * 1e3,
        percentile(&per_token, 0.99).as_secs_f64() * 1e3,
        PER_TOKEN_TARGET
    );
    app.stop().await;
    let mut missed = false;
    if percentile(&first, 0.99) > FIRST_TOKEN_TARGET {
        println!("MISSED: first token p99");
        missed = true;
    }
    if percentile(&per_token, 0.99) > PER_TOKEN_TARGET {
        println!("MISSED: overhead per token p99");
        missed = true;
    }
    if missed {
        std::process::exit(1);
    }
}
