//! From a stored text to a reply handed to Twilio.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use textdesk::domain::sms_text::{Encoding, segment_info};
use textdesk::store::Direction;
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::*;

const ALICE: &str = "+15035551234";
const BOB: &str = "+15035559876";

#[tokio::test]
async fn a_text_gets_a_claude_reply_through_twilio_recorded_with_its_sid() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    app.text(ALICE, "Can you take an old couch?").await;
    let sent = app.wait_for_texts(1).await;
    assert_eq!(
        sent,
        vec![(ALICE.to_string(), "Re: Can you take an old couch?".to_string())]
    );

    let twilio_request = &app.twilio.received_requests().await.unwrap()[0];
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(&twilio_request.body)
        .into_owned()
        .collect();
    assert_eq!(form["From"], BUSINESS_NUMBER);
    assert!(twilio_request.url.path().contains(ACCOUNT_SID));
    assert!(
        twilio_request
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );

    app.wait_until_settled(ALICE).await;
    let messages = app.messages(ALICE).await;
    let reply = messages
        .iter()
        .find(|m| m.direction == Direction::Outbound)
        .unwrap();
    assert_eq!(reply.status, "sent");
    assert_eq!(
        reply.channel_message_id.as_deref(),
        Some("SMout000000000000000000000000000000")
    );
    assert_eq!(messages[0].status, "handled");
}

#[tokio::test]
async fn claude_is_called_as_documented() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    app.text(ALICE, "hello").await;
    app.wait_for_texts(1).await;
    let request = &app.anthropic.received_requests().await.unwrap()[0];
    assert_eq!(request.headers["anthropic-version"], "2023-06-01");
    assert_eq!(request.headers["x-api-key"], "test-anthropic-key");
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["model"], "claude-sonnet-4-6");
    let system = body["system"][0]["text"].as_str().unwrap();
    assert!(system.contains("Rose City Junk Haulers"));
    assert!(system.contains("Never state a price"));
    // Per turn, so outside the cached system prompt.
    assert!(!system.contains("first message"));
    assert!(prompt_text(&body).contains("first message"));
}

#[tokio::test]
async fn a_second_text_is_answered_with_the_first_in_context() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    app.text(ALICE, "I have a couch and a fridge").await;
    app.wait_for_texts(1).await;
    app.text(ALICE, "Also a mattress").await;
    app.wait_for_texts(2).await;

    let requests = app.model_requests().await;
    assert_eq!(requests.len(), 2);
    let second = &requests[1];
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{second}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"][0]["text"], "I have a couch and a fridge");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(
        messages[1]["content"][0]["text"],
        "Re: I have a couch and a fridge"
    );
    assert_eq!(message_text(&messages[2]), "Also a mattress");
    assert!(!prompt_text(second).contains("first message"));
}

#[tokio::test]
async fn history_is_limited_to_the_configured_number_of_messages() {
    if crate::helpers::skipped() {
        return;
    }
    let mut app = spawn_app().await;
    app.business.assistant.history_messages = 3;
    app.crash_and_restart().await;
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        app.text(ALICE, text).await;
        app.wait_for_texts(i + 1).await;
    }
    let requests = app.model_requests().await;
    let last = requests.last().unwrap();
    let texts: Vec<String> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(message_text)
        .collect();
    assert_eq!(texts, vec!["two", "Re: two", "three"]);
}

#[tokio::test]
async fn two_customers_interleaved_keep_separate_histories() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    app.text(ALICE, "alice one").await;
    app.text(BOB, "bob one").await;
    app.wait_for_texts(2).await;
    app.text(ALICE, "alice two").await;
    app.text(BOB, "bob two").await;
    let sent = app.wait_for_texts(4).await;
    assert_eq!(sent.len(), 4);

    for request in app.model_requests().await {
        let all = request["messages"].to_string();
        let alice = all.contains("alice");
        let bob = all.contains("bob");
        assert!(alice ^ bob, "histories mixed: {all}");
    }
    let to_alice: Vec<_> = sent
        .iter()
        .filter(|(to, _)| to == ALICE)
        .map(|(_, b)| b.as_str())
        .collect();
    let to_bob: Vec<_> = sent
        .iter()
        .filter(|(to, _)| to == BOB)
        .map(|(_, b)| b.as_str())
        .collect();
    assert_eq!(to_alice, vec!["Re: alice one", "Re: alice two"]);
    assert_eq!(to_bob, vec!["Re: bob one", "Re: bob two"]);
}

