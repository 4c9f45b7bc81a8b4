//! The job queue under load.
//! - With 1,000,000 pending jobs, finding (and claiming) the due batch.
//!   Target: under 20 ms.
//! - A worker with fake sinks draining 10,000 due jobs. Target: 2,000 jobs/s.
//!
//! cargo bench --bench jobs
//!
//! With `BENCH_DATABASE_URL=postgres://...` (a server; the bench creates and
//! drops its own databases there) it runs the same on Postgres.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use textdesk::app::Services;
use textdesk::channel::Channels;
use textdesk::channel::console::ConsoleChannel;
use textdesk::config::business::BusinessConfig;
use textdesk::config::settings::Settings;
use textdesk::email::{Email, EmailError, EmailSender};
use textdesk::jobs::runner::{JobRunner, RunnerSettings};
use textdesk::store::postgres::PgStore;
use textdesk::store::sqlite::SqliteStore;
use textdesk::store::{JobQueue, JobStatus};

struct NullEmail;

#[async_trait]
impl EmailSender for NullEmail {
    async fn send(&self, _: &str, _: &Email) -> Result<String, EmailError> {
        Ok("null".into())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Where the bench runs: a SQLite file, or a fresh Postgres database.
enum Db {
    Sqlite(SqliteStore, String),
    Postgres(PgStore, String),
}

impl Db {
    async fn create(name: &str, dir: &std::path::Path) -> Db {
        match std::env::var("BENCH_DATABASE_URL") {
            Ok(server) if server.starts_with("postgres") => {
                use sqlx::Connection;
                let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
                let db = format!("textdesk_bench_{name}");
                for sql in [
                    format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
                    format!("CREATE DATABASE {db}"),
                ] {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut admin)
                        .await
                        .unwrap();
                }
                let base = &server[..server.rfind('/').unwrap() + 1];
                let url = format!("{base}{db}");
                Db::Postgres(PgStore::connect(&url).await.unwrap(), url)
            }
            _ => {
                let url = format!("sqlite://{}/{name}.db", dir.display());
                Db::Sqlite(SqliteStore::connect(&url).await.unwrap(), url)
            }
        }
    }

    /// Drops a Postgres database made by `create` (SQLite's file goes
    /// with the temporary directory).
    async fn drop(self) {
        if let Db::Postgres(store, url) = self {
            use sqlx::Connection;
            store.pool().close().await;
            let server = std::env::var("BENCH_DATABASE_URL").unwrap();
            let name = &url[url.rfind('/').unwrap() + 1..];
            let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
        }
    }

    /// Transactions committed in this Postgres database so far (`None` on
    /// SQLite). The statistics are flushed by each backend within a second
    /// of going idle, so this waits that out first.
    async fn commits(&self) -> Option<i64> {
        let Db::Postgres(store, _) = self else {
            return None;
        };
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            .fetch_one(store.pool())
            .await
            .ok()
    }

    fn url(&self) -> &str {
        match self {
            Db::Sqlite(_, url) | Db::Postgres(_, url) => url,
        }
    }

    fn queue(&self) -> &dyn JobQueue {
        match self {
            Db::Sqlite(store, _) => store,
            Db::Postgres(store, _) => store,
        }
    }

    async fn fill(&self, count: i64, due_every: i64, kind: &str) {
        match self {
            Db::Sqlite(store, _) => fill(store, count, due_every, kind).await,
            Db::Postgres(store, _) => fill_postgres(store, count, due_every, kind).await,
        }
    }

    async fn due_ids(&self, now_ms: i64) -> usize {
        const DUE: &str =
            "SELECT id FROM jobs WHERE status = 'pending' AND run_at_ms <= $1 ORDER BY run_at_ms LIMIT 100";
        match self {
            Db::Sqlite(store, _) => sqlx::query_scalar::<_, i64>(DUE)
                .bind(now_ms)
                .fetch_all(store.writer_pool())
                .await
                .unwrap()
                .len(),
            Db::Postgres(store, _) => sqlx::query_scalar::<_, i64>(DUE)
                .bind(now_ms)
                .fetch_all(store.pool())
                .await
                .unwrap()
                .len(),
        }
    }
}

async fn fill_postgres(store: &PgStore, count: i64, due_every: i64, kind: &str) {
    let now = Utc::now().timestamp_millis();
    sqlx::query(
        "INSERT INTO jobs (kind, dedupe_key, recipient, payload, run_at_ms, status, max_attempts, created_at, updated_at)
         SELECT $2, $2 || ':' || i, 'crew@example.com',
                '{\"to\":[\"crew@example.com\"],\"subject\":\"s\",\"html\":\"<p>h</p>\",\"text\":\"t\"}'::jsonb,
                CASE WHEN i % $3 = 0 THEN $4 - 1000 ELSE $4 + 86400000 + i END,
                'pending', 5, now(), now()
         FROM generate_series(1, $1::bigint) AS i",
    )
    .bind(count)
    .bind(kind)
    .bind(due_every)
    .bind(now)
    .execute(store.pool())
    .await
    .unwrap();
    // A million rows inserted at once leave autovacuum (and a checkpoint,
    // for the WAL they wrote) to run during the first minutes after; a
    // live queue, filled a job at a time, is vacuumed as it goes. Both are
    // done here before timing, so the claim is timed against the steady
    // state and not against the bulk load's aftermath (BENCHMARKS.md).
    sqlx::query("VACUUM (ANALYZE) jobs")
        .execute(store.pool())
        .await
        .unwrap();
    if let Err(e) = sqlx::query("CHECKPOINT").execute(store.pool()).await {
        println!("note: no CHECKPOINT after the fill ({e})");
    }
}

async fn fill(store: &SqliteStore, count: i64, due_every: i64, kind: &str) {
    let now = Utc::now().timestamp_millis();
    // Generated in SQL: a million inserts through the client would take minutes.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO jobs (kind, dedupe_key, recipient, payload, run_at_ms, status, max_attempts, created_at, updated_at)
         SELECT ?2, ?2 || ':' || i, 'crew@example.com',
                '{\"to\":[\"crew@example.com\"],\"subject\":\"s\",\"html\":\"<p>h</p>\",\"text\":\"t\"}',
                CASE WHEN i % ?3 = 0 THEN ?4 - 1000 ELSE ?4 + 86400000 + i END,
                'pending', 5, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'
         FROM n",
    )
    .bind(count)
    .bind(kind)
    .bind(due_every)
    .bind(now)
    .execute(store.writer_pool())
    .await
    .unwrap();
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::create("queue", dir.path()).await;
    let backend = match db {
        Db::Sqlite(..) => "SQLite",
        Db::Postgres(..) => "Postgres",
    };
    println!("backend: {backend}");
    println!("load average at start: {}", load_average());

