//! Issue 11, fleet operations: `/metrics`, `/healthz`, `/readyz`, request
//! ids, and the database failing under a running instance.
//!
//! A binary of its own: the metrics recorder is one per process, so the
//! counters these tests read move only with their own traffic. The tests
//! take `SERIAL` in turn, and each asserts exact deltas.

/// `spawn_app` runs on SQLite here. The outage and readiness tests run
/// again on Postgres when `TEST_DATABASE_URL` is set, each on a database
/// of its own (`on_postgres`, named `ops_...` and dropped), and the
/// Postgres readings test connects on its own.
pub const POSTGRES: bool = false;

#[allow(dead_code)]
#[path = "../api/fake_google.rs"]
mod fake_google;
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod prometheus;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use helpers::{AUTH_TOKEN, EchoClaude, Options, PUBLIC_BASE_URL, TestApp, spawn_app, spawn_app_with};
use serde_json::json;
use textdesk::meters;
use textdesk::store::postgres::testdb::TestDb as PgTestDb;
use textdesk::store::{JobStatus, NewJob};
use textdesk::twilio::signature;
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

const CUSTOMER: &str = "+15035550123";

/// The tests of this binary share the process's counters and its log.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Everything the process logged, for the tests that read log lines.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter("info,wiremock=warn,sqlx=warn")
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .try_init()
            .expect("no other subscriber in this binary");
        logs
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where the log is now: a test reads only what was logged after its mark.
fn log_mark() -> usize {
    captured_logs().lock().unwrap().len()
}

