//! The Postgres side of the booking, media, approval and console ports,
//! driven directly on `PgStore`s (rows set up with SQL), and where a
//! behaviour must equal SQLite's, the same scenario run on both backends
//! with the same pinned expectations and compared result for result.
//!
//! Skipped, with a note, when `TEST_DATABASE_URL` is unset. Each test
//! creates a database of its own and drops it, even when it fails.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use textdesk::clock::ManualClock;
use textdesk::domain::availability::Interval;
use textdesk::domain::conversation::ConversationState;
use textdesk::store::console::{ConsoleStore, InboxFilter, InboxQuery, JobChange, StoredSession};
use textdesk::store::postgres::PgStore;
use textdesk::store::sqlite::SqliteStore;
use textdesk::store::{
    AlertKind, BookingRecord, BookingStatus, BookingStore, ConversationId, HeldOutcome, JobStatus, MessageId,
    NewJob, Reservation, Settles, Store,
};

/// A fixed instant everything is written at.
fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
}

/// A database of this test's own on the Postgres server named by
/// `TEST_DATABASE_URL`, dropped (its connections ended) when this goes.
struct PgDatabase {
    server: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> Option<Self> {
        let server = match std::env::var("TEST_DATABASE_URL") {
            Ok(server) if server.starts_with("postgres") => server,
            _ => {
                eprintln!("skipped: TEST_DATABASE_URL is not set to a Postgres server");
                return None;
            }
        };
        use sqlx::Connection;
        let name = format!("pgrest_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
        // `name` is ours: a fixed prefix and a UUID's hex digits.
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

    async fn store(&self, clock: &ManualClock) -> PgStore {
        PgStore::connect_with_clock(&self.url, Arc::new(clock.clone()))
            .await
            .unwrap()
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime: drop the database from a
        // thread and runtime of its own, and wait for it.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    use sqlx::Connection;
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
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A value for the setup SQL.
enum Val {
    Int(i64),
    Text(&'static str),
    Str(String),
    NullInt,
    NullTime,
    Time(DateTime<Utc>),
}

/// Both backends' raw pools, for setting up rows with one SQL text:
/// written for Postgres (`$n`, `::jsonb`), read by SQLite as `?n`.
#[derive(Clone)]
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Raw {
    /// Runs `sql` (an INSERT ... RETURNING id, or any statement returning
    /// one BIGINT) and returns the value.
    async fn id(&self, sql: &str, vals: Vec<Val>) -> i64 {
        match self {
            Raw::Pg(pool) => {
                let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()));
                for v in vals {
                    q = match v {
                        Val::Int(i) => q.bind(i),
                        Val::Text(s) => q.bind(s),
                        Val::Str(s) => q.bind(s),
                        Val::NullInt => q.bind(None::<i64>),
                        Val::NullTime => q.bind(None::<DateTime<Utc>>),
                        Val::Time(t) => q.bind(t),
                    };
                }
                q.fetch_one(pool).await.unwrap()
            }
            Raw::Sqlite(pool) => {
                let sql = sql.replace("::jsonb", "").replace('$', "?");
                let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
                for v in vals {
                    q = match v {
                        Val::Int(i) => q.bind(i),
                        Val::Text(s) => q.bind(s),
                        Val::Str(s) => q.bind(s),
                        Val::NullInt => q.bind(None::<i64>),
                        Val::NullTime => q.bind(None::<DateTime<Utc>>),
                        Val::Time(t) => q.bind(t),
                    };
                }
                q.fetch_one(pool).await.unwrap()
            }
        }
    }

    async fn text(&self, sql: &str, id: i64) -> Option<String> {
        match self {
            Raw::Pg(pool) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap(),
            Raw::Sqlite(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.replace("::TEXT", "").replace('$', "?")))
                    .bind(id)
                    .fetch_one(pool)
                    .await
                    .unwrap()
            }
        }
    }

    async fn customer(&self, phone: &str, opted_out: bool) -> i64 {
        self.id(
            "INSERT INTO customers (business_id, phone, opted_out_at, created_at) VALUES ('test', $1, $2, $3)
             RETURNING id",
            vec![
                Val::Str(phone.into()),
                if opted_out {
                    Val::Time(at(8, 0))
                } else {
                    Val::NullTime
                },
                Val::Time(at(8, 0)),
            ],
        )
        .await
    }

    async fn conversation(&self, customer: i64, state: serde_json::Value) -> ConversationId {
        ConversationId(
            self.id(
                "INSERT INTO conversations (customer_id, business_number, business_id, state, created_at, updated_at)
                 VALUES ($1, '+15035550142', 'test', $2::jsonb, $3, $3) RETURNING id",
                vec![Val::Int(customer), Val::Str(state.to_string()), Val::Time(at(8, 0))],
            )
            .await,
        )
    }

    /// A message; `reply_to` for an outbound reply.
    async fn message(
        &self,
        conversation: ConversationId,
        direction: &'static str,
        status: &'static str,
        body: &str,
        reply_to: Option<i64>,
        minute: u32,
    ) -> i64 {
        self.id(
            "INSERT INTO messages (conversation_id, direction, kind, body, status, reply_to_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            vec![
                Val::Int(conversation.0),
                Val::Text(direction),
                Val::Text(if direction == "inbound" {
                    "customer"
                } else {
                    "reply"
                }),
                Val::Str(body.into()),
                Val::Text(status),
                reply_to.map(Val::Int).unwrap_or(Val::NullInt),
                Val::Time(at(9, minute)),
            ],
        )
        .await
    }

