//! Photos a customer texts (MMS): stored with the message, fetched with the
//! account's credentials on the job queue, shown to Claude as image blocks,
//! and attached to the crew's booking email.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
use base64::Engine;
use chrono::Utc;
use serde_json::{Value, json};
use textdesk::email::{EmailSender, SesEmail};
use textdesk::jobs::plan::{EMAIL, FETCH_MEDIA};
use textdesk::jobs::runner::{JobRunner, RunnerSettings};
use textdesk::media::MAX_MEDIA_BYTES;
use textdesk::store::{JobStatus, MediaItem, MediaStatus, NewJob};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const DANA: &str = "+15035551234";
const PHOTO: &[u8] = b"\xff\xd8\xff\xe0 a pile of junk, as a JPEG";

fn media_path(n: u32) -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM00000000000000000000000000000001/Media/ME{n:032}")
}

/// An MMS as Twilio posts it: one file per (url, content type).
fn mms_params(body: &str, sid: &str, media: &[(String, &str)]) -> Vec<(String, String)> {
    let mut params = TestApp::inbound_params(DANA, body, sid);
    for (k, v) in params.iter_mut() {
        if k == "NumMedia" {
            *v = media.len().to_string();
        }
    }
    for (i, (url, content_type)) in media.iter().enumerate() {
        params.push((format!("MediaUrl{i}"), url.clone()));
        params.push((format!("MediaContentType{i}"), content_type.to_string()));
    }
    params
}

fn mms_sid(n: u32) -> String {
    format!("MM{n:032x}")
}

/// The customer's stored files, once the first text with media is stored.
async fn dana_media(app: &TestApp) -> Vec<MediaItem> {
    let messages = app.messages(DANA).await;
    let Some(with_media) = messages.iter().find(|m| m.num_media > 0) else {
        return Vec::new();
    };
    app.store.message_media(with_media.id).await.unwrap()
}

/// Waits (polling) until the first file is no longer pending.
async fn wait_for_media_settled(app: &TestApp) -> MediaItem {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(item) = dana_media(app).await.into_iter().next()
            && item.status != MediaStatus::Pending
        {
            return item;
        }
        assert!(Instant::now() < deadline, "the photo was never fetched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (polling) until `n` jobs in `status` match.
async fn wait_for_jobs(
    app: &TestApp,
    status: JobStatus,
    matches: impl Fn(&textdesk::store::Job) -> bool,
    n: usize,
) -> Vec<textdesk::store::Job> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let jobs: Vec<_> = app
            .store
            .jobs(&[status], 100)
            .await
            .unwrap()
            .into_iter()
            .filter(&matches)
            .collect();
        if jobs.len() >= n {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} {status:?} jobs, got {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn basic_auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    )
}

/// Twilio's media URL redirects to its CDN, as the real one does.
async fn mount_redirecting_media(app: &TestApp, cdn: &MockServer, n: u32) {
    Mock::given(method("GET"))
        .and(path(media_path(n)))
        .respond_with(
            ResponseTemplate::new(307).insert_header("Location", format!("{}/cdn/photo{n}", cdn.uri())),
        )
        .mount(&app.twilio)
        .await;
}

async fn mount_cdn_photo(cdn: &MockServer, n: u32) {
    Mock::given(method("GET"))
        .and(path(format!("/cdn/photo{n}")))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Content-Type", "image/jpeg")
                .set_body_bytes(PHOTO),
        )
        .mount(cdn)
        .await;
}

fn image_blocks(request: &Value) -> Vec<Value> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .flat_map(|m| m["content"].as_array().unwrap().clone())
        .filter(|b| b["type"] == "image")
        .collect()
}

