//! Keeping a claim alive while its work runs.
//!
//! A turn's conversation lease is renewed by a heartbeat every third of
//! the lease. A renewal that finds the lease gone (another instance took
//! the conversation over after this one stalled past the lease) marks the
//! turn's [`Held`] lost; the engine checks it right before committing, so
//! a turn that lost its conversation does not commit. (`finish_turn`'s own
//! check, that the texts are still unanswered, covers the moment between.)
//!
//! The turn gives the lease up itself, in the commit that records its
//! reply's send ([`TurnLease`]); a turn without a reply leaves that to its
//! worker.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{ConversationId, Leases};

/// The conversation lease a turn runs under. The turn gives it up itself
/// when it records its reply's send (the turn's last step, so one commit
/// does both); the worker then reads what that release said instead of
/// releasing again.
#[derive(Debug)]
pub struct TurnLease {
    pub conversation: ConversationId,
    pub token: String,
    released: OnceLock<bool>,
}

impl TurnLease {
    pub fn new(conversation: ConversationId, token: &str) -> Arc<Self> {
        Arc::new(Self {
            conversation,
            token: token.to_string(),
            released: OnceLock::new(),
        })
    }

    /// Whether texts were waiting when the turn gave the lease up; `None`
    /// while it holds it.
    pub fn released(&self) -> Option<bool> {
        self.released.get().copied()
    }

    pub(crate) fn mark_released(&self, waiting: bool) {
        let _ = self.released.set(waiting);
    }
}

#[derive(Clone)]
struct Held {
    lost: watch::Receiver<bool>,
    lease: Arc<TurnLease>,
}

tokio::task_local! {
    static HELD: Held;
}

/// Whether the lease under which the current task runs was lost. Work run
/// outside a leased scope (the console, `chat`, tests) never loses one.
pub fn lost() -> bool {
    HELD.try_with(|held| *held.lost.borrow()).unwrap_or(false)
}

/// The lease the current task's turn runs under on `conversation`, if it
/// runs under one (not in the console, `chat`, or an apology after a panic).
pub fn current(conversation: ConversationId) -> Option<Arc<TurnLease>> {
    HELD.try_with(|held| held.lease.clone())
        .ok()
        .filter(|lease| lease.conversation == conversation)
}

/// Runs `work` under `lease`, whose loss `lost` reports.
pub async fn scoped<F: std::future::Future>(
    lease: Arc<TurnLease>,
    lost: watch::Receiver<bool>,
    work: F,
) -> F::Output {
    HELD.scope(Held { lost, lease }, work).await
}

/// How often a lease of `lease` is renewed: every third of it, so two
/// renewals may fail (a slow database) before it runs out.
pub fn renewal_interval(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(10))
}

/// Renews `lease` until aborted or given up; reports through the returned
/// receiver (true) when the lease is lost.
pub fn heartbeat(
    store: Arc<dyn Leases>,
    lease: Arc<TurnLease>,
    duration: Duration,
) -> (Heartbeat, watch::Receiver<bool>) {
    let (lost_tx, lost) = watch::channel(false);
    let task = tokio::spawn(async move {
        let every = renewal_interval(duration);
        loop {
            tokio::time::sleep(every).await;
            // Given up with the reply: renewing now would find it gone and
            // cry "lost".
            if lease.released().is_some() {
                return;
            }
            match store
                .renew_lease(lease.conversation, &lease.token, duration)
                .await
            {
                Ok(true) => {}
                Ok(false) if lease.released().is_some() => return,
                Ok(false) => {
                    tracing::warn!(
                        conversation = lease.conversation.0,
                        "lost the conversation's lease to another worker; this turn will not commit"
                    );
                    let _ = lost_tx.send(true);
                    return;
                }
                // The lease still has two thirds to run: try again at the
                // next beat.
                Err(e) => {
                    tracing::warn!(conversation = lease.conversation.0, error = %e, "could not renew a conversation's lease")
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