    async fn alert(&self, conversation: Option<ConversationId>, kind: &'static str, minute: u32) -> i64 {
        self.id(
            "INSERT INTO alerts (business_id, kind, conversation_id, detail, created_at)
             VALUES ('test', $1, $2, 'look at this', $3) RETURNING id",
            vec![
                Val::Text(kind),
                conversation.map(|c| Val::Int(c.0)).unwrap_or(Val::NullInt),
                Val::Time(at(9, minute)),
            ],
        )
        .await
    }

    async fn job(&self, conversation: ConversationId, key: &str, status: &'static str, attempts: i64) -> i64 {
        self.id(
            "INSERT INTO jobs (kind, dedupe_key, business_id, conversation_id, recipient, payload, run_at_ms, status,
                               attempts, created_at, updated_at)
             VALUES ('reminder', $1, 'test', $2, '+15035550101', '{}'::jsonb, $3, $4, $5, $6, $6) RETURNING id",
            vec![
                Val::Str(key.into()),
                Val::Int(conversation.0),
                Val::Int(at(12, 0).timestamp_millis()),
                Val::Text(status),
                Val::Int(attempts),
                Val::Time(at(8, 0)),
            ],
        )
        .await
    }
}

/// One backend under test: its ports and its raw pool.
struct Under {
    name: &'static str,
    store: Arc<dyn Store>,
    console: Arc<dyn ConsoleStore>,
    raw: Raw,
    _keep: Keep,
}

#[allow(dead_code)]
enum Keep {
    Dir(tempfile::TempDir),
    Pg(PgDatabase),
}

/// SQLite, and Postgres when the server is there: the same scenario runs
/// on each.
async fn both_backends(clock: &ManualClock) -> Vec<Under> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(
        SqliteStore::connect_with_clock(
            &format!("sqlite://{}/t.db", dir.path().display()),
            Arc::new(clock.clone()),
        )
        .await
        .unwrap(),
    );
    let mut out = vec![Under {
        name: "sqlite",
        store: sqlite.clone(),
        console: sqlite.clone(),
        raw: Raw::Sqlite(sqlite.writer_pool().clone()),
        _keep: Keep::Dir(dir),
    }];
    if let Some(db) = PgDatabase::create().await {
        let pg = Arc::new(db.store(clock).await);
        out.push(Under {
            name: "postgres",
            store: pg.clone(),
            console: pg.clone(),
            raw: Raw::Pg(pg.pool().clone()),
            _keep: Keep::Pg(db),
        });
    }
    out
}

fn booking(id: &str, conversation: ConversationId, start: DateTime<Utc>) -> BookingRecord {
    BookingRecord {
        id: id.into(),
        conversation_id: conversation,
        provider_id: "crew-1".into(),
        calendar_id: "cal".into(),
        slot: Interval {
            start,
            end: start + chrono::Duration::hours(2),
        },
        label: "Junk removal".into(),
        status: BookingStatus::Pending,
    }
}

fn blocked(b: &BookingRecord) -> Interval {
    Interval {
        start: b.slot.start - chrono::Duration::minutes(30),
        end: b.slot.end + chrono::Duration::minutes(30),
    }
}

/// `n` customers, each with a conversation of business `test`.
async fn conversations(raw: &Raw, n: usize) -> Vec<ConversationId> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let customer = raw.customer(&format!("+1503555{:04}", 100 + i), false).await;
        out.push(
            raw.conversation(customer, json!({"state": "intake", "job": {}}))
                .await,
        );
    }
    out
}

#[tokio::test]
async fn twenty_reservations_of_one_slot_from_two_instances_book_it_once() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let clock = ManualClock::at(at(9, 0));
    let first = db.store(&clock).await;
    let second = db.store(&clock).await;
    let raw = Raw::Pg(first.pool().clone());
    let people = conversations(&raw, 20).await;
    // Twenty customers, twenty ids, one crew, slots that all overlap (each
    // starts a quarter hour after the previous one's start, inside its 2 h).
    let mut tasks = Vec::new();
    for (i, conversation) in people.iter().enumerate() {
        let store = if i % 2 == 0 { first.clone() } else { second.clone() };
        let b = booking(
            &format!("booking-{i}"),
            *conversation,
            at(13, 0) + chrono::Duration::minutes(i as i64 % 4 * 15),
        );
        tasks.push(tokio::spawn(async move {
            store.reserve_booking(&b, blocked(&b), at(9, 0)).await.unwrap()
        }));
    }
    let mut reserved = 0;
    for task in tasks {
        if let Reservation::Reserved(_) = task.await.unwrap() {
            reserved += 1;
        }
    }
    assert_eq!(reserved, 1, "exactly one of twenty reservations succeeds");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bookings")
        .fetch_one(first.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1, "one booking row");
}

