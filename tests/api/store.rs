//! The store on its own (SQLite, and Postgres in `api_postgres`): the time it writes and judges leases by is
//! its clock's, and rows written before the store spoke of channels are
//! read the same way after the upgrade.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::json;
use textdesk::clock::ManualClock;
use textdesk::domain::phone::E164;
use textdesk::store::sqlite::SqliteStore;

use crate::helpers::TestDb;
use textdesk::store::{ConversationId, ConversationStore, InboundMessage, Recorded};

fn inbound(id: &str, opt_out_keyword: Option<&str>) -> InboundMessage {
    InboundMessage {
        business_id: "test".into(),
        channel_message_id: id.into(),
        from: E164::parse("+15035550100").unwrap(),
        to: E164::parse("+15035550142").unwrap(),
        body: "hi".into(),
        media: vec![],
        params: json!({}),
        opt_out_keyword: opt_out_keyword.map(str::to_string),
        profile_name: Some("Ann".into()),
    }
}

#[tokio::test]
async fn the_store_stamps_rows_and_judges_leases_by_its_clock() {
    if crate::helpers::skipped() {
        return;
    }
    let db = TestDb::new().await;
    let noon = Utc.with_ymd_and_hms(2031, 3, 4, 12, 0, 0).unwrap();
    let clock = ManualClock::at(noon);
    let store = db.store_with_clock(Arc::new(clock.clone())).await;

    let Recorded::New(conversation, _) = store
        .record_inbound(&inbound("SMclock1", Some("STOP")))
        .await
        .unwrap()
    else {
        panic!("a new text")
    };
    let messages = store.messages(conversation).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].created_at, noon);
    assert_eq!(messages[0].channel_message_id.as_deref(), Some("SMclock1"));
    assert_eq!(messages[0].opt_out_keyword.as_deref(), Some("STOP"));
    let turn = store.turn_input(conversation, 10).await.unwrap();
    assert_eq!(turn.conversation.profile_name.as_deref(), Some("Ann"));

    let lease = Duration::from_secs(60);
    assert_eq!(
        store
            .claim_next_pending("first", lease)
            .await
            .unwrap()
            .map(|c| c.id),
        Some(conversation)
    );
    assert_eq!(store.claim_next_pending("second", lease).await.unwrap(), None);
    // No wall-clock time passes: only the store's clock says the lease ran out.
    clock.advance(chrono::Duration::seconds(61));
    assert_eq!(
        store
            .claim_next_pending("second", lease)
            .await
            .unwrap()
            .map(|c| c.id),
        Some(conversation)
    );
}

/// "A job runner that lost a job's claim can still record its outcome":
/// no more. A runner that stalled past its lease (its job taken over) or
/// across a restart (its job handed back) records nothing; the claim that
/// holds the job records its outcome, once.
#[tokio::test]
async fn a_jobs_outcome_is_recorded_only_by_the_claim_that_holds_it() {
    if crate::helpers::skipped() {
        return;
    }
    use textdesk::clock::Clock;
    use textdesk::store::{JobClaim, JobOutcome, JobStatus, NewJob};
    let db = TestDb::new().await;
    let clock = ManualClock::at(Utc.with_ymd_and_hms(2031, 3, 4, 12, 0, 0).unwrap());
    let store = db.store_with_clock(Arc::new(clock.clone())).await;
    let lease = Duration::from_secs(60);
    let job = |key: &str| NewJob {
        kind: "email",
        dedupe_key: key.into(),
        conversation_id: None,
        customer_id: None,
        recipient: "crew@example.com".into(),
        payload: json!({}),
        run_at: clock.now(),
        max_attempts: 5,
    };
    let claim = |job: &textdesk::store::Job| JobClaim {
        id: job.id,
        attempts: job.attempts,
    };
    let status = async |store: &Arc<dyn textdesk::store::Store>, id: i64| {
        let all = [
            JobStatus::Pending,
            JobStatus::Running,
            JobStatus::Done,
            JobStatus::Dead,
            JobStatus::Cancelled,
        ];
        let job = store
            .jobs(&all, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.id == id)
            .unwrap();
        (job.status, job.attempts, job.last_error)
    };
    let failed = JobOutcome::Retry {
        at: clock.now() + chrono::Duration::hours(1),
        error: "late news from a stalled runner".into(),
    };
    let done = JobOutcome::Done {
        result: Some("sent".into()),
    };

    // Taken over: the first claim stalls past its lease, a second takes
    // the job (attempt 2) and is still running it.
    store.enqueue_jobs(&[job("taken-over")]).await.unwrap();
    let first = store.claim_due_jobs(clock.now(), 10, lease).await.unwrap();
    assert_eq!(first.len(), 1);
    clock.advance(chrono::Duration::seconds(61));
    let second = store.claim_due_jobs(clock.now(), 10, lease).await.unwrap();
    assert_eq!(second.len(), 1, "past its lease, taken over");
    assert_eq!(second[0].attempts, first[0].attempts + 1);
    assert!(
        !store.finish_job(claim(&first[0]), &failed).await.unwrap(),
        "the lost claim records nothing"
    );
    assert_eq!(
        status(&store, first[0].id).await,
        (JobStatus::Running, 2, None),
        "still the second claim's, running, with no error from the first"
    );
    assert!(store.finish_job(claim(&second[0]), &done).await.unwrap());
    assert_eq!(status(&store, first[0].id).await.0, JobStatus::Done);
    assert!(
        !store.finish_job(claim(&first[0]), &failed).await.unwrap(),
        "nor after the job is done"
    );
    assert!(
        !store.finish_job(claim(&second[0]), &failed).await.unwrap(),
        "an outcome is recorded once"
    );
    assert_eq!(status(&store, first[0].id).await.0, JobStatus::Done);

    // Handed back: a restart's recovery puts an expired claim's job back
    // in the queue; the old claim's late outcome must not mark it done
    // before anyone ran it again.
    store.enqueue_jobs(&[job("handed-back")]).await.unwrap();
    let stalled = store.claim_due_jobs(clock.now(), 10, lease).await.unwrap();
    assert_eq!(stalled.len(), 1);
    clock.advance(chrono::Duration::seconds(61));
    let recovered = store.recover_interrupted_work().await.unwrap();
    assert_eq!(recovered.jobs_requeued, 1);
    assert!(!store.finish_job(claim(&stalled[0]), &done).await.unwrap());
    assert_eq!(status(&store, stalled[0].id).await.0, JobStatus::Pending);
    let again = store.claim_due_jobs(clock.now(), 10, lease).await.unwrap();
    assert_eq!(again.len(), 1, "still there to run");
    assert!(store.finish_job(claim(&again[0]), &done).await.unwrap());
}

