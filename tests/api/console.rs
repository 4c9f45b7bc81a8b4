//! Issue 10: the owner's console under /owner/. A browser is played by a
//! reqwest client that does not follow redirects and keeps the session
//! cookie itself (the cookie is Secure, and the test server is plain HTTP).

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::json;
use textdesk::http::owner::password::set_owner_password;
use textdesk::store::console::{ConsoleStore, InboxQuery};
use textdesk::store::{JobClaim, JobOutcome, JobStatus, NewJob};

use crate::helpers::*;

pub(crate) const PASSWORD: &str = "correct horse battery";
pub(crate) const DANA: &str = "+15035551234";
const LEE: &str = "+15035559876";

pub(crate) struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) location: Option<String>,
    set_cookie: Vec<String>,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Page {
    /// The CSRF token of the first form on the page.
    pub(crate) fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token")
            + 19;
        self.body[at..].split('"').next().unwrap().to_string()
    }
}

impl Browser {
    pub(crate) fn new(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: app.address.clone(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        };
        let response = request.send().await.unwrap();
        let set_cookie: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for cookie in &set_cookie {
            let pair = cookie.split(';').next().unwrap().to_string();
            if pair.starts_with("textdesk_owner=") {
                // An expired cookie (logout) removes it.
                self.cookie = (!cookie.contains("Max-Age=0")).then_some(pair);
            }
        }
        Page {
            status: response.status(),
            location: response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string()),
            set_cookie,
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(request).await
    }

    async fn login(&mut self, password: &str) -> Page {
        let form = self.get("/owner/login").await;
        let csrf = form.csrf();
        self.post("/owner/login", &[("csrf", &csrf), ("password", password)])
            .await
    }

    /// Logged in, on the inbox: its CSRF token.
    pub(crate) async fn logged_in(app: &TestApp) -> (Self, String) {
        let mut browser = Self::new(app);
        let page = browser.login(PASSWORD).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        assert_eq!(page.location.as_deref(), Some("/owner/"));
        let inbox = browser.get("/owner/").await;
        assert_eq!(inbox.status, StatusCode::OK, "{}", inbox.body);
        let csrf = inbox.csrf();
        (browser, csrf)
    }
}

pub(crate) async fn console(app: &TestApp) -> std::sync::Arc<dyn ConsoleStore> {
    app.console().await
}

