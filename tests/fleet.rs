//! Several `textdesk serve` processes on one database: the real binary,
//! started, stopped with SIGTERM and killed with `kill -9`, against local
//! fakes of Anthropic and Twilio.
//!
//! The Postgres tests need `TEST_DATABASE_URL` (a server; each test makes a
//! database of its own, named `fleet_...`, and drops it) and are skipped,
//! with a note, without it. The SIGTERM test also runs on SQLite.
#![cfg(unix)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use textdesk::store::postgres::testdb::TestDb;
use textdesk::twilio::signature;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const AUTH_TOKEN: &str = "fleet-auth-token";
const ACCOUNT_SID: &str = "ACfleet000000000000000000000000000";
const PUBLIC_BASE_URL: &str = "https://desk.example.com";
const BUSINESS_NUMBER: &str = "+15035550142";
const OWNER_PHONE: &str = "+15035550100";

/// A text the fake Twilio accepted.
#[derive(Debug, Clone)]
struct Sent {
    sid: String,
    to: String,
    body: String,
    at: chrono::DateTime<chrono::Utc>,
}

/// Twilio's Messages API: accepts every send (recording it) and lists what
/// it accepted, as the reconciliation of an interrupted send asks.
#[derive(Clone, Default)]
struct FakeTwilio {
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl Respond for FakeTwilio {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.method.as_str() == "GET" {
            let query: HashMap<String, String> = request.url.query_pairs().into_owned().collect();
            let to = query.get("To").cloned().unwrap_or_default();
            let messages: Vec<Value> = self
                .sent
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.to == to)
                .map(|s| json!({"sid": s.sid, "body": s.body, "date_created": s.at.to_rfc2822()}))
                .collect();
            return ResponseTemplate::new(200).set_body_json(json!({ "messages": messages }));
        }
        let form: HashMap<String, String> = form_urlencoded::parse(&request.body).into_owned().collect();
        let mut sent = self.sent.lock().unwrap();
        let sid = format!("SMout{:030}", sent.len());
        sent.push(Sent {
            sid: sid.clone(),
            to: form.get("To").cloned().unwrap_or_default(),
            body: form.get("Body").cloned().unwrap_or_default(),
            at: chrono::Utc::now(),
        });
        ResponseTemplate::new(201).set_body_json(json!({"sid": sid, "status": "queued"}))
    }
}

impl FakeTwilio {
    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }
}

/// Claude answering "Re: <the customer's last line>", after `delay`.
struct EchoClaude {
    delay: Duration,
}

impl Respond for EchoClaude {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let last = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_array())
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let line = last.lines().last().unwrap_or_default().to_string();
        ResponseTemplate::new(200)
            .set_delay(self.delay)
            .set_body_json(json!({
                "id": "msg_fleet",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-6",
                "content": [{"type": "text", "text": format!("Re: {line}")}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 10, "output_tokens": 10}
            }))
    }
}

/// The fakes and the configuration every instance of one test shares.
struct Fleet {
    dir: TempDir,
    database_url: String,
    twilio: FakeTwilio,
    twilio_server: MockServer,
    anthropic: MockServer,
    http: reqwest::Client,
    extra: Vec<(String, String)>,
}

impl Fleet {
    async fn new(database_url: Option<String>, model_delay: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let anthropic = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .respond_with(EchoClaude { delay: model_delay })
            .mount(&anthropic)
            .await;
        let twilio_server = MockServer::start().await;
        let twilio = FakeTwilio::default();
        Mock::given(path_regex(r"^/2010-04-01/Accounts/[^/]+/Messages\.json$"))
            .respond_with(twilio.clone())
            .mount(&twilio_server)
            .await;
        // Midday in the business's zone, whatever the hour: no quiet hours.
        let offset = (12 - chrono::Timelike::hour(&chrono::Utc::now()) as i32).clamp(-12, 14);
        let zone = match offset {
            0 => "Etc/GMT".to_string(),
            n if n > 0 => format!("Etc/GMT-{n}"),
            n => format!("Etc/GMT+{}", -n),
        };
        std::fs::write(
            dir.path().join("business.toml"),
            format!(
                "[business]\nid = \"rose\"\nname = \"Rose City Junk Haulers\"\nphone = \"{BUSINESS_NUMBER}\"\n\
                 owner_phone = \"{OWNER_PHONE}\"\ntimezone = \"{zone}\"\n"
            ),
        )
        .unwrap();
        let database_url =
            database_url.unwrap_or_else(|| format!("sqlite://{}/textdesk.db", dir.path().display()));
        Self {
            dir,
            database_url,
            twilio,
            twilio_server,
            anthropic,
            http: reqwest::Client::new(),
            extra: Vec::new(),
        }
    }

