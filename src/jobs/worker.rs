//! Picks which conversation runs next.
//!
//! A conversation is claimed with a lease in the database, so two tasks (or,
//! with Postgres, two processes) never run turns of one conversation at once,
//! and its texts are answered in order. New texts wake the worker through a
//! `Notify` (on Postgres, also woken by other instances through
//! `LISTEN`); a slow poll is the safety net. The lease is short and
//! renewed by a heartbeat while the turn runs (`jobs::lease`), so a
//! conversation held by an instance that died is taken over quickly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use super::turns::{Engine, TurnResult};
use super::{lease, plan};
use crate::clock::Clock;
use crate::config::settings::WorkerSettings;
use crate::store::{
    AlertKind, ClaimedConversation, ConversationId, MessageKind, NewAlert, OutboundDraft, Store, StoreError,
    TurnCommit,
};
use crate::templates;

pub struct TurnWorker {
    /// Each business's engine, looked up at the start of each turn.
    pub desks: Arc<crate::app::Desks>,
    pub store: Arc<dyn Store>,
    pub wake: Arc<Notify>,
    pub settings: WorkerSettings,
    pub worker_id: String,
    pub claims: AtomicU64,
    /// Judges when a throttled conversation may run again.
    pub clock: Arc<dyn Clock>,
}

impl TurnWorker {
    /// Runs until `shutdown` turns true, then stops claiming and waits for
    /// turns in flight, at most `settings.shutdown_grace`; turns still
    /// running then are stopped and their leases released.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.settings.concurrency));
        let mut turns = JoinSet::new();
        // The leases this worker holds, by conversation: what a stop past
        // its grace gives back.
        let held: Arc<Mutex<HashMap<ConversationId, String>>> = Arc::default();
        let mut poll = tokio::time::interval(this.settings.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Some(joined) = turns.try_join_next() {
                log_panic(joined);
            }
            while let Ok(permit) = permits.clone().try_acquire_owned() {
                if *shutdown.borrow() {
                    break;
                }
                // A token per claim, so a late `release` from one turn can
                // never free the lease of another.
                let token = format!(
                    "{}:{}",
                    this.worker_id,
                    this.claims.fetch_add(1, Ordering::Relaxed)
                );
                match this.store.claim_next_pending(&token, this.settings.lease).await {
                    Ok(Some(claimed)) => {
                        let this = this.clone();
                        let held = held.clone();
                        let more = claimed.more;
                        lock(&held).insert(claimed.id, token.clone());
                        turns.spawn(async move {
                            let id = claimed.id;
                            this.run_claimed(claimed, &token).await;
                            lock(&held).remove(&id);
                            drop(permit);
                        });
                        // Nothing else was waiting: a text stored from now
                        // on wakes this loop (the webhook's notify, or
                        // another instance's NOTIFY), so asking again now
                        // would only find nothing.
                        if !more {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "could not claim a conversation");
                        break;
                    }
                }
            }
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = this.wake.notified() => {}
                // The first tick is immediate: texts left queued by a crash
                // go out at start.
                _ = poll.tick() => {
                    if let Some(engine) = this.desks.any()
                        && let Err(e) = engine.deliver_undelivered().await
                    {
                        tracing::error!(error = %e, "could not deliver queued texts");
                    }
                }
                Some(joined) = turns.join_next(), if !turns.is_empty() => log_panic(joined),
                _ = shutdown.changed() => break,
            }
        }
        tracing::info!(
            in_flight = turns.len(),
            grace_secs = this.settings.shutdown_grace.as_secs(),
            "worker stopping; finishing turns in flight"
        );
        let finished = tokio::time::timeout(this.settings.shutdown_grace, async {
            while let Some(joined) = turns.join_next().await {
                log_panic(joined);
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                in_flight = turns.len(),
                "turns still running after the shutdown grace are stopped; their texts are answered by the next worker"
            );
            turns.shutdown().await;
        }
        // A stopped turn's lease, and one left by a turn that panicked
        // outside its own task: free now, so another instance answers at
        // once instead of when the lease runs out.
        let left: Vec<(ConversationId, String)> = lock(&held).drain().collect();
        for (id, token) in left {
            if let Err(e) = this.store.release(id, &token).await {
                tracing::error!(conversation = id.0, error = %e, "could not release a lease at shutdown; it will expire");
            }
        }
    }

    async fn run_claimed(&self, claimed: ClaimedConversation, token: &str) {
        let id = claimed.id;
        // The turn runs in a task of its own so that a panic in it is caught
        // here; a JoinSet aborts it if this worker is dropped mid-turn.
        let mut turn = JoinSet::new();
        // The business's engine on its current configuration: the turn
        // keeps it to the end.
        let engine = match self
            .desks
            .engine(&claimed.business_id)
            .ok_or(StoreError::NotFound("business of the conversation"))
        {
            Ok(engine) => engine,
            Err(e) => {
                tracing::error!(conversation = id.0, error = %e, "no business answers this conversation; will retry");
                let backoff = std::time::Duration::from_secs(30).min(self.settings.lease);
                let _ = self.store.claim(id, token, backoff).await;
                return;
            }
        };
        let turn_engine = engine.clone();
        let started = std::time::Instant::now();
        // Renewed every third of the lease while the turn runs; if another
        // worker took the conversation over, the turn does not commit.
        let held = lease::TurnLease::new(id, token);
        let (heartbeat, lost) = lease::heartbeat(self.store.clone(), held.clone(), self.settings.lease);
        turn.spawn(lease::scoped(held.clone(), lost, async move {
            turn_engine.run_turn(id).await
        }));
        let joined = turn.join_next().await;
        drop(heartbeat);
        crate::meters::turn(started.elapsed());
        let outcome = match joined {
            Some(Ok(result)) => result,
            Some(Err(e)) if e.is_panic() => {
                let cause = panic_message(e.into_panic());
                tracing::error!(conversation = id.0, %cause, "a turn panicked; the customer gets the apology");
                self.answer_after_panic(&engine, id, &cause).await
            }
            // Cancelled: only at shutdown, which frees the lease anyway.
            Some(Err(_)) | None => return,
        };
        match outcome {
            Ok(TurnResult::Throttled { until }) => {
                // The lease is the wait: no worker claims the conversation
                // before `until`, and then one turn answers every text.
                let wait = (until - self.clock.now())
                    .to_std()
                    .unwrap_or_default()
                    .max(std::time::Duration::from_millis(1));
                if let Err(e) = self.store.claim(id, token, wait).await {
                    tracing::error!(error = %e, "could not hold a throttled conversation; it runs again now");
                }
                return;
            }
            Ok(result) => {
                tracing::debug!(conversation = id.0, ?result, "turn finished");
                // A turn that sent a reply gave the lease up with it.
                let released = match held.released() {
                    Some(waiting) => Ok(waiting),
                    None => self.store.release(id, token).await,
                };
                match released {
                    // Every text that came in meanwhile woke the loop (and
                    // found this conversation held); none is waiting now,
                    // so there is nothing to look for.
                    Ok(false) => return,
                    Ok(true) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "could not release a conversation; its lease will expire")
                    }
                }
            }
            Err(StoreError::LeaseLost) => {
                tracing::warn!(
                    conversation = id.0,
                    "turn abandoned: another worker holds the conversation now"
                );
                return;
            }
            Err(e) => {
                // Keep the lease for a short while so a persistent failure
                // is retried with a pause instead of in a tight loop. A
                // database that failed is likely back soon: retry in seconds.
                tracing::error!(conversation = id.0, error = %e, "turn failed; will retry");
                let backoff = match e {
                    StoreError::Database(_) => DATABASE_BACKOFF,
                    _ => std::time::Duration::from_secs(30),
                }
                .min(self.settings.lease);
                self.shorten_lease(id, token, backoff).await;
            }
        }
        // Texts arrived during the turn (or may have): their wake-ups found
        // the conversation held.
        self.wake.notify_one();
    }
}

