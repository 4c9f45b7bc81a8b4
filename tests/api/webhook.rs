//! `POST /api/sms/inbound`: signatures, parsing, idempotency.

use textdesk::twilio::signature;

use crate::helpers::*;

const CUSTOMER: &str = "+15035551234";

#[tokio::test]
async fn twilio_official_vector_validates() {
    if crate::helpers::skipped() {
        return;
    }
    // Twilio's published example, computed by the same function the webhook uses.
    let params: Vec<(String, String)> = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    assert_eq!(
        signature::sign("12345", url, &params),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    );
    assert!(signature::verify(
        "12345",
        url,
        &params,
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    ));
}

#[tokio::test]
async fn a_signed_text_is_acknowledged_with_empty_twiml_and_stored() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let response = app.text(CUSTOMER, "Hi, can you haul a couch?").await;
    assert_eq!(response.headers()["content-type"], "text/xml");
    let body = response.text().await.unwrap();
    assert_eq!(
        body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>"
    );
    let messages = app.messages(CUSTOMER).await;
    assert_eq!(messages[0].body, "Hi, can you haul a couch?");
}

#[tokio::test]
async fn the_signature_covers_the_query_string() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let params = TestApp::inbound_params(CUSTOMER, "hello", "SM0000000000000000000000000000a000");
    let response = app
        .post_signed("/api/sms/inbound?source=main-line", &params)
        .await;
    assert_eq!(response.status(), 200);
    // Signed over the URL without the query: refused.
    let url = format!("{PUBLIC_BASE_URL}/api/sms/inbound");
    let sig = signature::sign(AUTH_TOKEN, &url, &params);
    let response = app
        .post_raw("/api/sms/inbound?source=main-line", &params, Some(&sig))
        .await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn forged_or_missing_signatures_get_403_and_store_nothing() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let params = TestApp::inbound_params(
        CUSTOMER,
        "free junk removal pls",
        "SM0000000000000000000000000000a001",
    );
    let forged = signature::sign(
        "not-the-token",
        &format!("{PUBLIC_BASE_URL}/api/sms/inbound"),
        &params,
    );
    assert_eq!(
        app.post_raw("/api/sms/inbound", &params, Some(&forged))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.post_raw("/api/sms/inbound", &params, None).await.status(),
        403
    );
    assert_eq!(
        app.post_raw("/api/sms/inbound", &params, Some("garbage"))
            .await
            .status(),
        403
    );
    // A correctly signed request with one parameter changed afterwards.
    let good = signature::sign(AUTH_TOKEN, &format!("{PUBLIC_BASE_URL}/api/sms/inbound"), &params);
    let mut tampered = params.clone();
    tampered.iter_mut().find(|(k, _)| k == "Body").unwrap().1 = "tampered".into();
    assert_eq!(
        app.post_raw("/api/sms/inbound", &tampered, Some(&good))
            .await
            .status(),
        403
    );

    app.wait_until_idle().await;
    assert!(
        app.conversation(CUSTOMER).await.is_none(),
        "a refused webhook stored something"
    );
    assert!(app.sent_texts().await.is_empty());
    assert!(app.model_requests().await.is_empty());
}

#[tokio::test]
async fn skipping_validation_works_only_as_configured_on_localhost() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        extra_vars: vec![
            ("TWILIO_SKIP_SIGNATURE_VALIDATION", "true".into()),
            ("PUBLIC_BASE_URL", "http://localhost:8080".into()),
        ],
        ..Options::default()
    })
    .await;
    let params = TestApp::inbound_params(CUSTOMER, "hi", "SM0000000000000000000000000000a002");
    assert_eq!(
        app.post_raw("/api/sms/inbound", &params, None).await.status(),
        200
    );
}

