//! `LISTEN` for work stored by any instance.
//!
//! Triggers (`migrations/postgres/0005_notify.sql`) `NOTIFY` the channel
//! [`CHANNEL`] when an inbound text is stored (payload `inbound`) and when
//! a job becomes pending (payload `job`); the notification is delivered at
//! commit, to every listening instance. One task per process listens and
//! wakes the local turn worker or job runner. Polling stays the fallback:
//! a notification sent while the connection is down is lost, so after each
//! (re)connection both are woken once to look for themselves.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::backend::WakeTargets;

/// The channel the triggers notify.
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
