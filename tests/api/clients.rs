//! Our HTTP clients against local fake servers: success, error bodies,
//! retries and timeouts.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::json;
use textdesk::anthropic::{
    AnthropicClient, ApiMessage, ContentBlock, MessagesRequest, ModelClient, ModelError, Role, SystemBlock,
    Usage,
};
use textdesk::channel::twilio::TwilioChannel;
use textdesk::channel::{ChannelPort, Content, SendError};
use textdesk::config::settings::{AnthropicSettings, TwilioCredentials};
use textdesk::domain::phone::E164;
use textdesk::twilio::TwilioClient;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::claude_text;

fn anthropic(server: &MockServer, timeout: Duration) -> AnthropicClient {
    anthropic_at(&server.uri(), timeout)
}

fn anthropic_at(base_url: &str, timeout: Duration) -> AnthropicClient {
    AnthropicClient::new(AnthropicSettings {
        api_key: SecretString::from("k"),
        model: "claude-haiku-4-5".into(),
        base_url: base_url.parse().unwrap(),
        max_retries: 2,
        retry_base: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(2),
        timeout,
        max_tokens: 50,
        max_tool_rounds: 2,
    })
}

fn request() -> MessagesRequest {
    MessagesRequest {
        model: "claude-haiku-4-5".into(),
        max_tokens: 50,
        system: vec![SystemBlock::text("be brief", true)],
        messages: vec![ApiMessage::new(
            Role::User,
            vec![ContentBlock::Text { text: "hi".into() }],
        )],
        tools: vec![],
    }
}

#[tokio::test]
async fn anthropic_success() {
    if crate::helpers::skipped() {
        return;
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(claude_text("hello")))
        .mount(&server)
        .await;
    let response = anthropic(&server, Duration::from_secs(2))
        .create_message(&request())
        .await
        .unwrap();
    assert_eq!(
        response.content,
        vec![ContentBlock::Text { text: "hello".into() }]
    );
}

#[tokio::test]
async fn anthropic_usage_is_read_with_its_cache_fields_and_nulls_as_zero() {
    let server = MockServer::start().await;
    let mut body = claude_text("hello");
    body["usage"] = json!({
        "input_tokens": 21, "cache_read_input_tokens": 1800,
        "cache_creation_input_tokens": null, "output_tokens": 7
    });
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let response = anthropic(&server, Duration::from_secs(2))
        .create_message(&request())
        .await
        .unwrap();
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 21,
            cache_read_input_tokens: 1800,
            cache_creation_input_tokens: 0,
            output_tokens: 7,
        }
    );
    // The system block went out as the API takes a cached one.
    let sent: serde_json::Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}])
    );
}