#[tokio::test]
async fn malformed_requests_get_400_and_oversized_get_413() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let sid = "SM0000000000000000000000000000a003";
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "no From",
            TestApp::inbound_params(CUSTOMER, "hi", sid)
                .into_iter()
                .filter(|(k, _)| k != "From")
                .collect(),
        ),
        (
            "no MessageSid",
            TestApp::inbound_params(CUSTOMER, "hi", sid)
                .into_iter()
                .filter(|(k, _)| k != "MessageSid")
                .collect(),
        ),
        (
            "From not a phone",
            TestApp::inbound_params("not-a-phone", "hi", sid),
        ),
        (
            "MessageSid malformed",
            TestApp::inbound_params(CUSTOMER, "hi", "SM bad/../sid"),
        ),
        (
            "NumMedia not a number",
            TestApp::inbound_params(CUSTOMER, "hi", sid)
                .into_iter()
                .map(|(k, v)| {
                    if k == "NumMedia" {
                        (k, "lots".into())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
        ),
    ];
    for (name, params) in cases {
        let response = app.post_signed("/api/sms/inbound", &params).await;
        assert_eq!(response.status(), 400, "{name}");
    }

    // Not a form at all.
    let response = app
        .http
        .post(format!("{}/api/sms/inbound", app.address))
        .header("content-type", "application/json")
        .body("{\"From\": \"+15035551234\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // Not UTF-8.
    let response = app
        .http
        .post(format!("{}/api/sms/inbound", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0x42u8, 0x6f, 0x64, 0x79, 0x3d, 0xff, 0xfe])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // Far larger than any Twilio webhook.
    let huge = "x".repeat(200 * 1024);
    let response = app
        .http
        .post(format!("{}/api/sms/inbound", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("Body={huge}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    assert!(app.conversation(CUSTOMER).await.is_none());
    // The server is still up.
    let health = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn media_and_every_parameter_are_kept() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let mut params =
        TestApp::inbound_params(CUSTOMER, "here's the pile", "MM0000000000000000000000000000a004");
    for (k, v) in params.iter_mut() {
        if k == "NumMedia" {
            *v = "2".into();
        }
    }
    params.push(("MediaUrl0".into(), "https://api.twilio.com/media/1".into()));
    params.push(("MediaUrl1".into(), "https://api.twilio.com/media/2".into()));
    params.push(("MediaContentType0".into(), "image/jpeg".into()));
    assert_eq!(app.post_signed("/api/sms/inbound", &params).await.status(), 200);
    let messages = app.messages(CUSTOMER).await;
    assert_eq!(messages[0].num_media, 2);
    let sql = app.sql().await;
    let media: String = sql
        .scalar(
            "SELECT CAST(media_urls AS TEXT) FROM messages WHERE channel_message_id = 'MM0000000000000000000000000000a004'",
            &[],
        )
        .await;
    let params: String = sql
        .scalar(
            "SELECT CAST(params AS TEXT) FROM messages WHERE channel_message_id = 'MM0000000000000000000000000000a004'",
            &[],
        )
        .await;
    let media: Vec<String> = serde_json::from_str(&media).unwrap();
    assert_eq!(
        media,
        vec!["https://api.twilio.com/media/1", "https://api.twilio.com/media/2"]
    );
    let params: serde_json::Value = serde_json::from_str(&params).unwrap();
    assert_eq!(params["MediaContentType0"], "image/jpeg");
    assert_eq!(params["SmsStatus"], "received");
    assert_eq!(params["AccountSid"], ACCOUNT_SID);
    app.wait_for_texts(1).await;
    // The model hears about the photos.
    let requests = app.model_requests().await;
    assert!(last_user_text(&requests[0]).contains("[sent 2 photo(s)]"));
}

#[tokio::test]
async fn the_same_message_sid_five_times_gets_one_reply() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let sid = "SM0000000000000000000000000000a005";
    for _ in 0..5 {
        app.text_with_sid(CUSTOMER, "how much for a fridge?", sid).await;
    }
    let sent = app.wait_for_texts(1).await;
    app.wait_until_idle().await;
    let sent_after = app.sent_texts().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent_after.len(), 1, "a retried webhook produced a second reply");
    assert_eq!(app.model_requests().await.len(), 1);
    let inbound: Vec<_> = app
        .messages(CUSTOMER)
        .await
        .into_iter()
        .filter(|m| m.direction == textdesk::store::Direction::Inbound)
        .collect();
    assert_eq!(inbound.len(), 1);
}

#[tokio::test]
async fn concurrent_retries_of_one_text_store_it_once() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let sid = "SM0000000000000000000000000000a006";
    let posts = (0..5).map(|_| app.text_with_sid(CUSTOMER, "race", sid));
    futures::future::join_all(posts).await;
    app.wait_for_texts(1).await;
    app.wait_until_idle().await;
    assert_eq!(app.sent_texts().await.len(), 1);
}

#[tokio::test]
async fn healthz_is_liveness_and_readyz_reports_the_database() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let response = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["database"], "ok");
}