fn log_lines_with(since: usize, needle: &str) -> Vec<String> {
    let logs = captured_logs().lock().unwrap();
    String::from_utf8_lossy(&logs[since.min(logs.len())..])
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Waits until a line logged after `since` contains `needle`; fails the
/// test otherwise.
async fn wait_for_log(since: usize, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = log_lines_with(since, needle).pop() {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with `{needle}` within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn scrape(app: &TestApp) -> (prometheus::Exposition, String) {
    let response = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        response.headers()
    );
    let text = response.text().await.unwrap();
    let parsed = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (parsed, text)
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_traffic() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app().await;
    let (before, text) = scrape(&app).await;
    let mut scrapes = 0;

    // Every series is described, with its type, before any traffic.
    for (name, kind) in [
        (meters::HTTP_REQUESTS, "counter"),
        (meters::WEBHOOK_ACK, "histogram"),
        (meters::TURN, "histogram"),
        (meters::MODEL_REQUESTS, "counter"),
        (meters::MODEL_TOKENS, "counter"),
        (meters::MODEL_CALLS_PER_TURN, "histogram"),
        (meters::SENDS, "counter"),
        (meters::JOBS, "gauge"),
        (meters::JOB_OLDEST_DUE, "gauge"),
        (meters::BOOKING_CONFLICTS, "counter"),
    ] {
        assert_eq!(
            before.types.get(name).map(String::as_str),
            Some(kind),
            "{name}\n{text}"
        );
        assert!(before.helps.contains_key(name), "{name} has no HELP");
    }
    for kind in ["input", "cache_read", "cache_write", "output"] {
        assert!(
            before.value(meters::MODEL_TOKENS, &[("kind", kind)]).is_some(),
            "{kind}\n{text}"
        );
    }
    // Every job kind and status, zero included.
    let jobs = before.label_sets(meters::JOBS);
    assert!(jobs.len() >= meters::JOB_KINDS.len() * meters::JOB_STATUSES.len());
    for kind in meters::JOB_KINDS {
        for status in meters::JOB_STATUSES {
            assert_eq!(
                before.value(meters::JOBS, &[("kind", kind), ("status", status)]),
                Some(0.0),
                "{kind} {status}"
            );
        }
    }

    let inbound = [
        ("route", "/api/sms/inbound"),
        ("method", "POST"),
        ("status", "200"),
    ];
    let sent = [("channel", "sms"), ("outcome", "sent")];
    let metrics_get = [("route", "/metrics"), ("method", "GET"), ("status", "200")];
    let count = |e: &prometheus::Exposition, name: &str| e.value_or_zero(&format!("{name}_count"), &[]);

    app.text(CUSTOMER, "I have a couch to haul").await;
    app.wait_for_texts(1).await;
    app.wait_until_settled(CUSTOMER).await;
    // The turn is counted when its task has ended, just after its send.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let (after, _) = scrape(&app).await;
        scrapes += 1;
        if count(&after, meters::TURN) > count(&before, meters::TURN) || Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    assert_eq!(
        count(&after, meters::WEBHOOK_ACK),
        count(&before, meters::WEBHOOK_ACK) + 1.0
    );
    assert_eq!(count(&after, meters::TURN), count(&before, meters::TURN) + 1.0);
    assert_eq!(
        after.value_or_zero(meters::HTTP_REQUESTS, &inbound),
        before.value_or_zero(meters::HTTP_REQUESTS, &inbound) + 1.0
    );
    assert_eq!(
        after.value_or_zero(meters::SENDS, &sent),
        before.value_or_zero(meters::SENDS, &sent) + 1.0
    );
    assert_eq!(
        after.value_or_zero(meters::MODEL_REQUESTS, &[("outcome", "ok")]),
        before.value_or_zero(meters::MODEL_REQUESTS, &[("outcome", "ok")]) + 1.0
    );
    // Each scrape is counted once its answer is made: the later scrape
    // sees every scrape since the first, not itself.
    assert_eq!(
        after.value_or_zero(meters::HTTP_REQUESTS, &metrics_get),
        before.value_or_zero(meters::HTTP_REQUESTS, &metrics_get) + f64::from(scrapes)
    );

    // A route with a parameter is counted under its template.
    let page = app
        .http
        .get(format!("{}/owner/conversations/987654", app.address))
        .send()
        .await
        .unwrap();
    let status = page.status().as_u16().to_string();
    let (later, text) = scrape(&app).await;
    assert_eq!(
        later.value(
            meters::HTTP_REQUESTS,
            &[
                ("route", "/owner/conversations/{id}"),
                ("method", "GET"),
                ("status", &status)
            ]
        ),
        Some(
            before.value_or_zero(
                meters::HTTP_REQUESTS,
                &[
                    ("route", "/owner/conversations/{id}"),
                    ("method", "GET"),
                    ("status", &status)
                ]
            ) + 1.0
        ),
        "{text}"
    );
    assert!(!text.contains("987654"), "a raw path is a label:\n{text}");
    // No number, the customer's or the business's, in any form.
    for digits in ["5035550123", "5550123", "5035550142"] {
        assert!(!text.contains(digits), "{digits} in /metrics:\n{text}");
    }
}

#[tokio::test]
async fn the_job_gauges_count_by_kind_and_status_and_time_the_oldest_due_job() {
    let _serial = SERIAL.lock().await;
    use textdesk::clock::ManualClock;
    use textdesk::store::sqlite::SqliteStore;
    use textdesk::store::{FleetReadings, JobQueue};

    let dir = tempfile::TempDir::new().unwrap();
    let now = chrono::DateTime::parse_from_rfc3339("2026-06-01T15:00:00Z")
        .unwrap()
        .to_utc();
    let clock = Arc::new(ManualClock::at(now));
    let store = SqliteStore::connect_with_clock(&format!("sqlite://{}/t.db", dir.path().display()), clock)
        .await
        .unwrap();
    let job = |key: &str, kind: &'static str, run_at| NewJob {
        kind,
        dedupe_key: key.into(),
        conversation_id: None,
        customer_id: None,
        recipient: "owner@example.com".into(),
        payload: json!({}),
        run_at,
        max_attempts: 3,
    };
    store
        .enqueue_jobs(&[
            job("a", "email", now - chrono::Duration::seconds(90)),
            job("b", "email", now - chrono::Duration::seconds(30)),
            job("c", "reminder", now + chrono::Duration::hours(5)),
            job("d", "reminder", now - chrono::Duration::seconds(10)),
        ])
        .await
        .unwrap();
    // One of them finished: not pending, so not waiting.
    let claimed = store
        .claim_due_jobs(now, 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed[0].dedupe_key, "a");
    let claim = textdesk::store::JobClaim {
        id: claimed[0].id,
        attempts: claimed[0].attempts,
    };
    assert!(
        store
            .finish_job(claim, &textdesk::store::JobOutcome::Done { result: None })
            .await
            .unwrap()
    );

    let counts = store.job_counts(now).await.unwrap();
    let n = |kind: &str, status: JobStatus| {
        counts
            .by_kind_and_status
            .get(&(kind.to_string(), status.as_str().to_string()))
            .copied()
    };
    assert_eq!(n("email", JobStatus::Done), Some(1));
    assert_eq!(n("email", JobStatus::Pending), Some(1));
    assert_eq!(n("reminder", JobStatus::Pending), Some(2));
    assert_eq!(n("reminder", JobStatus::Dead), None);
    // "b" waited 30 s; "a" is done and "c" not yet due.
    assert_eq!(counts.oldest_due, Some(Duration::from_secs(30)));
    assert_eq!(
        store
            .job_counts(now - chrono::Duration::minutes(5))
            .await
            .unwrap()
            .oldest_due,
        None
    );
    store.readiness().await.unwrap();

    // The scrape shows them, with every other pair at zero.
    let rendered = meters::render(Some(&counts));
    let read = prometheus::parse(&rendered).unwrap();
    assert_eq!(
        read.value(meters::JOBS, &[("kind", "reminder"), ("status", "pending")]),
        Some(2.0)
    );
    assert_eq!(
        read.value(meters::JOBS, &[("kind", "owner_text"), ("status", "dead")]),
        Some(0.0)
    );
    assert_eq!(read.value(meters::JOB_OLDEST_DUE, &[]), Some(30.0));
}

/// Signs and posts a text with extra headers.
async fn post_text_with_headers(
    app: &TestApp,
    sid: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    post_text_from(app, CUSTOMER, sid, body, headers).await
}

/// Signs and posts a text from `from` with extra headers.
async fn post_text_from(
    app: &TestApp,
    from: &str,
    sid: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let params = TestApp::inbound_params(from, body, sid);
    let url = format!("{PUBLIC_BASE_URL}/api/sms/inbound");
    let sig = signature::sign(AUTH_TOKEN, &url, &params);
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let mut request = app
        .http
        .post(format!("{}/api/sms/inbound", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(form);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn every_request_has_an_id_in_its_answer_and_its_log_lines() {
    let _serial = SERIAL.lock().await;
    captured_logs();
    let app = spawn_app().await;
    let mark = log_mark();

    // The client's id is kept, returned, and in the request's log lines.
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let response = post_text_with_headers(&app, &sid, "hello", &[("x-request-id", "rid-ops-7f3a")]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "rid-ops-7f3a");
    let line = wait_for_log(mark, "text stored", Duration::from_secs(5)).await;
    assert!(line.contains("request_id=rid-ops-7f3a"), "{line}");

    // None sent: one is made, and differs per request.
    let ids: Vec<String> =
        futures::future::join_all((0..2).map(|_| app.http.get(format!("{}/healthz", app.address)).send()))
            .await
            .into_iter()
            .map(|r| r.unwrap().headers()["x-request-id"].to_str().unwrap().to_string())
            .collect();
    for id in &ids {
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(ids[0], ids[1]);

    // An id that could carry anything into a log is replaced.
    let response = app
        .http
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "+15035550123 \"injected\"")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32, "{id}");

    // Errors carry it too (a refused signature).
    let response = app
        .http
        .post(format!("{}/api/sms/inbound", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-request-id", "rid-ops-refused")
        .body("From=%2B15035550123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-request-id"], "rid-ops-refused");
    let line = wait_for_log(mark, "request refused", Duration::from_secs(5)).await;
    assert!(line.contains("request_id=rid-ops-refused"), "{line}");
}

/// The app on `database` (a Postgres URL) when given, else on the test's
/// SQLite file.
async fn spawn_app_on(database: Option<String>, mut options: Options) -> TestApp {
    if let Some(url) = database {
        options.extra_vars.push(("DATABASE_URL", url));
    }
    spawn_app_with(options).await
}

/// Runs `test` on a Postgres database of its own (`ALTER DATABASE` needs
/// one; a schema will not do), when `TEST_DATABASE_URL` names a server,
/// and drops the database whatever the test found.
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Option<String>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(db) = PgTestDb::create("ops").await else {
        return;
    };
    let outcome =
        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(test(Some(db.url.clone())))).await;
    db.drop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The database made unavailable under a running app, and given back.
/// SQLite: another connection holds the write lock (the app's writes wait
/// out their busy timeout, then fail). Postgres: the database refuses
/// connections and its sessions are ended.
enum Outage {
    Sqlite(sqlx::SqliteConnection),
    Postgres { admin: sqlx::PgConnection, name: String },
}

impl Outage {
    async fn begin(app: &TestApp) -> Self {
        use sqlx::Connection;
        if app.database_url.starts_with("postgres") {
            let server = std::env::var("TEST_DATABASE_URL").unwrap();
            let name = app.database_url.rsplit('/').next().unwrap().to_string();
            let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
            sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
                .bind(&name)
                .execute(&mut admin)
                .await
                .unwrap();
            Outage::Postgres { admin, name }
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&app.database_url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
            Outage::Sqlite(conn)
        }
    }

    async fn end(self) {
        match self {
            Outage::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            }
            Outage::Postgres { mut admin, name } => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {name} ALLOW_CONNECTIONS true"
                )))
                .execute(&mut admin)
                .await
                .unwrap();
            }
        }
    }
}