pub(crate) async fn with_password(app: &TestApp) {
    set_owner_password(console(app).await.as_ref(), PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn without_a_password_the_console_only_says_how_to_set_one() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    app.text(DANA, "hello").await;
    app.wait_until_settled(DANA).await;
    let mut browser = Browser::new(&app);
    for path in [
        "/owner/",
        "/owner/login",
        "/owner/alerts",
        "/owner/conversations/1",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            page.body.contains("textdesk owner set-password"),
            "{path}: {}",
            page.body
        );
        assert!(
            !page.body.contains("5551234") && !page.body.contains("hello"),
            "{path}"
        );
    }
    // Logging in is impossible, whatever is sent.
    let page = browser.post("/owner/login", &[("password", "")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn without_a_session_every_page_sends_you_to_the_login_page() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    app.text(DANA, "hello there").await;
    app.wait_until_settled(DANA).await;
    let conversation = app.conversation(DANA).await.unwrap();
    let mut browser = Browser::new(&app);
    for path in [
        "/owner/".to_string(),
        format!("/owner/conversations/{}", conversation.0),
        "/owner/conversations/99999".into(),
        "/owner/schedule".into(),
        "/owner/alerts".into(),
        "/owner/jobs".into(),
        "/owner/media/1".into(),
        "/owner/no-such-page".into(),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location.as_deref(), Some("/owner/login"), "{path}");
        assert!(
            !page.body.contains("5551234") && !page.body.contains("hello"),
            "{path}"
        );
    }
    // A forged cookie is no session either.
    browser.cookie = Some("textdesk_owner=AAAAAAAAAAAAAAAAAAAAAA".into());
    assert_eq!(browser.get("/owner/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn logging_in_sets_a_hardened_cookie_and_shows_the_inbox_with_security_headers() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    app.text(DANA, "Can you haul a couch?").await;
    app.wait_until_settled(DANA).await;
    let mut browser = Browser::new(&app);
    let page = browser.login(PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let cookie = page
        .set_cookie
        .iter()
        .find(|c| c.starts_with("textdesk_owner="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/owner"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }

    let inbox = browser.get("/owner/").await;
    assert_eq!(inbox.status, StatusCode::OK);
    // The owner sees the full number, the channel, the last text and an unread mark.
    assert!(inbox.body.contains(DANA), "{}", inbox.body);
    assert!(inbox.body.contains("SMS"));
    assert!(inbox.body.contains("aria-label=\"unread\""), "{}", inbox.body);
    let csp = inbox.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(inbox.headers["x-content-type-options"], "nosniff");
    // No script or style from anywhere else.
    assert!(
        !inbox.body.contains("http://") && !inbox.body.contains("https://"),
        "{}",
        inbox.body
    );

    // Opening the conversation reads it.
    let conversation = app.conversation(DANA).await.unwrap();
    let page = browser
        .get(&format!("/owner/conversations/{}", conversation.0))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Can you haul a couch?"), "{}", page.body);
    assert!(
        page.body.contains("Customer") && page.body.contains("Assistant"),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!("href=\"tel:{DANA}\"")));
    assert!(
        page.body.contains("badge new"),
        "the text is new on the first visit"
    );
    let inbox = browser.get("/owner/").await;
    assert!(!inbox.body.contains("aria-label=\"unread\""), "{}", inbox.body);
    let again = browser
        .get(&format!("/owner/conversations/{}", conversation.0))
        .await;
    assert!(!again.body.contains("badge new"), "and read on the next");

    // The stylesheet is ours, served with the same headers.
    let css = browser.get("/owner/static/console.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert_eq!(css.headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn a_wrong_password_gets_the_form_back_with_an_error() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    let mut browser = Browser::new(&app);
    let page = browser.login("not the password").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("That password is not right."), "{}", page.body);
    assert!(page.body.contains("name=\"password\""), "the form comes back");
    assert_eq!(
        browser.get("/owner/").await.location.as_deref(),
        Some("/owner/login")
    );
}

#[tokio::test]
async fn failed_logins_are_refused_with_429_after_five_a_minute() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    let mut browser = Browser::new(&app);
    for attempt in 1..=5 {
        let page = browser.login("guess").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    // Even the right password is refused now: the limit is per address, not per guess.
    let page = browser.login(PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    assert!(page.headers.contains_key("retry-after"));
    assert_eq!(browser.get("/owner/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_burst_of_parallel_guesses_gets_no_more_than_five_tries() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    let mut forms = Vec::new();
    for _ in 0..10 {
        let mut browser = Browser::new(&app);
        let csrf = browser.get("/owner/login").await.csrf();
        forms.push((browser, csrf));
    }
    let pages = futures::future::join_all(forms.iter_mut().map(|(browser, csrf)| async move {
        browser
            .post("/owner/login", &[("csrf", csrf.as_str()), ("password", "guess")])
            .await
    }))
    .await;
    let count = |status| pages.iter().filter(|p| p.status == status).count();
    assert_eq!(count(StatusCode::UNAUTHORIZED), 5);
    assert_eq!(count(StatusCode::TOO_MANY_REQUESTS), 5);
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_403() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    app.text(DANA, "hello").await;
    app.wait_until_settled(DANA).await;
    let conversation = app.conversation(DANA).await.unwrap();
    app.store
        .record_alert(
            &textdesk::store::AlertKind::Handoff,
            Some(conversation),
            "Dana asked for a person",
        )
        .await
        .unwrap();
    let store = console(&app).await;
    let alert = store.console_alerts(None, true, 10).await.unwrap()[0].id;

    // The login form itself needs the token.
    let mut anonymous = Browser::new(&app);
    anonymous.get("/owner/login").await;
    let page = anonymous.post("/owner/login", &[("password", PASSWORD)]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(
        anonymous.get("/owner/").await.status,
        StatusCode::SEE_OTHER,
        "not logged in"
    );

    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let resolve = format!("/owner/alerts/{alert}/resolve");
    assert_eq!(browser.post(&resolve, &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        browser.post(&resolve, &[("csrf", "forged")]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        browser.post("/owner/logout", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        store.open_alert_count(None).await.unwrap(),
        1,
        "nothing was resolved"
    );
    assert_eq!(
        browser.get("/owner/").await.status,
        StatusCode::OK,
        "still logged in"
    );

    let page = browser.post(&resolve, &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(store.open_alert_count(None).await.unwrap(), 0);
}

#[tokio::test]
async fn logout_ends_the_session_for_good() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let old_cookie = browser.cookie.clone();
    let page = browser.post("/owner/logout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/owner/login"));
    assert_eq!(
        browser.get("/owner/").await.location.as_deref(),
        Some("/owner/login")
    );
    // A copy of the old cookie is worth nothing: the record is gone.
    browser.cookie = old_cookie;
    assert_eq!(
        browser.get("/owner/").await.location.as_deref(),
        Some("/owner/login")
    );
}

#[tokio::test]
async fn a_session_survives_a_restart_and_a_new_password_ends_it() {
    if crate::helpers::skipped() {
        return;
    }
    let mut app = spawn_app().await;
    with_password(&app).await;
    let (mut browser, _) = Browser::logged_in(&app).await;
    app.crash_and_restart().await;
    browser.base = app.address.clone();
    assert_eq!(
        browser.get("/owner/").await.status,
        StatusCode::OK,
        "sessions live in the database"
    );

    set_owner_password(console(&app).await.as_ref(), "another long password")
        .await
        .unwrap();
    assert_eq!(
        browser.get("/owner/").await.location.as_deref(),
        Some("/owner/login")
    );
}

#[tokio::test]
async fn an_unknown_conversation_is_404() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    let (mut browser, _) = Browser::logged_in(&app).await;
    for path in [
        "/owner/conversations/99999",
        "/owner/conversations/abc",
        "/owner/media/12345",
    ] {
        assert_eq!(browser.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn a_customers_markup_is_shown_as_text_in_the_inbox_and_the_conversation() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    let attack =
        "<script>alert(1)</script> <img src=x onerror=alert(2)> <a href=\"javascript:alert(3)\">x</a>";
    app.text(DANA, attack).await;
    app.wait_until_settled(DANA).await;
    let conversation = app.conversation(DANA).await.unwrap();
    let (mut browser, _) = Browser::logged_in(&app).await;
    let inbox = browser.get("/owner/").await;
    let page = browser
        .get(&format!("/owner/conversations/{}", conversation.0))
        .await;
    for (name, body) in [("inbox", &inbox.body), ("conversation", &page.body)] {
        assert!(!body.contains("<script>alert"), "{name}: {body}");
        assert!(!body.contains("<img src=x"), "{name}: {body}");
        assert!(!body.contains("href=\"javascript:"), "{name}: {body}");
        // Shown, as text (askama writes `<` as `&#60;`).
        assert!(
            body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{name}: {body}"
        );
        assert!(
            body.contains("&#60;img src=x onerror=alert(2)&#62;"),
            "{name}: {body}"
        );
        assert!(
            body.contains("href=&#34;javascript:alert(3)&#34;"),
            "{name}: {body}"
        );
    }
}

#[tokio::test]
async fn the_inbox_pins_what_needs_you_filters_and_searches() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    app.text(DANA, "first").await;
    app.wait_until_settled(DANA).await;
    app.text(LEE, "second, newer").await;
    app.wait_until_settled(LEE).await;
    let (mut browser, _) = Browser::logged_in(&app).await;

    // Newest first...
    let inbox = browser.get("/owner/").await.body;
    assert!(inbox.find(LEE).unwrap() < inbox.find(DANA).unwrap(), "{inbox}");
    // ...unless one needs the owner.
    let dana = app.conversation(DANA).await.unwrap();
    app.store
        .record_alert(
            &textdesk::store::AlertKind::Handoff,
            Some(dana),
            "Dana wants a person",
        )
        .await
        .unwrap();
    let inbox = browser.get("/owner/").await.body;
    assert!(inbox.find(DANA).unwrap() < inbox.find(LEE).unwrap(), "{inbox}");
    assert!(inbox.contains("Needs you"));

    // Paged one at a time, the pinned conversation still comes first and
    // nothing is shown twice or skipped.
    let store = console(&app).await;
    let mut paged = Vec::new();
    for offset in 0..3 {
        let page = store
            .inbox(&InboxQuery {
                limit: 1,
                offset,
                ..InboxQuery::default()
            })
            .await
            .unwrap();
        paged.extend(page.into_iter().map(|row| row.customer_address));
    }
    assert_eq!(paged, [DANA, LEE]);

    let needs_you = browser.get("/owner/?filter=needs_you").await.body;
    assert!(
        needs_you.contains(DANA) && !needs_you.contains(LEE),
        "{needs_you}"
    );
    let booked = browser.get("/owner/?filter=booked").await.body;
    assert!(!booked.contains(DANA) && !booked.contains(LEE), "{booked}");

    // A number is found by its digits, however it is typed.
    let found = browser.get("/owner/?q=%28503%29+555-9876").await.body;
    assert!(found.contains(LEE) && !found.contains(DANA), "{found}");
    let none = browser.get("/owner/?q=nobody").await.body;
    assert!(none.contains("No conversations here."), "{none}");
}

#[tokio::test]
async fn alerts_show_the_full_number_and_resolve_with_the_count_in_the_nav() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    app.text(DANA, "hello").await;
    app.wait_until_settled(DANA).await;
    let dana = app.conversation(DANA).await.unwrap();
    app.store
        .record_alert(
            &textdesk::store::AlertKind::Handoff,
            Some(dana),
            "Dana asked for a person",
        )
        .await
        .unwrap();
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let page = browser.get("/owner/alerts").await;
    assert!(page.body.contains("Dana asked for a person"), "{}", page.body);
    assert!(
        page.body.contains(&format!("href=\"tel:{DANA}\">{DANA}</a>")),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!("/owner/conversations/{}", dana.0)));
    assert!(page.body.contains("aria-label=\"1 open\""), "{}", page.body);

    let id = console(&app).await.console_alerts(None, true, 1).await.unwrap()[0].id;
    let page = browser
        .post(&format!("/owner/alerts/{id}/resolve"), &[("csrf", &csrf)])
        .await;
    assert_eq!(page.location.as_deref(), Some("/owner/alerts"));
    let open = browser.get("/owner/alerts").await.body;
    assert!(
        open.contains("No open alerts.") && !open.contains("aria-label=\"1 open\""),
        "{open}"
    );
    let resolved = browser.get("/owner/alerts?show=resolved").await.body;
    assert!(
        resolved.contains("Dana asked for a person") && resolved.contains("Resolved "),
        "{resolved}"
    );
}

fn job(key: &str, run_at: chrono::DateTime<Utc>) -> NewJob {
    NewJob {
        kind: "reminder",
        dedupe_key: key.into(),
        conversation_id: None,
        customer_id: None,
        recipient: DANA.into(),
        payload: json!({"text": "See you tomorrow"}),
        run_at,
        max_attempts: 3,
    }
}

#[tokio::test]
async fn jobs_can_be_retried_when_dead_and_cancelled_when_pending() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    let later = Utc::now() + Duration::days(3);
    // The dead job a minute before the pending one: claimed (as a runner
    // would) at its own time, it is the only one taken.
    let earlier = later - Duration::minutes(1);
    app.store
        .enqueue_jobs(&[job("test:pending", later), job("test:dead", earlier)])
        .await
        .unwrap();
    let all = app.store.jobs(&[JobStatus::Pending], 10).await.unwrap();
    let pending = all.iter().find(|j| j.dedupe_key == "test:pending").unwrap().id;
    let claimed = app
        .store
        .claim_due_jobs(earlier, 1, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let dead = claimed[0].id;
    assert!(
        app.store
            .finish_job(
                JobClaim {
                    id: dead,
                    attempts: claimed[0].attempts,
                },
                &JobOutcome::Dead {
                    error: "Twilio said no".into(),
                },
            )
            .await
            .unwrap()
    );

    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let page = browser.get("/owner/jobs").await.body;
    assert!(page.contains("Twilio said no"), "{page}");
    assert!(
        page.contains(&format!("/owner/jobs/{dead}/retry"))
            && !page.contains(&format!("/owner/jobs/{dead}/cancel"))
    );
    assert!(
        page.contains(&format!("/owner/jobs/{pending}/cancel"))
            && !page.contains(&format!("/owner/jobs/{pending}/retry"))
    );

    let page = browser
        .post(&format!("/owner/jobs/{pending}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(page.location.as_deref(), Some("/owner/jobs?notice=cancelled"));
    let page = browser
        .post(&format!("/owner/jobs/{dead}/retry"), &[("csrf", &csrf)])
        .await;
    assert_eq!(page.location.as_deref(), Some("/owner/jobs?notice=retried"));
    // Retrying a job that is no longer dead changes nothing.
    let page = browser
        .post(&format!("/owner/jobs/{pending}/retry"), &[("csrf", &csrf)])
        .await;
    assert_eq!(page.location.as_deref(), Some("/owner/jobs?notice=unchanged"));
    assert_eq!(
        browser
            .post("/owner/jobs/424242/retry", &[("csrf", &csrf)])
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let every = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Dead,
        JobStatus::Cancelled,
        JobStatus::Suspended,
    ];
    let jobs = app.store.jobs(&every, 10).await.unwrap();
    let status_of = |id| jobs.iter().find(|j| j.id == id).unwrap();
    assert_eq!(status_of(pending).status, JobStatus::Cancelled);
    // The retried job was due now instead of in three days (the runner may
    // already have run it, and failed it again, since its payload is a stub).
    let retried = status_of(dead);
    assert!(retried.run_at < later - Duration::days(1), "{retried:?}");
    assert_ne!(retried.status, JobStatus::Cancelled);
}

#[tokio::test]
async fn the_schedule_lists_the_weeks_bookings_per_crew_and_marks_an_unfinished_calendar_write() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    app.text(DANA, "hello").await;
    app.wait_until_settled(DANA).await;
    let dana = app.conversation(DANA).await.unwrap();
    let sql = app.sql().await;
    let tz = app.business.business.timezone;
    let crew = app.business.providers[0].clone();
    // Tomorrow 9-11am confirmed; the day after, a calendar write abandoned
    // an hour ago; and one beyond the week, not shown.
    let day = |offset: i64, hour: u32| {
        let date = Utc::now().with_timezone(&tz).date_naive() + Duration::days(offset);
        date.and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_local_timezone(tz)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    };
    let stale = (Utc::now() - Duration::hours(1)).timestamp_millis();
    for (id, start, status, updated) in [
        (
            "b-confirmed",
            day(1, 9),
            "confirmed",
            Utc::now().timestamp_millis(),
        ),
        ("b-pending", day(2, 13), "pending", stale),
        ("b-later", day(12, 9), "confirmed", stale),
    ] {
        sql.execute(
            "INSERT INTO bookings (id, conversation_id, provider_id, calendar_id, start_ms, end_ms, label, status,
                                   created_at, updated_at, updated_ms, business_id)
             VALUES ($1, $2, $3, 'local', $4, $5, 'label', $6, $7, $8, $9, $10)",
            &[
                id.into(),
                dana.0.into(),
                (&crew.id).into(),
                start.timestamp_millis().into(),
                (start + Duration::hours(2)).timestamp_millis().into(),
                status.into(),
                Utc::now().into(),
                Utc::now().into(),
                updated.into(),
                (&app.business.business.id).into(),
            ],
        )
        .await;
    }
    let (mut browser, _) = Browser::logged_in(&app).await;
    let page = browser.get("/owner/schedule").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = page.body;
    assert!(body.contains("Today, "), "{body}");
    assert!(body.contains(&crew.name), "{body}");
    assert!(body.contains("9:00 am–11:00 am"), "{body}");
    assert!(body.contains("1:00 pm–3:00 pm"), "{body}");
    assert!(body.contains(&format!("/owner/conversations/{}", dana.0)));
    assert_eq!(body.matches("Calendar write did not finish").count(), 1, "{body}");
    // Eight days are shown, and nothing beyond them.
    assert_eq!(body.matches("<section class=\"day\">").count(), 8, "{body}");
    assert_eq!(
        body.matches("9:00 am–11:00 am").count(),
        1,
        "the booking 12 days out is not listed: {body}"
    );
}

#[tokio::test]
async fn photos_are_served_only_to_the_owner_and_only_images_inline() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    with_password(&app).await;
    app.text(DANA, "here is the couch").await;
    app.wait_until_settled(DANA).await;
    let dana = app.conversation(DANA).await.unwrap();
    let message = app.messages(DANA).await[0].id;
    let sql = app.sql().await;
    let png: &[u8] = b"\x89PNG\r\n\x1a\nnot really";
    let mut ids = Vec::new();
    for (position, content_type, bytes) in [
        (0, "image/png", png),
        (1, "text/html", b"<script>x</script>".as_slice()),
    ] {
        let id: i64 = sql
            .scalar(
                "INSERT INTO media (message_id, conversation_id, position, url, content_type, status, bytes, size, created_at)
                 VALUES ($1, $2, $3, 'https://api.twilio.com/x', $4, 'fetched', $5, $6, $7) RETURNING id",
                &[
                    message.0.into(),
                    dana.0.into(),
                    (position as i64).into(),
                    content_type.into(),
                    bytes.into(),
                    (bytes.len() as i64).into(),
                    Utc::now().into(),
                ],
            )
            .await;
        ids.push(id);
    }
    let mut stranger = Browser::new(&app);
    assert_eq!(
        stranger.get(&format!("/owner/media/{}", ids[0])).await.status,
        StatusCode::SEE_OTHER
    );

    let (mut browser, _) = Browser::logged_in(&app).await;
    let page = browser.get(&format!("/owner/conversations/{}", dana.0)).await;
    assert!(
        page.body
            .contains(&format!("<img src=\"/owner/media/{}\"", ids[0])),
        "{}",
        page.body
    );
    let photo = browser.get(&format!("/owner/media/{}", ids[0])).await;
    assert_eq!(photo.status, StatusCode::OK);
    assert_eq!(photo.headers["content-type"], "image/png");
    assert_eq!(photo.body.as_bytes(), String::from_utf8_lossy(png).as_bytes());
    let file = browser.get(&format!("/owner/media/{}", ids[1])).await;
    assert_eq!(file.headers["content-type"], "application/octet-stream");
    assert!(
        file.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
}

#[tokio::test]
async fn with_several_businesses_the_inbox_has_a_switcher() {
    if crate::helpers::skipped() {
        return;
    }
    const MAID_NUMBER: &str = "+12175550187";
    let app = spawn_app_with(Options {
        business_files: vec![
            ("junk.toml", include_str!("../../business.toml").to_string()),
            ("maid.toml", include_str!("../../examples/maid.toml").to_string()),
        ],
        ..Options::default()
    })
    .await;
    with_password(&app).await;
    app.text(DANA, "junk please").await;
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let params: Vec<(String, String)> = TestApp::inbound_params(LEE, "a clean please", &sid)
        .into_iter()
        .map(|(k, v)| {
            if k == "To" {
                (k, MAID_NUMBER.to_string())
            } else {
                (k, v)
            }
        })
        .collect();
    assert_eq!(app.post_signed("/api/sms/inbound", &params).await.status(), 200);
    app.wait_until_settled(DANA).await;

    let (mut browser, _) = Browser::logged_in(&app).await;
    let all = browser.get("/owner/").await.body;
    assert!(
        all.contains("<select id=\"business\" name=\"business\">"),
        "{all}"
    );
    assert!(all.contains(DANA) && all.contains(LEE), "{all}");
    assert!(
        all.contains("Rose City Junk Haulers"),
        "each row names its business: {all}"
    );
    let maid = browser.get("/owner/?business=maid").await.body;
    assert!(maid.contains(LEE) && !maid.contains(DANA), "{maid}");
    assert!(maid.contains("<option value=\"maid\" selected>"), "{maid}");
}
