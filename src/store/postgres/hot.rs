//! Pooled connections kept in hand for the statements every text runs.
//!
//! sqlx's pool pings a connection each time one is handed back (a Sync
//! message and its ReadyForQuery, to catch a connection a cancelled query
//! left mid-protocol): a round trip, and a wake-up of the server's backend,
//! for every statement run on `&pool`. A text runs five such statements.
//! Measured at 500 texts/s, the pings cost 13-15% of the CPU per text on
//! both sides (BENCHMARKS.md, "Connections kept in hand").
//!
//! So the statements of a text's path take a connection from here: a few
//! pooled connections kept checked out, handed from one statement to the
//! next without the ping. What the ping was for is kept by other means:
//! - a statement that did not run to its end (its future dropped, an I/O
//!   or protocol error) gives the connection back to the pool, whose ping
//!   then judges it, never to this list;
//! - an error the server answered (a constraint, a bad value) leaves the
//!   connection ready for the next statement, as sqlx's own reuse assumes;
//! - a connection idle here for longer than [`MAX_IDLE`], or kept longer
//!   than [`MAX_KEPT`], goes back to the pool, so the pool's own ageing and
//!   health checks still reach it.
//!
//! At most `capacity` idle connections are kept here (half the pool by
//! default), so idle ones held back from the pool never exceed half of it.
//! Statements in flight take what they need, here or from the pool, as
//! they did when they ran on `&pool`.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

/// A kept connection not used for this long goes back to the pool.
pub const MAX_IDLE: Duration = Duration::from_secs(30);
/// A connection is kept at most this long, however busy.
pub const MAX_KEPT: Duration = Duration::from_secs(300);

struct Kept {
    conn: PoolConnection<Postgres>,
    since: Instant,
    used: Instant,
}

pub struct HotConnections {
    kept: Mutex<Vec<Kept>>,
    capacity: usize,
    max_idle: Duration,
    max_kept: Duration,
}

impl HotConnections {
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, MAX_IDLE, MAX_KEPT)
    }

    fn with_limits(capacity: usize, max_idle: Duration, max_kept: Duration) -> Self {
        Self {
            kept: Mutex::new(Vec::new()),
            capacity,
            max_idle,
            max_kept,
        }
    }

    /// A connection for one statement: a kept one if one is fresh enough,
    /// else one from `pool`.
    pub async fn take<'h>(&'h self, pool: &PgPool) -> Result<Hot<'h>, sqlx::Error> {
        let now = Instant::now();
        let (fresh, stale) = {
            let mut kept = lock(&self.kept);
            let mut stale = Vec::new();
            let mut fresh = None;
            while let Some(candidate) = kept.pop() {
                if now.duration_since(candidate.used) > self.max_idle
                    || now.duration_since(candidate.since) > self.max_kept
                {
                    stale.push(candidate.conn);
                } else {
                    fresh = Some(candidate);
                    break;
                }
            }
            (fresh, stale)
        };
        // Dropped outside the lock: each goes back to the pool (and its ping).
        drop(stale);
        let was_kept = fresh.is_some();
        let kept = match fresh {
            Some(kept) => kept,
            None => Kept {
                conn: pool.acquire().await?,
                since: now,
                used: now,
            },
        };
        Ok(Hot {
            home: self,
            kept: Some(kept),
            finished: false,
            was_kept,
        })
    }

    /// Hands every kept connection back to the pool, whose ping judges
    /// each: one connection lost means the server or the way to it went
    /// away, and the others kept idle meanwhile are as likely dead. (Else
    /// each would fail one statement after the database came back.)
    fn give_all_back(&self) {
        let all = std::mem::take(&mut *lock(&self.kept));
        drop(all);
    }

    /// How many connections are kept now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        lock(&self.kept).len()
    }

    fn put_back(&self, mut kept: Kept) {
        kept.used = Instant::now();
        let mut list = lock(&self.kept);
        if list.len() < self.capacity {
            list.push(kept);
        }
        // Else dropped on return: back to the pool.
    }
}

/// A connection taken for one statement. Call [`Hot::finished`] with the
/// statement's result; a connection whose statement did not finish, or
/// failed without the server's answer, goes back to the pool instead of
/// being kept.
pub struct Hot<'h> {
    home: &'h HotConnections,
    kept: Option<Kept>,
    finished: bool,
    was_kept: bool,
}

