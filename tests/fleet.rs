//! Several `textdesk serve` processes on one database: the real binary,
//! started, stopped with SIGTERM and killed with `kill -9`, against local
//! fakes of Anthropic and Twilio.
//!
//! The Postgres tests need `TEST_DATABASE_URL` (a server; each test makes a
//! database of its own, named `fleet_...`, and drops it) and are skipped,
//! with a note, without it. The SIGTERM test also runs on SQLite.
#![cfg(unix)]

#[allow(dead_code)]
#[path = "api/fake_google.rs"]
mod fake_google;

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
    /// The business's time zone: a fixed offset where it is now 12:xx.
    zone: String,
    /// Claude answers (the echo); without it the guided flow does.
    with_model: bool,
    /// Instances book on this fake Google Calendar when set.
    google: Option<fake_google::FakeGoogle>,
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
        let database_url =
            database_url.unwrap_or_else(|| format!("sqlite://{}/textdesk.db", dir.path().display()));
        let fleet = Self {
            dir,
            database_url,
            twilio,
            twilio_server,
            anthropic,
            http: reqwest::Client::new(),
            extra: Vec::new(),
            zone,
            with_model: true,
            google: None,
        };
        fleet.write_business("");
        fleet
    }

    /// Writes business.toml: the business, then `more` (TOML tables).
    /// Instances started after it read it.
    fn write_business(&self, more: &str) {
        let zone = &self.zone;
        std::fs::write(
            self.dir.path().join("business.toml"),
            format!(
                "[business]\nid = \"rose\"\nname = \"Rose City Junk Haulers\"\nphone = \"{BUSINESS_NUMBER}\"\n\
                 owner_phone = \"{OWNER_PHONE}\"\ntimezone = \"{zone}\"\n{more}"
            ),
        )
        .unwrap();
    }

    /// The business's time zone.
    fn tz(&self) -> chrono_tz::Tz {
        self.zone.parse().unwrap()
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
            .env("ANTHROPIC_BASE_URL", self.anthropic.uri())
            .env("ANTHROPIC_RETRY_BASE_MS", "10")
            .env("ANTHROPIC_TIMEOUT_SECS", "30");
        if self.with_model {
            command.env("ANTHROPIC_API_KEY", "fleet-anthropic-key");
        }
        if let Some(google) = &self.google {
            command
                .env("GOOGLE_APPLICATION_CREDENTIALS", google.key_file(self.dir.path()))
                .env("GOOGLE_CALENDAR_BASE_URL", google.base_url())
                .env("GOOGLE_TIMEOUT_SECS", "5");
        }
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
        self.text_as(instance, from, body, "").await
    }

    /// As [`Fleet::text`]; `key` tells apart two texts of the same words
    /// from one customer (each a new text, not a retry).
    async fn text_as(&self, instance: u16, from: &str, body: &str, key: &str) -> Result<(), String> {
        // One id per text, whichever instance it is (re)delivered to, as
        // Twilio retries: a text stored by an instance that died before
        // answering 200 is a duplicate at the next.
        let sid = format!("SM{:032x}", md5_like(from, &format!("{body}{key}")));
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

impl Fleet {
    /// The texts sent to `phone`, in the order Twilio accepted them.
    fn replies_to(&self, phone: &str) -> Vec<String> {
        self.twilio
            .sent()
            .into_iter()
            .filter(|s| s.to == phone)
            .map(|s| s.body)
            .collect()
    }

    /// Sends `body` from `phone` to `instance` and waits for the reply
    /// that makes `phone`'s replies `n`; returns that reply.
    async fn converse(&self, instance: u16, phone: &str, body: &str, key: &str, n: usize) -> String {
        self.text_as(instance, phone, body, key).await.unwrap();
        wait_until(Duration::from_secs(30), &format!("reply {n} to {phone}"), || {
            self.replies_to(phone).len() >= n
        })
        .await;
        self.replies_to(phone)[n - 1].clone()
    }
}

/// The openings listed in a guided reply: "1) Tue Dec 1, 8am" -> "Tue Dec 1, 8am".
fn offered(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let (number, label) = line.split_once(") ")?;
            number.parse::<u8>().ok().map(|_| label.to_string())
        })
        .collect()
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
const UNSENT: &str =
    "SELECT COUNT(*) FROM messages WHERE direction = 'outbound' AND status IN ('queued', 'sending')";

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

/// One crew, open 08:00-12:00 every day; it is 12:xx where the business
/// is, so the earliest opening is tomorrow at 8, whatever the minute.
/// One opening per offer, so "1" names it.
const MORNINGS: &str = "[schedule]\nmin_notice_hours = 1\nhorizon_days = 30\noffers = 1\n\n\
    [schedule.hours]\nmon = \"08:00-12:00\"\ntue = \"08:00-12:00\"\nwed = \"08:00-12:00\"\n\
    thu = \"08:00-12:00\"\nfri = \"08:00-12:00\"\nsat = \"08:00-12:00\"\nsun = \"08:00-12:00\"\n\n\
    [[providers]]\nid = \"crew-1\"\nname = \"Crew 1\"\ncalendar_id = \"crew1@example.com\"\n";

