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
use std::sync::{Arc, Mutex};
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
use tracing_subscriber::layer::SubscriberExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const AUTH_TOKEN: &str = "bench-auth-token";
const BUSINESS_NUMBER: &str = "+15035550142";
const MODEL_DELAY: Duration = Duration::from_millis(300);
const GREETING: Duration = Duration::from_secs(1);
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

/// CPU time (user and system) this process has used, from /proc (Linux);
/// zero elsewhere.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the whole line, in clock ticks (100 a second).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// The steps of each call turn, from textdesk's `call turn timing` events
/// (milliseconds from the turn's start; -1 when a step did not happen).
#[derive(Default)]
struct Phases(HashMap<&'static str, f64>);

impl tracing::field::Visit for Phases {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name(), value);
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

/// Collects every call turn's phases.
#[derive(Clone, Default)]
struct PhaseLayer(Arc<Mutex<Vec<Phases>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PhaseLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "textdesk::call_timing" {
            return;
        }
        let mut phases = Phases::default();
        event.record(&mut phases);
        self.0.lock().unwrap().push(phases);
    }
}

fn ms_percentiles(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let at = |p: f64| values[((values.len() as f64 - 1.0) * p).round() as usize];
    format!(
        "p50 {:7.1} ms  p99 {:7.1} ms  max {:7.1} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    )
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
    // Nagle off, as a real-time client's socket is: otherwise the prompt
    // can wait on the delayed ACK of the `setup` sent just before it.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .unwrap();
    let caller = format!("+1503555{:04}", round * 1000 + i);
    let setup = json!({"type": "setup", "sessionId": format!("VX{round}-{i}"), "callSid": format!("CA{round}-{i}"),
                       "from": caller, "to": BUSINESS_NUMBER, "customParameters": {}});
    ws.send(Message::Text(setup.to_string().into())).await.unwrap();
    // Twilio speaks the welcome greeting (seconds) before the caller's
    // first words arrive; one second of it here.
    tokio::time::sleep(GREETING).await;
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
    let phases = PhaseLayer::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::filter::Targets::new()
                    .with_target("textdesk::call_timing", tracing::Level::DEBUG),
            )
            .with(phases.clone()),
    )
    .unwrap();

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
    // SQLite in the temp dir, or with `BENCH_DATABASE_URL=postgres://...`
    // (a server) a database of its own there, dropped at the end.
    let postgres = std::env::var("BENCH_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"));
    let bench_db = "textdesk_bench_voice";
    let database_url = match &postgres {
        Some(server) => {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
            for sql in [
                format!("DROP DATABASE IF EXISTS {bench_db} WITH (FORCE)"),
                format!("CREATE DATABASE {bench_db}"),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await
                    .unwrap();
            }
            format!("{}{bench_db}", &server[..server.rfind('/').unwrap() + 1])
        }
        None => format!("sqlite://{}/voice.db", dir.path().display()),
    };
    let vars: HashMap<&str, String> = [
        ("HOST", "127.0.0.1".to_string()),
        ("PORT", "0".to_string()),
        ("PUBLIC_BASE_URL", "http://127.0.0.1".to_string()),
        ("DATABASE_URL", database_url),
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
    let cpu_before = process_cpu();
    for round in 0..rounds {
        let start = Arc::new(tokio::sync::Barrier::new(calls));
        let tasks: Vec<_> = (0..calls)
            .map(|i| tokio::spawn(one_call(port, i, round, start.clone())))
            .collect();
        let mut round_first = Vec::with_capacity(calls);
        for task in tasks {
            let sample = task.await.unwrap();
            round_first.push(sample.first_token);
            samples.push(sample);
        }
        round_first.sort();
        println!(
            "round {}: first text token p50 {:.1} ms, max {:.1} ms",
            round + 1,
            percentile(&round_first, 0.5).as_secs_f64() * 1e3,
            round_first.last().unwrap().as_secs_f64() * 1e3
        );
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
    // Each turn reports its steps after its commit, a moment after the
    // caller heard its end.
    let deadline = Instant::now() + Duration::from_secs(10);
    while phases.0.lock().unwrap().len() < samples.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = process_cpu() - cpu_before;
    println!(
        "CPU per call turn (this whole process: textdesk, the fake Claude and the callers' sockets; an upper bound): {:.2} ms ({} on {})",
        cpu.as_secs_f64() * 1e3 / samples.len() as f64,
        if postgres.is_some() { "Postgres" } else { "SQLite" },
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    app.stop().await;
    if let Some(server) = &postgres {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {bench_db} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }
    // Where each turn's wait went, from textdesk's own timestamps.
    let turns = phases.0.lock().unwrap();
    println!(
        "call turn steps, from the prompt's arrival ({} turns):",
        turns.len()
    );
    for step in [
        "started_ms",
        "claimed_ms",
        "recorded_ms",
        "read_ms",
        "requested_ms",
        "model_opened_ms",
        "first_spoken_ms",
    ] {
        let mut values: Vec<f64> = turns
            .iter()
            .filter_map(|t| t.0.get(step).copied())
            .filter(|v| *v >= 0.0)
            .collect();
        if !values.is_empty() {
            println!("  {step:<16} {}", ms_percentiles(&mut values));
        }
    }
    let mut model_to_socket: Vec<f64> = turns
        .iter()
        .filter_map(|t| Some(t.0.get("first_spoken_ms")? - t.0.get("model_opened_ms")?))
        .collect();
    if !model_to_socket.is_empty() {
        println!(
            "  model's first byte to first words out: {}",
            ms_percentiles(&mut model_to_socket)
        );
    }
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
