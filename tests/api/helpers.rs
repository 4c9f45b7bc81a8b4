//! `spawn_app()`: the real application on port 0, a fresh database (SQLite
//! in the `api` binary, Postgres in `api_postgres`), and local fake servers
//! standing in for Anthropic and Twilio.

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
use textdesk::store::console::ConsoleStore;
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
    /// The test's own database (dropped with the app) and scratch directory.
    pub db: Arc<TestDb>,
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
    /// A clock that runs like the system's but reads this time at the
    /// start: for a test that needs the hour of day (quiet hours) and
    /// time that moves, as a browser driving the console does.
    pub running_from: Option<chrono::DateTime<chrono::Utc>>,
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
            running_from: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    // `TEST_LOG=textdesk=debug cargo test ...` shows the app's own log
    // lines beside a failing test's output.
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let anthropic = MockServer::start().await;
    let twilio = MockServer::start().await;
    if options.default_fakes {
        mount_echo_claude(&anthropic).await;
        mount_twilio_accepting(&twilio).await;
    }
    let db = Arc::new(TestDb::new().await);
    let db_dir = &db.dir;
    let mut vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1".to_string()),
        ("PORT", "0".to_string()),
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL.to_string()),
        ("DATABASE_URL", db.url.clone()),
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
        assert!(!db.is_postgres(), "a SQLite file to start from is a SQLite test");
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
    let clock: Arc<dyn Clock> = match (options.clock, options.running_from) {
        (Some(manual), _) => Arc::new(manual),
        (None, Some(start)) => Arc::new(RunningClock {
            offset: start - chrono::Utc::now(),
        }),
        (None, None) => textdesk::clock::system(),
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
        db,
    }
}

/// True in the `api_postgres` binary when `TEST_DATABASE_URL` is unset: the
/// test prints why and returns at once. Every test starts with
/// `if skipped() { return; }`; in the `api` binary (SQLite) it never skips.
pub fn skipped() -> bool {
    if crate::POSTGRES && postgres_server().is_none() {
        eprintln!("skipped: TEST_DATABASE_URL unset (the Postgres half of the suite)");
        return true;
    }
    false
}

/// True in the `api_postgres` binary for a test that is about SQLite
/// itself (its file, its pragmas, an old release's file): it prints why
/// and returns at once.
pub fn sqlite_only() -> bool {
    if crate::POSTGRES {
        eprintln!("skipped: a test of the SQLite backend itself");
        return true;
    }
    false
}

/// The Postgres server the `api_postgres` binary creates its databases on.
fn postgres_server() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
}

/// Names of per-test Postgres schemas start with this (and then the
/// creation time in Unix seconds, so leftovers can be aged).
fn database_prefix() -> String {
    std::env::var("TEST_DATABASE_PREFIX").unwrap_or_else(|_| "textdesk_test".to_string())
}