#[tokio::test]
async fn an_mms_photo_is_fetched_through_the_redirect_and_claude_sees_it_as_an_image_block() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let cdn = MockServer::start().await;
    mount_redirecting_media(&app, &cdn, 1).await;
    mount_cdn_photo(&cdn, 1).await;

    let url = format!("{}{}", app.twilio.uri(), media_path(1));
    let params = mms_params("can you take this?", &mms_sid(1), &[(url.clone(), "image/jpeg")]);
    assert_eq!(app.post_signed("/api/sms/inbound", &params).await.status(), 200);
    app.wait_for_texts(1).await;

    let item = wait_for_media_settled(&app).await;
    assert_eq!(item.status, MediaStatus::Fetched);
    assert_eq!(item.size, Some(PHOTO.len() as i64));
    assert_eq!(item.url, url);
    assert_eq!(item.content_type, "image/jpeg");
    // Twilio's URL is asked with the account's credentials; the CDN's
    // signed URL never sees them.
    let asked: Vec<_> = app
        .twilio
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == media_path(1))
        .collect();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].headers["authorization"].to_str().unwrap(), basic_auth());
    let cdn_requests = cdn.received_requests().await.unwrap();
    assert_eq!(cdn_requests.len(), 1);
    assert!(!cdn_requests[0].headers.contains_key("authorization"));

    // The next turn carries the photo in the customer's message.
    app.text(DANA, "how much?").await;
    app.wait_for_texts(2).await;
    let requests = app.model_requests().await;
    let last = requests.last().unwrap();
    let images = image_blocks(last);
    assert_eq!(
        images,
        vec![json!({"type": "image", "source": {
            "type": "base64",
            "media_type": "image/jpeg",
            "data": base64::engine::general_purpose::STANDARD.encode(PHOTO),
        }})]
    );
    let user = &last["messages"][0];
    assert_eq!(user["role"], "user");
    assert!(
        user["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("can you take this? [sent 1 photo(s)]")
    );
}

#[tokio::test]
async fn a_media_url_on_another_host_is_recorded_and_never_fetched() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(PHOTO))
        .mount(&elsewhere)
        .await;
    // The path is Twilio's; the host is not. So is a host that merely
    // starts with the API base's text.
    let foreign = format!("{}{}", elsewhere.uri(), media_path(1));
    let lookalike = format!("{}@evil.example{}", app.twilio.uri(), media_path(2));
    let params = mms_params(
        "pile",
        &mms_sid(2),
        &[(foreign.clone(), "image/jpeg"), (lookalike.clone(), "image/png")],
    );
    assert_eq!(app.post_signed("/api/sms/inbound", &params).await.status(), 200);
    app.wait_for_texts(1).await;
    app.wait_until_settled(DANA).await;

    let media = dana_media(&app).await;
    assert_eq!(media.len(), 2);
    assert_eq!(media[0].url, foreign);
    assert_eq!(media[1].url, lookalike);
    assert!(
        media.iter().all(|m| m.status == MediaStatus::Refused),
        "{media:?}"
    );
    let all_jobs = app
        .store
        .jobs(
            &[
                JobStatus::Pending,
                JobStatus::Running,
                JobStatus::Done,
                JobStatus::Dead,
            ],
            50,
        )
        .await
        .unwrap();
    assert!(all_jobs.iter().all(|j| j.kind != FETCH_MEDIA), "{all_jobs:?}");
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
    // The model hears a photo came and could not be seen.
    let requests = app.model_requests().await;
    assert!(last_user_text(&requests[0]).contains("[photo could not be loaded]"));
    assert!(image_blocks(&requests[0]).is_empty());
}

#[tokio::test]
async fn other_media_types_are_recorded_not_fetched() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let url = format!("{}{}", app.twilio.uri(), media_path(1));
    let params = mms_params("video of it", &mms_sid(3), &[(url, "video/mp4")]);
    assert_eq!(app.post_signed("/api/sms/inbound", &params).await.status(), 200);
    app.wait_for_texts(1).await;
    app.wait_until_settled(DANA).await;
    let media = dana_media(&app).await;
    assert_eq!(media[0].status, MediaStatus::NotFetched);
    assert_eq!(media[0].content_type, "video/mp4");
    let fetched = app.twilio.received_requests().await.unwrap();
    assert!(fetched.iter().all(|r| r.method.as_str() != "GET"), "{fetched:?}");
}

/// A CDN that sends an endless image with no declared length, and counts
/// what it managed to write before the client hung up.
async fn endless_cdn() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![0xAB_u8; 64 * 1024];
                // Far past the limit (64 MB), unless the reader stops first.
                for _ in 0..1024 {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    (format!("http://{address}/cdn/endless"), written)
}