impl Hot<'_> {
    /// Judges the connection by its statement's result and passes the
    /// result on.
    pub fn finished<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        self.finished = match &result {
            Ok(_) | Err(sqlx::Error::RowNotFound) => true,
            Err(e) if connection_lost(e) => {
                self.home.give_all_back();
                false
            }
            Err(sqlx::Error::Database(_)) => true,
            Err(_) => false,
        };
        result
    }

    /// Whether this connection was kept from an earlier statement, so may
    /// have died while it waited (not one the pool just handed out).
    pub fn was_kept(&self) -> bool {
        self.was_kept
    }
}

/// An error that says the connection itself failed (the server or the
/// network went away), not the statement.
pub fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        // The server ending the session answers with an error of its own
        // before it closes the socket: connection exceptions (class 08) and
        // operator intervention (57P01 a restart or an administrator, 57P02
        // a crash elsewhere, 57P03 not accepting connections yet).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

impl Deref for Hot<'_> {
    type Target = sqlx::PgConnection;

    fn deref(&self) -> &Self::Target {
        // Present from `take` until drop.
        self.kept.as_ref().map(|k| &*k.conn).expect("a taken connection")
    }
}

impl DerefMut for Hot<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.kept
            .as_mut()
            .map(|k| &mut *k.conn)
            .expect("a taken connection")
    }
}

impl Drop for Hot<'_> {
    fn drop(&mut self) {
        if let Some(kept) = self.kept.take()
            && self.finished
        {
            self.home.put_back(kept);
        }
        // Unfinished: dropping the PoolConnection returns it to the pool,
        // whose ping judges it.
    }
}