/// One test's database: a SQLite file in its scratch directory, or in the
/// `api_postgres` binary a Postgres schema of its own in the database
/// `TEST_DATABASE_URL` names, created here and dropped (`CASCADE`, its
/// sessions ended first) when this is dropped. Every connection of the test
/// (the app's, a second store's, `sql()`) names it as its `search_path`, so
/// the schema is the test's whole database. A schema, not a database:
/// `DROP DATABASE` waits for a checkpoint, which takes a minute on a busy
/// machine.
pub struct TestDb {
    pub url: String,
    /// Scratch space (the SQLite file, business files, key files).
    pub dir: TempDir,
    /// (the server's admin URL, the schema's name) on Postgres.
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new() -> Self {
        let dir = TempDir::new().unwrap();
        if !crate::POSTGRES {
            let url = format!("sqlite://{}/textdesk.db", dir.path().display());
            return Self {
                url,
                dir,
                postgres: None,
            };
        }
        let server = postgres_server().expect("a Postgres test that was not skipped");
        static SWEEP: std::sync::Once = std::sync::Once::new();
        let sweep_server = server.clone();
        SWEEP.call_once(move || blocking(drop_leftovers(sweep_server)));
        let name = format!(
            "{}_{}_{}",
            database_prefix(),
            chrono::Utc::now().timestamp(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("TEST_DATABASE_URL={server} does not answer: {e}"));
        // `name` is ours: a fixed prefix, digits and a UUID's hex digits.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        let url = in_schema(&server, &name);
        Self {
            url,
            dir,
            postgres: Some((server, name)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// A new connection to the database (migrated) with its own pool, as
    /// a second instance would hold: on the system clock.
    pub async fn store(&self) -> Arc<dyn Store> {
        self.store_with_clock(textdesk::clock::system()).await
    }

    pub async fn store_with_clock(&self, clock: Arc<dyn Clock>) -> Arc<dyn Store> {
        self.backend(clock).await.store
    }

    pub async fn backend(&self, clock: Arc<dyn Clock>) -> textdesk::store::backend::Backend {
        textdesk::store::backend::connect(&self.url, clock).await.unwrap()
    }

    /// The owner console's port on this database.
    pub async fn console(&self) -> Arc<dyn ConsoleStore> {
        self.backend(textdesk::clock::system()).await.console
    }

    /// Raw SQL on whichever backend, for setting up states no port writes
    /// and for reading rows back. Placeholders are `$1`, `$2`, ... (SQLite
    /// reads them too).
    pub async fn sql(&self) -> Sql {
        match &self.postgres {
            None => Sql::Sqlite(sqlx::SqlitePool::connect(&self.url).await.unwrap()),
            Some(_) => Sql::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&self.url)
                    .await
                    .unwrap(),
            ),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = self.postgres.take() {
            blocking(async move {
                if let Err(e) = drop_database(&server, &name).await {
                    eprintln!("could not drop test schema {name}: {e}");
                }
            });
        }
    }
}

/// Runs `work` to the end on a thread and runtime of its own (from `Drop`
/// or a `Once`, inside or outside a test's runtime).
fn blocking(work: impl std::future::Future<Output = ()> + Send + 'static) {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join()
    .unwrap();
}

/// `server` with every session in schema `name`, and named after it so its
/// sessions can be found and ended.
fn in_schema(server: &str, name: &str) -> String {
    let separator = if server.contains('?') { '&' } else { '?' };
    format!("{server}{separator}options=-c%20search_path%3D{name}&application_name={name}")
}

async fn drop_database(server: &str, name: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(server).await?;
    // Sessions the test left (a killed app's pool) would hold locks.
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
        .bind(name)
        .execute(&mut admin)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {name} CASCADE"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await
}

/// Drops this prefix's test schemas created over an hour ago (a run that
/// was killed before its tests dropped theirs).
async fn drop_leftovers(server: String) {
    use sqlx::Connection;
    let Ok(mut admin) = sqlx::PgConnection::connect(&server).await else {
        return;
    };
    let prefix = format!("{}_", database_prefix());
    let names: Vec<String> = sqlx::query_scalar("SELECT nspname::TEXT FROM pg_namespace")
        .fetch_all(&mut admin)
        .await
        .unwrap_or_default();
    let hour_ago = chrono::Utc::now().timestamp() - 3600;
    for name in names {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let created: Option<i64> = rest.split('_').next().and_then(|s| s.parse().ok());
        if created.is_some_and(|t| t < hour_ago)
            && let Err(e) = drop_database(&server, &name).await
        {
            eprintln!("could not drop leftover test schema {name}: {e}");
        }
    }
}

/// A value bound to a `$n` placeholder of [`Sql`].
#[derive(Clone, Debug)]
pub enum Arg {
    Int(i64),
    Text(String),
    Time(chrono::DateTime<chrono::Utc>),
    Bytes(Vec<u8>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_string())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<chrono::DateTime<chrono::Utc>> for Arg {
    fn from(v: chrono::DateTime<chrono::Utc>) -> Self {
        Arg::Time(v)
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Self {
        Arg::Bytes(v.to_vec())
    }
}

/// A pool on the test's database, whichever backend it is.
pub enum Sql {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg.clone() {
                Arg::Int(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Time(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

impl Sql {
    /// Runs a statement; the number of rows it touched.
    pub async fn execute(&self, sql: &str, args: &[Arg]) -> u64 {
        let text = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Sql::Sqlite(pool) => bind_all!(sqlx::query(text), args)
                .execute(pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .rows_affected(),
            Sql::Postgres(pool) => bind_all!(sqlx::query(text), args)
                .execute(pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .rows_affected(),
        }
    }

    /// The one value of the one row `sql` returns.
    pub async fn scalar<T>(&self, sql: &str, args: &[Arg]) -> T
    where
        T: Send + Unpin + sqlx::Type<sqlx::Sqlite> + sqlx::Type<sqlx::Postgres>,
        for<'r> T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Decode<'r, sqlx::Postgres>,
    {
        let text = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Sql::Sqlite(pool) => bind_all!(sqlx::query_scalar(text), args)
                .fetch_one(pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Sql::Postgres(pool) => bind_all!(sqlx::query_scalar(text), args)
                .fetch_one(pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// `COUNT(*)` and other integers.
    pub async fn count(&self, sql: &str, args: &[Arg]) -> i64 {
        self.scalar::<i64>(sql, args).await
    }

    pub async fn close(self) {
        match self {
            Sql::Sqlite(pool) => pool.close().await,
            Sql::Postgres(pool) => pool.close().await,
        }
    }
}

fn test_settings(vars: &HashMap<String, String>) -> Settings {
    let mut settings = Settings::from_lookup(|k| vars.get(k).cloned()).unwrap();
    settings.worker.poll_interval = Duration::from_millis(100);
    settings.jobs.poll_interval = Duration::from_millis(100);
    if crate::POSTGRES {
        // Some tests run many apps at once, on a server shared by every
        // test: a few connections each keep them all under its limit.
        settings.database_max_connections = 4;
        // A restarted app on Postgres takes over only expired leases (it
        // cannot tell its dead self from a live instance): short leases let
        // the crash tests see the takeover within their waits.
        settings.worker.lease = Duration::from_secs(5);
        settings.jobs.lease = Duration::from_secs(5);
    }
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
    /// Raw SQL on the app's database, whichever backend (see [`Sql`]).
    pub async fn sql(&self) -> Sql {
        self.db.sql().await
    }

    /// The owner console's port on the app's database.
    pub async fn console(&self) -> Arc<dyn ConsoleStore> {
        self.db.console().await
    }

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
            .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/Messages.json"))
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

    /// Waits until nothing is in flight or due: no live conversation lease, no
    /// text waiting for a turn or queued or mid-send, no job running or
    /// due by the app's clock (seen twice in a row). After it nothing is
    /// left that could send, so "nothing more was sent" can be asserted on
    /// what was recorded. Fails the test if that never happens.
    pub async fn wait_until_idle(&self) {
        let sql = self.sql().await;
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut quiet = 0;
        loop {
            let now = self.clock.now().timestamp_millis();
            // A lease left by a crash expires by the clock; a live one is a
            // turn at work (or a throttle's hold).
            let leased = sql
                .count(
                    "SELECT COUNT(*) FROM conversations WHERE lease_owner IS NOT NULL AND lease_until_ms > $1",
                    &[now.into()],
                )
                .await;
            let texts = sql
                .count(
                    "SELECT COUNT(*) FROM messages
                     WHERE (direction = 'inbound' AND status = 'pending')
                        OR (direction = 'outbound' AND status IN ('queued', 'sending'))",
                    &[],
                )
                .await;
            let jobs = sql
                .count(
                    "SELECT COUNT(*) FROM jobs
                     WHERE status = 'running' OR (status = 'pending' AND run_at_ms <= $1)",
                    &[now.into()],
                )
                .await;
            if leased + texts + jobs == 0 {
                quiet += 1;
                if quiet == 2 {
                    sql.close().await;
                    return;
                }
            } else {
                quiet = 0;
            }
            assert!(
                Instant::now() < deadline,
                "never idle: {leased} leased conversations, {texts} texts waiting or mid-send, {jobs} jobs running or due"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
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

/// The text of the last user turn of a Messages API request: what the
/// customer wrote, without the desk's per-turn context block.
pub fn last_user_text(request: &Value) -> String {
    let messages = request["messages"].as_array().unwrap();
    let last = messages.iter().rev().find(|m| m["role"] == "user").unwrap();
    last["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .filter(|t| !t.starts_with(textdesk::assistant::CONTEXT_HEADER))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything a request tells the model besides the conversation: its
/// system blocks (the stable prompt) and its per-turn context blocks (the
/// time, the state), in that order.
pub fn prompt_text(request: &Value) -> String {
    let system = request["system"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str());
    let context = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["text"].as_str().map(str::to_string))
        .filter(|t| t.starts_with(textdesk::assistant::CONTEXT_HEADER));
    system
        .map(str::to_string)
        .chain(context)
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The customer's or the desk's words in a message: its text blocks,
/// without the per-turn context block.
pub fn message_text(message: &Value) -> String {
    message["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .filter(|t| !t.starts_with(textdesk::assistant::CONTEXT_HEADER))
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

/// The system's clock moved by a fixed offset: time passes as it does,
/// at the hour of day a test chose.
struct RunningClock {
    offset: chrono::Duration,
}

impl Clock for RunningClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.offset
    }
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
