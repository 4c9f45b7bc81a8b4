//! Webhook and turn-overhead benchmark (a harness, not a timed test).
//!
//! Starts the real `textdesk serve` binary with two businesses (the shipped
//! `business.toml` and `examples/maid.toml`, as a `BUSINESS_CONFIG`
//! directory) against an instant fake LLM and a fake Twilio (both in this
//! process), posts signed webhooks at a fixed rate, alternating between the
//! two businesses' numbers, and reports:
//! - acknowledgement latency: webhook sent → 200 received;
//! - turn overhead: webhook sent → reply handed to Twilio, minus the time
//!   spent inside the LLM call (measured by the fake, per message);
//! - the server's peak RSS (VmHWM) and CPU time per answered text.
//!
//! It fails unless every text is answered exactly once, from the number
//! the customer texted.
//!
//! cargo bench --bench webhook -- [rate_per_s] [seconds]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use textdesk::twilio::signature;

const TOKEN: &str = "bench-token";
const PUBLIC: &str = "https://bench.example.com";

#[derive(Default)]
struct Observed {
    /// marker → time spent inside the fake LLM handler.
    llm: HashMap<String, Duration>,
    /// marker → when Twilio was handed the reply, and from which number.
    twilio: HashMap<String, (Instant, String)>,
    /// Replies handed to Twilio for a text already answered.
    duplicates: usize,
}

type Shared = Arc<Mutex<Observed>>;

/// Only what the fake LLM reads of a request: the system prompt and the tool
/// schemas are skipped over, not built into a tree, so the fake costs the
/// shared cores little beyond reading the bytes once.
#[derive(serde::Deserialize)]
struct LlmRequest {
    messages: Vec<LlmMessage>,
}

#[derive(serde::Deserialize)]
struct LlmMessage {
    content: Vec<LlmBlock>,
}

#[derive(serde::Deserialize)]
struct LlmBlock {
    text: Option<String>,
}

async fn fake_llm(State(observed): State<Shared>, body: Bytes) -> axum::Json<Value> {
    let started = Instant::now();
    let request: LlmRequest = serde_json::from_slice(&body).unwrap();
    let last = request
        .messages
        .into_iter()
        .next_back()
        .and_then(|m| m.content.into_iter().next())
        .and_then(|b| b.text)
        .expect("the customer's text is the last message's first block");
    let reply = json!({
        "id": "msg_bench", "type": "message", "role": "assistant",
        "content": [{"type": "text", "text": format!("Re: {last}")}],
        "stop_reason": "end_turn"
    });
    observed.lock().unwrap().llm.insert(last, started.elapsed());
    axum::Json(reply)
}