#[tokio::test]
async fn overloaded_529_then_success_gives_one_reply() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        default_fakes: false,
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(529)
                .insert_header("retry-after", "0")
                .set_body_json(
                    json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.anthropic)
        .await;
    mount_echo_claude(&app.anthropic).await;

    app.text(ALICE, "anyone there?").await;
    let sent = app.wait_for_texts(1).await;
    app.wait_until_idle().await;
    assert_eq!(app.sent_texts().await.len(), 1);
    assert_eq!(sent[0].1, "Re: anyone there?");
    assert_eq!(app.model_requests().await.len(), 2);
    assert!(app.store.alerts().await.unwrap().is_empty());
}

#[tokio::test]
async fn anthropic_down_gives_an_apology_the_guided_flow_and_an_owner_alert() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        default_fakes: false,
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream connect error"))
        .mount(&app.anthropic)
        .await;

    app.text(ALICE, "need a quote").await;
    let sent = app.wait_for_texts(1).await;
    assert_eq!(sent.len(), 1);
    // An apology, and the guided flow's first question: the customer can
    // still get a quote while Claude is down.
    assert!(
        sent[0].1.starts_with("Sorry, our assistant is having trouble"),
        "{}",
        sent[0].1
    );
    assert!(
        sent[0]
            .1
            .contains("What needs to go? Reply with a number:\n1) a few items"),
        "{}",
        sent[0].1
    );
    // 1 try + ANTHROPIC_MAX_RETRIES=2.
    assert_eq!(app.model_requests().await.len(), 3);

    app.wait_until_settled(ALICE).await;
    let alerts = app.store.alerts().await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, "model_unavailable");
    assert!(alerts[0].detail.contains("503"), "{}", alerts[0].detail);
    // The owner gets a number they can call (logs mask it).
    assert!(alerts[0].detail.contains(ALICE), "{}", alerts[0].detail);
    // The text is answered (by the guided flow) and stays context for the
    // next turn.
    let messages = app.messages(ALICE).await;
    assert_eq!(messages[0].status, "handled");
    assert_eq!(messages[1].kind, "guided");

    // Claude comes back: the next text is answered with the earlier one in view.
    app.anthropic.reset().await;
    mount_echo_claude(&app.anthropic).await;
    app.text(ALICE, "hello again").await;
    let sent = app.wait_for_texts(2).await;
    assert_eq!(sent[1].1, "Re: hello again");
    let request = &app.model_requests().await[0];
    assert!(request["messages"].to_string().contains("need a quote"));
}

#[tokio::test]
async fn a_rejected_key_is_not_retried_and_alerts_the_owner() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        default_fakes: false,
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
        ))
        .mount(&app.anthropic)
        .await;
    app.text(ALICE, "hi").await;
    let sent = app.wait_for_texts(1).await;
    assert!(sent[0].1.starts_with("Sorry"));
    assert_eq!(app.model_requests().await.len(), 1);
    app.wait_until_settled(ALICE).await;
    let alerts = app.store.alerts().await.unwrap();
    assert!(
        alerts[0]
            .detail
            .contains("authentication_error: invalid x-api-key"),
        "{}",
        alerts[0].detail
    );
}