/// Another instance's reservation holds the crew's lock and has written
/// its pending booking but not yet committed: ours waits for it, then sees
/// it. Without the lock ours would read before that commit and take the
/// slot too.
#[tokio::test]
async fn a_reservation_waits_for_the_crew_lock_of_another_instance_and_then_sees_its_booking() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let clock = ManualClock::at(at(9, 0));
    let theirs = db.store(&clock).await;
    let ours = db.store(&clock).await;
    let raw = Raw::Pg(theirs.pool().clone());
    let people = conversations(&raw, 2).await;

    let mut tx = theirs.pool().begin().await.unwrap();
    PgStore::lock_crew(&mut tx, "test", "crew-1").await.unwrap();
    let their_booking = booking("theirs", people[0], at(13, 0));
    sqlx::query(
        "INSERT INTO bookings (id, business_id, conversation_id, provider_id, calendar_id, start_ms, end_ms, label,
                               status, created_at, updated_at, updated_ms)
         VALUES ('theirs', 'test', $1, 'crew-1', 'cal', $2, $3, 'x', 'pending', $4, $4, $5)",
    )
    .bind(people[0].0)
    .bind(their_booking.slot.start.timestamp_millis())
    .bind(their_booking.slot.end.timestamp_millis())
    .bind(at(9, 0))
    .bind(at(9, 0).timestamp_millis())
    .execute(&mut *tx)
    .await
    .unwrap();

    let mine = booking("mine", people[1], at(13, 30));
    let reserving = {
        let ours = ours.clone();
        let mine = mine.clone();
        tokio::spawn(async move {
            ours.reserve_booking(&mine, blocked(&mine), at(9, 0))
                .await
                .unwrap()
        })
    };
    // Wait (a condition, not a sleep) until ours is queued on the lock.
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            )
            .fetch_one(ours.pool())
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                !reserving.is_finished(),
                "the reservation finished without waiting for the crew lock"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the reservation never queued on the crew lock");
    assert!(!reserving.is_finished());
    tx.commit().await.unwrap();
    assert_eq!(reserving.await.unwrap(), Reservation::Conflict);
    assert_eq!(theirs.bookings().await.unwrap().len(), 1);
}

/// A pending booking abandoned 16 minutes ago (a crash between the record
/// and the calendar event) no longer blocks its slot; one 14 minutes old
/// does. Run on both backends.
#[tokio::test]
async fn a_stale_pending_booking_is_taken_over_after_fifteen_minutes_and_not_before() {
    let clock = ManualClock::at(at(10, 0));
    for under in both_backends(&clock).await {
        clock.set(at(10, 0));
        let people = conversations(&under.raw, 3).await;
        let abandoned = booking("abandoned", people[0], at(13, 0));
        assert!(matches!(
            under
                .store
                .reserve_booking(&abandoned, blocked(&abandoned), at(10, 0))
                .await
                .unwrap(),
            Reservation::Reserved(_)
        ));

        clock.set(at(10, 14));
        let early = booking("early", people[1], at(13, 0));
        assert_eq!(
            under
                .store
                .reserve_booking(&early, blocked(&early), at(10, 14))
                .await
                .unwrap(),
            Reservation::Conflict,
            "{}: 14 minutes old still blocks",
            under.name
        );

        clock.set(at(10, 16));
        let late = booking("late", people[2], at(13, 0));
        assert_eq!(
            under
                .store
                .reserve_booking(&late, blocked(&late), at(10, 16))
                .await
                .unwrap(),
            Reservation::Reserved(late.clone()),
            "{}: 16 minutes old is taken over",
            under.name
        );
        let ids: Vec<String> = under
            .store
            .bookings()
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(ids, ["abandoned", "late"], "{}", under.name);
    }
}

#[tokio::test]
async fn password_and_sessions_behave_alike_on_both_backends() {
    let clock = ManualClock::at(at(9, 0));
    for under in both_backends(&clock).await {
        let c = &under.console;
        let name = under.name;
        assert_eq!(c.owner_password_hash().await.unwrap(), None, "{name}");
        let session = StoredSession {
            data: r#"{"b":1,"a":[2, 3]}"#.into(),
            expires_at: 1_000,
        };
        assert!(c.create_session("s1", &session).await.unwrap(), "{name}");
        assert!(
            !c.create_session("s1", &session).await.unwrap(),
            "{name}: the id exists"
        );
        assert_eq!(
            c.load_session("s1", 999).await.unwrap(),
            Some(session.clone()),
            "{name}"
        );
        assert_eq!(
            c.load_session("s1", 1_000).await.unwrap(),
            None,
            "{name}: expired"
        );
        let longer = StoredSession {
            data: "{}".into(),
            expires_at: 2_000,
        };
        c.save_session("s1", &longer).await.unwrap();
        c.save_session("s2", &session).await.unwrap();
        assert_eq!(c.load_session("s1", 1_500).await.unwrap(), Some(longer), "{name}");
        assert_eq!(
            c.delete_expired_sessions(1_000).await.unwrap(),
            1,
            "{name}: s2 expired"
        );
        assert_eq!(c.load_session("s2", 0).await.unwrap(), None, "{name}");
        c.delete_session("s1").await.unwrap();
        assert_eq!(c.load_session("s1", 0).await.unwrap(), None, "{name}");

        c.create_session("s3", &session).await.unwrap();
        c.set_owner_password_hash("$argon2id$one").await.unwrap();
        assert_eq!(
            c.owner_password_hash().await.unwrap().as_deref(),
            Some("$argon2id$one"),
            "{name}"
        );
        assert_eq!(
            c.load_session("s3", 0).await.unwrap(),
            None,
            "{name}: a new password logs out"
        );
        c.set_owner_password_hash("$argon2id$two").await.unwrap();
        assert_eq!(
            c.owner_password_hash().await.unwrap().as_deref(),
            Some("$argon2id$two"),
            "{name}"
        );
    }
}

