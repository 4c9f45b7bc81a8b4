//! A sender who floods is throttled: every text is kept and eventually
//! answered, at most once a minute, without the model, and the owner hears
//! once; nobody else waits for it.

use std::time::{Duration, Instant};

use textdesk::jobs::turns::FLOOD_TEXTS;
use textdesk::store::AlertKind;
use textdesk::store::Direction;

use crate::helpers::*;

const FLOODER: &str = "+15035551234";
const NEIGHBOUR: &str = "+15035559876";

/// A business whose owner gets alert emails and whose customers may cost
/// `budget` model calls a day.
fn business_with_budget(budget: usize) -> String {
    format!(
        "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\nowner_email = \"owner@example.com\"\n\n\
         [assistant]\ndaily_model_calls_per_customer = {budget}\n"
    )
}

async fn flood_alerts(app: &TestApp) -> usize {
    app.store
        .alerts()
        .await
        .unwrap()
        .iter()
        .filter(|a| a.kind == AlertKind::FloodThrottled)
        .count()
}

/// Model requests that answered `customer_word` (the fake echoes the last
/// user text, so each request names whose turn it was).
async fn model_requests_about(app: &TestApp, customer_word: &str) -> usize {
    app.model_requests()
        .await
        .iter()
        .filter(|r| last_user_text(r).contains(customer_word))
        .count()
}

/// Waits until `customer`'s conversation is held back by the throttle: texts
/// pending, and the conversation held for at most about a minute (a turn in
/// progress holds it for the whole five-minute lease instead).
async fn wait_until_throttled(app: &TestApp, customer: &str) {
    let sql = app.sql().await;
    let id = app.conversation(customer).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        // Longer than a turn's own lease (15 s, renewed while it runs):
        // the throttle's hold, not a turn in flight.
        let held = sql
            .count(
                "SELECT COUNT(*) FROM conversations
                 WHERE id = $1 AND lease_until_ms > $2 + 20000 AND lease_until_ms <= $2 + 61000",
                &[id.0.into(), now.into()],
            )
            .await
            == 1;
        let pending = app.messages(customer).await.iter().any(|m| m.status == "pending");
        if held && pending {
            return;
        }
        assert!(Instant::now() < deadline, "the conversation was never throttled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A minute passes for a throttled conversation: its texts and replies
/// move a minute into the past and its hold ends, as when the hold runs out.
async fn a_minute_passes(app: &TestApp, customer: &str) {
    let sql = app.sql().await;
    let id = app.conversation(customer).await.unwrap();
    let earlier = chrono::Utc::now() - chrono::Duration::seconds(61);
    sql.execute(
        "UPDATE messages SET created_at = $1 WHERE conversation_id = $2",
        &[earlier.into(), id.0.into()],
    )
    .await;
    sql.execute(
        "UPDATE conversations SET lease_owner = NULL, lease_until_ms = NULL WHERE id = $1",
        &[id.0.into()],
    )
    .await;
}

#[tokio::test]
async fn twenty_texts_in_a_minute_are_not_a_flood() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        business: Some(business_with_budget(100)),
        ..Options::default()
    })
    .await;
    for i in 0..FLOOD_TEXTS {
        app.text(FLOODER, &format!("text {i}")).await;
    }
    app.wait_until_settled(FLOODER).await;
    assert_eq!(flood_alerts(&app).await, 0);
}

#[tokio::test]
async fn more_than_twenty_texts_in_a_minute_throttle_the_sender_and_alert_the_owner_once() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        business: Some(business_with_budget(100)),
        ..Options::default()
    })
    .await;
    for i in 0..=FLOOD_TEXTS + 4 {
        app.text(FLOODER, &format!("flood {i}")).await;
    }
    wait_until_throttled(&app, FLOODER).await;
    assert_eq!(
        flood_alerts(&app).await,
        1,
        "the owner hears about the flood at once"
    );
    // Until the flood was seen, each turn answered at least one text.
    assert!(model_requests_about(&app, "flood").await <= FLOOD_TEXTS);
    let replies = app.sent_texts().await.len();
    assert!(replies <= FLOOD_TEXTS + 1, "{replies} replies to a flood");

    // The owner is emailed, once.
    let emails = app
        .sql()
        .await
        .count(
            "SELECT COUNT(*) FROM jobs WHERE dedupe_key LIKE 'alert:%:flood_throttled'",
            &[],
        )
        .await;
    assert_eq!(emails, 1);

    // A minute later one turn answers every waiting text.
    a_minute_passes(&app, FLOODER).await;
    app.wait_until_settled(FLOODER).await;
    let messages = app.messages(FLOODER).await;
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.direction == Direction::Inbound)
            .count(),
        FLOOD_TEXTS + 5
    );
    assert!(messages.iter().all(|m| m.status != "pending"));
    assert_eq!(messages.last().unwrap().direction, Direction::Outbound);
    assert_eq!(app.wait_for_texts(replies + 1).await.len(), replies + 1);
    assert_eq!(flood_alerts(&app).await, 1, "one alert per customer per day");
}

