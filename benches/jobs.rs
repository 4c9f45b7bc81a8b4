//! The job queue under load.
//! - With 1,000,000 pending jobs, finding (and claiming) the due batch.
//!   Target: under 20 ms.
//! - A worker with fake sinks draining 10,000 due jobs. Target: 2,000 jobs/s.
//!
//! cargo bench --bench jobs

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
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let store = SqliteStore::connect(&url).await.unwrap();

    // 1. A million pending jobs, 1% of them due.
    let started = Instant::now();
    fill(&store, 1_000_000, 100, "email").await;
    println!(
        "job queue: 1,000,000 pending jobs (10,000 due) inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let now = Utc::now();
    let mut find = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let due: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE status = 'pending' AND run_at_ms <= ? ORDER BY run_at_ms LIMIT 100",
        )
        .bind(now.timestamp_millis())
        .fetch_all(store.writer_pool())
        .await
        .unwrap();
        find.push(t.elapsed());
        assert_eq!(due.len(), 100);
    }
    let mut claim = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let batch = store
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
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/drain.db", dir.path().display());
    let drain_store = SqliteStore::connect(&url).await.unwrap();
    fill(&drain_store, 10_000, 1, "email").await;
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
    let started = Instant::now();
    let mut total = 0;
    loop {
        let n = runner.run_due(Utc::now()).await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    let elapsed = started.elapsed();
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
}
