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
//! - CPU per answered text: the textdesk processes' user + system time
//!   (`/proc/PID/stat`) over the load, divided by the replies; and, reported
//!   apart, the Postgres server's CPU over the same span;
//! - the server's peak RSS (VmHWM).
//!
//! It fails unless every text is answered exactly once, from the number
//! the customer texted.
//!
//! ```sh
//! cargo bench --bench webhook -- [rate_per_s] [seconds]
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo bench --bench webhook -- 500 10 --instances 2
//! BENCH_DATABASE_URL=... cargo bench --bench webhook -- saturate [texts]
//! ```
//!
//! With `BENCH_DATABASE_URL` (a Postgres server) the run uses a fresh
//! database there, `textdesk_bench_webhook`, made anew and dropped after.
//! `--instances 2` starts two `serve` processes on that database and
//! alternates the webhooks between them (Postgres only: SQLite is one
//! process's file).
//!
//! `saturate` measures, in one run, the most turns per second each setup
//! sustains (SQLite; Postgres with one instance; with two, when
//! `BENCH_DATABASE_URL` is set): a backlog of texts (5,000 unless given) is
//! offered as fast as the webhooks are acknowledged (64 in flight), and the
//! rate is the answered texts between the first and the last reply divided
//! by the time between them. Every text must still be answered once.
//!
//! `BENCH_TEXTDESK_BIN=path` runs that `textdesk` binary instead of this
//! build's (to compare two builds under the same harness).
//!
//! `BENCH_CALLGRIND=1` runs each instance under valgrind's callgrind and
//! reports the instructions it executed per answered text over the load, a
//! measure of CPU that does not move with the machine's load (run it at a
//! low rate: callgrind is some 50 times slower).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
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
const NUMBERS: [&str; 2] = ["+15035550142", "+12175550187"];
const BENCH_DATABASE: &str = "textdesk_bench_webhook";

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
        .and_then(|m| {
            m.content
                .into_iter()
                .filter_map(|b| b.text)
                .rfind(|t| !t.starts_with(textdesk::assistant::CONTEXT_HEADER))
        })
        .expect("the customer's text is in the last message, after the desk's context block");
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
    let mut observed = observed.lock().unwrap();
    // One sid per send, even for a reply the checks will reject.
    let sid = format!("SMbench{}", observed.twilio.len() + observed.duplicates);
    if observed
        .twilio
        .insert(marker, (now, form["From"].clone()))
        .is_some()
    {
        observed.duplicates += 1;
    }
    (axum::http::StatusCode::CREATED, axum::Json(json!({"sid": sid})))
}

async fn serve(router: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, task)
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

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// User plus system CPU time the process has used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is parenthesized and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU ticks of every process named `postgres` on this machine, by pid,
/// with whether it serves the bench's database (a backend's title names its
/// database; the server's own processes, such as the WAL writer, name none
/// and serve every database).
fn postgres_ticks() -> HashMap<u32, (u64, bool)> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let is_postgres =
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "postgres");
        if !is_postgres {
            continue;
        }
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|title| String::from_utf8_lossy(&title).contains(BENCH_DATABASE));
        if let Some(ticks) = cpu_ticks(pid) {
            found.insert(pid, (ticks, ours));
        }
    }
    found
}

/// The Postgres server's CPU between two readings: every `postgres`
/// process's delta (a process new since `before` counts from zero), and the
/// part spent by the backends of the bench's database.
fn postgres_delta(before: &HashMap<u32, (u64, bool)>, after: &HashMap<u32, (u64, bool)>) -> (u64, u64) {
    let mut all = 0;
    let mut ours = 0;
    for (pid, (ticks, is_ours)) in after {
        let earlier = before.get(pid).map_or(0, |(t, _)| *t);
        let delta = ticks.saturating_sub(earlier);
        all += delta;
        if *is_ours {
            ours += delta;
        }
    }
    (all, ours)
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

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Copy)]
struct Setup {
    backend: Backend,
    instances: usize,
}