    fn start(&self, name: &str) -> Instance {
        let mut command = Command::new(env!("CARGO_BIN_EXE_textdesk"));
        command
            .arg("serve")
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("LOG_FORMAT", "json")
            .env("PUBLIC_BASE_URL", PUBLIC_BASE_URL)
            .env("DATABASE_URL", &self.database_url)
            .env("BUSINESS_CONFIG", self.dir.path().join("business.toml"))
            .env("OUTBOX_DIR", self.dir.path().join("outbox"))
            .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
            .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
            .env("TWILIO_FROM_NUMBER", BUSINESS_NUMBER)
            .env("TWILIO_API_BASE_URL", self.twilio_server.uri())
            .env("ANTHROPIC_API_KEY", "fleet-anthropic-key")
            .env("ANTHROPIC_BASE_URL", self.anthropic.uri())
            .env("ANTHROPIC_RETRY_BASE_MS", "10")
            .env("ANTHROPIC_TIMEOUT_SECS", "30");
        for (k, v) in &self.extra {
            command.env(k, v);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run textdesk serve");
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let stderr = child.stderr.take().unwrap();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let started = Instant::now();
        let port = loop {
            let found = log
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains("textdesk is listening"))
                .and_then(|l| serde_json::from_str::<Value>(l).ok())
                .and_then(|v| v["fields"]["port"].as_u64().or_else(|| v["port"].as_u64()));
            if let Some(port) = found {
                break port as u16;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{name} exited at start ({status}):\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{name} did not start:\n{}",
                log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Instance {
            name: name.to_string(),
            child,
            port,
            log,
        }
    }

    /// Posts a customer's text to `instance`'s webhook, signed as Twilio
    /// signs it. `Ok` when it was acknowledged (200); else what happened.
    async fn text(&self, instance: u16, from: &str, body: &str) -> Result<(), String> {
        // One id per text, whichever instance it is (re)delivered to, as
        // Twilio retries: a text stored by an instance that died before
        // answering 200 is a duplicate at the next.
        let sid = format!("SM{:032x}", md5_like(from, body));
        let params: Vec<(String, String)> = [
            ("SmsMessageSid", sid.as_str()),
            ("NumMedia", "0"),
            ("SmsSid", sid.as_str()),
            ("SmsStatus", "received"),
            ("Body", body),
            ("To", BUSINESS_NUMBER),
            ("NumSegments", "1"),
            ("MessageSid", sid.as_str()),
            ("AccountSid", ACCOUNT_SID),
            ("From", from),
            ("ApiVersion", "2010-04-01"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sig = signature::sign(AUTH_TOKEN, &format!("{PUBLIC_BASE_URL}/api/sms/inbound"), &params);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        match self
            .http
            .post(format!("http://127.0.0.1:{instance}/api/sms/inbound"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", sig)
            .body(body)
            .send()
            .await
        {
            Ok(response) if response.status() == 200 => Ok(()),
            Ok(response) => Err(format!("{} from :{instance}", response.status())),
            Err(e) => Err(format!("{e} (:{instance})")),
        }
    }

    /// Replies per customer at the fake Twilio, counting only replies that
    /// answer `body_of(customer)`.
    fn replies(&self) -> HashMap<String, Vec<String>> {
        let mut by_customer: HashMap<String, Vec<String>> = HashMap::new();
        for sent in self.twilio.sent() {
            by_customer.entry(sent.to).or_default().push(sent.body);
        }
        by_customer
    }
}

/// A stable 128-bit id of a customer's text, for its MessageSid.
fn md5_like(from: &str, body: &str) -> u128 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut high = DefaultHasher::new();
    (from, body, 1u8).hash(&mut high);
    let mut low = DefaultHasher::new();
    (from, body, 2u8).hash(&mut low);
    ((high.finish() as u128) << 64) | low.finish() as u128
}

struct Instance {
    name: String,
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {}", self.name);
    }

    /// Waits for the process to exit, at most `limit`.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit within {limit:?}:\n{}",
                    self.name,
                    self.log.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill_9(&mut self) {
        self.signal("-KILL");
        self.wait(Duration::from_secs(10));
    }

    fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `done`, at most `limit`, checking every 100 ms.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A customer's phone and the text they send: letters only, so the echo
/// states no number, date or price the guardrail would question.
fn customer(n: usize) -> (String, String) {
    let code: String = (0..4)
        .map(|i| (b'a' + ((n / 26usize.pow(i)) % 26) as u8) as char)
        .collect();
    (format!("+1971555{n:04}"), format!("hello {code}"))
}

/// Every customer in `0..n` got exactly one reply, and it answers their
/// text.
fn assert_each_answered_once(fleet: &Fleet, customers: impl Iterator<Item = usize>) {
    let replies = fleet.replies();
    for n in customers {
        let (phone, text) = customer(n);
        let theirs = replies.get(&phone).cloned().unwrap_or_default();
        let answers = theirs
            .iter()
            .filter(|b| b.contains(&format!("Re: {text}")))
            .count();
        assert_eq!(answers, 1, "customer {n} ({text}) got {theirs:?}");
    }
}

/// Waits until `sql`'s count is `expected`, at most `limit`.
async fn wait_for_count(url: &str, sql: &'static str, expected: i64, limit: Duration) {
    let started = Instant::now();
    loop {
        let n = count(url, sql).await;
        if n == expected {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "`{sql}` is {n}, not {expected}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Rows in `sql`'s count on the test's database.
async fn count(url: &str, sql: &'static str) -> i64 {
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    }
}

const LEASES_HELD: &str = "SELECT COUNT(*) FROM conversations WHERE lease_owner IS NOT NULL";
const UNANSWERED: &str = "SELECT COUNT(*) FROM messages WHERE direction = 'inbound' AND status = 'pending'";

/// SIGTERM during a turn whose model reply is slow: the reply still goes
/// out, the process exits 0, and it leaves no lease behind.
async fn sigterm_finishes_the_turn_in_flight(database_url: Option<String>) -> Fleet {
    let fleet = Fleet::new(database_url, Duration::from_secs(3)).await;
    let mut one = fleet.start("one");
    let (phone, text) = customer(1);
    fleet.text(one.port, &phone, &text).await.unwrap();
    // The turn is waiting on the model.
    let started = Instant::now();
    while fleet
        .anthropic
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        assert!(started.elapsed() < Duration::from_secs(30), "no model request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fleet.twilio.sent().is_empty(), "the reply is not out yet");
    one.signal("-TERM");
    let status = one.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        one.log.lock().unwrap().join("\n")
    );
    assert!(one.logged("finishing turns in flight"));
    assert_each_answered_once(&fleet, 1..2);
    assert_eq!(
        count(&fleet.database_url, LEASES_HELD).await,
        0,
        "a lease was left"
    );
    assert_eq!(count(&fleet.database_url, UNANSWERED).await, 0);
    fleet
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_turn_in_flight_on_sqlite() {
    sigterm_finishes_the_turn_in_flight(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_turn_in_flight_on_postgres() {
    let Some(db) = TestDb::create("fleet").await else {
        return;
    };
    sigterm_finishes_the_turn_in_flight(Some(db.url.clone())).await;
    db.drop().await;
}

/// Sends texts of customers `range` spread over `ports` in turn, from a
/// few tasks at once; a text refused by a stopping instance is sent to the
/// next one (as Twilio retries), so none is lost.
async fn send_load(fleet: Arc<Fleet>, ports: Arc<Mutex<Vec<u16>>>, range: std::ops::Range<usize>) {
    let mut tasks = Vec::new();
    let lanes = 8;
    for lane in 0..lanes {
        let fleet = fleet.clone();
        let ports = ports.clone();
        let range = range.clone();
        tasks.push(tokio::spawn(async move {
            for n in range.filter(|n| n % lanes == lane) {
                let (phone, text) = customer(n);
                let mut attempt = 0;
                let started = Instant::now();
                loop {
                    let port = {
                        let ports = ports.lock().unwrap();
                        ports[(n + attempt) % ports.len()]
                    };
                    match fleet.text(port, &phone, &text).await {
                        Ok(()) => break,
                        Err(why) => assert!(
                            started.elapsed() < Duration::from_secs(90),
                            "text {n} was refused for 90 s, last: {why}"
                        ),
                    }
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// 500 texts over two instances, one killed with `kill -9` mid-load: the
/// other takes over its conversations once their leases expire, and
/// every text is answered exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_texts_over_two_instances_one_killed_each_answered_once() {
    let Some(db) = TestDb::create("fleet").await else {
        return;
    };
    let fleet = Arc::new(Fleet::new(Some(db.url.clone()), Duration::from_millis(50)).await);
    let mut one = fleet.start("one");
    let two = fleet.start("two");
    let ports = Arc::new(Mutex::new(vec![one.port, two.port]));
    let load = tokio::spawn(send_load(fleet.clone(), ports.clone(), 0..500));
    // Mid-load: once a fifth of the replies are out.
    wait_until(Duration::from_secs(120), "100 replies", || {
        fleet.twilio.sent().len() >= 100
    })
    .await;
    one.kill_9();
    ports.lock().unwrap().retain(|p| *p != one.port);
    load.await.unwrap();
    let killed_at = Instant::now();
    // A reply the killed instance had claimed for sending waits out its
    // send lease (25 s here: two requests at the default 10 s
    // `TWILIO_TIMEOUT_SECS`, plus 5 s) and is then reconciled with
    // Twilio's list before it is sent again; conversations are taken over
    // within the 15 s lease.
    wait_until(Duration::from_secs(120), "500 replies", || {
        fleet.twilio.sent().len() >= 500
    })
    .await;
    eprintln!("all 500 answered {:?} after the kill", killed_at.elapsed());
    wait_for_count(&db.url, UNANSWERED, 0, Duration::from_secs(60)).await;
    assert_each_answered_once(&fleet, 0..500);
    assert_eq!(fleet.twilio.sent().len(), 500, "no reply twice");
    drop(two);
    db.drop().await;
}

/// A rolling restart under load: SIGTERM one instance, start it again,
/// then the other; no text lost, none answered twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_under_load_loses_and_doubles_nothing() {
    let Some(db) = TestDb::create("fleet").await else {
        return;
    };
    let fleet = Arc::new(Fleet::new(Some(db.url.clone()), Duration::from_millis(50)).await);
    let mut one = fleet.start("one");
    let mut two = fleet.start("two");
    let ports = Arc::new(Mutex::new(vec![one.port, two.port]));
    let load = tokio::spawn(send_load(fleet.clone(), ports.clone(), 0..300));

    wait_until(Duration::from_secs(120), "50 replies", || {
        fleet.twilio.sent().len() >= 50
    })
    .await;
    ports.lock().unwrap().retain(|p| *p != one.port);
    one.signal("-TERM");
    assert!(one.wait(Duration::from_secs(40)).success(), "one exits 0");
    let one_again = fleet.start("one again");
    ports.lock().unwrap().push(one_again.port);

    wait_until(Duration::from_secs(120), "150 replies", || {
        fleet.twilio.sent().len() >= 150
    })
    .await;
    ports.lock().unwrap().retain(|p| *p != two.port);
    two.signal("-TERM");
    assert!(two.wait(Duration::from_secs(40)).success(), "two exits 0");
    let two_again = fleet.start("two again");
    ports.lock().unwrap().push(two_again.port);

    load.await.unwrap();
    wait_until(Duration::from_secs(180), "300 replies", || {
        fleet.twilio.sent().len() >= 300
    })
    .await;
    wait_for_count(&db.url, UNANSWERED, 0, Duration::from_secs(60)).await;
    assert_each_answered_once(&fleet, 0..300);
    assert_eq!(fleet.twilio.sent().len(), 300, "no reply twice");
    drop((one_again, two_again));
    db.drop().await;
}

/// A proactive text (the owner's alert text, sent by the job runner like a
/// reminder) that falls due while one instance is down is sent once, by
/// the other: claimed once (one attempt), done, one text at Twilio.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_due_while_one_instance_is_down_is_sent_once_by_the_other() {
    let Some(db) = TestDb::create("fleet").await else {
        return;
    };
    let fleet = Fleet::new(Some(db.url.clone()), Duration::from_millis(10)).await;
    let mut one = fleet.start("one");
    let two = fleet.start("two");
    one.kill_9();

    let store = textdesk::store::postgres::PgStore::connect(&db.url)
        .await
        .unwrap();
    use textdesk::store::JobQueue;
    store
        .enqueue_jobs(&[textdesk::store::NewJob {
            kind: "owner_text",
            dedupe_key: "fleet:owner-text".into(),
            conversation_id: None,
            customer_id: None,
            recipient: OWNER_PHONE.into(),
            payload: json!({"business_id": "rose", "body": "Your fleet test alert."}),
            run_at: chrono::Utc::now(),
            max_attempts: 5,
        }])
        .await
        .unwrap();
    wait_until(Duration::from_secs(60), "the owner's text", || {
        fleet.twilio.sent().iter().any(|s| s.to == OWNER_PHONE)
    })
    .await;
    const ONCE: &str = "SELECT COUNT(*) FROM jobs
                        WHERE dedupe_key = 'fleet:owner-text' AND status = 'done' AND attempts = 1";
    wait_for_count(&db.url, ONCE, 1, Duration::from_secs(30)).await;
    let to_owner = fleet.twilio.sent().iter().filter(|s| s.to == OWNER_PHONE).count();
    assert_eq!(to_owner, 1, "sent once");
    drop(two);
    db.drop().await;
}