async fn readyz(app: &TestApp) -> (u16, serde_json::Value, Duration) {
    let started = Instant::now();
    let response = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap(), started.elapsed())
}

async fn wait_until_ready(app: &TestApp, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, body, _) = readyz(app).await;
        if status == 200 {
            assert_eq!(body["database"], "ok");
            return;
        }
        assert!(Instant::now() < deadline, "not ready within {within:?}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn with_the_database_down_the_webhook_answers_503_and_each_retried_text_is_answered_once() {
    let _serial = SERIAL.lock().await;
    database_down_webhook_503_then_each_text_answered_once(None).await;
}

#[tokio::test]
async fn with_the_postgres_database_down_the_webhook_answers_503_and_each_retried_text_is_answered_once() {
    let _serial = SERIAL.lock().await;
    on_postgres(database_down_webhook_503_then_each_text_answered_once).await;
}

async fn database_down_webhook_503_then_each_text_answered_once(database: Option<String>) {
    let app = spawn_app_on(database, Options::default()).await;
    let (status, body, _) = readyz(&app).await;
    assert_eq!((status, body["database"].as_str()), (200, Some("ok")));

    let outage = Outage::begin(&app).await;
    let (status, body, took) = readyz(&app).await;
    assert_eq!(status, 503, "{body}");
    assert!(took < Duration::from_secs(5), "readyz took {took:?}");
    assert!(
        ["unreachable", "timeout"].contains(&body["database"].as_str().unwrap()),
        "{body}"
    );

    // Five customers text while it is down, four of them at once: each
    // is refused with 503 in time (not left to the request's timeout), so
    // Twilio retries every one.
    let customers: Vec<String> = (0..5).map(|i| format!("+1503555020{i}")).collect();
    let sids: Vec<String> = (0..5)
        .map(|_| format!("SM{}", uuid::Uuid::new_v4().simple()))
        .collect();
    let refused = post_text_from(&app, &customers[0], &sids[0], "anyone there?", &[]).await;
    assert_eq!(
        refused.status(),
        503,
        "a text that was not stored must not be acknowledged"
    );
    assert_eq!(refused.headers()["retry-after"], "5");
    let answers = futures::future::join_all(
        (1..5).map(|i| post_text_from(&app, &customers[i], &sids[i], "me too", &[])),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, vec![503; 4]);
    // The process is alive all along.
    let live = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    outage.end().await;
    wait_until_ready(&app, Duration::from_secs(10)).await;

    // Twilio's retries are stored and answered, each text once. (A text
    // refused only because it waited too long may have been stored after
    // all; its retry is then a duplicate.)
    for (customer, sid) in customers.iter().zip(&sids) {
        let retried = post_text_from(&app, customer, sid, "anyone there?", &[]).await;
        assert_eq!(retried.status(), 200);
    }
    app.wait_for_texts(5).await;
    for customer in &customers {
        app.wait_until_settled(customer).await;
        let messages = app.messages(customer).await;
        let inbound = messages
            .iter()
            .filter(|m| m.direction == textdesk::store::Direction::Inbound)
            .count();
        assert_eq!((inbound, messages.len()), (1, 2), "{customer}: {messages:?}");
    }
    let mut sent: Vec<String> = app.sent_texts().await.into_iter().map(|(to, _)| to).collect();
    sent.sort();
    assert_eq!(sent, customers, "one reply to each");
}