#[tokio::test]
async fn a_provider_opt_out_and_profile_in_an_old_row_are_read_after_the_upgrade() {
    // An old release's SQLite file.
    if crate::helpers::skipped() || crate::helpers::sqlite_only() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-businesses.db");
    let path = dir.path().join("old.db");
    std::fs::copy(&fixture, &path).unwrap();
    let url = format!("sqlite://{}", path.display());
    {
        // Written as the old release wrote it: the keyword only inside the
        // webhook's parameters, the id in `twilio_sid`.
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO messages (conversation_id, direction, kind, body, status, twilio_sid, params, created_at)
             VALUES (1, 'inbound', 'customer', 'stop', 'handled', 'SMold', ?, '2026-01-01T00:00:00Z')",
        )
        .bind(json!({"OptOutType": "STOP", "ProfileName": "Old Ann"}).to_string())
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }

    let store = SqliteStore::connect(&url).await.unwrap();
    let messages = store.messages(ConversationId(1)).await.unwrap();
    let old = messages
        .iter()
        .find(|m| m.channel_message_id.as_deref() == Some("SMold"))
        .expect("the old row keeps its id under the new column");
    assert_eq!(old.opt_out_keyword.as_deref(), Some("STOP"));
    let turn = store.turn_input(ConversationId(1), 50).await.unwrap();
    assert_eq!(turn.conversation.profile_name.as_deref(), Some("Old Ann"));
    // Rows without the keyword stay without it.
    let others: Vec<_> = messages
        .iter()
        .filter(|m| m.channel_message_id.as_deref() != Some("SMold"))
        .collect();
    assert!(!others.is_empty(), "the fixture's own rows are read too");
    assert!(others.iter().all(|m| m.opt_out_keyword.is_none()));
}

/// Each turn's usage, stored by the turn's commit beside its model calls:
/// in order, summed per conversation, zero for a conversation with none.
/// Runs on SQLite (`tests/api`) and on Postgres (`tests/api_postgres`).
#[tokio::test]
async fn turn_usage_is_stored_by_the_commit_and_summed() {
    use textdesk::domain::conversation::ConversationState;
    use textdesk::store::{ModelCalls, TokenCounts, TurnCommit, TurnUsage};
    if crate::helpers::skipped() {
        return;
    }
    let db = TestDb::new().await;
    let store = db.store().await;
    let Recorded::New(conversation, through) = store.record_inbound(&inbound("SMusage", None)).await.unwrap()
    else {
        panic!("a new text")
    };
    let customer = store
        .turn_input(conversation, 10)
        .await
        .unwrap()
        .conversation
        .customer_id;
    let other = ConversationId(conversation.0 + 1_000_000);
    let empty = store.conversation_usage(other).await.unwrap();
    assert_eq!(
        (empty.turns, empty.model_calls, empty.tokens),
        (0, 0, TokenCounts::default())
    );
    let first = TurnUsage {
        conversation,
        through,
        model_calls: 2,
        tokens: TokenCounts {
            input: 120,
            cache_read: 3_000,
            cache_write: 450,
            output: 60,
        },
    };
    // A turn run again after a crash spent its tokens again: a row of its
    // own, though its commit finds the text already answered.
    let again = TurnUsage {
        model_calls: 1,
        tokens: TokenCounts {
            input: 5,
            cache_read: 1_500,
            cache_write: 0,
            output: 20,
        },
        ..first
    };
    let commit = |usage: &TurnUsage| TurnCommit {
        through: usage.through,
        reply: None,
        held: None,
        state: ConversationState::default(),
        new_quotes: vec![],
        alerts: vec![],
        jobs: vec![],
        cancel_jobs: vec![],
        model_calls: Some(ModelCalls {
            customer,
            day: chrono::NaiveDate::from_ymd_opt(2031, 3, 4).unwrap(),
            calls: usage.model_calls,
            tokens: usage.tokens,
        }),
        spoken: None,
    };
    store.finish_turn(conversation, commit(&first)).await.unwrap();
    store.finish_turn(conversation, commit(&again)).await.unwrap();
    assert_eq!(store.turn_usages(conversation).await.unwrap(), vec![first, again]);
    let totals = store.conversation_usage(conversation).await.unwrap();
    assert_eq!(totals.turns, 2);
    assert_eq!(totals.model_calls, 3);
    assert_eq!(
        totals.tokens,
        TokenCounts {
            input: 125,
            cache_read: 4_500,
            cache_write: 450,
            output: 80,
        }
    );
    assert!(store.turn_usages(other).await.unwrap().is_empty());
}