#[tokio::test]
async fn anthropic_400_is_final_and_reports_the_error_body() {
    if crate::helpers::skipped() {
        return;
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}),
        ))
        .mount(&server)
        .await;
    let err = anthropic(&server, Duration::from_secs(2))
        .create_message(&request())
        .await
        .unwrap_err();
    match err {
        ModelError::Rejected { status, message } => {
            assert_eq!(status, 400);
            assert_eq!(message, "invalid_request_error: max_tokens: too large");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn anthropic_429_honours_retry_after() {
    if crate::helpers::skipped() {
        return;
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(
                    json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
                ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(claude_text("ok")))
        .mount(&server)
        .await;
    let started = Instant::now();
    anthropic(&server, Duration::from_secs(2))
        .create_message(&request())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "retry-after ignored");
}

#[tokio::test]
async fn anthropic_gives_up_when_retry_after_is_too_long() {
    if crate::helpers::skipped() {
        return;
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "600"))
        .mount(&server)
        .await;
    let started = Instant::now();
    let err = anthropic(&server, Duration::from_secs(2))
        .create_message(&request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Unavailable { attempts: 1, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn anthropic_500_and_529_retry_a_bounded_number_of_times() {
    if crate::helpers::skipped() {
        return;
    }
    for status in [500u16, 529] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
        let err = anthropic(&server, Duration::from_secs(2))
            .create_message(&request())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ModelError::Unavailable { attempts: 3, .. }),
            "{status}: {err:?}"
        );
        assert_eq!(server.received_requests().await.unwrap().len(), 3);
    }
}

#[tokio::test]
async fn anthropic_x_should_retry_false_is_respected() {
    if crate::helpers::skipped() {
        return;
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).insert_header("x-should-retry", "false"))
        .mount(&server)
        .await;
    let err = anthropic(&server, Duration::from_secs(2))
        .create_message(&request())
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::Rejected { status: 500, .. }), "{err:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn anthropic_timeouts_are_retried_then_reported() {
    if crate::helpers::skipped() {
        return;
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(claude_text("late"))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let started = Instant::now();
    let err = anthropic(&server, Duration::from_millis(200))
        .create_message(&request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Unavailable { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn anthropic_unreachable_is_unavailable() {
    if crate::helpers::skipped() {
        return;
    }
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = anthropic_at(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1));
    let err = client.create_message(&request()).await.unwrap_err();
    assert!(matches!(err, ModelError::Unavailable { .. }), "{err:?}");
}

fn twilio(server: &MockServer, timeout: Duration) -> TwilioChannel {
    TwilioChannel::new(TwilioClient::new(
        &server.uri().parse().unwrap(),
        TwilioCredentials {
            account_sid: "ACx".into(),
            auth_token: SecretString::from("tok"),
        },
        timeout,
    ))
    .with_retry_base(Duration::from_millis(5))
}

fn from() -> E164 {
    E164::parse("+15035550142").unwrap()
}

fn to() -> E164 {
    E164::parse("+15035551234").unwrap()
}

#[tokio::test]
async fn twilio_success_returns_the_sid() {
    if crate::helpers::skipped() {
        return;
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/ACx/Messages.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM123", "status": "queued"})))
        .mount(&server)
        .await;
    assert_eq!(
        twilio(&server, Duration::from_secs(2))
            .send(&from(), &to(), Content::Text("hi"))
            .await
            .unwrap(),
        "SM123"
    );
}

#[tokio::test]
async fn twilio_error_bodies_are_classified() {
    if crate::helpers::skipped() {
        return;
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"code": 21211, "message": "The 'To' number +15035551234 is not a valid phone number.", "status": 400})),
        )
        .mount(&server)
        .await;
    let err = twilio(&server, Duration::from_secs(2))
        .send(&from(), &to(), Content::Text("hi"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SendError::Rejected {
            status: 400,
            code: Some(21211),
            // The number Twilio quoted back is masked before it can be logged.
            message: "The 'To' number +1503***1234 is not a valid phone number.".into()
        }
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({"code": 21610, "message": "unsubscribed"})),
        )
        .mount(&server)
        .await;
    let err = twilio(&server, Duration::from_secs(2))
        .send(&from(), &to(), Content::Text("hi"))
        .await
        .unwrap_err();
    assert_eq!(err, SendError::OptedOut);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn twilio_5xx_and_429_are_retried_then_unavailable() {
    if crate::helpers::skipped() {
        return;
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429).set_body_json(json!({"code": 20429, "message": "Too Many Requests"})),
        )
        .mount(&server)
        .await;
    let err = twilio(&server, Duration::from_secs(2))
        .send(&from(), &to(), Content::Text("hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SendError::Unavailable(ref m) if m.contains("Too Many Requests")),
        "{err:?}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn twilio_timeout_is_ambiguous_and_not_retried() {
    if crate::helpers::skipped() {
        return;
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"sid": "SMlate"}))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let err = twilio(&server, Duration::from_millis(200))
        .send(&from(), &to(), Content::Text("hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Ambiguous(_)), "{err:?}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "a maybe-sent text was sent again"
    );
}

/// Twilio's list, as it shows an earlier send: a template's rendered body.
async fn mount_listed(server: &MockServer, body: &str) {
    Mock::given(method("GET"))
        .and(path("/2010-04-01/Accounts/ACx/Messages.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messages": [{
                "sid": "SMlisted0000000000000000000000001",
                "body": body,
                "date_created": chrono::Utc::now().to_rfc2822(),
            }]
        })))
        .mount(server)
        .await;
}

#[tokio::test]
async fn twilio_finds_an_interrupted_template_send_by_the_text_it_carried() {
    if crate::helpers::skipped() {
        return;
    }
    let server = MockServer::start().await;
    // The approved template: "{{1}}: {{2}} Reply STOP to opt out."
    mount_listed(
        &server,
        "Rose City Junk Haulers: Reminder: tomorrow, Tue Dec 1, 8-10am. Total $350. Reply STOP to opt out.",
    )
    .await;
    let channel = twilio(&server, Duration::from_secs(2));
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let text = "Reminder: tomorrow,\nTue Dec 1, 8-10am. Total $350.";
    let variables = textdesk::channel::whatsapp::content_variables("Rose City Junk Haulers", text);
    let template = |variables| Content::Template {
        id: "HX00000000000000000000000000000001",
        variables,
    };
    assert_eq!(
        channel
            .find_sent(&from(), &to(), template(&variables), since)
            .await
            .unwrap()
            .as_deref(),
        Some("SMlisted0000000000000000000000001")
    );
    // Another text in the same template is not this one.
    let other = textdesk::channel::whatsapp::content_variables(
        "Rose City Junk Haulers",
        "Reminder: tomorrow, Wed Dec 2, 8-10am. Total $350.",
    );
    assert_eq!(
        channel
            .find_sent(&from(), &to(), template(&other), since)
            .await
            .unwrap(),
        None
    );
    // A plain text is matched whole: the template's wording is not it.
    assert_eq!(
        channel
            .find_sent(&from(), &to(), Content::Text(text), since)
            .await
            .unwrap(),
        None
    );
}