#[tokio::test]
async fn readyz_is_503_while_a_migration_of_this_build_is_missing() {
    let _serial = SERIAL.lock().await;
    readyz_503_while_a_migration_is_missing(None).await;
}

#[tokio::test]
async fn readyz_is_503_while_a_migration_of_this_build_is_missing_on_postgres() {
    let _serial = SERIAL.lock().await;
    on_postgres(readyz_503_while_a_migration_is_missing).await;
}

async fn readyz_503_while_a_migration_is_missing(database: Option<String>) {
    let app = spawn_app_on(database, Options::default()).await;
    wait_until_ready(&app, Duration::from_secs(5)).await;
    let run = |sql: &'static str| {
        let url = app.database_url.clone();
        async move {
            if url.starts_with("postgres") {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            } else {
                use sqlx::Connection;
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
        }
    };
    run("CREATE TABLE ops_saved AS SELECT * FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations);
         DELETE FROM _sqlx_migrations WHERE version IN (SELECT version FROM ops_saved);")
    .await;
    let (status, body, _) = readyz(&app).await;
    assert_eq!(
        (status, body["database"].as_str()),
        (503, Some("migrations_pending")),
        "{body}"
    );
    run("INSERT INTO _sqlx_migrations SELECT * FROM ops_saved; DROP TABLE ops_saved;").await;
    wait_until_ready(&app, Duration::from_secs(5)).await;
}

/// A fake Claude that echoes after `delay`.
struct SlowEcho(Duration);

impl Respond for SlowEcho {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        EchoClaude.respond(request).set_delay(self.0)
    }
}