#[tokio::test]
async fn a_restart_mid_turn_still_completes_the_turn_once() {
    if crate::helpers::skipped() {
        return;
    }
    let mut app = spawn_app_with(Options {
        default_fakes: false,
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    // Claude hangs: the process will die while waiting for it.
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(claude_text("too late"))
                .set_delay(Duration::from_secs(60)),
        )
        .mount(&app.anthropic)
        .await;
    app.text(ALICE, "are you open sunday?").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.model_requests().await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the turn never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    app.anthropic.reset().await;
    mount_echo_claude(&app.anthropic).await;
    app.crash_and_restart().await;

    let sent = app.wait_for_texts(1).await;
    app.wait_until_idle().await;
    assert_eq!(
        app.sent_texts().await.len(),
        1,
        "the restarted turn replied more than once"
    );
    assert_eq!(sent[0].1, "Re: are you open sunday?");
    app.wait_until_settled(ALICE).await;
    let replies = app
        .messages(ALICE)
        .await
        .into_iter()
        .filter(|m| m.direction == Direction::Outbound)
        .count();
    assert_eq!(replies, 1);
}

/// A crash after a turn committed its reply and before the POST: the row
/// is as `finish_turn` left it (`sending`, attempts 1). At restart it is
/// claimed a second time, Twilio's message list (mounted, and asked) does
/// not have it, and it is POSTed exactly once.
#[tokio::test]
async fn a_reply_committed_but_not_posted_before_a_crash_is_sent_once_after_restart() {
    if crate::helpers::skipped() {
        return;
    }
    let mut app = spawn_app().await;
    app.text(ALICE, "first").await;
    app.wait_for_texts(1).await;
    app.wait_until_settled(ALICE).await;
    app.crash().await;
    // The process is down: a turn's commit, as the worker makes it, with
    // no send after it.
    let conversation = app.conversation(ALICE).await.unwrap();
    let inbound = textdesk::store::InboundMessage {
        business_id: app.business.business.id.clone(),
        channel_message_id: "SM0000000000000000000000000000c001".into(),
        from: textdesk::domain::phone::E164::parse(ALICE).unwrap(),
        to: textdesk::domain::phone::E164::parse(BUSINESS_NUMBER).unwrap(),
        body: "second".into(),
        media: vec![],
        params: json!({}),
        opt_out_keyword: None,
        profile_name: None,
    };
    let textdesk::store::Recorded::New(_, through) = app.store.record_inbound(&inbound).await.unwrap() else {
        panic!("a new text")
    };
    let turn = app.store.turn_input(conversation, 10).await.unwrap();
    let reply = app
        .store
        .finish_turn(
            conversation,
            textdesk::store::TurnCommit {
                through,
                reply: Some(textdesk::store::OutboundDraft {
                    kind: textdesk::store::MessageKind::Reply,
                    body: "committed before the crash".into(),
                }),
                held: None,
                state: turn.state,
                new_quotes: vec![],
                alerts: vec![],
                jobs: vec![],
                cancel_jobs: vec![],
                model_calls: None,
                spoken: None,
            },
        )
        .await
        .unwrap()
        .expect("the reply is stored claimed");
    assert_eq!(reply.attempts, 1);
    let row = app
        .messages(ALICE)
        .await
        .into_iter()
        .find(|m| m.id == reply.id)
        .unwrap();
    assert_eq!(row.status, "sending");
    // Twilio's list has only the first reply, not this one.
    Mock::given(method("GET"))
        .and(path_regex(r"^/2010-04-01/Accounts/[^/]+/Messages\.json$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messages": [{"sid": "SMout000000000000000000000000000000", "body": "Re: first",
                          "date_created": chrono::Utc::now().to_rfc2822()}]
        })))
        .mount(&app.twilio)
        .await;
    assert_eq!(app.sent_texts().await.len(), 1);

    app.restart().await;
    let sent = app.wait_for_texts(2).await;
    app.wait_until_idle().await;
    assert_eq!(app.sent_texts().await.len(), 2, "sent more than once");
    assert_eq!(sent[1].1, "committed before the crash");
    let asked = app
        .twilio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert!(asked >= 1, "Twilio's list was not asked before sending again");
    let row = app
        .messages(ALICE)
        .await
        .into_iter()
        .find(|m| m.id == reply.id)
        .unwrap();
    assert_eq!(row.status, "sent");
}

/// A slow Claude that counts how many calls are in flight at once: for
/// all conversations, and for the one whose texts mention `watched`.
struct SlowCountingClaude {
    watched: &'static str,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    watched_in_flight: Arc<AtomicUsize>,
    max_watched_in_flight: Arc<AtomicUsize>,
}