impl Setup {
    fn name(&self) -> String {
        match self.backend {
            Backend::Sqlite => "SQLite".into(),
            Backend::Postgres if self.instances == 1 => "Postgres, 1 instance".into(),
            Backend::Postgres => format!("Postgres, {} instances", self.instances),
        }
    }
}

#[derive(Clone, Copy)]
enum Load {
    /// `rate` webhooks a second for `seconds`.
    Rate { rate: u64, seconds: u64 },
    /// `texts` offered as fast as they are acknowledged, `in_flight` at once.
    Backlog { texts: u64, in_flight: usize },
}

impl Load {
    fn total(&self) -> u64 {
        match *self {
            Load::Rate { rate, seconds } => rate * seconds,
            Load::Backlog { texts, .. } => texts,
        }
    }
}

/// What one run measured.
struct Outcome {
    total: u64,
    acks: Vec<Duration>,
    overheads: Vec<Duration>,
    /// First and last reply handed to Twilio, after the load started.
    replies_span: Option<(Duration, Duration)>,
    /// From the first webhook sent to the last acknowledged.
    offered_in: Duration,
    server_ticks: Option<u64>,
    own_ticks: Option<u64>,
    postgres: Option<(u64, u64)>,
    instructions: Option<u64>,
    peak_rss_kib: Vec<Option<u64>>,
    stored_replies: i64,
    duplicates: usize,
    wrong_number: usize,
}

impl Outcome {
    fn answered(&self) -> usize {
        self.overheads.len()
    }

    /// Answered texts per second between the first and the last reply.
    fn turns_per_second(&self) -> Option<f64> {
        let (first, last) = self.replies_span?;
        let span = last.checked_sub(first)?.as_secs_f64();
        (span > 0.0 && self.answered() > 1).then(|| (self.answered() - 1) as f64 / span)
    }

    fn per_text_ms(&self, ticks: u64, tck: u64) -> f64 {
        ticks as f64 * 1000.0 / tck as f64 / self.answered().max(1) as f64
    }

    /// Every failed check, in words.
    fn failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        let total = self.total as usize;
        if self.answered() < total {
            failed.push(format!(
                "{} replies never reached Twilio",
                total - self.answered()
            ));
        }
        if self.stored_replies != self.total as i64 {
            failed.push(format!(
                "{} replies stored for {total} texts",
                self.stored_replies
            ));
        }
        if self.duplicates > 0 {
            failed.push(format!("{} texts were answered more than once", self.duplicates));
        }
        if self.wrong_number > 0 {
            failed.push(format!(
                "{} replies came from a number the customer did not text",
                self.wrong_number
            ));
        }
        failed
    }
}

/// A database for one run: a temp SQLite file, or a fresh Postgres database
/// on the server `BENCH_DATABASE_URL` names (dropped by [`Database::drop_it`]).
struct Database {
    url: String,
    /// The server's URL, to drop the database after the run.
    server: Option<String>,
}

impl Database {
    async fn create(backend: Backend, dir: &std::path::Path, server: Option<&str>) -> Database {
        match backend {
            Backend::Sqlite => Database {
                url: format!("sqlite://{}/bench.db", dir.display()),
                server: None,
            },
            Backend::Postgres => {
                let server = server.expect("Postgres needs BENCH_DATABASE_URL").to_string();
                admin(
                    &server,
                    &format!("DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)"),
                )
                .await;
                admin(&server, &format!("CREATE DATABASE {BENCH_DATABASE}")).await;
                let base = &server[..server.rfind('/').expect("a URL with a database") + 1];
                Database {
                    url: format!("{base}{BENCH_DATABASE}"),
                    server: Some(server),
                }
            }
        }
    }

    async fn drop_it(&self) {
        if let Some(server) = &self.server {
            admin(
                server,
                &format!("DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)"),
            )
            .await;
        }
    }