/// The inbox's conversations: who needs the owner, states, names and
/// numbers. Ids are equal on both backends (fresh databases, same order).
struct Inbox {
    ann: ConversationId,
    bob: ConversationId,
    handed: ConversationId,
    alerted: ConversationId,
    opted: ConversationId,
    held: ConversationId,
    alert_id: i64,
    held_reply: i64,
}

async fn fill_inbox(raw: &Raw) -> Inbox {
    let ann_k = raw.customer("+15035550101", false).await;
    let ann = raw
        .conversation(
            ann_k,
            json!({"state": "intake", "job": {"customer_name": "Ann O'Lee 100%"}}),
        )
        .await;
    let bob_k = raw.customer("+15035550102", false).await;
    let bob = raw
        .conversation(bob_k, json!({"state": "quoted", "job": {"customer_name": "Bob"}}))
        .await;
    let handed_k = raw.customer("+15035550103", false).await;
    let handed = raw
        .conversation(
            handed_k,
            json!({"state": "handed_off", "job": {"customer_name": "Cy"}}),
        )
        .await;
    let alerted_k = raw.customer("+15035550104", false).await;
    let alerted = raw
        .conversation(alerted_k, json!({"state": "intake", "job": {}}))
        .await;
    let opted_k = raw.customer("whatsapp:+15035550105", true).await;
    let opted = raw
        .conversation(
            opted_k,
            json!({"state": "opted_out", "previous": {"state": "intake", "job": {"customer_name": "Di"}}}),
        )
        .await;
    let held_k = raw.customer("+15035550106", false).await;
    let held = raw
        .conversation(held_k, json!({"state": "intake", "job": {}}))
        .await;

    // Activity, oldest first: held, opted, alerted, handed, bob, ann.
    let held_in = raw
        .message(held, "inbound", "handled", "how much?", None, 1)
        .await;
    let held_reply = raw
        .message(held, "outbound", "held", "It is $350.", Some(held_in), 2)
        .await;
    raw.message(opted, "inbound", "handled", "STOP", None, 3).await;
    raw.message(alerted, "inbound", "handled", "hello?", None, 4)
        .await;
    let alert_id = raw.alert(Some(alerted), "model_unreachable", 5).await;
    raw.message(handed, "inbound", "handled", "a person please", None, 6)
        .await;
    raw.message(bob, "inbound", "handled", "a couch", None, 7).await;
    raw.message(bob, "outbound", "sent", "That is $200.", None, 8)
        .await;
    raw.message(ann, "inbound", "pending", "hi there", None, 9).await;
    Inbox {
        ann,
        bob,
        handed,
        alerted,
        opted,
        held,
        alert_id,
        held_reply,
    }
}

async fn inbox_ids(
    c: &dyn ConsoleStore,
    filter: InboxFilter,
    search: Option<&str>,
    offset: usize,
    limit: usize,
) -> Vec<i64> {
    c.inbox(&InboxQuery {
        business_id: Some("test".into()),
        filter,
        search: search.map(str::to_string),
        limit,
        offset,
    })
    .await
    .unwrap()
    .into_iter()
    .map(|row| row.id.0)
    .collect()
}