    // 1. A million pending jobs, 1% of them due.
    let started = Instant::now();
    db.fill(1_000_000, 100, "email").await;
    println!(
        "job queue: 1,000,000 pending jobs (10,000 due) inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let now = Utc::now();
    let mut find = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let due = db.due_ids(now.timestamp_millis()).await;
        find.push(t.elapsed());
        assert_eq!(due, 100);
    }
    let mut claim = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let batch = db
            .queue()
            .claim_due_jobs(now, 100, Duration::from_secs(300))
            .await
            .unwrap();
        claim.push(t.elapsed());
        assert_eq!(batch.len(), 100);
    }
    find.sort();
    claim.sort();
    println!(
        "find the due batch of 100:  median {:.3} ms, p99 {:.3} ms",
        ms(find[find.len() / 2]),
        ms(find[find.len() * 99 / 100])
    );
    println!(
        "claim the due batch of 100: median {:.3} ms, p99 {:.3} ms",
        ms(claim[claim.len() / 2]),
        ms(claim[claim.len() * 99 / 100])
    );

    // 2. Drain 10,000 due jobs with fake sinks, through the real runner.
    let drain = Db::create("drain", dir.path()).await;
    drain.fill(10_000, 1, "email").await;
    let url = drain.url().to_string();
    let settings = Settings::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        _ => None,
    })
    .unwrap();
    let business = Arc::new(BusinessConfig::default());
    let services = Services::build(
        &settings,
        business.clone(),
        Some(Channels::only(Arc::new(ConsoleChannel { label: None }))),
    )
    .await
    .unwrap();
    let runner = JobRunner {
        store: services.store.clone(),
        desks: services.desks.clone(),
        email: Arc::new(NullEmail),
        settings: RunnerSettings {
            batch: 200,
            ..RunnerSettings::default()
        },
        media: None,
        clock: services.clock.clone(),
    };
    let commits = drain.commits().await;
    let started = Instant::now();
    let cpu = cpu_ms();
    let mut total = 0;
    loop {
        let n = runner.run_due(Utc::now()).await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_ms() - cpu;
    let done = services
        .store
        .jobs(&[JobStatus::Done], 20_000)
        .await
        .unwrap()
        .len();
    assert_eq!((total, done), (10_000, 10_000));
    println!(
        "drain 10,000 due jobs (fake email sink): {:.2} s, {:.0} jobs/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  the bench process's CPU (user + system): {:.3} ms per job",
        cpu / total as f64
    );
    if let (Some(before), Some(after)) = (commits, drain.commits().await) {
        println!(
            "  transactions committed on the database: {:.3} per job",
            (after - before) as f64 / total as f64
        );
    }
    println!("load average at end: {}", load_average());
    drop(runner);
    drop(services);
    db.drop().await;
    drain.drop().await;
}

/// The 1, 5 and 15 minute load averages (Linux), for the record.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// This process's user plus system CPU time so far, in ms (Linux; 0
/// elsewhere).
fn cpu_ms() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the line, in clock ticks (100 a second).
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) * 10.0
}
