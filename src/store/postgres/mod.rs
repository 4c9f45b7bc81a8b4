//! PostgreSQL: the backend for several instances on one database.
//!
//! The same ports as SQLite, written for a server that many processes
//! share: claims take rows with `FOR UPDATE SKIP LOCKED`, a crew's
//! bookings are serialized by `pg_advisory_xact_lock`, and leases are
//! judged by their expiry alone, never by "I am the only process".
//!
//! Migrations (`migrations/postgres/`) run at start. sqlx's migrator holds
//! a session-level `pg_advisory_lock` while it runs, so two instances
//! starting together apply them once: the second waits, then finds them
//! applied.
//!
//! Instants compared in hot queries (leases, due jobs, slots) are epoch
//! milliseconds as on SQLite; times a person reads are `TIMESTAMPTZ`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StoreError;
use crate::clock::{self, Clock};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A `FROM` item that makes its statement's transaction commit without
/// waiting for the WAL to reach the disk (`SET LOCAL synchronous_commit =
/// off` inside the statement itself, so no round trip of its own). Only for
/// writes whose loss in a crash of the *database server* costs time, never
/// a text or a second send: a lease taken or given back (it expires), and a
/// send recorded as sent (the row stays `sending`, and recovery finds the
/// message in the channel's list instead of sending it again). A stored
/// text, a turn's commit, a failed or unknown send wait for the disk as
/// before. A crash of textdesk loses nothing either way: the server has
/// the commit. A macro, so that statements include it with `concat!`.
macro_rules! async_commit {
    () => {
        "(SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"
    };
}

// Several instances: lease renewal, and the LISTEN task that wakes this
// process when another stored work.
mod hot;
mod leases;
pub mod listen;
#[doc(hidden)]
pub mod testdb;

/// The send lease without a channel timeout to go by: two requests at the
/// ceiling of `TWILIO_TIMEOUT_SECS` (300 s) and then some.
const DEFAULT_SEND_LEASE_MS: i64 = 11 * 60 * 1000;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Connections kept in hand for the statements every text runs,
    /// without sqlx's ping per statement (see `hot.rs`).
    hot: Arc<hot::HotConnections>,
    /// Wakes every instance's worker after a text is stored.
    fleet_wake: FleetWake,
    /// Every time the store writes and every lease it judges comes from
    /// here, as on SQLite.
    clock: Arc<dyn Clock>,
    /// How long a text being sent stays claimed by its sender (see
    /// [`PgStore::with_send_lease`]).
    send_lease_ms: i64,
}

/// The wake-up a stored text sends every instance (`NOTIFY textdesk_wake,
/// 'inbound'`, see `listen.rs`), sent after the text's commit by a task of
/// its own. Sent from inside the storing transaction (a trigger, before),
/// it made every webhook's commit hold the database-wide notify lock
/// through its fsync, one webhook after another. Here the NOTIFY commits
/// without waiting for the disk (a lost wake-up costs a poll, never a
/// text), and texts stored while one is being sent share the next: each
/// text's commit is followed by a NOTIFY that starts after it.
#[derive(Clone)]
struct FleetWake(Option<tokio::sync::mpsc::Sender<()>>);

impl FleetWake {
    fn spawn(pool: PgPool, hot: Arc<hot::HotConnections>) -> Self {
        // One waiting wake-up is all that is needed: a second would start
        // after the same commits.
        let (wake, mut woken) = tokio::sync::mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                if let Err(e) = notify_fleet(&pool, &hot).await {
                    tracing::warn!(error = %e, "could not wake the other instances; they find the text at their next poll");
                }
            }
        });
        Self(Some(wake))
    }

    fn none() -> Self {
        Self(None)
    }

    /// After a text's commit. Never waits.
    fn after_stored_text(&self) {
        if let Some(wake) = &self.0 {
            // Full: a wake-up not yet sent covers this text too.
            let _ = wake.try_send(());
        }
    }
}

async fn notify_fleet(pool: &PgPool, hot: &hot::HotConnections) -> Result<(), sqlx::Error> {
    const NOTIFY: &str = concat!("SELECT pg_notify($1, 'inbound') FROM ", async_commit!());
    let mut conn = hot.take(pool).await?;
    let done = sqlx::query(NOTIFY)
        .bind(listen::CHANNEL)
        .execute(&mut *conn)
        .await;
    conn.finished(done).map(|_| ())
}

impl PgStore {
    /// Sets how long a text being sent stays claimed by the instance
    /// sending it. A `sending` text whose send lease has passed was left by
    /// an instance that died mid-send, and another instance takes it over
    /// (after looking it up in the channel's list of sent messages). It must
    /// outlast the slowest send a live instance can be in: the lookup and
    /// the send, two channel requests at the channel's timeout, plus the
    /// store's writes; `serve` sets it from `TWILIO_TIMEOUT_SECS`. Taking
    /// over a live send would text a customer twice; waiting longer for a
    /// dead one only delays a text.
    pub fn with_send_lease(mut self, lease: Duration) -> Self {
        self.send_lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// When a send claimed now stops being its sender's.
    pub(crate) fn send_lease_until(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(self.send_lease_ms)
    }

    /// Connects to the database at `url` (`postgres://` or `postgresql://`)
    /// and applies the migrations; times come from the system clock.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_clock(url, clock::system()).await
    }

