//! The embedded default backend: one SQLite file, WAL mode.
//!
//! Write transactions begin IMMEDIATE so that two writers queue on the busy
//! timeout instead of failing on a lock upgrade. A single process serves a
//! SQLite database, which is what lets `recover_interrupted_work` free
//! every lease at start.

mod alerts;
mod approvals;
mod bookings;
mod console;
mod conversations;
mod fragments;
mod jobs;
mod leases;
mod media;
mod outbox;
mod readings;
mod usage;
mod voice;
mod webchat;

pub use media::TURN_IMAGES_WITH_DATA;

use jobs::insert_job;
use media::history_images;
use outbox::{outbound_from_row, outbound_in};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::*;
use crate::clock::{self, Clock};
use crate::domain::availability::Interval;
use crate::domain::conversation::ConversationState;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::phone::E164;
use crate::domain::quote::Quote;

/// A stored message's direction; anything else is corruption, not a guess.
fn direction(raw: &str) -> Result<Direction, StoreError> {
    match raw {
        "inbound" => Ok(Direction::Inbound),
        "outbound" => Ok(Direction::Outbound),
        other => Err(StoreError::Corrupt(format!("message direction `{other}`"))),
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Two pools over one file: many readers, and exactly one writer. SQLite
/// admits one writer at a time and makes a waiting writer *sleep* in
/// growing steps; with a single writer connection, writes queue in the
/// pool instead (async, first come first served), which keeps webhook
/// latency flat under load. WAL lets the readers run meanwhile.
#[derive(Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    /// Every time the store writes (created, updated, sent, fetched) and
    /// every lease it judges comes from here, so a test that sets the hour
    /// sees it in the rows too.
    clock: Arc<dyn Clock>,
    /// Inbound texts on their way to the next group commit.
    inbound: tokio::sync::mpsc::Sender<InboundWaiter>,
    /// The last claim found a conversation: under load the next one very
    /// likely will too, so it goes straight to the writer without asking a
    /// reader first.
    last_claim_found_work: Arc<std::sync::atomic::AtomicBool>,
}

/// An inbound text to store, and who waits to hear it is durable.
type InboundWaiter = (
    InboundMessage,
    tokio::sync::oneshot::Sender<Result<Recorded, StoreError>>,
);

/// Most texts one group commit stores: bounds how long the writer is held.
const MAX_INBOUND_GROUP: usize = 64;

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and applies the
    /// migrations; times come from the system clock.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_clock(url, clock::system()).await
    }

    /// As [`SqliteStore::connect`], reading the time from `clock`.
    pub async fn connect_with_clock(url: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        // NORMAL in WAL mode survives any crash of this process; only a
        // power loss can drop the last commits. That is fine for the
        // worker's progress (a lost commit means a turn is redone, which is
        // idempotent) but not for a text the channel was told we stored, so
        // `record_inbound` commits with FULL (a group of texts at a time, see
        // `commit_inbound_in_groups`). Its fsync of the WAL makes
        // every earlier commit durable too.
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // Only another process (e.g. `textdesk chat`) can make us wait;
            // stay well inside the webhook's 10 s budget.
            .busy_timeout(Duration::from_secs(3))
            .foreign_keys(true);
        // No ping before each acquire: a SQLite connection is a file handle
        // on a thread of its own, not a socket that can go stale, and the
        // ping is a round trip to that thread (two thread switches) on
        // every query of every turn.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await?;
        let (inbound, queue) = tokio::sync::mpsc::channel(4 * MAX_INBOUND_GROUP);
        // Ends when the last clone of the store (the last sender) is dropped.
        tokio::spawn(conversations::commit_inbound_in_groups(
            writer.clone(),
            clock.clone(),
            queue,
        ));
        Ok(Self {
            reader,
            writer,
            clock,
            inbound,
            last_claim_found_work: Arc::default(),
        })
    }
}

impl SqliteStore {
    /// The writer pool, for benchmarks and tests that set up data in bulk.
    pub fn writer_pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// The read-only pool, for the console's queries (`console.rs`).
    pub(crate) fn reader_pool(&self) -> &SqlitePool {
        &self.reader
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// A pending booking last written before this was abandoned.
    fn stale_pending_before_ms(&self) -> i64 {
        self.now_ms() - STALE_PENDING_MINUTES * 60_000
    }
}

/// The writer's connection for a statement list that begins and commits
/// its own transaction ("BEGIN IMMEDIATE; ...; COMMIT;"): one round trip
/// to the connection's thread instead of three. sqlx does not know about
/// that transaction, so nothing rolls it back if the list stops half way
/// (a failed statement, or the caller dropped); then the connection is
/// closed instead of returned to the pool, and closing rolls it back.
pub(super) struct WholeTransaction {
    conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    committed: bool,
}

impl WholeTransaction {
    pub(super) async fn acquire(pool: &SqlitePool) -> Result<Self, StoreError> {
        Ok(Self {
            conn: pool.acquire().await?,
            committed: false,
        })
    }

    pub(super) fn connection(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.conn
    }

    /// The list ran to its COMMIT: the connection may go back to the pool.
    pub(super) fn committed(&mut self) {
        self.committed = true;
    }
}

impl Drop for WholeTransaction {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.close_on_drop();
        }
    }
}

