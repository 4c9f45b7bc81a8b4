//! The owner's console under load (a harness, not a timed test).
//!
//! Seeds a fresh SQLite database, through the migrations and bulk SQL
//! matching their schema, with 10,000 conversations and 200,000 messages
//! (one conversation of 300, the rest about 20 each; states spread over
//! every inbox filter; open and resolved alerts), starts the real
//! application in this process, logs in as the owner over HTTP and then,
//! one request at a time, measures p50/p95/max of:
//! - the inbox's first page of 50 with each filter;
//! - the 300-message conversation page (which also marks it read, a write);
//! - search by number (digits) and by name.
//!
//! It exits non-zero when a target is missed: pages under 50 ms at p95,
//! searches under 100 ms.
//!
//! cargo bench --bench console -- [requests_per_case]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use textdesk::app::Application;
use textdesk::config::business::BusinessConfig;
use textdesk::config::directory::BusinessDirectory;
use textdesk::config::settings::Settings;
use textdesk::domain::conversation::JobDetails;
use textdesk::http::owner::password::set_owner_password;
use textdesk::store::sqlite::SqliteStore;

const CONVERSATIONS: usize = 10_000;
const MESSAGES: usize = 200_000;
const LONG_THREAD: usize = 300;
const PASSWORD: &str = "bench owner password";
const BUSINESS_NUMBER: &str = "+15035550142";
const PAGE_TARGET: Duration = Duration::from_millis(50);
const SEARCH_TARGET: Duration = Duration::from_millis(100);

const FIRST_NAMES: [&str; 20] = [
    "Dana", "Lee", "Maria", "Sam", "Alex", "Jordan", "Priya", "Chen", "Olga", "Tomas", "Aisha", "Noah",
    "Emma", "Liam", "Sofia", "Mateo", "Yuki", "Omar", "Grace", "Ivan",
];
const LAST_NAMES: [&str; 25] = [
    "Nguyen",
    "Smith",
    "Garcia",
    "Okafor",
    "Kowalski",
    "Haddad",
    "Johansson",
    "Reyes",
    "Tanaka",
    "Brown",
    "Silva",
    "Murphy",
    "Rossi",
    "Novak",
    "Kim",
    "Patel",
    "Dubois",
    "Schmidt",
    "Lopez",
    "Ali",
    "Walker",
    "Young",
    "King",
    "Wright",
    "Scott",
];

/// The state tag each conversation gets, in proportions an owner might
/// see: most still talking or done, a few waiting for the owner.
fn state_of(i: usize) -> &'static str {
    match i % 100 {
        0..=34 => "intake",
        35..=54 => "quoted",
        55..=64 => "scheduling",
        65..=86 => "booked",
        87..=89 => "handed_off",
        90..=94 => "closed",
        _ => "cancelled",
    }
}

fn phone_of(i: usize) -> String {
    format!("+1503{:07}", 1_000_000 + i)
}

fn name_of(i: usize) -> String {
    format!(
        "{} {}",
        FIRST_NAMES[i % FIRST_NAMES.len()],
        LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()]
    )
}

/// A state as the engine stores it: the tag, the job (serialized by the
/// domain's own type) and, past intake, a quote-sized record, so the JSON
/// the inbox reads names from is as long as a real one.
fn state_json(i: usize, tag: &str) -> String {
    let job = JobDetails {
        size: Some("half_truck".into()),
        address: Some(format!("{} Oak St, Portland OR", 100 + i % 900)),
        customer_name: Some(name_of(i)),
        notes: Some("Old couch and boxes in the garage".into()),
        extras_answered: true,
        ..JobDetails::default()
    };
    let mut state = serde_json::json!({ "state": tag, "job": job });
    if tag != "intake" {
        state["quote"] = serde_json::json!({
            "id": format!("q-{i}"),
            "total": "385.00",
            "lines": [
                {"label": "Half truck", "amount": "350.00"},
                {"label": "Stairs", "amount": "35.00"}
            ],
            "assumptions": ["Items are in the garage, ground floor", "No hazardous materials"],
            "expires_at": "2026-12-05T18:00:00Z"
        });
    }
    state.to_string()
}