#[tokio::test]
async fn the_inbox_filters_searches_pins_and_pages_alike_on_both_backends() {
    let clock = ManualClock::at(at(9, 0));
    let mut seen: Vec<(String, String)> = Vec::new();
    for under in both_backends(&clock).await {
        let c = under.console.as_ref();
        let name = under.name;
        let i = fill_inbox(&under.raw).await;
        // Those needing the owner first (newest first), then the rest.
        let pinned = [i.handed.0, i.alerted.0, i.held.0];
        let rest = [i.ann.0, i.bob.0, i.opted.0];
        let all: Vec<i64> = pinned.iter().chain(&rest).copied().collect();
        assert_eq!(inbox_ids(c, InboxFilter::All, None, 0, 50).await, all, "{name}");
        for offset in 0..all.len() {
            assert_eq!(
                inbox_ids(c, InboxFilter::All, None, offset, 2).await,
                all[offset..(offset + 2).min(all.len())],
                "{name}: page at {offset}"
            );
        }
        assert_eq!(
            inbox_ids(c, InboxFilter::NeedsYou, None, 0, 50).await,
            pinned,
            "{name}"
        );
        assert_eq!(
            inbox_ids(c, InboxFilter::Quoted, None, 0, 50).await,
            [i.bob.0],
            "{name}"
        );
        assert_eq!(
            inbox_ids(c, InboxFilter::OptedOut, None, 0, 50).await,
            [i.opted.0],
            "{name}"
        );
        assert_eq!(
            inbox_ids(c, InboxFilter::Booked, None, 0, 50).await,
            Vec::<i64>::new(),
            "{name}"
        );
        // Names: any case, anywhere; LIKE's wildcards are literal.
        assert_eq!(
            inbox_ids(c, InboxFilter::All, Some("o'LEE"), 0, 50).await,
            [i.ann.0],
            "{name}"
        );
        assert_eq!(
            inbox_ids(c, InboxFilter::All, Some("100%"), 0, 50).await,
            [i.ann.0],
            "{name}"
        );
        assert_eq!(
            inbox_ids(c, InboxFilter::All, Some("%"), 0, 50).await,
            [i.ann.0],
            "{name}"
        );
        assert_eq!(
            inbox_ids(c, InboxFilter::All, Some("_"), 0, 50).await,
            Vec::<i64>::new(),
            "{name}"
        );
        // The name an opted-out conversation kept.
        assert_eq!(
            inbox_ids(c, InboxFilter::All, Some("di"), 0, 50).await,
            [i.opted.0],
            "{name}"
        );
        // Numbers: by their digits, however typed.
        assert_eq!(
            inbox_ids(c, InboxFilter::All, Some("(503) 555-0102"), 0, 50).await,
            [i.bob.0],
            "{name}"
        );
        assert_eq!(
            inbox_ids(c, InboxFilter::All, Some("0105"), 0, 50).await,
            [i.opted.0],
            "{name}"
        );
        assert_eq!(
            inbox_ids(c, InboxFilter::NeedsYou, Some("555010"), 0, 50).await,
            pinned,
            "{name}"
        );

        let rows = c
            .inbox(&InboxQuery {
                business_id: None,
                limit: 50,
                ..InboxQuery::default()
            })
            .await
            .unwrap();
        let ann = rows.iter().find(|r| r.id == i.ann).unwrap();
        assert_eq!(ann.customer_name.as_deref(), Some("Ann O'Lee 100%"), "{name}");
        assert!(ann.unread && !ann.needs_you, "{name}");
        assert_eq!(ann.last_text.as_deref(), Some("hi there"), "{name}");
        let held = rows.iter().find(|r| r.id == i.held).unwrap();
        assert!(held.needs_you, "{name}: a held reply needs the owner");
        let opted = rows.iter().find(|r| r.id == i.opted).unwrap();
        assert!(opted.opted_out && opted.state == "opted_out", "{name}");
        assert_eq!(opted.customer_address, "whatsapp:+15035550105", "{name}");

        // Read marks only move forward.
        let last = c
            .conversation_detail(i.ann)
            .await
            .unwrap()
            .unwrap()
            .messages
            .last()
            .unwrap()
            .id;
        c.mark_read(i.ann, last).await.unwrap();
        c.mark_read(i.ann, MessageId(1)).await.unwrap();
        let detail = c.conversation_detail(i.ann).await.unwrap().unwrap();
        assert_eq!(detail.last_read_id, last.0, "{name}");
        let rows = c
            .inbox(&InboxQuery {
                limit: 50,
                ..InboxQuery::default()
            })
            .await
            .unwrap();
        assert!(!rows.iter().find(|r| r.id == i.ann).unwrap().unread, "{name}");
        seen.push((name.to_string(), format!("{rows:?}")));
    }
    if let [(_, sqlite), (_, postgres)] = seen.as_slice() {
        assert_eq!(sqlite, postgres, "the inbox rows are the same on both backends");
    }
}