#[tokio::test]
async fn a_turn_cut_off_by_the_database_runs_again_soon_after_it_returns_and_the_worker_and_runner_carry_on()
{
    let _serial = SERIAL.lock().await;
    turn_cut_off_by_the_database_runs_again(None).await;
}

#[tokio::test]
async fn a_turn_cut_off_by_postgres_runs_again_soon_after_it_returns_and_the_worker_and_runner_carry_on() {
    let _serial = SERIAL.lock().await;
    on_postgres(turn_cut_off_by_the_database_runs_again).await;
}

async fn turn_cut_off_by_the_database_runs_again(database: Option<String>) {
    captured_logs();
    let app = spawn_app_on(
        database,
        Options {
            default_fakes: false,
            ..Options::default()
        },
    )
    .await;
    let mark = log_mark();
    helpers::mount_twilio_accepting(&app.twilio).await;
    // Slow enough that the outage surely begins while the turn waits.
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(SlowEcho(Duration::from_secs(3)))
        .mount(&app.anthropic)
        .await;

    app.text(CUSTOMER, "I need a fridge gone").await;
    // The turn is waiting on the model when the database goes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.model_requests().await.is_empty() {
        assert!(Instant::now() < deadline, "the turn never asked the model");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outage = Outage::begin(&app).await;
    assert!(
        app.sent_texts().await.is_empty(),
        "the turn ended before the outage began"
    );
    // Its commit fails; setting its retry fails too while the database is
    // down; the job runner's claims fail meanwhile.
    // Under an outage the single SQLite writer queues the heartbeat, the
    // runner and the commit behind its busy timeout: the failure takes ~25 s
    // to surface.
    wait_for_log(mark, "turn failed; will retry", Duration::from_secs(45)).await;
    wait_for_log(
        mark,
        "could not set a retry for a failed turn",
        Duration::from_secs(10),
    )
    .await;
    wait_for_log(mark, "could not run due jobs", Duration::from_secs(10)).await;
    assert!(app.sent_texts().await.is_empty());

    outage.end().await;
    let back = Instant::now();
    // The turn runs again within 10 s of the database coming back.
    loop {
        if !app.sent_texts().await.is_empty() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "no reply within 10 s of the database's return"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.wait_until_settled(CUSTOMER).await;
    assert_eq!(app.sent_texts().await.len(), 1, "answered once");
    assert_eq!(app.model_requests().await.len(), 2, "the cut-off turn ran again");

    // The worker still answers new texts, and the runner still runs jobs.
    app.text(CUSTOMER, "and a couch").await;
    app.wait_for_texts(2).await;
    let store: &dyn textdesk::store::JobQueue = app.store.as_ref();
    store
        .enqueue_jobs(&[NewJob {
            kind: "reminder",
            dedupe_key: "ops-after-outage".into(),
            conversation_id: None,
            customer_id: None,
            recipient: "nobody".into(),
            // Not a reminder's payload: the runner dead-letters it at once.
            payload: json!({"unreadable": true}),
            run_at: app.clock.now() - chrono::Duration::seconds(1),
            max_attempts: 1,
        }])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let jobs = store.jobs(&[JobStatus::Dead], 10).await.unwrap();
        if jobs.iter().any(|j| j.dedupe_key == "ops-after-outage") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job runner did not run a due job after the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Postgres side of `FleetReadings`, on a database of its own, when
/// `TEST_DATABASE_URL` names a Postgres server.
#[tokio::test]
async fn the_postgres_readings_count_jobs_and_judge_readiness() {
    use sqlx::Connection;
    use textdesk::clock::ManualClock;
    use textdesk::store::FleetReadings;
    use textdesk::store::postgres::PgStore;

    let Ok(server) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL is not set: the Postgres readings are not checked");
        return;
    };
    if !server.starts_with("postgres") {
        return;
    }
    let name = format!("ops_readings_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let after_scheme = server.find("://").unwrap() + 3;
    let base = match server[after_scheme..].find('/') {
        Some(slash) => server[..after_scheme + slash + 1].to_string(),
        None => format!("{server}/"),
    };
    let url = format!("{base}{name}");
    let now = chrono::DateTime::parse_from_rfc3339("2026-06-01T15:00:00Z")
        .unwrap()
        .to_utc();
    let checked = async {
        let store = PgStore::connect_with_clock(&url, Arc::new(ManualClock::at(now)))
            .await
            .unwrap();
        store.readiness().await.unwrap();
        let at = |secs: i64| (now + chrono::Duration::seconds(secs)).timestamp_millis();
        for (key, kind, status, run_at) in [
            ("a", "email", "done", at(-90)),
            ("b", "email", "pending", at(-30)),
            ("c", "reminder", "pending", at(3600)),
            ("d", "reminder", "pending", at(-10)),
            ("e", "reminder", "dead", at(-500)),
        ] {
            sqlx::query(
                "INSERT INTO jobs (kind, dedupe_key, recipient, payload, run_at_ms, status, created_at, updated_at)
                 VALUES ($1, $2, 'x', '{}'::jsonb, $3, $4, now(), now())",
            )
            .bind(kind)
            .bind(key)
            .bind(run_at)
            .bind(status)
            .execute(store.pool())
            .await
            .unwrap();
        }
        let counts = store.job_counts(now).await.unwrap();
        let n = |kind: &str, status: &str| {
            counts
                .by_kind_and_status
                .get(&(kind.to_string(), status.to_string()))
                .copied()
        };
        assert_eq!(n("email", "done"), Some(1));
        assert_eq!(n("email", "pending"), Some(1));
        assert_eq!(n("reminder", "pending"), Some(2));
        assert_eq!(n("reminder", "dead"), Some(1));
        assert_eq!(counts.oldest_due, Some(Duration::from_secs(30)));

        sqlx::raw_sql(
            "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let refused = store.readiness().await.unwrap_err();
        assert!(
            matches!(
                refused,
                textdesk::store::NotReady::MigrationsPending { missing: 1, .. }
            ),
            "{refused}"
        );
        store.pool().close().await;
    };
    // The database is dropped whatever the checks found.
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(checked)).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn a_refused_model_call_and_its_alert_are_counted_by_outcome_and_kind() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app_with(Options {
        default_fakes: false,
        ..Options::default()
    })
    .await;
    helpers::mount_twilio_accepting(&app.twilio).await;
    // A 400 is final: one attempt, no retry.
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "no"}
        })))
        .mount(&app.anthropic)
        .await;
    let (before, _) = scrape(&app).await;
    let rejected = [("outcome", "rejected")];
    let alert = [("kind", "model_unavailable")];

    app.text(CUSTOMER, "hello?").await;
    // The guided flow answers, and the owner is alerted.
    app.wait_for_texts(1).await;
    app.wait_until_settled(CUSTOMER).await;
    let (after, text) = scrape(&app).await;

    assert_eq!(app.model_requests().await.len(), 1);
    assert_eq!(
        after.value_or_zero(meters::MODEL_REQUESTS, &rejected),
        before.value_or_zero(meters::MODEL_REQUESTS, &rejected) + 1.0,
        "{text}"
    );
    assert_eq!(
        after.value_or_zero(meters::MODEL_REQUESTS, &[("outcome", "ok")]),
        before.value_or_zero(meters::MODEL_REQUESTS, &[("outcome", "ok")])
    );
    assert_eq!(
        after.value_or_zero(meters::ALERTS, &alert),
        before.value_or_zero(meters::ALERTS, &alert) + 1.0,
        "{text}"
    );
    assert_eq!(
        after.types.get(meters::ALERTS).map(String::as_str),
        Some("counter")
    );
}