/// Every webhook parameter, as an inbound text stores them.
fn inbound_params(phone: &str, body: &str, n: usize) -> String {
    serde_json::json!({
        "ToCountry": "US", "SmsMessageSid": format!("SM{n:032x}"), "NumMedia": "0",
        "SmsSid": format!("SM{n:032x}"), "SmsStatus": "received", "Body": body,
        "To": BUSINESS_NUMBER, "NumSegments": "1", "MessageSid": format!("SM{n:032x}"),
        "AccountSid": "ACbench00000000000000000000000000", "From": phone, "ApiVersion": "2010-04-01"
    })
    .to_string()
}

async fn seed(database_url: &str) -> usize {
    // The migrations, exactly as `serve` applies them.
    drop(SqliteStore::connect(database_url).await.unwrap());
    let mut db = SqliteConnection::connect(database_url).await.unwrap();
    let start = chrono::Utc::now() - chrono::Duration::days(90);
    let mut tx = db.begin().await.unwrap();
    for i in 0..CONVERSATIONS {
        let id = (i + 1) as i64;
        let created = (start + chrono::Duration::seconds(i as i64)).to_rfc3339();
        // One in twenty opted out: STOP marks the customer.
        let opted_out = (i % 20 == 19).then(|| created.clone());
        sqlx::query(
            "INSERT INTO customers (id, business_id, phone, opted_out_at, created_at) VALUES (?, 'bench', ?, ?, ?)",
        )
        .bind(id)
        .bind(phone_of(i))
        .bind(opted_out)
        .bind(&created)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO conversations (id, customer_id, business_number, business_id, state, created_at, updated_at)
             VALUES (?, ?, ?, 'bench', ?, ?, ?)",
        )
        .bind(id)
        .bind(id)
        .bind(BUSINESS_NUMBER)
        .bind(state_json(i, state_of(i)))
        .bind(&created)
        .bind(&created)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    // The long thread is conversation 1; the other messages go round the
    // rest, so ids interleave across conversations as real traffic does.
    let long_id = 1i64;
    let seconds_per_message = (90 * 86_400) as f64 / MESSAGES as f64;
    for n in 0..MESSAGES {
        let step = MESSAGES / LONG_THREAD;
        let conversation = if n % step == 0 && n / step < LONG_THREAD {
            long_id
        } else {
            2 + (n % (CONVERSATIONS - 1)) as i64
        };
        let inbound = n % 2 == 0;
        let phone = phone_of((conversation - 1) as usize);
        let body = if inbound {
            format!(
                "Hi, I have an old couch and about {} boxes to haul away, can you come this week?",
                n % 40
            )
        } else {
            format!("Thanks! A half truck is $385 all in. Reply 1, 2 or 3 to pick a time ({n}).")
        };
        let created = (start
            + chrono::Duration::milliseconds((n as f64 * seconds_per_message * 1000.0) as i64))
        .to_rfc3339();
        sqlx::query(
            "INSERT INTO messages (conversation_id, direction, kind, body, status, channel_message_id, params,
                                   created_at, sent_at, delivery_status)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(conversation)
        .bind(if inbound { "inbound" } else { "outbound" })
        .bind(if inbound { "customer" } else { "reply" })
        .bind(&body)
        .bind(if inbound { "handled" } else { "sent" })
        .bind(format!("SM{n:032x}"))
        .bind(if inbound { inbound_params(&phone, &body, n) } else { "{}".into() })
        .bind(&created)
        .bind((!inbound).then(|| created.clone()))
        .bind((!inbound).then_some("delivered"))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    // Alerts: the hand-offs' open ones, plus history the owner resolved.
    for i in 0..CONVERSATIONS {
        let tag = state_of(i);
        let resolved = i % 10 == 3;
        if tag != "handed_off" && !resolved {
            continue;
        }
        sqlx::query(
            "INSERT INTO alerts (kind, conversation_id, detail, created_at, business_id, resolved_at)
             VALUES ('handoff', ?, 'The customer asked for a person', ?, 'bench', ?)",
        )
        .bind((i + 1) as i64)
        .bind(start.to_rfc3339())
        .bind(resolved.then(|| start.to_rfc3339()))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE").execute(&mut db).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE conversation_id = ?")
        .bind(long_id)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(
        count as usize, LONG_THREAD,
        "the long thread has its 300 messages"
    );
    long_id as usize
}

/// A logged-in owner: the session cookie, taken by hand (the client
/// follows no redirects, like the console tests' browser).
struct Owner {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Owner {
    async fn log_in(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap();
        let form = http.get(format!("{base}/owner/login")).send().await.unwrap();
        let cookie = session_cookie(&form).expect("the login form starts a session");
        let body = form.text().await.unwrap();
        let at = body.find("name=\"csrf\" value=\"").expect("a CSRF token") + 19;
        let csrf = body[at..].split('"').next().unwrap().to_string();
        let login = http
            .post(format!("{base}/owner/login"))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str()), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 303, "logged in");
        let cookie = session_cookie(&login).unwrap_or(cookie);
        Self {
            http,
            base: base.to_string(),
            cookie,
        }
    }

    async fn timed_get(&self, path: &str) -> (Duration, String) {
        let started = Instant::now();
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        let took = started.elapsed();
        assert_eq!(status, 200, "{path}: {body}");
        (took, body)
    }
}

fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("textdesk_owner="))
        .map(|c| c.split(';').next().unwrap().to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[tokio::main]
async fn main() {
    let requests: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/console.db", dir.path().display());
    let seeding = Instant::now();
    let long_thread = seed(&database_url).await;
    println!(
        "seeded {CONVERSATIONS} conversations, {MESSAGES} messages in {:.1}s",
        seeding.elapsed().as_secs_f64()
    );

    let store = SqliteStore::connect(&database_url).await.unwrap();
    set_owner_password(&store, PASSWORD).await.unwrap();
    drop(store);
    let vars: HashMap<&str, String> = [
        ("HOST", "127.0.0.1".to_string()),
        ("PORT", "0".to_string()),
        ("PUBLIC_BASE_URL", "http://127.0.0.1".to_string()),
        ("DATABASE_URL", database_url.clone()),
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
    let base = format!("http://127.0.0.1:{}", app.port());
    let owner = Owner::log_in(&base).await;

    let mut cases: Vec<(String, String, Duration)> =
        ["all", "needs_you", "quoted", "scheduling", "booked", "opted_out"]
            .iter()
            .map(|f| {
                (
                    format!("inbox, filter {f}"),
                    format!("/owner/?filter={f}"),
                    PAGE_TARGET,
                )
            })
            .collect();
    cases.push((
        format!("conversation, {LONG_THREAD} messages"),
        format!("/owner/conversations/{long_thread}"),
        PAGE_TARGET,
    ));
    // A number as the owner types it, and a name: a customer's, matching
    // one conversation in 500, and a first name matching one in 20.
    cases.push((
        "search by number".into(),
        format!("/owner/?q={}", "503%20100%204321"),
        SEARCH_TARGET,
    ));
    cases.push((
        "search by full name".into(),
        "/owner/?q=Maria%20Okafor".into(),
        SEARCH_TARGET,
    ));
    cases.push((
        "search by first name".into(),
        "/owner/?q=Priya".into(),
        SEARCH_TARGET,
    ));

    println!(
        "{requests} requests per case, one at a time, after 10 to warm up; load average before: {}",
        load_average()
    );
    println!("| case | p50 ms | p95 ms | max ms | target p95 | rows |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut missed = Vec::new();
    for (label, path, target) in &cases {
        for _ in 0..10 {
            owner.timed_get(path).await;
        }
        let mut times = Vec::with_capacity(requests);
        let mut rows = 0;
        for _ in 0..requests {
            let (took, body) = owner.timed_get(path).await;
            // Inbox rows, or the thread's messages: what the page had to show.
            rows = body.matches("<span class=\"last\">").count() + body.matches("<p class=\"body\">").count();
            times.push(took);
        }
        times.sort();
        let p95 = percentile(&times, 0.95);
        println!(
            "| {label} | {} | {} | {} | {} | {rows} |",
            ms(percentile(&times, 0.50)),
            ms(p95),
            ms(*times.last().unwrap()),
            ms(*target)
        );
        if p95 > *target {
            missed.push(label.clone());
        }
    }
    println!("load average after: {}", load_average());
    app.kill().await;
    if !missed.is_empty() {
        eprintln!("missed the target: {}", missed.join(", "));
        std::process::exit(1);
    }
}