fn parse_phone(raw: &str) -> Result<E164, StoreError> {
    E164::parse_address(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn interval(start_ms: i64, end_ms: i64) -> Interval {
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    Interval {
        start: at(start_ms),
        end: at(end_ms),
    }
}

#[async_trait]
impl Maintenance for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn businesses_with_conversations(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT business_id, COUNT(*) FROM conversations GROUP BY business_id ORDER BY 1")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.into_iter().map(|(id, n)| (id, n.max(0) as u64)).collect())
    }

    /// Frees every lease and requeues texts that were mid-send when the
    /// previous process died. A requeued text may reach the customer twice
    /// if the crash fell between the channel accepting it and us recording that;
    /// that window is one HTTP response long, and the alternative (never
    /// sending) leaves a customer unanswered.
    async fn recover_interrupted_work(&self) -> Result<Recovered, StoreError> {
        let leases_freed = sqlx::query(
            "UPDATE conversations SET lease_owner = NULL, lease_until_ms = NULL WHERE lease_owner IS NOT NULL",
        )
        .execute(&self.writer)
        .await?
        .rows_affected();
        let sends_requeued = sqlx::query(
            "UPDATE messages SET status = 'queued' WHERE direction = 'outbound' AND status = 'sending'",
        )
        .execute(&self.writer)
        .await?
        .rows_affected();
        let jobs_requeued = sqlx::query(
            "UPDATE jobs SET status = 'pending', locked_until_ms = NULL WHERE status = 'running'",
        )
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(Recovered {
            leases_freed,
            sends_requeued,
            jobs_requeued,
        })
    }

    async fn adopt_legacy_rows(
        &self,
        business_id: &str,
        numbers: Option<&[String]>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let numbers_json = numbers.map(|n| serde_json::to_string(n).unwrap_or_else(|_| "[]".into()));
        // Conversations first (by the number they were written to, unless
        // this business answers every number), then what hangs off them.
        let adopted = sqlx::query(
            "UPDATE conversations SET business_id = ?1
             WHERE business_id = 'default'
               AND (?2 IS NULL OR business_number IN (SELECT value FROM json_each(?2)))",
        )
        .bind(business_id)
        .bind(&numbers_json)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for statement in [
            "UPDATE quotes SET business_id = ?1 WHERE business_id = 'default'
               AND conversation_id IN (SELECT id FROM conversations WHERE business_id = ?1)",
            "UPDATE bookings SET business_id = ?1 WHERE business_id = 'default'
               AND conversation_id IN (SELECT id FROM conversations WHERE business_id = ?1)",
            "UPDATE slot_holds SET business_id = ?1 WHERE business_id = 'default'
               AND conversation_id IN (SELECT id FROM conversations WHERE business_id = ?1)",
            "UPDATE alerts SET business_id = ?1 WHERE business_id = 'default'
               AND conversation_id IN (SELECT id FROM conversations WHERE business_id = ?1)",
        ] {
            sqlx::query(statement).bind(business_id).execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE customers SET business_id = ?1 WHERE business_id = 'default'
               AND id IN (SELECT customer_id FROM conversations WHERE business_id = ?1)",
        )
        .bind(business_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET business_id = ?1 WHERE business_id = 'default'
               AND (conversation_id IN (SELECT id FROM conversations WHERE business_id = ?1)
                    OR customer_id IN (SELECT id FROM customers WHERE business_id = ?1)
                    OR (?2 IS NULL AND conversation_id IS NULL AND customer_id IS NULL))",
        )
        .bind(business_id)
        .bind(&numbers_json)
        .execute(&mut *tx)
        .await?;
        if numbers.is_none() {
            // One business answers every number: whatever is left is its.
            for statement in [
                "UPDATE alerts SET business_id = ?1 WHERE business_id = 'default'",
                "UPDATE customers SET business_id = ?1 WHERE business_id = 'default'",
            ] {
                sqlx::query(statement).bind(business_id).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(adopted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list that fails after its BEGIN leaves nothing written and the
    /// one writer connection usable: dropped uncommitted, it is closed
    /// (rolling back), not handed to the next writer mid-transaction.
    #[tokio::test]
    async fn a_whole_transaction_that_stops_half_way_writes_nothing_and_frees_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = SqliteStore::connect(&url).await.unwrap();
        {
            let mut conn = WholeTransaction::acquire(store.writer_pool()).await.unwrap();
            let failed = sqlx::query(concat!(
                "BEGIN IMMEDIATE;",
                "INSERT INTO owner_credentials (id, password_hash, updated_at) VALUES (1, 'h', 'now');",
                // Violates the table's CHECK (id = 1).
                "INSERT INTO owner_credentials (id, password_hash, updated_at) VALUES (2, 'h', 'now');",
                "COMMIT;"
            ))
            .execute(conn.connection())
            .await;
            assert!(failed.is_err());
        }
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM owner_credentials")
            .fetch_one(store.writer_pool())
            .await
            .unwrap();
        assert_eq!(stored, 0, "the first insert was rolled back");
        // The next writer starts its own transaction: none is left open.
        let mut conn = WholeTransaction::acquire(store.writer_pool()).await.unwrap();
        sqlx::query(concat!(
            "BEGIN IMMEDIATE;",
            "INSERT INTO owner_credentials (id, password_hash, updated_at) VALUES (1, 'h', 'now');",
            "COMMIT;"
        ))
        .execute(conn.connection())
        .await
        .unwrap();
        conn.committed();
        drop(conn);
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM owner_credentials")
            .fetch_one(store.writer_pool())
            .await
            .unwrap();
        assert_eq!(stored, 1);
    }
}
