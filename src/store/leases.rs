//! The lease port: keeping a claim alive while its work runs, and giving
//! it back.
//!
//! Leases are short (`LEASE_SECS`, 15 s by default) so that the work of an
//! instance that died is taken over quickly; a heartbeat renews them every
//! third of the lease while a turn or a job runs. A renewal names the
//! claim it renews (the conversation's lease token, a job's attempt
//! number), so a late renewal or release by a claim that was lost never
//! touches the claim that replaced it.

use std::time::Duration;

use async_trait::async_trait;

use super::{ConversationId, StoreError};

/// A running job as one claim made it: a job taken over after its lease
/// expired is claimed again with one more attempt, so `(id, attempts)`
/// names one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobClaim {
    pub id: i64,
    pub attempts: u32,
}

#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Extends the conversation's lease to `lease` from now, if `token`
    /// still holds it (even past its expiry, as long as nobody claimed it
    /// since). False when the lease was lost: released, or taken over.
    async fn renew_lease(&self, id: ConversationId, token: &str, lease: Duration)
    -> Result<bool, StoreError>;

    /// Extends the leases of these running jobs to `lease` from now;
    /// returns the claims that still held (the others were taken over or
    /// finished).
    async fn renew_job_leases(&self, jobs: &[JobClaim], lease: Duration)
    -> Result<Vec<JobClaim>, StoreError>;

    /// Gives claimed jobs that never started back to the queue, as if never
    /// claimed (the attempt is not counted): what a stopping runner does
    /// with the rest of its batch. Returns how many went back.
    async fn release_jobs(&self, jobs: &[JobClaim]) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::channel::console::ConsoleChannel;
    use crate::clock::{Clock, ManualClock};
    use crate::domain::phone::E164;
    use crate::store::{NewJob, Store};

    const LEASE: Duration = Duration::from_secs(15);

    fn clock() -> ManualClock {
        ManualClock::at(Utc.with_ymd_and_hms(2026, 11, 28, 15, 0, 0).unwrap())
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    /// The lease token and the lease's expiry, on any backend: a renewed
    /// lease is not claimable, one past its expiry is, and a late renewal
    /// or release by the old token never frees the new holder's lease.
    async fn conversation_leases(store: Arc<dyn Store>, clock: ManualClock) {
        let from = E164::parse("+15550001111").unwrap();
        let to = E164::parse("+15550009999").unwrap();
        store
            .record_inbound(&ConsoleChannel::inbound("default", &from, &to, "hi".into()))
            .await
            .unwrap();
        let first = store
            .claim_next_pending("a:1", LEASE)
            .await
            .unwrap()
            .expect("a claim");
        let id = first.id;
        assert_eq!(
            store.claim_next_pending("b:1", LEASE).await.unwrap(),
            None,
            "held"
        );

        clock.advance(secs(10));
        assert!(
            store.renew_lease(id, "a:1", LEASE).await.unwrap(),
            "renewed while held"
        );
        clock.advance(secs(10));
        // 20 s after the claim, 10 s after the renewal: still held.
        assert_eq!(
            store.claim_next_pending("b:1", LEASE).await.unwrap(),
            None,
            "renewed"
        );
        assert!(
            !store.renew_lease(id, "b:1", LEASE).await.unwrap(),
            "not b's to renew"
        );

        clock.advance(secs(6));
        // 16 s after the last renewal: expired, and taken over.
        let taken = store
            .claim_next_pending("b:1", LEASE)
            .await
            .unwrap()
            .expect("taken over");
        assert_eq!(taken.id, id);
        assert!(!store.renew_lease(id, "a:1", LEASE).await.unwrap(), "a lost it");
        store.release(id, "a:1").await.unwrap();
        assert_eq!(
            store.claim_next_pending("c:1", LEASE).await.unwrap(),
            None,
            "a late release by the old token freed nothing"
        );
        assert!(store.renew_lease(id, "b:1", LEASE).await.unwrap());
        store.release(id, "b:1").await.unwrap();
        assert_eq!(
            store
                .claim_next_pending("c:1", LEASE)
                .await
                .unwrap()
                .map(|c| c.id),
            Some(id),
            "the holder's release frees it"
        );
    }

    async fn job_leases(store: Arc<dyn Store>, clock: ManualClock) {
        let job = NewJob {
            kind: "email",
            dedupe_key: "lease-test".into(),
            conversation_id: None,
            customer_id: None,
            recipient: "owner@example.com".into(),
            payload: serde_json::json!({}),
            run_at: clock.now(),
            max_attempts: 5,
        };
        store.enqueue_jobs(&[job]).await.unwrap();
        let claimed = store.claim_due_jobs(clock.now(), 10, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let first = JobClaim {
            id: claimed[0].id,
            attempts: claimed[0].attempts,
        };
        clock.advance(secs(10));
        assert_eq!(
            store.renew_job_leases(&[first], LEASE).await.unwrap(),
            vec![first]
        );
        clock.advance(secs(10));
        assert!(
            store
                .claim_due_jobs(clock.now(), 10, LEASE)
                .await
                .unwrap()
                .is_empty(),
            "renewed"
        );
        clock.advance(secs(6));
        let again = store.claim_due_jobs(clock.now(), 10, LEASE).await.unwrap();
        assert_eq!(again.len(), 1, "past its lease, taken over");
        let second = JobClaim {
            id: again[0].id,
            attempts: again[0].attempts,
        };
        assert_eq!(second.attempts, first.attempts + 1);
        assert!(
            store.renew_job_leases(&[first], LEASE).await.unwrap().is_empty(),
            "first claim lost"
        );
        assert_eq!(
            store.release_jobs(&[first]).await.unwrap(),
            0,
            "not the first claim's to give back"
        );
        assert_eq!(store.release_jobs(&[second]).await.unwrap(), 1);
        let back = store.claim_due_jobs(clock.now(), 10, LEASE).await.unwrap();
        assert_eq!(back.len(), 1, "handed back to the queue");
        assert_eq!(
            back[0].attempts, second.attempts,
            "the handed-back attempt was not counted"
        );
    }

    /// What lets the worker stop asking: a claim says whether another
    /// conversation is waiting (one held by someone else does not count),
    /// and a release whether texts came in while the conversation was held.
    async fn claims_and_releases_say_what_waits(store: Arc<dyn Store>) {
        let to = E164::parse("+15550009999").unwrap();
        let text = |from: &str, body: &str| {
            ConsoleChannel::inbound("default", &E164::parse(from).unwrap(), &to, body.into())
        };
        store.record_inbound(&text("+15550001111", "one")).await.unwrap();
        store.record_inbound(&text("+15550002222", "two")).await.unwrap();
        let first = store
            .claim_next_pending("w:1", LEASE)
            .await
            .unwrap()
            .expect("a claim");
        assert!(first.more, "the second customer's text waits");
        let second = store
            .claim_next_pending("w:2", LEASE)
            .await
            .unwrap()
            .expect("a claim");
        assert_ne!(second.id, first.id);
        assert!(
            !second.more,
            "the first conversation is held, so nothing else waits"
        );
        assert_eq!(store.claim_next_pending("w:3", LEASE).await.unwrap(), None);

        // A text for the held first conversation: its release says so.
        store
            .record_inbound(&text("+15550001111", "and three"))
            .await
            .unwrap();
        assert_eq!(
            store.claim_next_pending("w:4", LEASE).await.unwrap(),
            None,
            "both held"
        );
        assert!(
            store.release(first.id, "w:1").await.unwrap(),
            "a text came in meanwhile"
        );
        let again = store
            .claim_next_pending("w:5", LEASE)
            .await
            .unwrap()
            .expect("claimable again");
        assert_eq!(again.id, first.id);
        assert!(!again.more);
        // The second conversation's text was never answered in this test,
        // so its release also finds a text waiting; answered, it would not.
        assert!(store.release(second.id, "w:2").await.unwrap());
        let turn = store.turn_input(again.id, 10).await.unwrap();
        let answered = crate::store::TurnCommit {
            through: turn.pending.last().unwrap().id,
            reply: None,
            held: None,
            state: turn.state,
            new_quotes: Vec::new(),
            alerts: Vec::new(),
            jobs: Vec::new(),
            cancel_jobs: Vec::new(),
            model_calls: None,
            spoken: None,
        };
        store.finish_turn(again.id, answered).await.unwrap();
        assert!(
            !store.release(again.id, "w:5").await.unwrap(),
            "every text answered"
        );
        // Not the holder's any more: a wake-up is the safe answer.
        assert!(store.release(again.id, "w:5").await.unwrap());
    }

    /// A turn's reply recorded with its release: one commit does both, and
    /// says what a release says; a lease that is no longer the caller's is
    /// left to its holder.
    async fn a_reply_recorded_with_its_release(store: Arc<dyn Store>) {
        use crate::store::{Delivery, OutboundDraft, TurnCommit};
        let to = E164::parse("+15550009999").unwrap();
        let from = E164::parse("+15550001111").unwrap();
        let text = |body: &str| ConsoleChannel::inbound("default", &from, &to, body.into());
        // Answers the pending texts with `body`; the reply comes back claimed.
        let answer = |id: ConversationId, body: &'static str| {
            let store = store.clone();
            async move {
                let turn = store.turn_input(id, 10).await.unwrap();
                let commit = TurnCommit {
                    through: turn.pending.last().unwrap().id,
                    reply: Some(OutboundDraft {
                        kind: crate::store::MessageKind::Reply,
                        body: body.into(),
                    }),
                    held: None,
                    state: turn.state,
                    new_quotes: Vec::new(),
                    alerts: Vec::new(),
                    jobs: Vec::new(),
                    cancel_jobs: Vec::new(),
                    model_calls: None,
                    spoken: None,
                };
                store
                    .finish_turn(id, commit)
                    .await
                    .unwrap()
                    .expect("the reply, claimed")
            }
        };
        let status = |id: ConversationId, body: &'static str| {
            let store = store.clone();
            async move {
                let messages = store.messages(id).await.unwrap();
                let reply = messages
                    .iter()
                    .find(|m| m.body == body)
                    .expect("the reply is stored");
                (reply.status.clone(), reply.channel_message_id.clone())
            }
        };

        store.record_inbound(&text("one")).await.unwrap();
        let claimed = store
            .claim_next_pending("w:1", LEASE)
            .await
            .unwrap()
            .expect("a claim");
        let id = claimed.id;
        let reply = answer(id, "first answer").await;
        store
            .record_inbound(&text("two, while the first was answered"))
            .await
            .unwrap();
        let sent = Delivery::Sent {
            channel_message_id: "SM-first".into(),
        };
        assert!(
            store
                .record_delivery_and_release(reply.id, &sent, id, "w:1")
                .await
                .unwrap(),
            "a text came in meanwhile"
        );
        assert_eq!(
            status(id, "first answer").await,
            ("sent".to_string(), Some("SM-first".to_string()))
        );
        let again = store.claim_next_pending("w:2", LEASE).await.unwrap();
        assert_eq!(again.map(|c| c.id), Some(id), "released: claimable at once");

        // Nothing waits after the second answer, whose send failed.
        let reply = answer(id, "second answer").await;
        let failed = Delivery::Failed {
            error: "carrier said no".into(),
        };
        assert!(
            !store
                .record_delivery_and_release(reply.id, &failed, id, "w:2")
                .await
                .unwrap()
        );
        assert_eq!(status(id, "second answer").await.0, "failed");
        assert!(store.claim(id, "w:3", LEASE).await.unwrap(), "released");

        // A stale holder records its send but leaves the new holder's lease.
        store.record_inbound(&text("three")).await.unwrap();
        let reply = answer(id, "third answer").await;
        let sent = Delivery::Sent {
            channel_message_id: "SM-third".into(),
        };
        assert!(
            store
                .record_delivery_and_release(reply.id, &sent, id, "w:2")
                .await
                .unwrap(),
            "not the caller's lease: a wake-up is the safe answer"
        );
        assert_eq!(status(id, "third answer").await.0, "sent");
        assert!(
            !store.claim(id, "w:4", LEASE).await.unwrap(),
            "w:3 still holds it"
        );
    }

    async fn sqlite(clock: &ManualClock) -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = crate::store::sqlite::SqliteStore::connect_with_clock(&url, Arc::new(clock.clone()))
            .await
            .unwrap();
        (Arc::new(store), dir)
    }

    #[tokio::test]
    async fn sqlite_conversation_lease_token_and_expiry() {
        let clock = clock();
        let (store, _dir) = sqlite(&clock).await;
        conversation_leases(store, clock).await;
    }

    #[tokio::test]
    async fn sqlite_job_lease_claim_and_expiry() {
        let clock = clock();
        let (store, _dir) = sqlite(&clock).await;
        job_leases(store, clock).await;
    }

    #[tokio::test]
    async fn sqlite_claims_and_releases_say_what_waits() {
        let clock = clock();
        let (store, _dir) = sqlite(&clock).await;
        claims_and_releases_say_what_waits(store).await;
    }

    #[tokio::test]
    async fn postgres_claims_and_releases_say_what_waits() {
        let clock = clock();
        let Some(db) = crate::store::postgres::testdb::TestDb::create("fleet").await else {
            return;
        };
        let store = db.store(&clock).await;
        claims_and_releases_say_what_waits(store).await;
        db.drop().await;
    }

    #[tokio::test]
    async fn sqlite_a_reply_recorded_with_its_release() {
        let clock = clock();
        let (store, _dir) = sqlite(&clock).await;
        a_reply_recorded_with_its_release(store).await;
    }

    #[tokio::test]
    async fn postgres_a_reply_recorded_with_its_release() {
        let clock = clock();
        let Some(db) = crate::store::postgres::testdb::TestDb::create("fleet").await else {
            return;
        };
        let store = db.store(&clock).await;
        a_reply_recorded_with_its_release(store).await;
        db.drop().await;
    }

    #[tokio::test]
    async fn postgres_conversation_lease_token_and_expiry() {
        let clock = clock();
        let Some(db) = crate::store::postgres::testdb::TestDb::create("fleet").await else {
            return;
        };
        let store = db.store(&clock).await;
        conversation_leases(store, clock).await;
        db.drop().await;
    }

    #[tokio::test]
    async fn postgres_job_lease_claim_and_expiry() {
        let clock = clock();
        let Some(db) = crate::store::postgres::testdb::TestDb::create("fleet").await else {
            return;
        };
        let store = db.store(&clock).await;
        job_leases(store, clock).await;
        db.drop().await;
    }
}
