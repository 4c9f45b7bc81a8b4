//! A database written by the release before businesses existed
//! (`tests/fixtures/pre-businesses.db`: a quoted customer, a booked one,
//! one who sent STOP) migrates forward on first start and keeps every row,
//! under the single configured business.

use sqlx::sqlite::SqlitePool;
use textdesk::store::{ConversationId, Direction};

use crate::helpers::{Options, spawn_app_with};

const QUOTED: &str = "+15555550123";
const BOOKED: &str = "+15555550124";

async fn count(pool: &SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn the_upgrade_keeps_every_row_under_the_single_business_and_the_conversation_continues() {
    // An old release's SQLite file.
    if crate::helpers::skipped() || crate::helpers::sqlite_only() {
        return;
    }
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-businesses.db");
    // The fixture's jobs fall due by its own dates (a quote's follow-up a
    // day after it was written): the clock stands just after it was written,
    // so what runs does not depend on the day the test runs.
    let written = chrono::DateTime::parse_from_rfc3339("2026-11-28T17:20:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let app = spawn_app_with(Options {
        with_model: false,
        database: Some(fixture),
        clock: Some(textdesk::clock::ManualClock::at(written)),
        ..Options::default()
    })
    .await;
    let pool = SqlitePool::connect(&app.database_url).await.unwrap();

    // What the fixture holds, all of it now the configured business's
    // (`test`, the stem of the test's business file).
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM customers WHERE business_id = 'test'").await,
        3
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM conversations WHERE business_id = 'test'"
        )
        .await,
        3
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM quotes WHERE business_id = 'test'").await,
        2
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM bookings WHERE business_id = 'test' AND status = 'confirmed'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM jobs WHERE business_id = 'test'").await,
        8
    );
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM messages").await, 29);
    for table in [
        "customers",
        "conversations",
        "quotes",
        "bookings",
        "slot_holds",
        "jobs",
        "alerts",
    ] {
        let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE business_id = 'default'"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(left, 0, "{table} kept rows of no business");
    }
    // The STOP still holds.
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM customers WHERE opted_out_at IS NOT NULL AND phone = '+15555550125'"
        )
        .await,
        1
    );

    // The booked customer's conversation is the same one, still BOOKED.
    let booked = app.conversation(BOOKED).await.expect("the booked conversation");
    assert_eq!(booked, ConversationId(2));
    let turn = app.store.turn_input(booked, 5).await.unwrap();
    assert_eq!(turn.state.name(), "BOOKED");

    // And the quoted customer's conversation continues where it stopped.
    let quoted = app.conversation(QUOTED).await.expect("the quoted conversation");
    assert_eq!(quoted, ConversationId(1));
    let before = app.messages(QUOTED).await.len();
    app.text(QUOTED, "1").await;
    app.wait_until_settled(QUOTED).await;
    let messages = app.messages(QUOTED).await;
    assert_eq!(app.conversation(QUOTED).await, Some(ConversationId(1)));
    let last_inbound = messages
        .iter()
        .rposition(|m| m.direction == Direction::Inbound)
        .unwrap();
    assert!(last_inbound >= before, "the new text joined the old conversation");
    assert_eq!(messages[last_inbound].body, "1");
    assert!(
        messages[last_inbound + 1..]
            .iter()
            .any(|m| m.direction == Direction::Outbound && m.kind == "reply"),
        "{messages:?}"
    );
}