#[tokio::test]
async fn an_oversized_file_is_stopped_at_5_mb_also_behind_a_redirect() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    // Declared too large: refused on the header.
    let cdn = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(media_path(1)))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", format!("{}/cdn/big", cdn.uri())))
        .mount(&app.twilio)
        .await;
    Mock::given(method("GET"))
        .and(path("/cdn/big"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Content-Type", "image/jpeg")
                .set_body_bytes(vec![0u8; MAX_MEDIA_BYTES + 1]),
        )
        .mount(&cdn)
        .await;
    // Undeclared and endless: cut off while reading.
    let (endless, written) = endless_cdn().await;
    Mock::given(method("GET"))
        .and(path(media_path(2)))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", endless.as_str()))
        .mount(&app.twilio)
        .await;

    let params = mms_params(
        "two big ones",
        &mms_sid(4),
        &[
            (format!("{}{}", app.twilio.uri(), media_path(1)), "image/jpeg"),
            (format!("{}{}", app.twilio.uri(), media_path(2)), "image/jpeg"),
        ],
    );
    assert_eq!(app.post_signed("/api/sms/inbound", &params).await.status(), 200);
    app.wait_for_texts(1).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let media = loop {
        let media = dana_media(&app).await;
        if media.len() == 2 && media.iter().all(|m| m.status != MediaStatus::Pending) {
            break media;
        }
        assert!(Instant::now() < deadline, "never settled: {media:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        media.iter().all(|m| m.status == MediaStatus::TooLarge),
        "{media:?}"
    );
    assert!(media.iter().all(|m| m.size.is_none()));
    // The reader stopped near the limit (plus what socket buffers hold),
    // not at the 64 MB the server had.
    assert!(
        written.load(std::sync::atomic::Ordering::SeqCst) < 32 * 1024 * 1024,
        "read {} bytes",
        written.load(std::sync::atomic::Ordering::SeqCst)
    );
    // A file over the limit is not a failure to retry.
    let fetches_done = wait_for_jobs(&app, JobStatus::Done, |j| j.kind == FETCH_MEDIA, 2).await;
    assert!(fetches_done.iter().all(|j| j.attempts == 1));
}

/// A runner on the app's database and clock, run by the test.
async fn runner_for(app: &TestApp, email: Arc<dyn EmailSender>) -> JobRunner {
    let services = app.services().await;
    JobRunner {
        store: services.store.clone(),
        desks: services.desks.clone(),
        email,
        settings: RunnerSettings::default(),
        media: textdesk::app::media_fetcher(&app.settings()),
        clock: services.clock.clone(),
    }
}

#[tokio::test]
async fn a_failed_fetch_is_retried_and_the_reply_does_not_wait_for_it() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    // Twilio's media endpoint is slow and then fails; the retry succeeds.
    Mock::given(method("GET"))
        .and(path(media_path(1)))
        .respond_with(ResponseTemplate::new(500).set_delay(Duration::from_secs(4)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.twilio)
        .await;
    Mock::given(method("GET"))
        .and(path(media_path(1)))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Content-Type", "image/jpeg")
                .set_body_bytes(PHOTO),
        )
        .mount(&app.twilio)
        .await;

    let url = format!("{}{}", app.twilio.uri(), media_path(1));
    let started = Instant::now();
    let params = mms_params("here it is", &mms_sid(5), &[(url, "image/jpeg")]);
    assert_eq!(app.post_signed("/api/sms/inbound", &params).await.status(), 200);
    app.wait_for_texts(1).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the reply waited for the photo: {:?}",
        started.elapsed()
    );
    let requests = app.model_requests().await;
    assert!(last_user_text(&requests[0]).contains("[photo not yet available]"));
    assert!(image_blocks(&requests[0]).is_empty());

    // The first attempt fails and is scheduled again, not given up.
    let deadline = Instant::now() + Duration::from_secs(15);
    let job = loop {
        let pending = app.store.jobs(&[JobStatus::Pending], 50).await.unwrap();
        if let Some(job) = pending
            .into_iter()
            .find(|j| j.kind == FETCH_MEDIA && j.attempts == 1)
        {
            break job;
        }
        assert!(Instant::now() < deadline, "the failed fetch was not rescheduled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(job.last_error.as_deref().unwrap().contains("500"), "{job:?}");
    assert!(job.run_at > Utc::now());
    assert_eq!(dana_media(&app).await[0].status, MediaStatus::Pending);

    let runner = runner_for(
        &app,
        Arc::new(textdesk::email::OutboxEmail {
            dir: tempfile::tempdir().unwrap().path().into(),
            from: "t@x".into(),
            clock: textdesk::clock::system(),
        }),
    )
    .await;
    runner
        .run_due(job.run_at + chrono::Duration::seconds(1))
        .await
        .unwrap();
    let item = dana_media(&app).await.remove(0);
    assert_eq!(item.status, MediaStatus::Fetched);
    assert_eq!(item.size, Some(PHOTO.len() as i64));
}

fn ses_client(server: &MockServer) -> aws_sdk_sesv2::Client {
    let config = aws_sdk_sesv2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .endpoint_url(server.uri())
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .build();
    aws_sdk_sesv2::Client::from_conf(config)
}

/// The attachment parts of a MIME message, as (headers, decoded bytes).
fn attachments(mime: &str) -> Vec<(String, Vec<u8>)> {
    mime.split("\r\n--")
        .filter(|part| part.contains("Content-Disposition: attachment"))
        .map(|part| {
            let (headers, body) = part.split_once("\r\n\r\n").unwrap();
            let encoded: String = body.split_whitespace().collect();
            (
                headers.to_string(),
                base64::engine::general_purpose::STANDARD.decode(encoded).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_mms_photo_reaches_the_crews_booking_email_as_an_attachment() {
    if crate::helpers::skipped() {
        return;
    }
    let outbox = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Options {
        with_model: false,
        business: Some(
            "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\nowner_email = \"owner@example.com\"\n\
             [schedule]\nmin_notice_hours = 48\nhorizon_days = 14\n\
             [[providers]]\nid = \"crew-1\"\nname = \"Crew 1\"\nemail = \"crew1@example.com\"\n"
                .into(),
        ),
        extra_vars: vec![("OUTBOX_DIR", outbox.path().display().to_string())],
        ..Options::default()
    })
    .await;
    let cdn = MockServer::start().await;
    mount_redirecting_media(&app, &cdn, 1).await;
    mount_cdn_photo(&cdn, 1).await;

    let url = format!("{}{}", app.twilio.uri(), media_path(1));
    let params = mms_params("hi", &mms_sid(6), &[(url, "image/jpeg")]);
    assert_eq!(app.post_signed("/api/sms/inbound", &params).await.status(), 200);
    let sent = app.wait_for_texts(1).await;
    // The guided flow thanks for the photo and goes on with its question.
    assert!(sent[0].1.contains("Thanks for the photo!"), "{}", sent[0].1);
    assert!(!sent[0].1.contains("didn't catch"), "{}", sent[0].1);
    assert_eq!(wait_for_media_settled(&app).await.status, MediaStatus::Fetched);

    for (i, text) in ["3", "1", "12 Oak St", "1"].iter().enumerate() {
        app.text(DANA, text).await;
        app.wait_for_texts(i + 2).await;
    }
    app.wait_until_settled(DANA).await;
    assert_eq!(app.store.bookings().await.unwrap().len(), 1);

    // The app's own runner writes the crew's email to the outbox, the photo
    // attached.
    let deadline = Instant::now() + Duration::from_secs(15);
    let eml = loop {
        let found = std::fs::read_dir(outbox.path())
            .into_iter()
            .flatten()
            .flatten()
            // Only finished emails: one being written is a hidden `.partial`.
            .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .find(|eml| eml.contains("To: crew1@example.com"));
        if let Some(eml) = found {
            break eml;
        }
        assert!(Instant::now() < deadline, "no crew email in the outbox");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(eml.contains("Content-Type: multipart/mixed;"), "{eml}");
    assert!(eml.contains("Content-Type: multipart/alternative;"), "{eml}");
    let attached = attachments(&eml);
    assert_eq!(attached.len(), 1, "{eml}");
    assert!(attached[0].0.contains("filename=\"photo-1.jpg\""));
    assert!(attached[0].0.contains("Content-Type: image/jpeg"));
    assert_eq!(attached[0].1, PHOTO);

    // The same job through the real SES client: raw MIME with the photo.
    let ses = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/email/outbound-emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"MessageId": "ses-photo"})))
        .mount(&ses)
        .await;
    let crew_email = wait_for_jobs(
        &app,
        JobStatus::Done,
        |j| j.kind == EMAIL && j.recipient == "crew1@example.com",
        1,
    )
    .await
    .remove(0);
    assert_eq!(crew_email.payload["attach_photos"], true);
    let far = Utc::now() + chrono::Duration::days(30);
    app.store
        .enqueue_jobs(&[NewJob {
            kind: EMAIL,
            dedupe_key: format!("{}:via-ses", crew_email.dedupe_key),
            conversation_id: crew_email.conversation_id,
            customer_id: None,
            recipient: crew_email.recipient.clone(),
            payload: crew_email.payload.clone(),
            // Well ahead, so the app's own runner leaves it to this one.
            run_at: far,
            max_attempts: 3,
        }])
        .await
        .unwrap();
    let runner = runner_for(
        &app,
        Arc::new(SesEmail::new(
            ses_client(&ses),
            "desk@rosecityjunk.example".into(),
        )),
    )
    .await;
    runner.run_due(far + chrono::Duration::seconds(1)).await.unwrap();
    let requests = ses.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["Destination"]["ToAddresses"], json!(["crew1@example.com"]));
    assert!(body["Content"]["Simple"].is_null());
    let raw = base64::engine::general_purpose::STANDARD
        .decode(body["Content"]["Raw"]["Data"].as_str().unwrap())
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.contains("Subject: New booking for Crew 1"), "{raw}");
    assert!(raw.contains("12 Oak St"));
    let attached = attachments(&raw);
    assert_eq!(attached.len(), 1);
    assert_eq!(attached[0].1, PHOTO);
}

