//! Keeping a claim alive while its work runs.
//!
//! A turn's conversation lease is renewed by a heartbeat every third of
//! the lease. A renewal that finds the lease gone (another instance took
//! the conversation over after this one stalled past the lease) marks the
//! turn's [`Held`] lost; the engine checks it right before committing, so
//! a turn that lost its conversation does not commit. (`finish_turn`'s own
//! check, that the texts are still unanswered, covers the moment between.)

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{ConversationId, Leases};

tokio::task_local! {
    static HELD: watch::Receiver<bool>;
}

/// Whether the lease under which the current task runs was lost. Work run
/// outside a leased scope (the console, `chat`, tests) never loses one.
pub fn lost() -> bool {
    HELD.try_with(|lost| *lost.borrow()).unwrap_or(false)
}

/// Runs `work` under the lease whose state `lost` reports.
pub async fn scoped<F: std::future::Future>(lost: watch::Receiver<bool>, work: F) -> F::Output {
    HELD.scope(lost, work).await
}

/// How often a lease of `lease` is renewed: every third of it, so two
/// renewals may fail (a slow database) before it runs out.
pub fn renewal_interval(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(10))
}

/// Renews the conversation's lease held under `token` until aborted;
/// reports through the returned receiver (true) when the lease is lost.
pub fn heartbeat(
    store: Arc<dyn Leases>,
    id: ConversationId,
    token: String,
    lease: Duration,
) -> (Heartbeat, watch::Receiver<bool>) {
    let (lost_tx, lost) = watch::channel(false);
    let task = tokio::spawn(async move {
        let every = renewal_interval(lease);
        loop {
            tokio::time::sleep(every).await;
            match store.renew_lease(id, &token, lease).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        conversation = id.0,
                        "lost the conversation's lease to another worker; this turn will not commit"
                    );
                    let _ = lost_tx.send(true);
                    return;
                }
                // The lease still has two thirds to run: try again at the
                // next beat.
                Err(e) => {
                    tracing::warn!(conversation = id.0, error = %e, "could not renew a conversation's lease")
                }
            }
        }
    });
    (Heartbeat(task), lost)
}

/// A running heartbeat; it stops when dropped, so a turn stopped at
/// shutdown does not leave it renewing.
pub struct Heartbeat(JoinHandle<()>);

impl From<JoinHandle<()>> for Heartbeat {
    fn from(task: JoinHandle<()>) -> Self {
        Self(task)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}