#[tokio::test]
async fn conversation_pages_alerts_and_jobs_behave_alike_on_both_backends() {
    let clock = ManualClock::at(at(9, 0));
    let mut seen: Vec<String> = Vec::new();
    for under in both_backends(&clock).await {
        let c = under.console.as_ref();
        let name = under.name;
        let i = fill_inbox(&under.raw).await;

        let detail = c.conversation_detail(i.bob).await.unwrap().unwrap();
        let bodies: Vec<&str> = detail.messages.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["a couch", "That is $200."], "{name}");
        assert_eq!(detail.business_number, "+15035550142", "{name}");
        let state: serde_json::Value = serde_json::from_str(detail.state_json.as_deref().unwrap()).unwrap();
        assert_eq!(
            state,
            json!({"state": "quoted", "job": {"customer_name": "Bob"}}),
            "{name}"
        );
        assert!(
            c.conversation_detail(ConversationId(999))
                .await
                .unwrap()
                .is_none(),
            "{name}"
        );

        // Alerts: listed, counted, resolved once.
        let unattached = under.raw.alert(None, "calendar_failed", 10).await;
        let open = c.console_alerts(Some("test"), true, 10).await.unwrap();
        let ids: Vec<i64> = open.iter().map(|a| a.id).collect();
        assert_eq!(ids, [unattached, i.alert_id], "{name}: newest first");
        assert_eq!(
            open[1].customer_address.as_deref(),
            Some("+15035550104"),
            "{name}"
        );
        assert_eq!(c.open_alert_count(Some("test")).await.unwrap(), 2, "{name}");
        assert_eq!(c.open_alert_count(Some("other")).await.unwrap(), 0, "{name}");
        assert!(
            c.resolve_alert(i.alert_id, "owner", at(10, 0)).await.unwrap(),
            "{name}"
        );
        assert!(
            !c.resolve_alert(i.alert_id, "owner", at(10, 1)).await.unwrap(),
            "{name}: already"
        );
        assert!(
            !c.resolve_alert(999, "owner", at(10, 1)).await.unwrap(),
            "{name}: no such alert"
        );
        assert_eq!(c.open_alert_count(None).await.unwrap(), 1, "{name}");
        let resolved = c.console_alerts(None, false, 10).await.unwrap();
        assert_eq!(resolved.len(), 1, "{name}");
        assert_eq!(resolved[0].resolved_at, Some(at(10, 0)), "{name}");

        // Jobs: a dead one retried afresh, a pending one cancelled, and
        // each refused where it does not apply.
        let dead = under.raw.job(i.bob, "reminder:dead", "dead", 5).await;
        let pending = under.raw.job(i.bob, "reminder:pending", "pending", 0).await;
        assert_eq!(
            c.retry_dead_job(dead, at(11, 0)).await.unwrap(),
            JobChange::Changed,
            "{name}"
        );
        assert_eq!(
            under
                .raw
                .text(
                    "SELECT status || ':' || attempts || ':' || run_at_ms FROM jobs WHERE id = $1",
                    dead
                )
                .await
                .as_deref(),
            Some(format!("pending:0:{}", at(11, 0).timestamp_millis()).as_str()),
            "{name}"
        );
        assert_eq!(
            c.retry_dead_job(dead, at(11, 0)).await.unwrap(),
            JobChange::NotApplicable(JobStatus::Pending),
            "{name}"
        );
        assert_eq!(
            c.cancel_pending_job(pending, at(11, 0)).await.unwrap(),
            JobChange::Changed,
            "{name}"
        );
        assert_eq!(
            c.cancel_pending_job(pending, at(11, 0)).await.unwrap(),
            JobChange::NotApplicable(JobStatus::Cancelled),
            "{name}"
        );
        assert_eq!(
            c.cancel_pending_job(999, at(11, 0)).await.unwrap(),
            JobChange::NotFound,
            "{name}"
        );
        assert_eq!(
            c.retry_dead_job(999, at(11, 0)).await.unwrap(),
            JobChange::NotFound,
            "{name}"
        );

        // The schedule: live bookings starting in the range.
        let b = booking("bob-1", i.bob, at(13, 0));
        under
            .store
            .reserve_booking(&b, blocked(&b), at(9, 0))
            .await
            .unwrap();
        let cancelled = booking("bob-0", i.bob, at(16, 0));
        under
            .store
            .reserve_booking(&cancelled, blocked(&cancelled), at(9, 0))
            .await
            .unwrap();
        under
            .store
            .update_booking("bob-0", BookingStatus::Cancelled, None)
            .await
            .unwrap();
        let schedule = c
            .bookings_between(Some("test"), at(12, 0), at(18, 0))
            .await
            .unwrap();
        let ids: Vec<&str> = schedule.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["bob-1"], "{name}");
        assert_eq!(schedule[0].customer_address, "+15035550102", "{name}");
        assert!(
            c.bookings_between(None, at(13, 1), at(18, 0))
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert_eq!(under.store.booking_generation(i.bob).await.unwrap(), 1, "{name}");

        seen.push(format!(
            "{:?} {:?} {:?}",
            detail.messages,
            resolved,
            schedule
                .iter()
                .map(|b| (&b.id, b.start, b.end, &b.status, b.open_alerts))
                .collect::<Vec<_>>()
        ));
    }
    if let [sqlite, postgres] = seen.as_slice() {
        assert_eq!(sqlite, postgres, "the same answers on both backends");
    }
}

