//! `spawn_app()`: the real application on port 0, a fresh SQLite database,
//! and local fake servers standing in for Anthropic and Twilio.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use textdesk::app::{Application, Services};
use textdesk::clock::{Clock, ManualClock};
use textdesk::config::business::BusinessConfig;
use textdesk::config::directory::BusinessDirectory;
use textdesk::config::settings::Settings;
use textdesk::domain::phone::E164;
use textdesk::store::{ConversationId, Message, Store};
use textdesk::twilio::signature;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fake_google::FakeGoogle;

pub const AUTH_TOKEN: &str = "test-auth-token";
pub const PUBLIC_BASE_URL: &str = "https://desk.example.com";
pub const BUSINESS_NUMBER: &str = "+15035550142";
pub const ACCOUNT_SID: &str = "ACtest0000000000000000000000000000";

pub struct TestApp {
    pub app: Option<Application>,
    pub database_url: String,
    pub address: String,
    pub store: Arc<dyn Store>,
    pub anthropic: MockServer,
    pub twilio: MockServer,
    pub http: reqwest::Client,
    pub vars: HashMap<String, String>,
    pub business: BusinessConfig,
    pub google: Option<FakeGoogle>,
    /// With `Options::business_files`, the directory they were written to.
    pub business_dir: Option<std::path::PathBuf>,
    /// What the app reads the time from: the system's, or `Options::clock`.
    pub clock: Arc<dyn Clock>,
    _db_dir: Arc<TempDir>,
}

pub struct Options {
    pub with_model: bool,
    pub extra_vars: Vec<(&'static str, String)>,
    /// Mount the default fakes (an echoing Claude, an accepting Twilio).
    pub default_fakes: bool,
    /// Book on a fake Google Calendar instead of the local table.
    pub google: bool,
    /// business.toml text; a minimal junk-removal business by default.
    pub business: Option<String>,
    /// Several businesses: (file name, text) written to a directory that
    /// `BUSINESS_CONFIG` names. Overrides `business`.
    pub business_files: Vec<(&'static str, String)>,
    /// A database file to start from instead of an empty one.
    pub database: Option<std::path::PathBuf>,
    /// A clock the test sets and moves, shared by the store, the worker,
    /// the job runner and the console; the system's when `None`.
    pub clock: Option<ManualClock>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            with_model: true,
            extra_vars: Vec::new(),
            default_fakes: true,
            google: false,
            business: None,
            business_files: Vec::new(),
            database: None,
            clock: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let anthropic = MockServer::start().await;
    let twilio = MockServer::start().await;
    if options.default_fakes {
        mount_echo_claude(&anthropic).await;
        mount_twilio_accepting(&twilio).await;
    }
    let db_dir = Arc::new(TempDir::new().unwrap());
    let mut vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1".to_string()),
        ("PORT", "0".to_string()),
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL.to_string()),
        ("DATABASE_URL", test_database_url(db_dir.path()).await),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_string()),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_string()),
        ("TWILIO_FROM_NUMBER", BUSINESS_NUMBER.to_string()),
        ("TWILIO_API_BASE_URL", twilio.uri()),
        ("TWILIO_TIMEOUT_SECS", "2".to_string()),
        ("ANTHROPIC_BASE_URL", anthropic.uri()),
        ("ANTHROPIC_RETRY_BASE_MS", "10".to_string()),
        ("ANTHROPIC_MAX_RETRIES", "2".to_string()),
        ("ANTHROPIC_TIMEOUT_SECS", "5".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if options.with_model {
        vars.insert("ANTHROPIC_API_KEY".into(), "test-anthropic-key".into());
    }
    let google = if options.google {
        let google = FakeGoogle::start().await;
        let key = google.key_file(db_dir.path());
        vars.insert("GOOGLE_APPLICATION_CREDENTIALS".into(), key.display().to_string());
        vars.insert("GOOGLE_CALENDAR_BASE_URL".into(), google.base_url());
        vars.insert("GOOGLE_TIMEOUT_SECS".into(), "1".into());
        Some(google)
    } else {
        None
    };
    for (k, v) in options.extra_vars {
        vars.insert(k.to_string(), v);
    }
    let business = BusinessConfig::parse(
        options
            .business
            .as_deref()
            .unwrap_or("[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\n"),
        std::path::Path::new("test.toml"),
    )
    .unwrap();
    if let Some(database) = &options.database {
        std::fs::copy(database, db_dir.path().join("textdesk.db")).unwrap();
    }
    let business_dir = (!options.business_files.is_empty()).then(|| {
        let dir = db_dir.path().join("businesses");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in &options.business_files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        vars.insert("BUSINESS_CONFIG".into(), dir.display().to_string());
        dir
    });
    let business = match &business_dir {
        Some(dir) => {
            let (name, text) = &options.business_files[0];
            BusinessConfig::parse(text, &dir.join(name)).unwrap()
        }
        None => business,
    };
    let settings = test_settings(&vars);
    let clock: Arc<dyn Clock> = match options.clock {
        Some(manual) => Arc::new(manual),
        None => textdesk::clock::system(),
    };
    let (app, address, store) = launch(settings, &business, business_dir.as_deref(), &clock).await;
    TestApp {
        app: Some(app),
        database_url: vars["DATABASE_URL"].clone(),
        address,
        store,
        anthropic,
        twilio,
        http: reqwest::Client::new(),
        vars,
        business,
        google,
        business_dir,
        clock,
        _db_dir: db_dir,
    }
}