    /// As [`PgStore::connect`], reading the time from `clock`.
    pub async fn connect_with_clock(url: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Self::connect_with_pool(url, clock, 16).await
    }

    /// As [`PgStore::connect_with_clock`], opening at most
    /// `max_connections` connections.
    pub async fn connect_with_pool(
        url: &str,
        clock: Arc<dyn Clock>,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let (host, port, database) = (
            options.get_host().to_string(),
            options.get_port(),
            options.get_database().unwrap_or("(the user's)").to_string(),
        );
        first_connection(&options, &host, port, &database).await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            // A database that went away must not hold a webhook past
            // Twilio's patience: fail fast, answer 503, let Twilio retry.
            .acquire_timeout(Duration::from_secs(3))
            // No ping before handing out a pooled connection: it is a round
            // trip on every checkout, about seven per text. A connection the
            // server dropped fails its next statement instead, which every
            // caller already treats as the database being away (503, the
            // turn retried), and sqlx closes it rather than pooling it again.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| unreachable(&host, port, &database, e))?;
        MIGRATOR.run(&pool).await?;
        // At most half the pool idles here, held back from the
        // transactions and the console's reads.
        let hot = Arc::new(hot::HotConnections::new((max_connections / 2).max(1) as usize));
        Ok(Self {
            pool: pool.clone(),
            hot: hot.clone(),
            fleet_wake: FleetWake::spawn(pool.clone(), hot),
            clock,
            send_lease_ms: DEFAULT_SEND_LEASE_MS,
        })
    }

    /// The database at `url` as it is, without migrating it, for commands
    /// that only read (`check-config`, `config export`) and must never
    /// create a schema; `None` when the database does not exist or was
    /// never migrated by a `serve`.
    pub async fn open_existing(url: &str) -> Result<Option<Self>, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let (host, port, database) = (
            options.get_host().to_string(),
            options.get_port(),
            options.get_database().unwrap_or("(the user's)").to_string(),
        );
        let pool = match PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
        {
            Ok(pool) => pool,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => return Ok(None),
            Err(e) => return Err(unreachable(&host, port, &database, e)),
        };
        let migrated: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&pool)
            .await?;
        if !migrated {
            pool.close().await;
            return Ok(None);
        }
        Ok(Some(Self {
            pool,
            hot: Arc::new(hot::HotConnections::new(1)),
            // These commands store no texts.
            fleet_wake: FleetWake::none(),
            clock: clock::system(),
            send_lease_ms: DEFAULT_SEND_LEASE_MS,
        }))
    }

    /// The pool, for benchmarks and tests that set up data in bulk.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

/// Why the server at `host:port` could not be used at start, with what to
/// check. Built from the parsed options, so the URL's password is never in
/// it (nor in sqlx's error, which quotes no URL).
/// How long the first connection at start may take.
const FIRST_CONNECTION_WAIT: Duration = Duration::from_secs(3);

/// One connection made before the pool's, for its error: the pool retries a
/// refused connection until its acquire timeout and then says only "pool
/// timed out", where this says at once what went wrong (the connection was
/// refused, the database does not exist, the password is wrong).
async fn first_connection(
    options: &PgConnectOptions,
    host: &str,
    port: u16,
    database: &str,
) -> Result<(), StoreError> {
    use sqlx::{ConnectOptions, Connection};
    match tokio::time::timeout(FIRST_CONNECTION_WAIT, options.connect()).await {
        Ok(Ok(connection)) => {
            // Only a probe: the pool opens its own.
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(unreachable(host, port, database, e)),
        Err(_) => Err(StoreError::Unreachable(format!(
            "the Postgres server at {host}:{port} (database `{database}`) did not answer within {} s; \
             is it running and reachable from here, and is DATABASE_URL right?",
            FIRST_CONNECTION_WAIT.as_secs()
        ))),
    }
}

fn unreachable(host: &str, port: u16, database: &str, e: sqlx::Error) -> StoreError {
    let check = match &e {
        sqlx::Error::Database(refused) => match refused.code().as_deref() {
            // invalid_catalog_name
            Some("3D000") => "does the database exist? Create it, or fix its name in DATABASE_URL",
            // invalid_password, invalid_authorization_specification
            Some("28P01" | "28000") => "are the user and password in DATABASE_URL right?",
            _ => "is DATABASE_URL right?",
        },
        _ => "is the Postgres server running and accepting connections there, and is DATABASE_URL right?",
    };
    StoreError::Unreachable(format!(
        "cannot connect to the Postgres server at {host}:{port} (database `{database}`): {e}; {check}"
    ))
}

mod alerts;
mod approvals;
mod bookings;
mod console;
mod conversations;
mod fragments;
mod jobs;
mod maintenance;
mod media;
mod metrics;
mod outbox;
mod rows;
mod usage;
mod voice;
mod webchat;