#[tokio::test]
async fn a_flood_of_200_texts_costs_no_one_else_time_and_stays_within_the_model_budget() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        business: Some(business_with_budget(100)),
        ..Options::default()
    })
    .await;
    let texts: Vec<String> = (0..200).map(|i| format!("flood {i}")).collect();
    for batch in texts.chunks(10) {
        futures::future::join_all(batch.iter().map(|body| app.text(FLOODER, body))).await;
    }

    let asked = Instant::now();
    app.text(NEIGHBOUR, "neighbour here").await;
    let deadline = asked + Duration::from_secs(10);
    loop {
        if app.sent_texts().await.iter().any(|(to, _)| to == NEIGHBOUR) {
            break;
        }
        assert!(Instant::now() < deadline, "the neighbour was never answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waited = asked.elapsed();
    assert!(waited < Duration::from_secs(2), "the neighbour waited {waited:?}");

    wait_until_throttled(&app, FLOODER).await;
    let flooder_calls = model_requests_about(&app, "flood").await;
    assert!(
        flooder_calls <= FLOOD_TEXTS,
        "the flood cost {flooder_calls} model calls"
    );
    let counted = app
        .sql()
        .await
        .count(
            "SELECT COALESCE(SUM(m.calls), 0) FROM model_calls m JOIN customers c ON c.id = m.customer_id WHERE c.phone = $1",
            &[FLOODER.into()],
        )
        .await;
    assert_eq!(
        counted as usize, flooder_calls,
        "model calls are counted in the store"
    );
    assert_eq!(flood_alerts(&app).await, 1);

    // Nothing is lost: all 200 are stored, and the next turn answers them all.
    a_minute_passes(&app, FLOODER).await;
    app.wait_until_settled(FLOODER).await;
    let messages = app.messages(FLOODER).await;
    let inbound: Vec<_> = messages
        .iter()
        .filter(|m| m.direction == Direction::Inbound)
        .collect();
    assert_eq!(inbound.len(), 200);
    assert!(inbound.iter().all(|m| m.status == "handled"));
    assert_eq!(messages.last().unwrap().direction, Direction::Outbound);
}

#[tokio::test]
async fn past_the_daily_model_budget_the_guided_flow_answers_even_after_a_restart() {
    if crate::helpers::skipped() {
        return;
    }
    let mut app = spawn_app_with(Options {
        business: Some(business_with_budget(2)),
        ..Options::default()
    })
    .await;
    for (n, body) in ["budget one", "budget two"].into_iter().enumerate() {
        app.text(FLOODER, body).await;
        app.wait_for_texts(n + 1).await;
        app.wait_until_settled(FLOODER).await;
    }
    assert_eq!(app.model_requests().await.len(), 2);
    assert_eq!(flood_alerts(&app).await, 0);

    app.text(FLOODER, "budget three").await;
    wait_until_throttled(&app, FLOODER).await;
    assert_eq!(flood_alerts(&app).await, 1);
    a_minute_passes(&app, FLOODER).await;
    let sent = app.wait_for_texts(3).await;
    assert!(
        !sent[2].1.starts_with("Re:"),
        "the model answered: {:?}",
        sent[2].1
    );
    app.wait_until_settled(FLOODER).await;

    // The count is in the store: a restart does not refill the budget.
    app.crash_and_restart().await;
    app.text(FLOODER, "budget four").await;
    wait_until_throttled(&app, FLOODER).await;
    a_minute_passes(&app, FLOODER).await;
    let sent = app.wait_for_texts(4).await;
    assert!(
        !sent[3].1.starts_with("Re:"),
        "the model answered: {:?}",
        sent[3].1
    );
    assert_eq!(
        app.model_requests().await.len(),
        2,
        "no model call past the budget"
    );
    assert_eq!(flood_alerts(&app).await, 1, "one alert per customer per day");
}