/// Runs `sql` on the test's database.
async fn execute(url: &str, sql: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
}

/// Every hold lapses, as it would `hold_minutes` later.
async fn expire_holds(url: &str) {
    let past = chrono::Utc::now().timestamp_millis() - 1000;
    execute(url, &format!("UPDATE slot_holds SET expires_ms = {past}")).await;
}

/// Takes a customer through the guided flow up to the question before the
/// openings: the job (size 3, half a truck), "book it", a name. Four texts,
/// four replies.
async fn up_to_the_address(fleet: &Fleet, port: u16, phone: &str) {
    for (n, text) in ["hi", "3", "1", "Dana"].iter().enumerate() {
        fleet.converse(port, phone, text, "", n + 1).await;
    }
    let asked = fleet.replies_to(phone)[3].clone();
    assert!(asked.contains("address"), "{phone} was asked {asked:?}");
}

/// The race's numbers: 20 customers, two instances.
const RACERS: usize = 20;

/// Twenty customers were each offered the same opening (the earlier
/// offers' holds having lapsed) and all pick it at once, their texts split
/// between two `serve` processes on one Postgres database: one booking,
/// one calendar event at the fake Google Calendar, and every other
/// customer told it was just taken and offered another opening; each
/// text answered once.
///
/// A trigger makes every insert into `bookings` take 0.5 s (a slow
/// database), so the two instances' reservations surely overlap: without
/// the crew lock (`pg_advisory_xact_lock`) both pass the overlap check
/// before either commits, and without the overlap check the second books
/// once the lock is free; either way two bookings and two events.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_customers_race_for_one_opening_across_two_instances_one_booking_one_event() {
    on_postgres(race_for_one_opening).await;
}

/// Runs `test` on a Postgres database of its own, when `TEST_DATABASE_URL`
/// names a server, and drops the database whatever the test found.
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(db) = TestDb::create("fleet").await else {
        return;
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(test(db.url.clone()))).await;
    db.drop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The test's database, as `on_postgres` hands it over.
struct Db {
    url: String,
}

async fn race_for_one_opening(url: String) {
    let db = Db { url };
    let mut fleet = Fleet::new(Some(db.url.clone()), Duration::ZERO).await;
    fleet.with_model = false;
    fleet.google = Some(fake_google::FakeGoogle::start().await);
    fleet.write_business(MORNINGS);
    let one = fleet.start("one");
    let two = fleet.start("two");
    let ports = [one.port, two.port];
    let phones: Vec<String> = (0..RACERS).map(|n| format!("+1971555{:04}", 2000 + n)).collect();

    // Everyone describes the job and gives a name, all at once.
    futures::future::join_all(
        phones
            .iter()
            .enumerate()
            .map(|(n, phone)| up_to_the_address(&fleet, ports[n % 2], phone)),
    )
    .await;
    // Then one at a time gives the address and is offered the earliest
    // opening, whose hold then lapses: all twenty were offered the same.
    let mut offers = Vec::new();
    for (n, phone) in phones.iter().enumerate() {
        let reply = fleet
            .converse(ports[n % 2], phone, "12 Oak St, Portland", "", 5)
            .await;
        offers.push(offered(&reply));
        expire_holds(&db.url).await;
    }
    let opening = offers[0]
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no opening in {offers:?}"));
    assert!(
        offers.iter().all(|o| o == std::slice::from_ref(&opening)),
        "not all were offered {opening}: {offers:?}"
    );

    execute(
        &db.url,
        "CREATE FUNCTION fleet_slow_insert() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END $$;
         CREATE TRIGGER fleet_slow_booking BEFORE INSERT ON bookings
             FOR EACH ROW EXECUTE FUNCTION fleet_slow_insert();",
    )
    .await;
    // All twenty pick it at once, half of them at each instance.
    let picks = phones.iter().enumerate().map(|(n, phone)| {
        let fleet = &fleet;
        async move {
            fleet.text_as(ports[n % 2], phone, "1", "race").await.unwrap();
        }
    });
    futures::future::join_all(picks).await;
    wait_until(Duration::from_secs(60), "an answer to every pick", || {
        phones.iter().all(|p| fleet.replies_to(p).len() >= 6)
    })
    .await;
    // Nothing left that could send: every text answered, no lease held.
    wait_for_count(&db.url, UNANSWERED, 0, Duration::from_secs(30)).await;
    wait_for_count(&db.url, LEASES_HELD, 0, Duration::from_secs(30)).await;
    wait_for_count(&db.url, UNSENT, 0, Duration::from_secs(30)).await;

    let answers: Vec<String> = phones
        .iter()
        .map(|p| fleet.replies_to(p).get(5).cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        count(&db.url, "SELECT COUNT(*) FROM bookings").await,
        1,
        "one booking; answers: {answers:#?}"
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT COUNT(*) FROM bookings WHERE status = 'confirmed'"
        )
        .await,
        1
    );
    let events = fleet.google.as_ref().unwrap().events();
    assert_eq!(events.len(), 1, "one calendar event: {events:?}");
    assert_eq!(events[0].calendar, "crew1@example.com");

    let mut booked = Vec::new();
    let mut elsewhere = Vec::new();
    for phone in &phones {
        let replies = fleet.replies_to(phone);
        assert_eq!(replies.len(), 6, "{phone}: each text answered once: {replies:?}");
        let answer = &replies[5];
        if answer.starts_with("You're booked") {
            assert!(answer.contains(&opening), "{answer}");
            booked.push(phone.clone());
        } else {
            assert!(
                answer.starts_with("Sorry, that time was just taken."),
                "{phone} was told {answer:?}"
            );
            let other = offered(answer);
            assert_eq!(other.len(), 1, "{answer}");
            assert_ne!(other[0], opening, "{answer}");
            elsewhere.push(other[0].clone());
        }
    }
    assert_eq!(booked.len(), 1, "one customer books it: {booked:?}");
    assert_eq!(elsewhere.len(), RACERS - 1);
    // Held for each customer alone: no two are offered the same opening.
    let distinct: std::collections::HashSet<_> = elsewhere.iter().collect();
    assert_eq!(distinct.len(), elsewhere.len(), "{elsewhere:?}");

    drop((one, two));
}