/// Two schedulers over one database (as two instances would be) race
/// for one opening: their crew locks are their own, so both pass the rule
/// check and the database's overlap check refuses the later; each such
/// refusal is one `textdesk_booking_conflicts_total`.
#[tokio::test]
async fn a_booking_refused_by_the_final_overlap_check_is_counted_as_a_conflict() {
    use textdesk::calendar::LocalCalendar;
    use textdesk::config::business::{BusinessConfig, BusinessKind};
    use textdesk::domain::availability::DateFilter;
    use textdesk::domain::conversation::JobDetails;
    use textdesk::domain::phone::E164;
    use textdesk::domain::quote::price;
    use textdesk::scheduling::{Scheduler, SchedulingError};
    use textdesk::store::sqlite::SqliteStore;
    use textdesk::store::{InboundMessage, Recorded, Store};

    let _serial = SERIAL.lock().await;
    meters::install();
    let dir = tempfile::TempDir::new().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap(),
    );
    let business = Arc::new(
        BusinessConfig::parse(
            "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\ntimezone = \"America/Los_Angeles\"\n\n[schedule]\nmin_notice_hours = 0\nhorizon_days = 14\n\n[[providers]]\nid = \"crew-1\"\nname = \"Crew 1\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap(),
    );
    let now = chrono::Utc::now();
    let mut conversations = Vec::new();
    for i in 0..10 {
        let sms = InboundMessage {
            business_id: "test".into(),
            channel_message_id: format!("SMconflict{i:028}"),
            from: E164::parse(&format!("+1503555{:04}", 300 + i)).unwrap(),
            to: E164::parse("+15035550142").unwrap(),
            body: "hi".into(),
            media: vec![],
            params: json!({}),
            opt_out_keyword: None,
            profile_name: None,
        };
        let (Recorded::New(c, _) | Recorded::Duplicate(c, _)) = store.record_inbound(&sms).await.unwrap();
        conversations.push(store.turn_input(c, 5).await.unwrap().conversation);
    }
    let job = JobDetails {
        size: Some("half_truck".into()),
        address: Some("12 Oak St, Portland".into()),
        customer_name: Some("Dana".into()),
        ..JobDetails::default()
    };
    let quote = price(
        &business.pricing,
        &job.to_spec(BusinessKind::JunkRemoval).unwrap(),
        "QTEST".into(),
        now,
    )
    .unwrap();
    let one = Scheduler::new(store.clone(), Arc::new(LocalCalendar));
    let other = Scheduler::new(store.clone(), Arc::new(LocalCalendar));
    let slot = one
        .for_business(&business)
        .offer(conversations[0].id, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap()
        .slots[0]
        .clone();
    store
        .hold(conversations[0].id, &[], now, now, None)
        .await
        .unwrap();

    let before = prometheus::parse(&meters::render(None)).unwrap();
    let (a, b) = (one.for_business(&business), other.for_business(&business));
    let results = futures::future::join_all(conversations.iter().enumerate().map(|(i, c)| {
        let scheduler = if i % 2 == 0 { &a } else { &b };
        scheduler.book(c, &job, &quote, &slot, None, now)
    }))
    .await;
    let after = prometheus::parse(&meters::render(None)).unwrap();

    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(SchedulingError::Taken(why)) if why.contains("another booking took it")))
        .count();
    assert!(conflicts >= 1, "the two schedulers never raced: {results:?}");
    assert_eq!(
        after.value_or_zero(meters::BOOKING_CONFLICTS, &[]),
        before.value_or_zero(meters::BOOKING_CONFLICTS, &[]) + conflicts as f64
    );
}