/// The list is only pushed to and popped from; a panic while it was held
/// cannot leave it inconsistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::testdb::TestDb;

    async fn pool(db: &TestDb) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&db.url)
            .await
            .unwrap()
    }

    /// The backend a connection talks to: the same pid is the same
    /// connection.
    async fn backend(hot: &HotConnections, pool: &PgPool) -> i32 {
        let mut conn = hot.take(pool).await.unwrap();
        let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await;
        conn.finished(pid).unwrap()
    }

    /// Finishes each taken connection (so it is kept), then has the server
    /// end it while it waits, as a restart or a proxy dropping its
    /// connections would; their backends' pids.
    async fn keep_and_end(taken: Vec<Hot<'_>>, pool: &PgPool) -> Vec<i32> {
        let mut pids = Vec::new();
        for mut conn in taken {
            let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *conn)
                .await;
            pids.push(conn.finished(pid).unwrap());
        }
        for pid in &pids {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(pool)
                .await
                .unwrap();
        }
        pids
    }

    #[tokio::test]
    async fn a_finished_statement_keeps_its_connection_for_the_next() {
        let Some(db) = TestDb::create("hot").await else {
            return;
        };
        let pool = pool(&db).await;
        let hot = HotConnections::new(2);
        let first = backend(&hot, &pool).await;
        assert_eq!(hot.kept(), 1);
        assert_eq!(
            backend(&hot, &pool).await,
            first,
            "the kept connection, not the pool's"
        );

        // An error the server answered leaves the connection ready.
        let mut conn = hot.take(&pool).await.unwrap();
        let failed = sqlx::query_scalar::<_, i32>("SELECT 1 / 0")
            .fetch_one(&mut *conn)
            .await;
        assert!(matches!(conn.finished(failed), Err(sqlx::Error::Database(_))));
        assert_eq!(hot.kept(), 1);
        assert_eq!(backend(&hot, &pool).await, first);

        // Two at once, with room for one: the second goes back to the pool.
        let (mut a, mut b) = (hot.take(&pool).await.unwrap(), hot.take(&pool).await.unwrap());
        let one = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut *a).await;
        let two = sqlx::query_scalar::<_, i32>("SELECT 2").fetch_one(&mut *b).await;
        assert_eq!((a.finished(one).unwrap(), b.finished(two).unwrap()), (1, 2));
        assert_eq!(hot.kept(), 2);
        let hot_of_one = HotConnections::new(1);
        let (mut a, mut b) = (
            hot_of_one.take(&pool).await.unwrap(),
            hot_of_one.take(&pool).await.unwrap(),
        );
        let one = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut *a).await;
        let two = sqlx::query_scalar::<_, i32>("SELECT 2").fetch_one(&mut *b).await;
        a.finished(one).unwrap();
        b.finished(two).unwrap();
        assert_eq!(hot_of_one.kept(), 1);
        drop((hot, hot_of_one));
        pool.close().await;
        db.drop().await;
    }

    #[tokio::test]
    async fn a_statement_cut_off_gives_its_connection_back_to_the_pool() {
        let Some(db) = TestDb::create("hot").await else {
            return;
        };
        let pool = pool(&db).await;
        let hot = HotConnections::new(2);
        backend(&hot, &pool).await;
        let mut conn = hot.take(&pool).await.unwrap();
        let cut = tokio::time::timeout(
            Duration::from_millis(100),
            sqlx::query("SELECT pg_sleep(1)").execute(&mut *conn),
        )
        .await;
        assert!(cut.is_err(), "the statement was cut off");
        drop(conn);
        assert_eq!(hot.kept(), 0, "a connection mid-statement is never kept");
        // The next statement gets a connection the pool judged, and works.
        let next = backend(&hot, &pool).await;
        assert!(next > 0);
        // The pool's close waits for every connection, the kept ones too.
        drop(hot);
        pool.close().await;
        db.drop().await;
    }

    #[tokio::test]
    async fn a_lost_connection_gives_every_kept_one_back_to_the_pool() {
        let Some(db) = TestDb::create("hot").await else {
            return;
        };
        let pool = pool(&db).await;
        let hot = HotConnections::new(3);
        // Three kept, as after a burst.
        let (a, b, c) = (
            hot.take(&pool).await.unwrap(),
            hot.take(&pool).await.unwrap(),
            hot.take(&pool).await.unwrap(),
        );
        assert!(!a.was_kept(), "the first come from the pool");
        let pids = keep_and_end(vec![a, b, c], &pool).await;
        assert_eq!(hot.kept(), 3);
        // The first statement after it meets a dead kept connection...
        let mut conn = hot.take(&pool).await.unwrap();
        assert!(conn.was_kept());
        let failed = sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut *conn)
            .await;
        let failed = conn.finished(failed).unwrap_err();
        assert!(connection_lost(&failed), "{failed:?}");
        // ...and none of the others is handed out again: the next
        // statement runs on a live connection.
        assert_eq!(hot.kept(), 0);
        let next = backend(&hot, &pool).await;
        assert!(!pids.contains(&next), "{next} was terminated");
        drop(hot);
        pool.close().await;
        db.drop().await;
    }

    #[tokio::test]
    async fn a_text_whose_kept_connection_died_is_stored_on_a_fresh_one() {
        use crate::channel::console::ConsoleChannel;
        use crate::domain::phone::E164;
        use crate::store::{ConversationStore, Recorded};

        let Some(db) = TestDb::create("hot").await else {
            return;
        };
        let store = crate::store::postgres::PgStore::connect(&db.url).await.unwrap();
        let (from, to) = (
            E164::parse("+15035550199").unwrap(),
            E164::parse("+15035550142").unwrap(),
        );
        let text = |body: &str| ConsoleChannel::inbound("default", &from, &to, body.into());
        let first = store.record_inbound(&text("hello")).await.unwrap();
        assert!(matches!(first, Recorded::New(..)), "{first:?}");
        // The connection that stored it is kept (and the one its wake-up
        // used, once that has run); the server ends every kept one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut kept = Vec::new();
        for _ in 0..store.hot.kept() {
            kept.push(store.hot.take(&store.pool).await.unwrap());
        }
        assert!(!kept.is_empty());
        keep_and_end(kept, &store.pool).await;
        // The next text meets the dead connection and is stored all the
        // same, once.
        let second = text("are you there?");
        let stored = store.record_inbound(&second).await.unwrap();
        assert!(matches!(stored, Recorded::New(..)), "{stored:?}");
        let again = store.record_inbound(&second).await.unwrap();
        assert!(matches!(again, Recorded::Duplicate(..)), "{again:?}");
        // The pool's close waits for the kept connections: the store (and
        // its wake-up task, which ends with it) must let go of them first.
        let pool = store.pool.clone();
        drop(store);
        tokio::time::timeout(Duration::from_secs(10), pool.close())
            .await
            .expect("every connection came back");
        db.drop().await;
    }

    /// Only that a stale connection is not handed out again from here and
    /// the statement still runs: the pool may well hand the same
    /// connection back after its ping, so no test here can tell which one
    /// ran it.
    #[tokio::test]
    async fn a_connection_idle_too_long_goes_back_to_the_pool() {
        let Some(db) = TestDb::create("hot").await else {
            return;
        };
        let pool = pool(&db).await;
        let hot = HotConnections::with_limits(2, Duration::ZERO, MAX_KEPT);
        backend(&hot, &pool).await;
        assert_eq!(hot.kept(), 1);
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Taken, found stale, handed to the pool; a fresh one is used.
        let mut conn = hot.take(&pool).await.unwrap();
        assert_eq!(hot.kept(), 0);
        let one = sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut *conn)
            .await;
        assert_eq!(conn.finished(one).unwrap(), 1);
        drop(hot);
        pool.close().await;
        db.drop().await;
    }
}