#[tokio::test]
async fn held_replies_are_released_deferred_or_discarded_once_alike_on_both_backends() {
    let clock = ManualClock::at(at(9, 30));
    let mut seen: Vec<String> = Vec::new();
    for under in both_backends(&clock).await {
        let name = under.name;
        let s = &under.store;
        let i = fill_inbox(&under.raw).await;
        let held = s.held_reply(i.held).await.unwrap().unwrap();
        assert_eq!(held.id.0, i.held_reply, "{name}");
        assert_eq!(held.body, "It is $350.", "{name}");
        assert!(s.held_reply(i.bob).await.unwrap().is_none(), "{name}");

        // Released as edited, once.
        let settles = Settles {
            resolve_alerts: vec![AlertKind::parse("model_unreachable")],
            cancel_jobs: vec!["approval_timeout:".into()],
            ..Settles::default()
        };
        let timeout = under.raw.job(i.held, "approval_timeout:1", "pending", 0).await;
        let other = under.raw.job(i.held, "reminder:1", "pending", 0).await;
        let sent = s
            .release_held(i.held, held.id, Some("It is $340."), &settles)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sent.body, "It is $340.", "{name}");
        assert_eq!(sent.attempts, 1, "{name}: stored already claimed");
        assert_eq!(sent.to.as_str(), "+15035550106", "{name}");
        assert_eq!(sent.last_inbound_at, Some(at(9, 1)), "{name}");
        assert!(
            s.release_held(i.held, held.id, None, &settles)
                .await
                .unwrap()
                .is_none(),
            "{name}: decided already"
        );
        let status = |id: i64| {
            let raw = under.raw.clone();
            async move {
                raw.text("SELECT status FROM jobs WHERE id = $1", id)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(status(timeout).await, "cancelled", "{name}: the timeout is moot");
        assert_eq!(status(other).await, "pending", "{name}: other jobs stay");
        assert!(s.held_reply(i.held).await.unwrap().is_none(), "{name}");

        // Deferred with its job, once.
        let second = under
            .raw
            .message(i.held, "outbound", "held", "Tomorrow then.", None, 20)
            .await;
        let job = NewJob {
            kind: "send_deferred",
            dedupe_key: format!("deferred:{second}"),
            conversation_id: Some(i.held),
            customer_id: None,
            recipient: "+15035550106".into(),
            payload: json!({"message_id": second}),
            run_at: at(10, 0),
            max_attempts: 3,
        };
        assert!(
            s.defer_held(i.held, MessageId(second), None, &job, &Settles::default())
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            !s.defer_held(i.held, MessageId(second), None, &job, &Settles::default())
                .await
                .unwrap(),
            "{name}: decided already"
        );
        assert_eq!(
            under
                .raw
                .text("SELECT status || ':' || business_id || ':' || max_attempts FROM jobs WHERE dedupe_key = 'deferred:' || $1", second)
                .await
                .as_deref(),
            Some("pending:test:3"),
            "{name}"
        );
        assert_eq!(
            under
                .raw
                .text("SELECT status FROM messages WHERE id = $1", second)
                .await
                .as_deref(),
            Some("deferred"),
            "{name}"
        );

        // Discarded, with the hand-off's state in the same commit.
        let third = under
            .raw
            .message(i.alerted, "outbound", "held", "Maybe.", None, 21)
            .await;
        let state = ConversationState::default();
        assert!(
            s.discard_held(
                i.alerted,
                MessageId(third),
                HeldOutcome::Rejected,
                Some(&state),
                &Settles::default()
            )
            .await
            .unwrap(),
            "{name}"
        );
        assert!(
            !s.discard_held(
                i.alerted,
                MessageId(third),
                HeldOutcome::Expired,
                None,
                &Settles::default()
            )
            .await
            .unwrap(),
            "{name}: decided already"
        );
        assert_eq!(
            under
                .raw
                .text("SELECT status FROM messages WHERE id = $1", third)
                .await
                .as_deref(),
            Some("rejected"),
            "{name}"
        );
        let stored = under
            .raw
            .text("SELECT state::TEXT FROM conversations WHERE id = $1", i.alerted.0)
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&stored).unwrap(),
            serde_json::to_value(&state).unwrap(),
            "{name}"
        );
        // Not a reply of this conversation: nothing moves.
        assert!(
            !s.discard_held(
                i.bob,
                MessageId(third),
                HeldOutcome::Expired,
                None,
                &Settles::default()
            )
            .await
            .unwrap(),
            "{name}"
        );
        seen.push(format!("{sent:?}"));
    }
    if let [sqlite, postgres] = seen.as_slice() {
        assert_eq!(sqlite, postgres, "the released text is the same on both backends");
    }
}

/// The inbox on 10,000 conversations: the first page, a page deep down, a
/// name and a number each find the right rows, in under a second
/// each even on a busy machine (the median of five runs is printed).
#[tokio::test]
async fn the_inbox_stays_fast_and_right_on_ten_thousand_conversations() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let clock = ManualClock::at(at(9, 0));
    let store = db.store(&clock).await;
    for statement in [
        "INSERT INTO customers (business_id, phone, created_at)
         SELECT 'test', '+1503' || lpad(g::TEXT, 7, '0'), now() FROM generate_series(1, 10000) g",
        "INSERT INTO conversations (customer_id, business_number, business_id, state, created_at, updated_at)
         SELECT id, '+15035550142', 'test',
                jsonb_build_object('state', CASE WHEN id % 2500 = 0 THEN 'handed_off' ELSE 'intake' END,
                                   'job', jsonb_build_object('customer_name', 'Name' || id)),
                now(), now()
         FROM customers ORDER BY id",
        "INSERT INTO messages (conversation_id, direction, kind, body, status, created_at)
         SELECT id, 'inbound', 'customer', 'hello', 'handled', now() FROM conversations ORDER BY id",
        "ANALYZE",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(store.pool())
            .await
            .unwrap();
    }
    let query = |search: Option<&str>, offset: usize| InboxQuery {
        business_id: Some("test".into()),
        filter: InboxFilter::All,
        search: search.map(str::to_string),
        limit: 50,
        offset,
    };
    let cases = [
        // The four handed off first, then the newest.
        (query(None, 0), [10000, 7500, 5000, 2500, 9999].as_slice()),
        // 4 pinned, then 9999 down, 7500 and 5000 skipped (pinned).
        (query(None, 5000), [5002, 5001, 4999].as_slice()),
        (query(Some("name1234"), 0), [1234].as_slice()),
        (query(Some("NAME9999"), 0), [9999].as_slice()),
        (query(Some("(503) 000-7500"), 0), [7500].as_slice()),
        (query(Some("no such name"), 0), [].as_slice()),
    ];
    for (q, starts_with) in cases {
        let mut times = Vec::new();
        let mut rows = Vec::new();
        for _ in 0..5 {
            let started = std::time::Instant::now();
            rows = store.inbox(&q).await.unwrap();
            times.push(started.elapsed());
        }
        times.sort();
        let ids: Vec<i64> = rows.iter().map(|r| r.id.0).collect();
        assert_eq!(
            &ids[..starts_with.len().min(ids.len())],
            starts_with,
            "{:?}",
            q.search
        );
        if starts_with.len() == 1 || starts_with.is_empty() {
            assert_eq!(ids.len(), starts_with.len(), "{:?}", q.search);
        } else {
            assert_eq!(ids.len(), 50);
        }
        eprintln!("inbox {:?} at {}: median {:?}", q.search, q.offset, times[2]);
        assert!(
            times[2] < Duration::from_secs(1),
            "{:?}: {:?}",
            q.search,
            times[2]
        );
    }
}