async fn fake_twilio(
    State(observed): State<Shared>,
    body: Bytes,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    let now = Instant::now();
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let marker = form["Body"].trim_start_matches("Re: ").to_string();
    let sid = format!("SMbench{}", marker.trim_start_matches("bench-"));
    let mut observed = observed.lock().unwrap();
    if observed
        .twilio
        .insert(marker, (now, form["From"].clone()))
        .is_some()
    {
        observed.duplicates += 1;
    }
    (axum::http::StatusCode::CREATED, axum::Json(json!({"sid": sid})))
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// User plus system CPU time the process has used so far.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is parenthesized and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second: u64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100);
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rate: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(500);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let total = rate * seconds;

    let observed: Shared = Arc::default();
    let llm = serve(
        Router::new()
            .route("/v1/messages", post(fake_llm))
            .with_state(observed.clone()),
    )
    .await;
    let twilio = serve(
        Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(fake_twilio))
            .with_state(observed.clone()),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let manifest = env!("CARGO_MANIFEST_DIR");
    // Two businesses, routed by the number texted.
    let businesses = dir.path().join("businesses");
    std::fs::create_dir(&businesses).unwrap();
    std::fs::copy(format!("{manifest}/business.toml"), businesses.join("junk.toml")).unwrap();
    std::fs::copy(
        format!("{manifest}/examples/maid.toml"),
        businesses.join("maid.toml"),
    )
    .unwrap();
    const NUMBERS: [&str; 2] = ["+15035550142", "+12175550187"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_textdesk"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("PUBLIC_BASE_URL", PUBLIC)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/bench.db", dir.path().display()),
        )
        .env("BUSINESS_CONFIG", &businesses)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("TWILIO_ACCOUNT_SID", "ACbench")
        .env("TWILIO_FROM_NUMBER", "+15035550142")
        .env("TWILIO_API_BASE_URL", format!("http://{twilio}"))
        .env("ANTHROPIC_API_KEY", "bench")
        .env("ANTHROPIC_BASE_URL", format!("http://{llm}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("run the textdesk binary");
    let pid = child.id();

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "textdesk did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    println!(
        "textdesk webhook benchmark: {rate} webhooks/s for {seconds} s ({total} texts, one new customer each, \
         alternating between two businesses)"
    );
    let texted: HashMap<String, &str> = (0..total)
        .map(|i| (format!("bench-{i}"), NUMBERS[(i % 2) as usize]))
        .collect();
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let acks: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..total {
        ticker.tick().await;
        let marker = format!("bench-{i}");
        let params: Vec<(String, String)> = vec![
            ("MessageSid".into(), format!("SM{i:032x}")),
            ("From".into(), format!("+1503{:07}", 1_000_000 + i)),
            ("To".into(), NUMBERS[(i % 2) as usize].into()),
            ("Body".into(), marker.clone()),
            ("NumMedia".into(), "0".into()),
            ("AccountSid".into(), "ACbench".into()),
        ];
        let signature = signature::sign(TOKEN, &format!("{PUBLIC}/api/sms/inbound"), &params);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let request = http
            .post(format!("{base}/api/sms/inbound"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(body);
        let sent_at = sent_at.clone();
        let acks = acks.clone();
        requests.spawn(async move {
            let started = Instant::now();
            sent_at.lock().unwrap().insert(marker, started);
            let response = request.send().await.expect("webhook request");
            assert_eq!(response.status(), 200);
            acks.lock().unwrap().push(started.elapsed());
        });
    }
    while requests.join_next().await.is_some() {}

    let deadline = Instant::now() + Duration::from_secs(120);
    while observed.lock().unwrap().twilio.len() < total as usize {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A duplicate would come after the first reply: before counting, wait
    // until nothing is left that could send (no text waiting for a turn,
    // queued or mid-send, no conversation leased), read from the server's
    // own database.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/bench.db?mode=ro", dir.path().display()))
        .await
        .expect("open the server's database");
    let idle_deadline = Instant::now() + Duration::from_secs(60);
    let stored_replies: i64 = loop {
        let busy: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM conversations WHERE lease_owner IS NOT NULL)
                  + (SELECT COUNT(*) FROM messages
                     WHERE (direction = 'inbound' AND status = 'pending')
                        OR (direction = 'outbound' AND status IN ('queued', 'sending')))",
        )
        .fetch_one(&db)
        .await
        .unwrap_or(1);
        if busy == 0 {
            break sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE direction = 'outbound'")
                .fetch_one(&db)
                .await
                .unwrap_or(-1);
        }
        if Instant::now() > idle_deadline {
            eprintln!("error: the server never went idle ({busy} texts or leases still in flight)");
            break -1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    db.close().await;
    // The fakes answer instantly: what is left of a turn's wait is ours.
    let cpu = cpu_time(pid);
    let own_cpu = cpu_time(std::process::id());
    let rss = peak_rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();

    let mut acks = acks.lock().unwrap().clone();
    acks.sort();
    let observed = observed.lock().unwrap();
    let sent_at = sent_at.lock().unwrap();
    let mut overheads: Vec<Duration> = observed
        .twilio
        .iter()
        .filter_map(|(marker, (handed, _))| {
            let sent = sent_at.get(marker)?;
            let llm = observed.llm.get(marker).copied().unwrap_or_default();
            Some(handed.saturating_duration_since(*sent).saturating_sub(llm))
        })
        .collect();
    overheads.sort();
    println!("replies handed to Twilio: {} of {total}", overheads.len());
    println!(
        "webhook acknowledgement: p50 {}  p99 {}  max {}",
        ms(percentile(&acks, 0.5)),
        ms(percentile(&acks, 0.99)),
        ms(*acks.last().unwrap())
    );
    println!(
        "turn overhead:           p50 {}  p99 {}  max {}",
        ms(percentile(&overheads, 0.5)),
        ms(percentile(&overheads, 0.99)),
        ms(overheads.last().copied().unwrap_or_default())
    );
    let answered = overheads.len();
    match cpu {
        Some(cpu) if answered > 0 => println!(
            "server CPU:              {:.2} s in all, {:.3} ms per answered text",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1000.0 / answered as f64
        ),
        _ => println!("server CPU:              unavailable (no /proc)"),
    }
    // The load generator and the fakes share the server's cores: what they
    // use is CPU the server did not get.
    if let Some(own) = own_cpu.filter(|_| answered > 0) {
        println!(
            "benchmark's own CPU:     {:.2} s in all, {:.3} ms per answered text",
            own.as_secs_f64(),
            own.as_secs_f64() * 1000.0 / answered as f64
        );
    }
    match rss {
        Some(kib) => println!("server peak RSS:         {:.1} MiB", kib as f64 / 1024.0),
        None => println!("server peak RSS:         unavailable (no /proc)"),
    }
    let mut failed = false;
    if overheads.len() < total as usize {
        eprintln!(
            "error: {} replies never reached Twilio",
            total as usize - overheads.len()
        );
        failed = true;
    }
    if stored_replies != total as i64 {
        eprintln!("error: {stored_replies} replies stored for {total} texts");
        failed = true;
    }
    if observed.duplicates > 0 {
        eprintln!(
            "error: {} texts were answered more than once",
            observed.duplicates
        );
        failed = true;
    }
    let wrong_number = observed
        .twilio
        .iter()
        .filter(|(marker, (_, from))| texted.get(*marker).is_none_or(|to| to != from))
        .count();
    if wrong_number > 0 {
        eprintln!("error: {wrong_number} replies came from a number the customer did not text");
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
    println!("every text answered exactly once, from the number texted");
}