/// Texts arriving together share one durable commit (group commit), and
/// each sender still hears its own outcome: new texts are stored once each,
/// copies of one SID in the same group are duplicates of the first, and
/// the writer is back on `synchronous = NORMAL` for the turns' commits
/// (SQLite's; on Postgres the outcomes are checked, not the pragma).
#[tokio::test]
async fn texts_committed_together_each_get_their_own_outcome() {
    if crate::helpers::skipped() {
        return;
    }
    use std::collections::HashSet;

    use textdesk::domain::phone::E164;
    use textdesk::store::{InboundMessage, Recorded};

    let db = crate::helpers::TestDb::new().await;
    // On SQLite, the store itself: its writer's pragma is checked below.
    let sqlite = match db.is_postgres() {
        true => None,
        false => Some(std::sync::Arc::new(
            textdesk::store::sqlite::SqliteStore::connect(&db.url)
                .await
                .unwrap(),
        )),
    };
    let store: std::sync::Arc<dyn textdesk::store::Store> = match &sqlite {
        Some(sqlite) => sqlite.clone(),
        None => db.store().await,
    };
    let text = |i: usize, sid: String| InboundMessage {
        business_id: "test".into(),
        channel_message_id: sid,
        from: E164::parse(&format!("+1503555{:04}", i % 7)).unwrap(),
        to: E164::parse("+15035550142").unwrap(),
        body: format!("text {i}"),
        media: Vec::new(),
        params: serde_json::json!({}),
        opt_out_keyword: None,
        profile_name: None,
    };
    let repeated = "SM00000000000000000000000000000042".to_string();
    let mut texts: Vec<InboundMessage> = (0..40).map(|i| text(i, format!("SM{i:032x}"))).collect();
    // A retry of one text, arriving with it and with the others.
    for i in [3, 17, 39] {
        texts.insert(i, text(99, repeated.clone()));
    }
    let outcomes = futures::future::join_all(texts.iter().map(|t| store.record_inbound(t))).await;

    let mut new_ids = HashSet::new();
    let mut repeated_ids = Vec::new();
    let mut repeated_new = 0;
    for (sms, outcome) in texts.iter().zip(outcomes) {
        match outcome.unwrap() {
            Recorded::New(_, id) => {
                assert!(new_ids.insert(id), "message id {id:?} handed out twice");
                if sms.channel_message_id == repeated {
                    repeated_new += 1;
                    repeated_ids.push(id);
                }
            }
            Recorded::Duplicate(_, id) => {
                assert_eq!(
                    sms.channel_message_id, repeated,
                    "only the retried SID is a duplicate"
                );
                repeated_ids.push(id);
            }
        }
    }
    assert_eq!(
        new_ids.len(),
        41,
        "40 texts and one retried text, each stored once"
    );
    assert_eq!(repeated_new, 1, "the retried text is new exactly once");
    assert!(
        repeated_ids.iter().all(|id| *id == repeated_ids[0]),
        "every copy names the one stored text: {repeated_ids:?}"
    );
    let sql = db.sql().await;
    assert_eq!(sql.count("SELECT COUNT(*) FROM messages", &[]).await, 41);
    sql.close().await;
    if let Some(sqlite) = &sqlite {
        // 1 = NORMAL: only the inbound commit pays for FULL.
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(sqlite.writer_pool())
            .await
            .unwrap();
        assert_eq!(synchronous, 1);
    }
}