/// Held openings: granted only where no other live hold or booking of the
/// crew conflicts, released by an empty hold, ignored once expired, and
/// honoured by a reservation. Run on both backends.
#[tokio::test]
async fn holds_are_granted_released_and_expire_alike_on_both_backends() {
    let clock = ManualClock::at(at(9, 0));
    for under in both_backends(&clock).await {
        let name = under.name;
        let s = &under.store;
        let people = conversations(&under.raw, 3).await;
        let hold = |start: DateTime<Utc>| {
            let b = booking("h", people[0], start);
            textdesk::store::Hold {
                provider_id: "crew-1".into(),
                slot: b.slot,
                blocked: blocked(&b),
            }
        };
        let (ten, one, four) = (hold(at(10, 0)), hold(at(13, 0)), hold(at(16, 0)));
        let granted = s
            .hold(people[0], &[ten.clone(), one.clone()], at(9, 30), at(9, 0), None)
            .await
            .unwrap();
        assert_eq!(granted, [ten.clone(), one.clone()], "{name}");
        // Another conversation: 13:00 is held, 16:00 is free.
        let granted = s
            .hold(people[1], &[one.clone(), four.clone()], at(9, 30), at(9, 0), None)
            .await
            .unwrap();
        assert_eq!(granted, std::slice::from_ref(&four), "{name}");
        assert_eq!(
            s.holds_of_others(people[2], at(9, 0)).await.unwrap().len(),
            3,
            "{name}"
        );
        // A reservation over someone's hold is refused.
        let b = booking("c-1", people[2], at(13, 30));
        assert_eq!(
            s.reserve_booking(&b, blocked(&b), at(9, 0)).await.unwrap(),
            Reservation::Conflict,
            "{name}"
        );
        // Released: an empty hold drops the conversation's holds.
        assert!(
            s.hold(people[0], &[], at(9, 30), at(9, 0), None)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert_eq!(
            s.holds_of_others(people[2], at(9, 0)).await.unwrap(),
            std::slice::from_ref(&four),
            "{name}"
        );
        assert!(matches!(
            s.reserve_booking(&b, blocked(&b), at(9, 0)).await.unwrap(),
            Reservation::Reserved(_)
        ));
        // A booking blocks a hold, unless it is the one being moved.
        assert!(
            s.hold(people[0], std::slice::from_ref(&one), at(9, 30), at(9, 0), None)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert_eq!(
            s.hold(
                people[2],
                std::slice::from_ref(&one),
                at(9, 30),
                at(9, 0),
                Some("c-1")
            )
            .await
            .unwrap(),
            std::slice::from_ref(&one),
            "{name}"
        );
        // Expired holds block nothing.
        clock.set(at(9, 31));
        assert_eq!(
            s.hold(people[0], std::slice::from_ref(&four), at(10, 0), at(9, 31), None)
                .await
                .unwrap(),
            std::slice::from_ref(&four),
            "{name}: 16:00's hold expired at 9:30"
        );
        clock.set(at(9, 0));
    }
}

/// Twenty conversations ask two instances at once to hold one opening:
/// exactly one is granted it.
#[tokio::test]
async fn twenty_holds_of_one_opening_from_two_instances_grant_it_once() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let clock = ManualClock::at(at(9, 0));
    let first = db.store(&clock).await;
    let second = db.store(&clock).await;
    let people = conversations(&Raw::Pg(first.pool().clone()), 20).await;
    let mut tasks = Vec::new();
    for (i, conversation) in people.iter().enumerate() {
        let store = if i % 2 == 0 { first.clone() } else { second.clone() };
        let b = booking("h", *conversation, at(13, 0));
        let wanted = textdesk::store::Hold {
            provider_id: "crew-1".into(),
            slot: b.slot,
            blocked: blocked(&b),
        };
        let conversation = *conversation;
        tasks.push(tokio::spawn(async move {
            store
                .hold(conversation, &[wanted], at(9, 30), at(9, 0), None)
                .await
                .unwrap()
                .len()
        }));
    }
    let mut granted = 0;
    for task in tasks {
        granted += task.await.unwrap();
    }
    assert_eq!(granted, 1, "one hold of twenty");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM slot_holds")
        .fetch_one(first.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1);
}