/// A fresh database for one test: a SQLite file in the test's directory, or,
/// when `TEST_DATABASE_URL` names a Postgres server, a database of its own
/// there (created here, never shared between tests).
async fn test_database_url(dir: &std::path::Path) -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(server) if server.starts_with("postgres") => {
            use sqlx::Connection;
            // `TEST_DATABASE_PREFIX` lets one who shares the server tell
            // their test databases apart (letters, digits and `_` only).
            let prefix = std::env::var("TEST_DATABASE_PREFIX")
                .ok()
                .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or_else(|| "textdesk_test".to_string());
            let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
            // `name` is ours: a checked prefix and a UUID's hex digits.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .unwrap();
            let mut url = url_without_database(&server);
            url.push_str(&name);
            url
        }
        _ => format!("sqlite://{}/textdesk.db", dir.display()),
    }
}

/// `postgres://user@host:port/db?opts` without `db?opts`, ending in `/`.
fn url_without_database(server: &str) -> String {
    let after_scheme = server.find("://").map(|i| i + 3).unwrap_or(0);
    match server[after_scheme..].find('/') {
        Some(slash) => server[..after_scheme + slash + 1].to_string(),
        None => format!("{server}/"),
    }
}

fn test_settings(vars: &HashMap<String, String>) -> Settings {
    let mut settings = Settings::from_lookup(|k| vars.get(k).cloned()).unwrap();
    settings.worker.poll_interval = Duration::from_millis(100);
    settings.jobs.poll_interval = Duration::from_millis(100);
    settings
}

async fn launch(
    settings: Settings,
    business: &BusinessConfig,
    business_dir: Option<&std::path::Path>,
    clock: &Arc<dyn Clock>,
) -> (Application, String, Arc<dyn Store>) {
    let directory = match business_dir {
        Some(dir) => BusinessDirectory::load(dir).unwrap(),
        None => single_business(&settings, business),
    };
    let app = Application::build_with_clock(settings, Arc::new(directory), clock.clone())
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store();
    (app, address, store)
}

/// The directory `Application::build` makes of one business.
fn single_business(settings: &Settings, business: &BusinessConfig) -> BusinessDirectory {
    BusinessDirectory::from_configs(
        &settings.business_config,
        vec![(settings.business_config.clone(), business.clone())],
    )
    .unwrap()
}

impl TestApp {
    pub fn settings(&self) -> Settings {
        test_settings(&self.vars)
    }

    /// The app's services (its first business) on its database and clock,
    /// for a test to drive a runner or worker of its own.
    pub async fn services(&self) -> Services {
        let settings = self.settings();
        let directory = single_business(&settings, &self.business);
        Services::build_with_clock(&settings, Arc::new(directory), None, self.clock.clone())
            .await
            .unwrap()
    }

    /// Kills the app as a crash would, then starts it again on the same
    /// database.
    pub async fn crash_and_restart(&mut self) {
        self.crash().await;
        self.restart().await;
    }

    /// Kills the app mid-whatever. The store handle stays usable.
    pub async fn crash(&mut self) {
        self.app.take().unwrap().kill().await;
    }

    pub async fn restart(&mut self) {
        let (app, address, store) = launch(
            self.settings(),
            &self.business,
            self.business_dir.as_deref(),
            &self.clock,
        )
        .await;
        self.app = Some(app);
        self.address = address;
        self.store = store;
    }

