//! `LISTEN` for work stored by any instance.
//!
//! The channel [`CHANNEL`] is notified when an inbound text is stored
//! (payload `inbound`: by the store, right after the text's commit, see
//! `FleetWake` in `mod.rs`) and when a job becomes pending (payload `job`:
//! by triggers, `migrations/postgres/0005_notify.sql`, delivered at the
//! commit), to every listening instance. One task per process listens and
//! wakes the local turn worker or job runner. Polling stays the fallback:
//! a notification sent while the connection is down is lost, so after each
//! (re)connection both are woken once to look for themselves.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::backend::WakeTargets;

/// The channel the stored texts' and jobs' wake-ups are sent on.
pub const CHANNEL: &str = "textdesk_wake";

/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The running listener: its task, and how many times it has connected
/// and started listening (tests wait for the first).
pub struct Listening {
    pub task: JoinHandle<()>,
    pub connections: watch::Receiver<u64>,
}

/// Listens on `url` until `shutdown` turns true, reconnecting with backoff
/// (100 ms, doubling, at most 30 s) and logging each loss.
pub fn spawn(url: String, targets: WakeTargets, mut shutdown: watch::Receiver<bool>) -> Listening {
    let (connected, connections) = watch::channel(0u64);
    let task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let listener = tokio::select! {
                listener = listen(&url) => listener,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match listener {
                Ok(mut listener) => {
                    backoff = Duration::from_millis(100);
                    connected.send_modify(|n| *n += 1);
                    // Work stored while we were not listening.
                    targets.worker.notify_one();
                    targets.jobs.notify_one();
                    tracing::debug!(channel = CHANNEL, "listening for work stored by other instances");
                    loop {
                        let next = tokio::select! {
                            next = listener.try_recv() => next,
                            _ = shutdown.wait_for(|stop| *stop) => return,
                        };
                        match next {
                            Ok(Some(notification)) => match notification.payload() {
                                "job" => targets.jobs.notify_one(),
                                _ => targets.worker.notify_one(),
                            },
                            Ok(None) => {
                                tracing::warn!(
                                    "the LISTEN connection to the database dropped; polling carries on while it reconnects"
                                );
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "the LISTEN connection failed; polling carries on while it reconnects");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = backoff.as_millis() as u64,
                        "cannot LISTEN for other instances' work; polling carries on"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    });
    Listening { task, connections }
}

/// A new connection listening on [`CHANNEL`]: a fresh one each time, so a
/// reconnection is ours to log and pace.
async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;
    use tokio::sync::Notify;

    use super::*;
    use crate::channel::console::ConsoleChannel;
    use crate::clock::{Clock, ManualClock};
    use crate::domain::phone::E164;
    use crate::store::NewJob;
    use crate::store::postgres::testdb::TestDb;

    async fn notified(what: &Notify, name: &str) {
        tokio::time::timeout(Duration::from_secs(10), what.notified())
            .await
            .unwrap_or_else(|_| panic!("{name} was not woken within 10 s"));
    }

    /// Two stores on one database, as two instances: a text stored by one
    /// wakes the other's worker, a job its runner, through the database.
    #[tokio::test]
    async fn a_text_or_a_job_stored_by_one_instance_wakes_the_other() {
        let Some(db) = TestDb::create("fleet").await else {
            return;
        };
        let clock = ManualClock::at(Utc::now());
        let one = db.store(&clock).await;
        let _other = db.store(&clock).await;
        let targets = WakeTargets {
            worker: Arc::new(Notify::new()),
            jobs: Arc::new(Notify::new()),
        };
        let (stop, stopping) = watch::channel(false);
        let mut listening = spawn(db.url.clone(), targets.clone(), stopping);
        listening.connections.wait_for(|n| *n >= 1).await.unwrap();
        // A connection wakes both once (work stored while not listening);
        // take those wakes before asserting the ones that matter.
        notified(&targets.worker, "the worker (on connecting)").await;
        notified(&targets.jobs, "the runner (on connecting)").await;

        let from = E164::parse("+15550001111").unwrap();
        let to = E164::parse("+15550009999").unwrap();
        one.record_inbound(&ConsoleChannel::inbound("default", &from, &to, "hi".into()))
            .await
            .unwrap();
        notified(&targets.worker, "the other instance's worker").await;

        one.enqueue_jobs(&[NewJob {
            kind: "email",
            dedupe_key: "wake-test".into(),
            conversation_id: None,
            customer_id: None,
            recipient: "owner@example.com".into(),
            payload: serde_json::json!({}),
            run_at: clock.now(),
            max_attempts: 5,
        }])
        .await
        .unwrap();
        notified(&targets.jobs, "the other instance's job runner").await;

        // A dropped LISTEN connection is reconnected (and both woken).
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'")
            .bind(&db.name)
            .execute(&sqlx::PgPool::connect(&db.url).await.unwrap())
            .await
            .unwrap();
        listening.connections.wait_for(|n| *n >= 2).await.unwrap();
        one.record_inbound(&ConsoleChannel::inbound("default", &from, &to, "again".into()))
            .await
            .unwrap();
        notified(&targets.worker, "the worker after the reconnection").await;

        stop.send(true).unwrap();
        listening.task.await.unwrap();
        drop((one, _other));
        db.drop().await;
    }
}
