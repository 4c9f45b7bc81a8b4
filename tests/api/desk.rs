//! Issue 9, part 8: the owner's side of the desk (take over, reply, hand
//! back), as the owner's console will call it, against the real app.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use textdesk::app::Services;
use textdesk::config::directory::BusinessDirectory;
use textdesk::desk::{self, DeskError};
use textdesk::store::ConversationId;

use crate::helpers::*;

const DANA: &str = "+15035551234";

async fn state_of(app: &TestApp, id: ConversationId) -> &'static str {
    app.store.turn_input(id, 0).await.unwrap().state.name()
}

#[tokio::test]
async fn the_owner_takes_over_replies_and_hands_back() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        with_model: false,
        ..Options::default()
    })
    .await;
    app.text(DANA, "hi").await;
    app.wait_for_texts(1).await;
    app.wait_until_settled(DANA).await;
    // The reply is recorded sent a moment before the turn's lease is
    // released: wait for that too, or the owner's action meets `Busy`.
    app.wait_until_idle().await;
    let id = app.conversation(DANA).await.unwrap();
    assert_eq!(state_of(&app, id).await, "INTAKE");

    let taken = desk::take_over(app.store.as_ref(), id, Utc::now()).await.unwrap();
    assert_eq!(taken.name(), "HANDED_OFF");
    assert_eq!(state_of(&app, id).await, "HANDED_OFF");
    // Taking it again changes nothing.
    let again = desk::take_over(app.store.as_ref(), id, Utc::now()).await.unwrap();
    assert_eq!(again, taken);

    // The owner's text goes out through the worker's delivery.
    assert!(matches!(
        desk::send_owner_reply(app.store.as_ref(), id, "   ", Utc::now()).await,
        Err(DeskError::EmptyText)
    ));
    let replied = desk::send_owner_reply(
        app.store.as_ref(),
        id,
        " This is Maria, I'll come by Tuesday. ",
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(replied.state.name(), "HANDED_OFF");
    let sent = app.wait_for_texts(2).await;
    assert_eq!(
        sent[1],
        (
            DANA.to_string(),
            "This is Maria, I'll come by Tuesday.".to_string()
        )
    );
    let stored = app
        .messages(DANA)
        .await
        .into_iter()
        .find(|m| m.id == replied.message)
        .unwrap();
    assert_eq!(stored.kind, desk::OWNER_REPLY);

    // Handed back: the assistant answers the next text again.
    let back = desk::hand_back(app.store.as_ref(), id).await.unwrap();
    assert_eq!(back.name(), "INTAKE");
    assert!(matches!(
        desk::hand_back(app.store.as_ref(), id).await,
        Err(DeskError::NotAllowed(_))
    ));
    app.text(DANA, "3").await;
    app.wait_for_texts(3).await;
    app.wait_until_settled(DANA).await;
    // The reply is recorded sent a moment before the turn's lease is
    // released: wait for that too, or the owner's action meets `Busy`.
    app.wait_until_idle().await;
}

#[tokio::test]
async fn the_owner_waits_while_a_turn_holds_the_conversation() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        with_model: false,
        ..Options::default()
    })
    .await;
    app.text(DANA, "hi").await;
    app.wait_for_texts(1).await;
    app.wait_until_settled(DANA).await;
    // The reply is recorded sent a moment before the turn's lease is
    // released: wait for that too, or the owner's action meets `Busy`.
    app.wait_until_idle().await;
    let id = app.conversation(DANA).await.unwrap();

    assert!(
        app.store
            .claim(id, "worker-busy", Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(matches!(
        desk::take_over(app.store.as_ref(), id, Utc::now()).await,
        Err(DeskError::Busy)
    ));
    assert_eq!(state_of(&app, id).await, "INTAKE");
    app.store.release(id, "worker-busy").await.unwrap();
    desk::take_over(app.store.as_ref(), id, Utc::now()).await.unwrap();
    assert_eq!(state_of(&app, id).await, "HANDED_OFF");
}

#[tokio::test]
async fn an_opted_out_customer_gets_no_owner_text() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        with_model: false,
        ..Options::default()
    })
    .await;
    app.text(DANA, "hi").await;
    app.wait_for_texts(1).await;
    app.text(DANA, "STOP").await;
    app.wait_until_settled(DANA).await;
    // The reply is recorded sent a moment before the turn's lease is
    // released: wait for that too, or the owner's action meets `Busy`.
    app.wait_until_idle().await;
    let id = app.conversation(DANA).await.unwrap();
    let refused = desk::send_owner_reply(app.store.as_ref(), id, "Hello?", Utc::now()).await;
    assert!(matches!(refused, Err(DeskError::OptedOut)), "{refused:?}");
    assert!(
        app.messages(DANA)
            .await
            .iter()
            .all(|m| m.kind != desk::OWNER_REPLY)
    );
}

#[tokio::test]
async fn a_turn_keeps_the_configuration_it_started_with_and_a_reload_rebuilds_nothing() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        with_model: false,
        ..Options::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("business.toml");
    std::fs::write(&file, "[business]\nname = \"Before\"\n").unwrap();
    let directory = Arc::new(BusinessDirectory::load(&file).unwrap());
    let services = Services::build_for(&app.settings(), directory.clone(), None)
        .await
        .unwrap();
    let started = services.desks.engine("business").unwrap();

    std::fs::write(&file, "[business]\nname = \"After\"\n").unwrap();
    directory.reload().unwrap();
    let next = services.desks.engine("business").unwrap();

    assert_eq!(started.business.business.name, "Before");
    assert_eq!(next.business.business.name, "After");
    assert!(
        Arc::ptr_eq(&started.parts, &next.parts),
        "the adapters are shared, not rebuilt"
    );
}