/// A booked customer's reminder that falls due while one instance is down
/// is sent once, by the other. The booking is made through the guided
/// conversation at instance one, with the day-before reminder set to a
/// minute about half a minute ahead (the job is tomorrow at 8); one is
/// killed before it is due, and two sends it when it falls due: claimed
/// once (one attempt), done, one text at Twilio.
#[tokio::test(flavor = "multi_thread")]
async fn a_booking_reminder_due_while_one_instance_is_down_is_sent_once_by_the_other() {
    on_postgres(reminder_due_while_one_instance_is_down).await;
}

async fn reminder_due_while_one_instance_is_down(url: String) {
    let db = Db { url };
    let mut fleet = Fleet::new(Some(db.url.clone()), Duration::ZERO).await;
    fleet.with_model = false;
    // The first whole minute at least 15 s away: time to start two
    // instances and book before it.
    let due_secs = (chrono::Utc::now().timestamp() + 15 + 59) / 60 * 60;
    let due = chrono::DateTime::from_timestamp(due_secs, 0).unwrap();
    let at = due.with_timezone(&fleet.tz()).format("%H:%M");
    fleet.write_business(&format!(
        "{MORNINGS}\n[reminders]\nday_before = \"{at}\"\nmorning_of = \"off\"\nquote_follow_up_hours = 0\n"
    ));
    let mut one = fleet.start("one");
    let two = fleet.start("two");
    let phone = "+19715553000";
    let mut last = String::new();
    for (n, text) in ["hi", "3", "1", "Dana", "12 Oak St, Portland", "1"]
        .iter()
        .enumerate()
    {
        // "1" twice: the second is a new text, not a retry of the first.
        last = fleet.converse(one.port, phone, text, &n.to_string(), n + 1).await;
    }
    let opening = offered(&fleet.replies_to(phone)[4])[0].clone();
    assert!(last.starts_with("You're booked"), "{last}");
    assert!(last.contains(&opening), "{last}");

    // The booking's turn planned its reminder for `due`.
    const REMINDERS: &str = "SELECT COUNT(*) FROM jobs WHERE kind = 'reminder' AND status = 'pending'";
    assert_eq!(count(&db.url, REMINDERS).await, 1);
    assert_eq!(
        count(&db.url, "SELECT run_at_ms FROM jobs WHERE kind = 'reminder'").await,
        due_secs * 1000
    );
    one.kill_9();
    assert!(
        chrono::Utc::now() < due,
        "the reminder fell due before instance one was killed; the test proves nothing"
    );

    wait_until(Duration::from_secs(90), "the reminder", || {
        fleet.replies_to(phone).len() >= 7
    })
    .await;
    const ONCE: &str = "SELECT COUNT(*) FROM jobs
                        WHERE kind = 'reminder' AND status = 'done' AND attempts = 1";
    wait_for_count(&db.url, ONCE, 1, Duration::from_secs(30)).await;
    wait_for_count(&db.url, UNSENT, 0, Duration::from_secs(30)).await;
    let sent: Vec<Sent> = fleet
        .twilio
        .sent()
        .into_iter()
        .filter(|s| s.to == phone)
        .collect();
    assert_eq!(sent.len(), 7, "six answers and one reminder: {sent:?}");
    let reminder = &sent[6];
    assert!(
        reminder.body.contains(&opening) && reminder.body.contains("tomorrow"),
        "{}",
        reminder.body
    );
    assert!(
        reminder.at >= due,
        "sent at {}, before it was due at {due}",
        reminder.at
    );
    drop(two);
}