impl Respond for SlowCountingClaude {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        // wiremock calls this synchronously when the request arrives; the
        // delay below keeps it "in flight" as far as the app can tell.
        let watched = String::from_utf8_lossy(&request.body).contains(self.watched);
        let mut counters = vec![(self.in_flight.clone(), self.max_in_flight.clone())];
        if watched {
            counters.push((self.watched_in_flight.clone(), self.max_watched_in_flight.clone()));
        }
        for (now, max) in &counters {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(n, Ordering::SeqCst);
        }
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            for (now, _) in counters {
                now.fetch_sub(1, Ordering::SeqCst);
            }
        });
        EchoClaude.respond(request).set_delay(Duration::from_millis(300))
    }
}

#[tokio::test]
async fn one_customers_burst_is_handled_one_turn_at_a_time_in_order() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        default_fakes: false,
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let max_alice_in_flight = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(SlowCountingClaude {
            watched: "junk gone",
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: max_in_flight.clone(),
            watched_in_flight: Arc::new(AtomicUsize::new(0)),
            max_watched_in_flight: max_alice_in_flight.clone(),
        })
        .mount(&app.anthropic)
        .await;

    // Alice's burst, and beside it other customers' texts: their turns
    // overlap Alice's (proving the fake sees overlapping turns), Alice's
    // own never overlap each other.
    for (i, text) in ["I need junk gone", "a couch", "and two chairs"]
        .into_iter()
        .enumerate()
    {
        app.text(ALICE, text).await;
        app.text(&format!("+1503555200{i}"), "hello from someone else")
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every text answered; the last reply answers the last text.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sent = app.sent_texts().await;
        let to_alice = sent.iter().rfind(|(to, _)| to == ALICE);
        if to_alice.is_some_and(|(_, b)| b == "Re: and two chairs") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "burst not answered: {sent:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.wait_until_settled(ALICE).await;
    for i in 0..3 {
        app.wait_until_settled(&format!("+1503555200{i}")).await;
    }
    assert!(
        max_in_flight.load(Ordering::SeqCst) >= 2,
        "turns of different conversations never overlapped, so this test could not see two of one"
    );
    assert_eq!(
        max_alice_in_flight.load(Ordering::SeqCst),
        1,
        "two turns of one conversation ran at once"
    );
    let sent: Vec<_> = app
        .sent_texts()
        .await
        .into_iter()
        .filter(|(to, _)| to == ALICE)
        .collect();
    assert!(sent.len() <= 3 && !sent.is_empty());
    // The texts reached the model in the order they were sent, and every
    // request ends with the customer, never with our own reply.
    let requests: Vec<_> = app
        .model_requests()
        .await
        .into_iter()
        .filter(|r| r.to_string().contains("junk gone"))
        .collect();
    assert!(!requests.is_empty());
    for request in &requests {
        let messages = request["messages"].as_array().unwrap();
        assert_eq!(messages.last().unwrap()["role"], "user", "{request}");
    }
    let last = requests.last().unwrap()["messages"].to_string();
    let a = last.find("I need junk gone").unwrap();
    let b = last.find("a couch").unwrap();
    let c = last.find("and two chairs").unwrap();
    assert!(a < b && b < c);
}

#[tokio::test]
async fn replies_are_gsm7_and_at_most_two_segments() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        default_fakes: false,
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    let long = "We\u{2019}d be glad to help \u{2014} our crew can be there soon\u{2026} ".repeat(12);
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(claude_text(&long)))
        .mount(&app.anthropic)
        .await;
    app.text(ALICE, "hi").await;
    let sent = app.wait_for_texts(1).await;
    let body = &sent[0].1;
    let info = segment_info(body);
    assert_eq!(info.encoding, Encoding::Gsm7, "{body}");
    assert!(info.segments <= 2, "{info:?}");
    assert!(
        body.starts_with("We'd be glad to help - our crew can be there soon..."),
        "{body}"
    );
}

#[tokio::test]
async fn stop_is_honoured_before_the_model_and_start_reverses_it() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    app.text(ALICE, "STOP").await;
    app.wait_until_settled(ALICE).await;
    app.wait_until_idle().await;
    assert!(app.sent_texts().await.is_empty(), "texted someone who said STOP");
    assert!(app.model_requests().await.is_empty());

    app.text(ALICE, "are you still there?").await;
    app.wait_until_settled(ALICE).await;
    app.wait_until_idle().await;
    assert!(app.sent_texts().await.is_empty(), "texted an opted-out customer");

    app.text(ALICE, "START").await;
    app.wait_until_settled(ALICE).await;
    app.text(ALICE, "ok I need a haul").await;
    let sent = app.wait_for_texts(1).await;
    assert_eq!(sent[0].1, "Re: ok I need a haul");
}