#[tokio::test]
async fn an_email_with_photos_waits_a_little_for_a_photo_still_being_fetched() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    Mock::given(method("GET"))
        .and(path(media_path(1)))
        .respond_with(ResponseTemplate::new(503))
        .mount(&app.twilio)
        .await;
    let url = format!("{}{}", app.twilio.uri(), media_path(1));
    let params = mms_params("pile", &mms_sid(7), &[(url, "image/jpeg")]);
    assert_eq!(app.post_signed("/api/sms/inbound", &params).await.status(), 200);
    app.wait_for_texts(1).await;
    let conversation = app.conversation(DANA).await.unwrap();

    let far = Utc::now() + chrono::Duration::days(30);
    app.store
        .enqueue_jobs(&[NewJob {
            kind: EMAIL,
            dedupe_key: "email:crew:photos".into(),
            conversation_id: Some(conversation),
            customer_id: None,
            recipient: "crew1@example.com".into(),
            payload: json!({"to": ["crew1@example.com"], "subject": "New booking", "html": "<p>x</p>",
                            "text": "x", "attach_photos": true}),
            run_at: far,
            max_attempts: 8,
        }])
        .await
        .unwrap();
    let outbox = tempfile::tempdir().unwrap();
    let runner = runner_for(
        &app,
        Arc::new(textdesk::email::OutboxEmail {
            dir: outbox.path().into(),
            from: "desk@example.com".into(),
            clock: textdesk::clock::system(),
        }),
    )
    .await;
    let email_job = |jobs: Vec<textdesk::store::Job>| jobs.into_iter().find(|j| j.kind == EMAIL).unwrap();
    for round in 1..=2 {
        runner
            .run_due(far + chrono::Duration::hours(2 * round))
            .await
            .unwrap();
        let job = email_job(app.store.jobs(&[JobStatus::Pending], 50).await.unwrap());
        assert_eq!(job.attempts as i64, round);
        assert!(job.last_error.unwrap().contains("photos"));
        assert!(std::fs::read_dir(outbox.path()).map_or(true, |mut d| d.next().is_none()));
    }
    // Still not fetched on the third try: the email goes without it.
    runner.run_due(far + chrono::Duration::hours(6)).await.unwrap();
    let job = email_job(app.store.jobs(&[JobStatus::Done], 50).await.unwrap());
    assert_eq!(job.attempts, 3);
    let eml = std::fs::read_dir(outbox.path())
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .next()
        .unwrap();
    assert!(!eml.contains("multipart/mixed"), "{eml}");
    assert!(attachments(&eml).is_empty());
}

#[tokio::test]
async fn redirects_are_followed_a_bounded_number_of_times() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    // Twilio's URL sends the fetch round in a circle.
    Mock::given(method("GET"))
        .and(path(media_path(1)))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("Location", format!("{}{}", app.twilio.uri(), media_path(1))),
        )
        .mount(&app.twilio)
        .await;
    let url = format!("{}{}", app.twilio.uri(), media_path(1));
    let params = mms_params("pile", &mms_sid(8), &[(url, "image/jpeg")]);
    assert_eq!(app.post_signed("/api/sms/inbound", &params).await.status(), 200);
    let item = wait_for_media_settled(&app).await;
    assert_eq!(item.status, MediaStatus::Failed);
    assert!(item.last_error.unwrap().contains("redirects"));
    let hops = app
        .twilio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == media_path(1))
        .count();
    assert_eq!(
        hops,
        1 + textdesk::media::MAX_REDIRECTS,
        "asked once, then each redirect"
    );
    // Given up at once, and the owner hears of it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let alerts = loop {
        let alerts = app.store.alerts().await.unwrap();
        if !alerts.is_empty() || Instant::now() > deadline {
            break alerts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == "dead_job" && a.detail.contains("fetch_media")),
        "{alerts:?}"
    );
}