    pub fn inbound_params(from: &str, body: &str, sid: &str) -> Vec<(String, String)> {
        [
            ("ToCountry", "US"),
            ("SmsMessageSid", sid),
            ("NumMedia", "0"),
            ("SmsSid", sid),
            ("SmsStatus", "received"),
            ("Body", body),
            ("To", BUSINESS_NUMBER),
            ("NumSegments", "1"),
            ("MessageSid", sid),
            ("AccountSid", ACCOUNT_SID),
            ("From", from),
            ("ApiVersion", "2010-04-01"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Posts a webhook signed exactly as Twilio would sign it.
    pub async fn post_signed(&self, path_and_query: &str, params: &[(String, String)]) -> reqwest::Response {
        let url = format!("{PUBLIC_BASE_URL}{path_and_query}");
        let sig = signature::sign(AUTH_TOKEN, &url, params);
        self.post_raw(path_and_query, params, Some(&sig)).await
    }

    pub async fn post_raw(
        &self,
        path_and_query: &str,
        params: &[(String, String)],
        sig: Option<&str>,
    ) -> reqwest::Response {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let mut request = self
            .http
            .post(format!("{}{}", self.address, path_and_query))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(sig) = sig {
            request = request.header("x-twilio-signature", sig);
        }
        request.send().await.unwrap()
    }

    pub async fn text(&self, from: &str, body: &str) -> reqwest::Response {
        let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
        self.text_with_sid(from, body, &sid).await
    }

    pub async fn text_with_sid(&self, from: &str, body: &str, sid: &str) -> reqwest::Response {
        let response = self
            .post_signed("/api/sms/inbound", &Self::inbound_params(from, body, sid))
            .await;
        assert_eq!(response.status(), 200, "webhook refused a valid text");
        response
    }

    /// Texts Twilio was asked to send, as (To, Body).
    pub async fn sent_texts(&self) -> Vec<(String, String)> {
        self.twilio
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path().ends_with("/Messages.json"))
            .map(|r| {
                let form: HashMap<String, String> = form_urlencoded::parse(&r.body).into_owned().collect();
                (form["To"].clone(), form["Body"].clone())
            })
            .collect()
    }

    /// Waits until Twilio was asked to send at least `n` texts; fails the
    /// test if that does not happen.
    pub async fn wait_for_texts(&self, n: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let sent = self.sent_texts().await;
            if sent.len() >= n {
                return sent;
            }
            assert!(Instant::now() < deadline, "expected {n} texts sent, got {sent:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Requests the fake Anthropic received, as JSON bodies.
    pub async fn model_requests(&self) -> Vec<Value> {
        self.anthropic
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    pub async fn conversation(&self, customer: &str) -> Option<ConversationId> {
        self.store
            .find_conversation(
                &E164::parse(customer).unwrap(),
                &E164::parse(BUSINESS_NUMBER).unwrap(),
            )
            .await
            .unwrap()
    }

    pub async fn messages(&self, customer: &str) -> Vec<Message> {
        match self.conversation(customer).await {
            Some(id) => self.store.messages(id).await.unwrap(),
            None => Vec::new(),
        }
    }

    /// Waits until the customer's texts are all answered (none pending,
    /// nothing queued); fails the test if they never are.
    pub async fn wait_until_settled(&self, customer: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let messages = self.messages(customer).await;
            let busy = messages
                .iter()
                .any(|m| m.status == "pending" || m.status == "queued" || m.status == "sending");
            if !busy && !messages.is_empty() {
                return;
            }
            let statuses: Vec<_> = messages
                .iter()
                .map(|m| (m.kind.clone(), m.status.clone()))
                .collect();
            assert!(
                Instant::now() < deadline,
                "conversation never settled: {statuses:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The text of the last user turn of a Messages API request.
pub fn last_user_text(request: &Value) -> String {
    let messages = request["messages"].as_array().unwrap();
    let last = messages.iter().rev().find(|m| m["role"] == "user").unwrap();
    last["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn claude_text(text: &str) -> Value {
    json!({
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 10}
    })
}

/// A fake Claude that answers "Re: <the customer's last words>".
pub struct EchoClaude;

impl Respond for EchoClaude {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let last = last_user_text(&body);
        let last_line = last.lines().last().unwrap_or_default();
        ResponseTemplate::new(200).set_body_json(claude_text(&format!("Re: {last_line}")))
    }
}

pub async fn mount_echo_claude(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(EchoClaude)
        .mount(server)
        .await;
}

/// A fake Twilio that accepts every message with a fresh SID.
pub struct AcceptingTwilio {
    count: AtomicUsize,
}

impl Respond for AcceptingTwilio {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(201).set_body_json(json!({
            "sid": format!("SMout{n:030}"),
            "status": "queued",
        }))
    }
}

pub async fn mount_twilio_accepting(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path_regex(r"^/2010-04-01/Accounts/[^/]+/Messages\.json$"))
        .respond_with(AcceptingTwilio {
            count: AtomicUsize::new(0),
        })
        .mount(server)
        .await;
}

/// Today's date (the real one) at `hour:minute` in `tz`: a test sets the
/// hour of day it needs with a `ManualClock` instead of choosing a time
/// zone where it happens to be that hour. The date follows the real one,
/// so a fake calendar or the outbox's file times stay plausible.
pub fn today_at(tz: chrono_tz::Tz, hour: u32, minute: u32) -> chrono::DateTime<chrono::Utc> {
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let time = chrono::NaiveTime::from_hms_opt(hour, minute, 0).unwrap();
    textdesk::domain::availability::local_instant(tz, today, time).unwrap()
}