#[tokio::test]
async fn help_is_answered_by_code() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    app.text(ALICE, "help").await;
    let sent = app.wait_for_texts(1).await;
    assert!(sent[0].1.contains("Rose City Junk Haulers"));
    assert!(sent[0].1.contains("+15035550142"));
    assert!(sent[0].1.contains("Reply STOP to opt out"));
    assert!(app.model_requests().await.is_empty());
}

#[tokio::test]
async fn twilio_21610_marks_the_customer_opted_out_without_retry() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        default_fakes: false,
        ..Options::default()
    })
    .await;
    mount_echo_claude(&app.anthropic).await;
    Mock::given(method("POST"))
        .and(path_regex(r"/Messages\.json$"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21610,
            "message": "Attempt to send to unsubscribed recipient",
            "more_info": "https://www.twilio.com/docs/errors/21610",
            "status": 400
        })))
        .mount(&app.twilio)
        .await;
    app.text(ALICE, "hi").await;
    app.wait_for_texts(1).await;
    app.wait_until_settled(ALICE).await;
    app.wait_until_idle().await;
    assert_eq!(app.sent_texts().await.len(), 1, "21610 was retried");
    let messages = app.messages(ALICE).await;
    assert_eq!(messages[1].status, "opted_out");

    // Opted out now: the next text gets no reply attempt at all.
    app.text(ALICE, "hello?").await;
    app.wait_until_settled(ALICE).await;
    app.wait_until_idle().await;
    assert_eq!(app.sent_texts().await.len(), 1);
}

#[tokio::test]
async fn twilio_hiccup_is_retried_and_delivered_once() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        default_fakes: false,
        ..Options::default()
    })
    .await;
    mount_echo_claude(&app.anthropic).await;
    Mock::given(method("POST"))
        .and(path_regex(r"/Messages\.json$"))
        .respond_with(ResponseTemplate::new(503).set_body_string("busy"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.twilio)
        .await;
    mount_twilio_accepting(&app.twilio).await;
    app.text(ALICE, "hi").await;
    app.wait_for_texts(2).await;
    app.wait_until_settled(ALICE).await;
    let messages = app.messages(ALICE).await;
    assert_eq!(messages[1].status, "sent");
    assert_eq!(app.sent_texts().await.len(), 2);
}

#[tokio::test]
async fn anthropic_requests_carry_the_pinned_version_header() {
    if crate::helpers::skipped() {
        return;
    }
    // Only requests with the pinned header are answered; anything else 404s.
    let app = spawn_app_with(Options {
        default_fakes: false,
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(EchoClaude)
        .mount(&app.anthropic)
        .await;
    app.text(ALICE, "version check").await;
    let sent = app.wait_for_texts(1).await;
    assert_eq!(sent[0].1, "Re: version check");
}

#[tokio::test]
async fn twilio_opt_out_type_is_honoured() {
    if crate::helpers::skipped() {
        return;
    }
    // With Advanced Opt-Out, Twilio marks the opt-out itself: a text that
    // is not a bare keyword ("Stop texting me please") still opts out.
    let app = spawn_app().await;
    let mut params = TestApp::inbound_params(
        ALICE,
        "Stop texting me please",
        "SM0000000000000000000000000000b001",
    );
    params.push(("OptOutType".into(), "STOP".into()));
    assert_eq!(app.post_signed("/api/sms/inbound", &params).await.status(), 200);
    app.wait_until_settled(ALICE).await;
    app.wait_until_idle().await;
    assert!(app.sent_texts().await.is_empty());
    assert!(app.model_requests().await.is_empty());
    let mut params = TestApp::inbound_params(ALICE, "ok start again", "SM0000000000000000000000000000b002");
    params.push(("OptOutType".into(), "START".into()));
    app.post_signed("/api/sms/inbound", &params).await;
    app.wait_until_settled(ALICE).await;
    app.text(ALICE, "need a haul").await;
    let sent = app.wait_for_texts(1).await;
    assert_eq!(sent[0].1, "Re: need a haul");
}