    /// Texts or leases still in flight (0 when nothing could send any more),
    /// and the replies stored, read from the server's own database.
    async fn busy_and_replies(&self) -> (i64, i64) {
        const BUSY: &str = "SELECT (SELECT COUNT(*) FROM conversations WHERE lease_owner IS NOT NULL)
                  + (SELECT COUNT(*) FROM messages
                     WHERE (direction = 'inbound' AND status = 'pending')
                        OR (direction = 'outbound' AND status IN ('queued', 'sending')))";
        const REPLIES: &str = "SELECT COUNT(*) FROM messages WHERE direction = 'outbound'";
        if self.server.is_some() {
            let Ok(pool) = sqlx::PgPool::connect(&self.url).await else {
                return (1, -1);
            };
            let busy = sqlx::query_scalar(BUSY).fetch_one(&pool).await.unwrap_or(1);
            let replies = sqlx::query_scalar(REPLIES).fetch_one(&pool).await.unwrap_or(-1);
            pool.close().await;
            (busy, replies)
        } else {
            let Ok(pool) = sqlx::SqlitePool::connect(&format!("{}?mode=ro", self.url)).await else {
                return (1, -1);
            };
            let busy = sqlx::query_scalar(BUSY).fetch_one(&pool).await.unwrap_or(1);
            let replies = sqlx::query_scalar(REPLIES).fetch_one(&pool).await.unwrap_or(-1);
            pool.close().await;
            (busy, replies)
        }
    }
}

async fn admin(server: &str, sql: &str) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .expect("connect to BENCH_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = admin.close().await;
}

/// `textdesk serve` processes, killed when dropped.
struct Instances(Vec<(Child, u16)>);

impl Drop for Instances {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn start_instances(
    setup: Setup,
    dir: &std::path::Path,
    database: &Database,
    llm: SocketAddr,
    twilio: SocketAddr,
    http: &reqwest::Client,
) -> Instances {
    let manifest = env!("CARGO_MANIFEST_DIR");
    // Two businesses, routed by the number texted.
    let businesses = dir.join("businesses");
    std::fs::create_dir_all(&businesses).unwrap();
    std::fs::copy(format!("{manifest}/business.toml"), businesses.join("junk.toml")).unwrap();
    std::fs::copy(
        format!("{manifest}/examples/maid.toml"),
        businesses.join("maid.toml"),
    )
    .unwrap();
    let mut instances = Instances(Vec::new());
    // One after the other: the second finds the migrations applied.
    for _ in 0..setup.instances {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // `BENCH_TEXTDESK_BIN` runs another build (a before/after pair).
        let binary = std::env::var("BENCH_TEXTDESK_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_textdesk").to_string());
        let mut command = if callgrind() {
            let mut command = Command::new("valgrind");
            command
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}/callgrind.%p", dir.display()))
                .arg(binary);
            command
        } else {
            Command::new(binary)
        };
        let child = command
            .arg("serve")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("PUBLIC_BASE_URL", PUBLIC)
            .env("DATABASE_URL", &database.url)
            .env("BUSINESS_CONFIG", &businesses)
            .env("TWILIO_AUTH_TOKEN", TOKEN)
            .env("TWILIO_ACCOUNT_SID", "ACbench")
            .env("TWILIO_FROM_NUMBER", NUMBERS[0])
            .env("TWILIO_API_BASE_URL", format!("http://{twilio}"))
            .env("ANTHROPIC_API_KEY", "bench")
            .env("ANTHROPIC_BASE_URL", format!("http://{llm}"))
            // `BENCH_RUST_LOG=sqlx::query=debug` lists every statement.
            .env(
                "RUST_LOG",
                std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("run the textdesk binary");
        instances.0.push((child, port));
        let deadline = Instant::now() + Duration::from_secs(if callgrind() { 300 } else { 60 });
        while http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "textdesk did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    instances
}

/// Under `BENCH_CALLGRIND=1`, each instance runs under valgrind's
/// callgrind, which counts the instructions it executes: a measure of CPU
/// per text that does not move with the machine's load (this machine's
/// virtual CPUs have no hardware counters for `perf stat`). The count is
/// zeroed when the load starts and dumped when it is done.
fn callgrind() -> bool {
    std::env::var("BENCH_CALLGRIND").ok().as_deref() == Some("1")
}

fn callgrind_control(args: &[&str]) {
    let status = Command::new("callgrind_control")
        .args(args)
        .stdout(Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("callgrind_control {args:?} failed");
    }
}

/// Instructions the instances executed since their counts were zeroed.
fn callgrind_instructions(pids: &[u32], dir: &std::path::Path) -> Option<u64> {
    let mut total = 0;
    for pid in pids {
        callgrind_control(&["-d", &pid.to_string()]);
        // The dump after a zero is the newest file of this pid.
        let newest = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("callgrind.{pid}"))
            })
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())?;
        let text = std::fs::read_to_string(newest.path()).ok()?;
        let totals = text
            .lines()
            .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))?;
        total += totals.split_whitespace().next()?.parse::<u64>().ok()?;
        // Kept for `callgrind_annotate` (where the instructions went).
        let kept = format!("{}/target/callgrind.{pid}.out", env!("CARGO_MANIFEST_DIR"));
        if std::fs::copy(newest.path(), &kept).is_ok() {
            println!("callgrind profile of instance {pid}: {kept}");
        }
    }
    Some(total)
}

