//! The Postgres store shared by several instances: two `PgStore`s on one
//! database stand for two processes. Claims never hand one conversation or
//! job to both, recovery takes over only expired leases, and migrations
//! started together are applied once.
//!
//! Each test creates its own database on the server `TEST_DATABASE_URL`
//! names and drops it at the end; without that variable the tests print a
//! note and pass (SQLite has no second process to race).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::json;
use sqlx::Connection;
use textdesk::clock::ManualClock;
use textdesk::domain::conversation::ConversationState;
use textdesk::domain::phone::E164;
use textdesk::store::postgres::PgStore;
use textdesk::store::{
    AlertKind, ConversationId, ConversationStore, JobQueue, Maintenance, MessageId, MessageKind, NewAlert,
    NewJob, OutboundDraft, Outbox, OwnerAlerts, Recorded, TurnCommit,
};

/// A database of one test's own, dropped (with whatever is still
/// connected to it) when the test ends, passed or not.
struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// A new empty database, or `None` (with a note) without a server.
    async fn create(test: &str) -> Option<Self> {
        let server = match std::env::var("TEST_DATABASE_URL") {
            Ok(server) if server.starts_with("postgres") => server,
            _ => {
                eprintln!("note: {test} skipped: TEST_DATABASE_URL does not name a Postgres server");
                return None;
            }
        };
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
        let after_scheme = server.find("://").map(|i| i + 3).unwrap_or(0);
        let base = match server[after_scheme..].find('/') {
            Some(slash) => server[..after_scheme + slash + 1].to_string(),
            None => format!("{server}/"),
        };
        let url = format!("{base}{name}");
        Some(Self { server, name, url })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on
        // itself: a thread of its own with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut admin = sqlx::PgConnection::connect(&server).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop the test database {}", self.name);
        }
    }
}

const BUSINESS_NUMBER: &str = "+15035550142";

fn text_from(customer: usize, sid: &str) -> textdesk::store::InboundMessage {
    textdesk::store::InboundMessage {
        business_id: "test".into(),
        channel_message_id: sid.into(),
        from: E164::parse(&format!("+1503555{:04}", 1000 + customer)).unwrap(),
        to: E164::parse(BUSINESS_NUMBER).unwrap(),
        body: format!("hello from {customer}"),
        media: vec![],
        params: json!({ "MessageSid": sid }),
        opt_out_keyword: None,
        profile_name: None,
    }
}

async fn record(store: &PgStore, customer: usize, sid: &str) -> (ConversationId, MessageId) {
    match store.record_inbound(&text_from(customer, sid)).await.unwrap() {
        Recorded::New(conversation, message) => (conversation, message),
        Recorded::Duplicate(..) => panic!("{sid} was new"),
    }
}

fn reply_commit(through: MessageId, body: &str) -> TurnCommit {
    TurnCommit {
        through,
        reply: Some(OutboundDraft {
            kind: MessageKind::Reply,
            body: body.into(),
        }),
        held: None,
        state: ConversationState::default(),
        new_quotes: vec![],
        alerts: vec![],
        jobs: vec![],
        cancel_jobs: vec![],
        model_calls: None,
        spoken: None,
    }
}

fn job(n: usize, run_at: chrono::DateTime<Utc>) -> NewJob {
    NewJob {
        kind: "test_job",
        dedupe_key: format!("test:{n}"),
        conversation_id: None,
        customer_id: None,
        recipient: "owner@example.com".into(),
        payload: json!({ "n": n }),
        run_at,
        max_attempts: 3,
    }
}

