//! The last defence: a turn that panics still answers the customer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use textdesk::app::Desks;
use textdesk::assistant::{Draft, Responder, ResponderError};
use textdesk::config::business::BusinessConfig;
use textdesk::domain::conversation::ConversationState;
use textdesk::domain::phone::E164;
use textdesk::jobs::worker::TurnWorker;
use textdesk::store::{AlertKind, InboundMessage, JobStatus, TurnInput};
use tokio::sync::{Notify, watch};

use crate::helpers::*;

const ALICE: &str = "+15035551234";

/// Stands in for any defect that panics inside a turn (the were
/// date arithmetic on configuration values).
struct PanickingResponder {
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Responder for PanickingResponder {
    async fn respond(
        &self,
        _: &Arc<BusinessConfig>,
        _: &TurnInput,
        _: ConversationState,
    ) -> Result<Draft, ResponderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        panic!("overflow when adding duration to date");
    }
}

async fn inbound(store: &Arc<dyn textdesk::store::Store>, body: &str) {
    store
        .record_inbound(&InboundMessage {
            business_id: "test".into(),
            channel_message_id: format!("SM{}", uuid::Uuid::new_v4().simple()),
            from: E164::parse(ALICE).unwrap(),
            to: E164::parse(BUSINESS_NUMBER).unwrap(),
            body: body.into(),
            media: Vec::new(),
            params: serde_json::json!({}),
            opt_out_keyword: None,
            profile_name: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_panicking_turn_answers_with_the_apology_alerts_the_owner_and_leaves_nothing_pending() {
    if crate::helpers::skipped() {
        return;
    }
    let mut app = spawn_app_with(Options {
        business: Some(
            "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\nowner_email = \"owner@example.com\"\n"
                .into(),
        ),
        ..Options::default()
    })
    .await;
    // The app's own worker must not answer: this test runs one whose
    // responder panics, on the same database and the same fake Twilio.
    app.crash().await;
    let settings = app.settings();
    let services = app.services().await;
    let mut engine = services
        .desks
        .build_engine(Arc::new(app.business.clone()))
        .expect("an engine");
    let responder = Arc::new(PanickingResponder {
        calls: AtomicUsize::new(0),
    });
    Arc::make_mut(&mut engine.parts).responder = responder.clone();
    let wake = Arc::new(Notify::new());
    let worker = TurnWorker {
        desks: Desks::single(Arc::new(engine)),
        store: services.store.clone(),
        wake: wake.clone(),
        settings: settings.worker.clone(),
        worker_id: "panic-test".into(),
        claims: Default::default(),
        clock: services.clock.clone(),
    };
    // Both texts are stored before the worker starts, so one turn answers
    // them (a worker already polling could claim the first one alone).
    inbound(&services.store, "Can you take a couch?").await;
    inbound(&services.store, "And a fridge?").await;
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    wake.notify_one();

    let sent = app.wait_for_texts(1).await;
    let apology = textdesk::templates::apology(&app.business);
    assert_eq!(sent, vec![(ALICE.to_string(), apology)]);
    app.wait_until_settled(ALICE).await;
    let answered = app.messages(ALICE).await;
    assert!(!answered.is_empty());
    assert!(
        answered.iter().all(|m| m.status != "pending"),
        "texts left pending: {answered:?}"
    );

    let alerts = app.store.alerts().await.unwrap();
    let alert = alerts
        .iter()
        .find(|a| a.kind == AlertKind::TurnPanicked)
        .expect("the owner is alerted");
    assert!(
        alert.detail.contains("overflow when adding duration to date") && alert.detail.contains("2 text(s)"),
        "{}",
        alert.detail
    );
    let emails = app.store.jobs(&[JobStatus::Pending], 100).await.unwrap();
    assert!(
        emails
            .iter()
            .any(|j| j.kind == "email" && j.recipient == "owner@example.com"),
        "the alert is emailed: {emails:?}"
    );

    // It cannot loop: with the texts answered there is nothing to claim,
    // and the panicking turn ran once.
    let claimable = app
        .store
        .claim_next_pending("probe", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(claimable, None);
    assert_eq!(responder.calls.load(Ordering::SeqCst), 1);
    assert_eq!(app.sent_texts().await.len(), 1);

    // The next text is a new turn: it panics again and is answered again.
    inbound(&services.store, "Hello?").await;
    wake.notify_one();
    let sent = app.wait_for_texts(2).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(responder.calls.load(Ordering::SeqCst), 2);

    stop.send(true).unwrap();
    running.await.unwrap();
}
