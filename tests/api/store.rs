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