#[tokio::test]
async fn two_instances_claiming_at_once_never_get_the_same_conversation() {
    let Some(db) =
        TestDatabase::create("two_instances_claiming_at_once_never_get_the_same_conversation").await
    else {
        return;
    };
    let one = PgStore::connect(&db.url).await.unwrap();
    let two = PgStore::connect(&db.url).await.unwrap();
    let mut waiting = HashSet::new();
    for customer in 0..40 {
        waiting.insert(record(&one, customer, &format!("SMwait{customer}")).await.0);
    }

    // Eight claimers, four per instance, each claiming until nothing is
    // left and never releasing: a conversation claimed twice would show up
    // in two claimers' lists.
    let mut claimers = tokio::task::JoinSet::new();
    for n in 0..8 {
        let store = if n % 2 == 0 { one.clone() } else { two.clone() };
        claimers.spawn(async move {
            let mut mine = Vec::new();
            while let Some(claimed) = store
                .claim_next_pending(&format!("worker-{n}"), Duration::from_secs(60))
                .await
                .unwrap()
            {
                mine.push(claimed.id);
            }
            (n, mine)
        });
    }
    let mut claimed = Vec::new();
    let mut by_instance = [0usize; 2];
    while let Some(joined) = claimers.join_next().await {
        let (n, mine) = joined.unwrap();
        by_instance[n % 2] += mine.len();
        claimed.extend(mine);
    }
    let distinct: HashSet<ConversationId> = claimed.iter().copied().collect();
    assert_eq!(
        claimed.len(),
        distinct.len(),
        "a conversation was claimed by two claimers"
    );
    assert_eq!(distinct, waiting, "every waiting conversation is claimed once");
    assert!(
        by_instance[0] > 0 && by_instance[1] > 0,
        "both instances claimed: {by_instance:?}"
    );
    // Held by live leases, nothing more is claimable by anyone.
    assert!(
        one.claim_next_pending("late", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );
    let some = *waiting.iter().next().unwrap();
    assert!(!two.claim(some, "late", Duration::from_secs(60)).await.unwrap());
}

#[tokio::test]
async fn two_instances_claiming_at_once_never_get_the_same_job() {
    let Some(db) = TestDatabase::create("two_instances_claiming_at_once_never_get_the_same_job").await else {
        return;
    };
    let one = PgStore::connect(&db.url).await.unwrap();
    let two = PgStore::connect(&db.url).await.unwrap();
    let now = Utc::now();
    let jobs: Vec<NewJob> = (0..300)
        .map(|n| job(n, now - chrono::Duration::seconds(5)))
        .collect();
    assert_eq!(one.enqueue_jobs(&jobs).await.unwrap(), 300);
    assert_eq!(two.enqueue_jobs(&jobs).await.unwrap(), 0, "dedupe keys are known");

    let mut claimers = tokio::task::JoinSet::new();
    for n in 0..8 {
        let store = if n % 2 == 0 { one.clone() } else { two.clone() };
        claimers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim_due_jobs(Utc::now(), 7, Duration::from_secs(60))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|j| j.id));
            }
        });
    }
    let mut claimed = Vec::new();
    while let Some(joined) = claimers.join_next().await {
        claimed.extend(joined.unwrap());
    }
    let distinct: HashSet<i64> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), distinct.len(), "a job was claimed twice");
    assert_eq!(distinct.len(), 300, "every due job is claimed");
}

#[tokio::test]
async fn two_runs_of_one_turn_on_two_instances_store_one_reply() {
    let Some(db) = TestDatabase::create("two_runs_of_one_turn_on_two_instances_store_one_reply").await else {
        return;
    };
    let one = PgStore::connect(&db.url).await.unwrap();
    let two = PgStore::connect(&db.url).await.unwrap();
    // One text delivered twice at once, to both instances.
    let text = text_from(1, "SMtwice");
    let (a, b) = tokio::join!(one.record_inbound(&text), two.record_inbound(&text));
    let (a, b) = (a.unwrap(), b.unwrap());
    let (conversation, text) = match (a, b) {
        (Recorded::New(c, m), Recorded::Duplicate(c2, m2))
        | (Recorded::Duplicate(c2, m2), Recorded::New(c, m)) => {
            assert_eq!((c, m), (c2, m2), "the duplicate names the stored text");
            (c, m)
        }
        other => panic!("one new and one duplicate, got {other:?}"),
    };

    // Each run raises an alert with its commit: only the run that
    // commits may store it.
    let with_alert = |body: &str| TurnCommit {
        alerts: vec![NewAlert {
            kind: AlertKind::Handoff,
            detail: format!("raised by the {body}"),
        }],
        ..reply_commit(text, body)
    };
    let (a, b) = tokio::join!(
        one.finish_turn(conversation, with_alert("first run")),
        two.finish_turn(conversation, with_alert("second run"))
    );
    let committed: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(committed.len(), 1, "exactly one run commits its reply");
    assert_eq!(committed[0].attempts, 1);
    let messages = one.messages(conversation).await.unwrap();
    let replies: Vec<_> = messages
        .iter()
        .filter(|m| m.direction == textdesk::store::Direction::Outbound)
        .collect();
    assert_eq!(replies.len(), 1, "one reply stored: {messages:?}");
    assert_eq!(replies[0].status, "sending");
    assert_eq!(replies[0].body, committed[0].body);
    assert!(messages.iter().all(|m| m.status != "pending"));
    let alerts = two.alerts().await.unwrap();
    assert_eq!(alerts.len(), 1, "one run's alerts: {alerts:?}");
    assert!(alerts[0].detail.ends_with(if committed[0].body == "first run" {
        "first run"
    } else {
        "second run"
    }));
}