/// A TCP proxy in front of the Postgres server that can be made to hang:
/// while stalled it accepts connections but forwards nothing either way (a
/// database whose host stopped answering, not one that refuses), and
/// carries on where it left off once resumed.
struct StallingProxy {
    port: u16,
    stalled: Arc<std::sync::atomic::AtomicBool>,
    accepting: tokio::task::JoinHandle<()>,
}

impl StallingProxy {
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stalled.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let stalled = flag.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    while stalled.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        Self::pump(client_read, server_write, stalled.clone()),
                        Self::pump(server_read, client_write, stalled)
                    );
                });
            }
        });
        Self {
            port,
            stalled,
            accepting,
        }
    }

    /// Copies `from` to `to`, holding what it read while stalled.
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        stalled: Arc<std::sync::atomic::AtomicBool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            while stalled.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    }

    fn stall(&self, on: bool) {
        self.stalled.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// The database hangs (its host stops answering; nothing is refused):
/// `/readyz` still answers 503 within 5 s, and so does the webhook, so
/// Twilio retries; once the database answers again the instance is ready
/// within 10 s and the retried text is answered once.
#[tokio::test]
async fn with_the_database_hanging_readyz_and_the_webhook_answer_503_within_5_s() {
    let _serial = SERIAL.lock().await;
    on_postgres(database_hangs).await;
}

async fn database_hangs(database: Option<String>) {
    let mut url = url::Url::parse(&database.unwrap()).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = StallingProxy::start(upstream).await;
    url.set_port(Some(proxy.port)).unwrap();
    let app = spawn_app_on(Some(url.to_string()), Options::default()).await;
    wait_until_ready(&app, Duration::from_secs(10)).await;

    proxy.stall(true);
    for _ in 0..2 {
        let (status, body, took) = readyz(&app).await;
        // The pool gives up on a connection after 3 s ("unreachable"); the
        // check itself is cut off at 4 s ("timeout").
        assert_eq!(status, 503, "{body}");
        assert!(
            ["unreachable", "timeout"].contains(&body["database"].as_str().unwrap()),
            "{body}"
        );
        assert!(took < Duration::from_secs(5), "readyz took {took:?}");
    }
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let started = Instant::now();
    let refused = post_text_from(&app, CUSTOMER, &sid, "anyone there?", &[]).await;
    let took = started.elapsed();
    assert_eq!(refused.status(), 503, "a text not stored is not acknowledged");
    assert!(took < Duration::from_secs(7), "the webhook took {took:?}");
    // The process is alive all along.
    let live = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    proxy.stall(false);
    wait_until_ready(&app, Duration::from_secs(10)).await;
    // Twilio's retry is stored (or found already stored) and answered once.
    let retried = post_text_from(&app, CUSTOMER, &sid, "anyone there?", &[]).await;
    assert_eq!(retried.status(), 200);
    app.wait_for_texts(1).await;
    app.wait_until_settled(CUSTOMER).await;
    let messages = app.messages(CUSTOMER).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(app.sent_texts().await.len(), 1, "answered once");
}