/// How long a conversation whose turn failed on the database waits before
/// it runs again.
const DATABASE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);

impl TurnWorker {
    /// Sets the lease of a failed turn's conversation to end after
    /// `backoff`. While the database is down this fails too, and the turn's
    /// own lease (minutes) would keep the conversation waiting long after
    /// the database is back; so it is tried again every second, for as long
    /// as a turn may run (half the lease), before the lease is left to
    /// expire by itself.
    async fn shorten_lease(&self, id: ConversationId, token: &str, backoff: std::time::Duration) {
        let give_up = tokio::time::Instant::now() + self.settings.lease / 2;
        loop {
            match self.store.claim(id, token, backoff).await {
                Ok(_) => return,
                Err(e) if tokio::time::Instant::now() < give_up => {
                    tracing::warn!(conversation = id.0, error = %e, "could not set a retry for a failed turn; trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(conversation = id.0, error = %e, "could not set a retry for a failed turn; its lease will expire");
                    return;
                }
            }
        }
    }
}

impl TurnWorker {
    /// The last defence when a turn panics: every rerun would panic again
    /// and leave the customer's texts pending forever, unanswered and
    /// unknown to the owner. Instead they are answered with the apology and
    /// the owner is alerted, in one commit that marks them answered, so the
    /// conversation does not run again until the customer texts again.
    async fn answer_after_panic(
        &self,
        engine: &Engine,
        id: ConversationId,
        cause: &str,
    ) -> Result<TurnResult, StoreError> {
        let turn = engine.store.turn_input(id, 1).await?;
        // A panic after the turn's own commit left nothing pending: its
        // reply is queued and goes out with the next delivery sweep.
        let Some(last) = turn.pending.last().map(|m| m.id) else {
            return Ok(TurnResult::NothingPending);
        };
        let contact = plan::CustomerContact::of(&turn, &turn.state);
        let customer = contact.describe();
        let business = &engine.business;
        let commit = TurnCommit {
            through: last,
            reply: Some(OutboundDraft {
                kind: MessageKind::Apology,
                body: crate::channel::Channel::of(&turn.conversation.customer_phone)
                    .prepare_reply(&templates::apology(business), business.sms.max_segments),
            }),
            held: None,
            state: turn.state,
            new_quotes: Vec::new(),
            alerts: vec![NewAlert {
                kind: AlertKind::TurnPanicked,
                detail: format!(
                    "textdesk failed while answering {customer} ({} text(s)): {cause}. They were sent the apology; please text them back.",
                    turn.pending.len()
                ),
            }],
            jobs: Vec::new(),
            cancel_jobs: Vec::new(),
            model_calls: None,
            spoken: None,
        };
        let reply = engine.conclude_about(id, commit, Some(&contact)).await?;
        Ok(TurnResult::Replied(reply))
    }
}

/// The map of held leases; a panic while it was held cannot leave it
/// inconsistent (single inserts and removes), so a poisoned lock is used.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a panic said, when it said it with a string (nearly always).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// A panic outside a turn's own task (in the worker's bookkeeping): the
/// conversation keeps its lease until it expires, then runs again.
fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        tracing::error!(error = %e, "a turn panicked; the conversation is retried when its lease expires");
    }
}