#[tokio::test]
async fn recovery_takes_over_expired_leases_and_leaves_live_ones_alone() {
    let Some(db) =
        TestDatabase::create("recovery_takes_over_expired_leases_and_leaves_live_ones_alone").await
    else {
        return;
    };
    let noon = Utc.with_ymd_and_hms(2031, 3, 4, 12, 0, 0).unwrap();
    let clock = ManualClock::at(noon);
    let dead = PgStore::connect_with_clock(&db.url, Arc::new(clock.clone()))
        .await
        .unwrap();
    let lease = Duration::from_secs(60);

    // At noon the first instance claims X, commits its reply (now being
    // sent) and claims a job; then it dies.
    let (x, x_text) = record(&dead, 1, "SMx").await;
    let (y, y_text) = record(&dead, 2, "SMy").await;
    dead.enqueue_jobs(&[job(1, noon), job(2, noon + chrono::Duration::minutes(10))])
        .await
        .unwrap();
    assert_eq!(
        dead.claim_next_pending("dead-1", lease)
            .await
            .unwrap()
            .map(|c| c.id),
        Some(x)
    );
    let x_reply = dead
        .finish_turn(x, reply_commit(x_text, "reply to x"))
        .await
        .unwrap()
        .expect("x's reply");
    // The job's lease outlasts the next ten minutes, not the twelve.
    let old_job = dead
        .claim_due_jobs(noon, 10, Duration::from_secs(11 * 60))
        .await
        .unwrap();
    assert_eq!(old_job.len(), 1);

    // Ten minutes later a live instance claims Y, commits its reply and
    // claims the other job, all still in progress.
    clock.advance(chrono::Duration::minutes(10));
    let live = PgStore::connect_with_clock(&db.url, Arc::new(clock.clone()))
        .await
        .unwrap();
    assert_eq!(
        live.claim_next_pending("live-1", Duration::from_secs(300))
            .await
            .unwrap()
            .map(|c| c.id),
        Some(y)
    );
    let y_reply = live
        .finish_turn(y, reply_commit(y_text, "reply to y"))
        .await
        .unwrap()
        .expect("y's reply");
    let live_job = live
        .claim_due_jobs(clock_now(&clock), 10, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(live_job.len(), 1, "only the second job is due and free");
    assert_ne!(live_job[0].id, old_job[0].id);

    // Twelve minutes after noon a third instance starts: the dead
    // instance's lease, send and job have expired; the live one's have not.
    clock.advance(chrono::Duration::minutes(2));
    let starting = PgStore::connect_with_clock(&db.url, Arc::new(clock.clone()))
        .await
        .unwrap();
    let recovered = starting.recover_interrupted_work().await.unwrap();
    assert_eq!(recovered.leases_freed, 1, "only X's lease had expired");
    assert_eq!(
        recovered.sends_requeued, 1,
        "only X's reply was abandoned mid-send"
    );
    assert_eq!(recovered.jobs_requeued, 1, "only the dead instance's job");
    let again = starting.recover_interrupted_work().await.unwrap();
    assert_eq!(
        (again.leases_freed, again.sends_requeued, again.jobs_requeued),
        (0, 0, 0),
        "a live instance's work is never taken, however often recovery runs"
    );

    // X's reply is sent again as an interrupted send (attempts 2, so the
    // dispatcher asks the channel first); Y's is still the live instance's.
    let retaken = starting
        .claim_outbound(x_reply.id)
        .await
        .unwrap()
        .expect("x's reply requeued");
    assert_eq!(retaken.attempts, 2);
    assert!(starting.claim_outbound(y_reply.id).await.unwrap().is_none());
    assert!(starting.claim(x, "starting", lease).await.unwrap());
    assert!(!starting.claim(y, "starting", lease).await.unwrap());
    let jobs = starting
        .claim_due_jobs(clock_now(&clock), 10, lease)
        .await
        .unwrap();
    assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), vec![old_job[0].id]);
    assert_eq!(jobs[0].attempts, 2);

    // Once the live instance's send lease runs out too (it died after
    // all), its text can be taken over without a restart.
    clock.advance(chrono::Duration::minutes(10));
    let late = starting
        .claim_outbound(y_reply.id)
        .await
        .unwrap()
        .expect("y's reply taken over");
    assert_eq!(late.attempts, 2);
}

fn clock_now(clock: &ManualClock) -> chrono::DateTime<Utc> {
    use textdesk::clock::Clock;
    clock.now()
}

#[tokio::test]
async fn instances_starting_together_apply_the_migrations_once() {
    let Some(db) = TestDatabase::create("instances_starting_together_apply_the_migrations_once").await else {
        return;
    };
    // Four instances start at the same moment on a fresh database: each
    // would create every table, so any two running the migrations at once
    // would fail. sqlx's migrator holds `pg_advisory_lock` while it runs.
    let (a, b, c, d) = tokio::join!(
        PgStore::connect(&db.url),
        PgStore::connect(&db.url),
        PgStore::connect(&db.url),
        PgStore::connect(&db.url)
    );
    for started in [&a, &b, &c, &d] {
        assert!(
            started.is_ok(),
            "an instance failed to start: {:?}",
            started.as_ref().err()
        );
    }
    let store = a.unwrap();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sql"))
        .count();
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(applied.len(), migrations, "each migration recorded once");
    assert!(applied.iter().all(|(_, success)| *success));
    store.ping().await.unwrap();
}