async fn run(setup: Setup, load: Load, server: Option<&str>) -> Outcome {
    let observed: Shared = Arc::default();
    let (llm, llm_task) = serve(
        Router::new()
            .route("/v1/messages", post(fake_llm))
            .with_state(observed.clone()),
    )
    .await;
    let (twilio, twilio_task) = serve(
        Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(fake_twilio))
            .with_state(observed.clone()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let database = Database::create(setup.backend, dir.path(), server).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let instances = start_instances(setup, dir.path(), &database, llm, twilio, &http).await;
    let pids: Vec<u32> = instances.0.iter().map(|(c, _)| c.id()).collect();
    let bases: Vec<String> = instances
        .0
        .iter()
        .map(|(_, port)| format!("http://127.0.0.1:{port}"))
        .collect();

    let total = load.total();
    let texted: HashMap<String, &str> = (0..total)
        .map(|i| (format!("bench-{i}"), NUMBERS[(i % 2) as usize]))
        .collect();
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let acks: Arc<Mutex<Vec<Duration>>> = Arc::default();

    if callgrind() {
        for pid in &pids {
            callgrind_control(&["-z", &pid.to_string()]);
        }
    }
    let server_before: Vec<Option<u64>> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let own_before = cpu_ticks(std::process::id());
    let postgres_before = (setup.backend == Backend::Postgres).then(postgres_ticks);
    let load_started = Instant::now();

    let mut ticker = match load {
        Load::Rate { rate, .. } => {
            let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            Some(ticker)
        }
        Load::Backlog { .. } => None,
    };
    let in_flight = Arc::new(tokio::sync::Semaphore::new(match load {
        Load::Backlog { in_flight, .. } => in_flight,
        Load::Rate { .. } => tokio::sync::Semaphore::MAX_PERMITS,
    }));
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..total {
        if let Some(ticker) = &mut ticker {
            ticker.tick().await;
        }
        let permit = in_flight.clone().acquire_owned().await.unwrap();
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
        // Both businesses' texts reach every instance: pairs alternate.
        let base = &bases[(i as usize / 2) % bases.len()];
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
            drop(permit);
        });
    }
    while requests.join_next().await.is_some() {}
    let offered_in = load_started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(180);
    while observed.lock().unwrap().twilio.len() < total as usize {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A duplicate would come after the first reply: before counting, wait
    // until nothing is left that could send (no text waiting for a turn,
    // queued or mid-send, no conversation leased), read from the server's
    // own database.
    let idle_deadline = Instant::now() + Duration::from_secs(60);
    let stored_replies = loop {
        let (busy, replies) = database.busy_and_replies().await;
        if busy == 0 {
            break replies;
        }
        if Instant::now() > idle_deadline {
            eprintln!("error: the server never went idle ({busy} texts or leases still in flight)");
            break -1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The fakes answer instantly: what is left of a turn's wait is ours.
    // (The idle check's own queries above are on the server's database, but
    // not in the textdesk processes.)
    let server_ticks = pids
        .iter()
        .zip(&server_before)
        .map(|(pid, before)| Some(cpu_ticks(*pid)?.saturating_sub((*before)?)))
        .sum::<Option<u64>>();
    let own_ticks = cpu_ticks(std::process::id())
        .zip(own_before)
        .map(|(now, before)| now.saturating_sub(before));
    let postgres = postgres_before.map(|before| postgres_delta(&before, &postgres_ticks()));
    let instructions = if callgrind() {
        callgrind_instructions(&pids, dir.path())
    } else {
        None
    };
    let peak_rss_kib = pids.iter().map(|p| peak_rss_kib(*p)).collect();
    drop(instances);
    database.drop_it().await;
    llm_task.abort();
    twilio_task.abort();

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
    let handed: Vec<Duration> = observed
        .twilio
        .values()
        .map(|(at, _)| at.saturating_duration_since(load_started))
        .collect();
    let replies_span = handed.iter().min().copied().zip(handed.iter().max().copied());
    let wrong_number = observed
        .twilio
        .iter()
        .filter(|(marker, (_, from))| texted.get(*marker).is_none_or(|to| to != from))
        .count();
    Outcome {
        total,
        acks,
        overheads,
        replies_span,
        offered_in,
        server_ticks,
        own_ticks,
        postgres,
        instructions,
        peak_rss_kib,
        stored_replies,
        duplicates: observed.duplicates,
        wrong_number,
    }
}

fn report(setup: Setup, outcome: &Outcome, tck: u64) {
    let total = outcome.total;
    println!("replies handed to Twilio: {} of {total}", outcome.answered());
    println!(
        "webhook acknowledgement: p50 {}  p99 {}  max {}",
        ms(percentile(&outcome.acks, 0.5)),
        ms(percentile(&outcome.acks, 0.99)),
        ms(outcome.acks.last().copied().unwrap_or_default())
    );
    println!(
        "turn overhead:           p50 {}  p99 {}  max {}",
        ms(percentile(&outcome.overheads, 0.5)),
        ms(percentile(&outcome.overheads, 0.99)),
        ms(outcome.overheads.last().copied().unwrap_or_default())
    );
    let answered = outcome.answered().max(1);
    match outcome.server_ticks {
        Some(ticks) => println!(
            "server CPU:              {:.2} s in all, {:.3} ms per answered text ({} textdesk process{})",
            ticks as f64 / tck as f64,
            outcome.per_text_ms(ticks, tck),
            setup.instances,
            if setup.instances == 1 { "" } else { "es" }
        ),
        None => println!("server CPU:              unavailable (no /proc)"),
    }
    if let Some(instructions) = outcome.instructions {
        println!(
            "server instructions:     {:.2} M per answered text (callgrind, over the load)",
            instructions as f64 / answered as f64 / 1e6
        );
    }
    // Reported apart: the database server is another program's CPU.
    if let Some((all, ours)) = outcome.postgres {
        println!(
            "Postgres server CPU:     {:.2} s in all, {:.3} ms per answered text \
             (all `postgres` processes; {:.3} ms of it this database's backends)",
            all as f64 / tck as f64,
            outcome.per_text_ms(all, tck),
            outcome.per_text_ms(ours, tck),
        );
    }
    // The load generator and the fakes share the server's cores: what they
    // use is CPU the server did not get.
    if let Some(own) = outcome.own_ticks {
        println!(
            "benchmark's own CPU:     {:.2} s in all, {:.3} ms per answered text",
            own as f64 / tck as f64,
            outcome.per_text_ms(own, tck),
        );
    }
    let rss: Vec<String> = outcome
        .peak_rss_kib
        .iter()
        .map(|kib| kib.map_or("unavailable".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)))
        .collect();
    println!("server peak RSS:         {}", rss.join(", "));
}

#[tokio::main]
async fn main() {
    let mut positional = Vec::new();
    let mut instances = 1usize;
    let mut saturate = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--instances" => {
                instances = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=8).contains(n))
                    .unwrap_or_else(|| {
                        eprintln!("--instances takes a number from 1 to 8");
                        std::process::exit(2)
                    })
            }
            "saturate" => saturate = true,
            // cargo bench passes `--bench`; other flags are not ours.
            flag if flag.starts_with("--") => {}
            _ => positional.push(arg),
        }
    }
    let number = |i: usize| -> Option<u64> {
        let arg = positional.get(i)?;
        match arg.parse() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                eprintln!("`{arg}` is not a positive whole number");
                std::process::exit(2)
            }
        }
    };
    let server = std::env::var("BENCH_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"));
    let tck = clock_ticks_per_second();

    if saturate {
        let texts = number(0).unwrap_or(5_000);
        let mut setups = vec![Setup {
            backend: Backend::Sqlite,
            instances: 1,
        }];
        if server.is_some() {
            setups.push(Setup {
                backend: Backend::Postgres,
                instances: 1,
            });
            setups.push(Setup {
                backend: Backend::Postgres,
                instances: 2,
            });
        } else {
            println!("(BENCH_DATABASE_URL is not set: SQLite only)");
        }
        println!(
            "textdesk saturation: {texts} texts offered as fast as they are acknowledged (64 in flight), \
             per setup; turns/s = answered texts between the first and last reply / that time"
        );
        let mut rows = Vec::new();
        let mut failed = false;
        for setup in setups {
            println!("\n== {} ==", setup.name());
            let outcome = run(setup, Load::Backlog { texts, in_flight: 64 }, server.as_deref()).await;
            report(setup, &outcome, tck);
            for failure in outcome.failures() {
                eprintln!("error ({}): {failure}", setup.name());
                failed = true;
            }
            rows.push((setup, outcome));
        }
        println!(
            "\n| setup | turns/s | offered at (webhooks/s) | server CPU per text | Postgres CPU per text | answered once |"
        );
        println!("|---|---|---|---|---|---|");
        for (setup, outcome) in &rows {
            println!(
                "| {} | {} | {:.0} | {} | {} | {} |",
                setup.name(),
                outcome
                    .turns_per_second()
                    .map_or("—".into(), |r| format!("{r:.0}")),
                outcome.total as f64 / outcome.offered_in.as_secs_f64(),
                outcome
                    .server_ticks
                    .map_or("—".into(), |t| format!("{:.3} ms", outcome.per_text_ms(t, tck))),
                outcome.postgres.map_or("—".into(), |(all, _)| format!(
                    "{:.3} ms",
                    outcome.per_text_ms(all, tck)
                )),
                if outcome.failures().is_empty() {
                    "yes"
                } else {
                    "NO"
                },
            );
        }
        if failed {
            std::process::exit(1);
        }
        return;
    }

    let rate = number(0).unwrap_or(500);
    let seconds = number(1).unwrap_or(10);
    let setup = Setup {
        backend: if server.is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        },
        instances,
    };
    if setup.backend == Backend::Sqlite && instances > 1 {
        eprintln!("--instances {instances} needs Postgres: set BENCH_DATABASE_URL=postgres://...");
        std::process::exit(2);
    }
    let load = Load::Rate { rate, seconds };
    println!(
        "textdesk webhook benchmark ({}): {rate} webhooks/s for {seconds} s ({} texts, one new customer each, \
         alternating between two businesses{})",
        setup.name(),
        load.total(),
        if instances > 1 {
            " and between the instances"
        } else {
            ""
        }
    );
    let outcome = run(setup, load, server.as_deref()).await;
    report(setup, &outcome, tck);
    let failures = outcome.failures();
    for failure in &failures {
        eprintln!("error: {failure}");
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
    println!("every text answered exactly once, from the number texted");
}
