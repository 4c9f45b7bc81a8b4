//! Issue 10 part 7: the assistant's settings on /owner/settings, stored as
//! fragments over business.toml and used from the next turn on.

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::Value;
use textdesk::http::owner::password::set_owner_password;
use textdesk::store::Store;

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";
const DANA: &str = "+15035551234";

/// A reqwest client playing the owner's browser (no redirects followed,
/// the session cookie kept by hand: it is Secure, the test server HTTP).
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Page {
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token")
            + 19;
        self.body[at..].split('"').next().unwrap().to_string()
    }
}

impl Browser {
    async fn logged_in(app: &TestApp) -> (Self, String) {
        set_owner_password(app.console().await.as_ref(), PASSWORD)
            .await
            .unwrap();
        let mut browser = Self {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: app.address.clone(),
            cookie: None,
        };
        let login = browser.get("/owner/login").await;
        let csrf = login.csrf();
        let page = browser
            .post("/owner/login", &[("csrf", &csrf), ("password", PASSWORD)])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let settings = browser.get("/owner/settings").await;
        assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
        let csrf = settings.csrf();
        (browser, csrf)
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        };
        let response = request.send().await.unwrap();
        for cookie in response.headers().get_all("set-cookie") {
            let pair = cookie.to_str().unwrap().split(';').next().unwrap().to_string();
            if pair.starts_with("textdesk_owner=") {
                self.cookie = Some(pair);
            }
        }
        Page {
            status: response.status(),
            location: response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string()),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(request).await
    }
}

fn system(request: &Value) -> String {
    prompt_text(request)
}

async fn wait_for_model_requests(app: &TestApp, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let requests = app.model_requests().await;
        if requests.len() >= n {
            return requests;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} model requests");
}

/// The assembled-prompt element's contents.
fn assembled(body: &str) -> &str {
    let at = body
        .find("id=\"assembled-prompt\"")
        .expect("the assembled prompt");
    let rest = &body[at..];
    &rest[..rest.find("id=\"preview\"").unwrap_or(rest.len())]
}

fn junk(name: &str, rule: &str) -> String {
    format!(
        "[business]\nname = \"{name}\"\nphone = \"{BUSINESS_NUMBER}\"\nowner_email = \"owner@example.com\"\n\n[assistant]\ntone = \"friendly\"\nadditional_rules = [\"{rule}\"]\n"
    )
}

/// Every table a turn (or a booking) writes in, and how to count its rows.
const WRITTEN_BY_A_TURN: [(&str, &str); 7] = [
    ("turn_usage", "SELECT COUNT(*) AS n FROM turn_usage"),
    ("conversations", "SELECT COUNT(*) AS n FROM conversations"),
    ("messages", "SELECT COUNT(*) AS n FROM messages"),
    ("bookings", "SELECT COUNT(*) AS n FROM bookings"),
    ("slot_holds", "SELECT COUNT(*) AS n FROM slot_holds"),
    ("jobs", "SELECT COUNT(*) AS n FROM jobs"),
    ("quotes", "SELECT COUNT(*) AS n FROM quotes"),
];

async fn count(app: &TestApp, query: &'static str) -> i64 {
    let sql = app.sql().await;
    let n = sql.count(query, &[]).await;
    sql.close().await;
    n
}

#[tokio::test]
async fn the_page_shows_cards_the_file_s_rules_read_only_and_the_assembled_prompt_by_source() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        business: Some(junk("Rose City Junk Haulers", "FILE-RULE: no paint.")),
        ..Options::default()
    })
    .await;
    let (mut browser, _) = Browser::logged_in(&app).await;
    let page = browser.get("/owner/settings").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    for expected in [
        "type=\"radio\" name=\"tone\" value=\"friendly\" checked",
        "type=\"radio\" name=\"tone\" value=\"casual\"",
        "type=\"radio\" name=\"reply_length\" value=\"short\" checked",
        "id=\"save\"",
        "0 unsaved fields",
        "href=\"/owner/settings\"",
        "src=\"/owner/static/settings.js\"",
        "Warning:</strong> this replaces the built-in base prompt",
    ] {
        assert!(body.contains(expected), "{expected}: {body}");
    }
    assert!(!body.contains("<script>"), "no inline script");
    assert!(!body.contains("id=\"overridden\""), "no override yet");
    // The file's rule is shown read-only, not in the console's field.
    assert!(body.contains("<li>FILE-RULE: no paint.</li>"), "{body}");
    let prompt = assembled(body);
    assert!(
        prompt.contains("Tone: friendly") && prompt.contains("Reply length: short"),
        "{prompt}"
    );
    assert!(
        prompt.contains("built in") && prompt.contains("business.toml"),
        "{prompt}"
    );
    assert!(
        !prompt.contains(">console<"),
        "nothing from the console yet: {prompt}"
    );

    let script = browser.get("/owner/static/settings.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.body.contains("/owner/settings/preview?fragment=1"));
}

#[tokio::test]
async fn a_save_is_confirmed_and_the_next_model_request_carries_it_after_the_file_s_rules() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        business: Some(junk("Rose City Junk Haulers", "FILE-RULE: no paint.")),
        ..Options::default()
    })
    .await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let page = browser
        .post(
            "/owner/settings",
            &[
                ("csrf", &csrf),
                ("business", "test"),
                ("tone", "casual"),
                ("reply_length", "medium"),
                ("greeting", "Hey, Rose City here!"),
                ("additional_rules", "CONSOLE-RULE: ask for photos.\n\n"),
                ("current_info", "Closed Dec 24-26."),
                ("handoff_rules", "Commercial jobs."),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let location = page.location.unwrap();
    assert_eq!(location, "/owner/settings?business=test&saved=1");
    let saved = browser.get(&location).await;
    assert!(
        saved.body.contains("Saved. The next reply uses these settings."),
        "{}",
        saved.body
    );
    assert!(
        saved
            .body
            .contains("type=\"radio\" name=\"tone\" value=\"casual\" checked")
    );
    let prompt = assembled(&saved.body);
    assert!(
        prompt.contains("Tone: casual") && prompt.contains("Reply length: medium"),
        "{prompt}"
    );
    assert!(prompt.contains("console"), "{prompt}");

    // Stored as fragments: only what differs from the file.
    let stored = app.store.assistant_fragments().await.unwrap();
    let keys: Vec<_> = stored["test"].iter().map(|f| f.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "additional_rules",
            "current_info",
            "greeting",
            "handoff_rules",
            "reply_length",
            "tone"
        ]
    );

    app.text(DANA, "hi there").await;
    let requests = wait_for_model_requests(&app, 1).await;
    let system = system(&requests[0]);
    assert!(
        system.contains("Tone: casual") && system.contains("Reply length: medium"),
        "{system}"
    );
    assert!(system.contains("Hey, Rose City here!"), "{system}");
    assert!(
        system.contains("Commercial jobs.") && system.contains("Closed Dec 24-26."),
        "{system}"
    );
    let base = system.find("front desk of").unwrap();
    let file_rule = system.find("FILE-RULE").unwrap();
    let console_rule = system.find("CONSOLE-RULE").unwrap();
    assert!(base < file_rule && file_rule < console_rule, "{system}");
}

#[tokio::test]
async fn a_bad_value_gets_the_form_back_naming_the_field_and_saves_nothing() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let long = "x".repeat(8_001);
    for (field, value, label) in [
        ("tone", "grumpy", "Tone: "),
        ("reply_length", "epic", "Reply length: "),
        ("greeting", long.as_str(), "Greeting: at most 8000 characters"),
        ("approval_timeout_minutes", "soon", "Approval timeout (minutes): "),
    ] {
        let page = browser
            .post(
                "/owner/settings",
                &[
                    ("csrf", &csrf),
                    ("business", "test"),
                    (field, value),
                    ("current_info", "KEEP-DRAFT"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{field}: {}", page.body);
        assert!(page.body.contains("id=\"form-error\""), "{field}");
        assert!(page.body.contains(label), "{field}: {}", page.body);
        // The draft comes back as typed.
        assert!(page.body.contains(">KEEP-DRAFT</textarea>"), "{field}");
    }
    assert!(app.store.assistant_fragments().await.unwrap().is_empty());
    // An unknown business is 404, not a silent accept.
    let page = browser
        .post(
            "/owner/settings",
            &[("csrf", &csrf), ("business", "nobody"), ("tone", "casual")],
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn preview_shows_the_draft_s_prompt_without_saving() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let draft = [
        ("csrf", csrf.as_str()),
        ("business", "test"),
        ("tone", "professional"),
        ("reply_length", "medium"),
        ("base_prompt", "You are PREVIEW-BASE."),
    ];
    // The script's request: the prompt alone.
    let fragment = browser.post("/owner/settings/preview?fragment=1", &draft).await;
    assert_eq!(fragment.status, StatusCode::OK, "{}", fragment.body);
    assert!(!fragment.body.contains("<form"), "{}", fragment.body);
    assert!(fragment.body.contains("Tone: professional"), "{}", fragment.body);
    assert!(fragment.body.contains("Reply length: medium"));
    assert!(fragment.body.contains("You are PREVIEW-BASE.") && fragment.body.contains("console"));
    // Without JavaScript: the whole page, with the draft and its count.
    let page = browser.post("/owner/settings/preview", &draft).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("value=\"professional\" checked"));
    assert!(page.body.contains("3 unsaved fields"), "{}", page.body);
    assert!(
        page.body.contains("id=\"overridden\""),
        "the built-in base is marked overridden"
    );
    assert!(assembled(&page.body).contains("You are PREVIEW-BASE."));
    // A bad draft previews as an error naming the field.
    let bad = browser
        .post(
            "/owner/settings/preview?fragment=1",
            &[("csrf", &csrf), ("business", "test"), ("tone", "grumpy")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("Tone: "), "{}", bad.body);
    // Nothing was saved.
    assert!(app.store.assistant_fragments().await.unwrap().is_empty());
    let saved = browser.get("/owner/settings").await;
    assert!(saved.body.contains("value=\"friendly\" checked"));
}

#[tokio::test]
async fn a_reload_keeps_the_console_s_settings() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        business_files: vec![("junk.toml", junk("Old Name", "FILE-RULE-ONE."))],
        ..Options::default()
    })
    .await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let page = browser
        .post(
            "/owner/settings",
            &[
                ("csrf", &csrf),
                ("business", "junk"),
                ("tone", "casual"),
                ("additional_rules", "CONSOLE-RULE."),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);

    let file = app.business_dir.as_ref().unwrap().join("junk.toml");
    std::fs::write(&file, junk("New Name", "FILE-RULE-TWO.")).unwrap();
    app.app.as_ref().unwrap().reload_configuration().await.unwrap();

    app.text(DANA, "hello").await;
    let requests = wait_for_model_requests(&app, 1).await;
    let system = system(&requests[0]);
    assert!(
        system.contains("New Name") && system.contains("FILE-RULE-TWO."),
        "{system}"
    );
    assert!(
        system.contains("Tone: casual") && system.contains("CONSOLE-RULE."),
        "{system}"
    );
    assert!(!system.contains("FILE-RULE-ONE."), "{system}");
}

#[tokio::test]
async fn saved_settings_survive_a_restart() {
    if crate::helpers::skipped() {
        return;
    }
    let mut app = spawn_app().await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let page = browser
        .post(
            "/owner/settings",
            &[("csrf", &csrf), ("business", "test"), ("tone", "professional")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    app.crash_and_restart().await;
    app.text(DANA, "hello").await;
    let requests = wait_for_model_requests(&app, 1).await;
    assert!(system(&requests[0]).contains("Tone: professional"));
}

#[tokio::test]
async fn try_it_answers_on_the_draft_and_sends_nothing_and_books_nothing() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let page = browser
        .post(
            "/owner/settings/try",
            &[
                ("csrf", &csrf),
                ("business", "test"),
                ("tone", "casual"),
                ("sample", "Can you take a couch on Saturday?"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"try-reply\""), "{}", page.body);
    // The echoing fake Claude answered, on the draft tone, not saved.
    assert!(
        page.body.contains("Re: Can you take a couch on Saturday?"),
        "{}",
        page.body
    );
    let requests = app.model_requests().await;
    assert_eq!(requests.len(), 1);
    assert!(system(&requests[0]).contains("Tone: casual"));
    assert!(app.store.assistant_fragments().await.unwrap().is_empty());

    // Nothing reached Twilio, and the real database holds no trace.
    assert!(app.twilio.received_requests().await.unwrap().is_empty());
    for (table, query) in WRITTEN_BY_A_TURN {
        assert_eq!(count(&app, query).await, 0, "{table}");
    }
}

#[tokio::test]
async fn try_it_without_a_model_runs_the_guided_flow_and_writes_nothing() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        with_model: false,
        ..Options::default()
    })
    .await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let page = browser
        .post(
            "/owner/settings/try",
            &[
                ("csrf", &csrf),
                ("business", "test"),
                ("sample", "I need junk hauled"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let at = page.body.find("id=\"try-reply\"").expect("a reply");
    assert!(page.body[at..].contains("bubble-reply"), "{}", &page.body[at..]);
    assert!(app.twilio.received_requests().await.unwrap().is_empty());
    for (table, query) in WRITTEN_BY_A_TURN {
        assert_eq!(count(&app, query).await, 0, "{table}");
    }
    // An empty sample is a plain refusal.
    let page = browser
        .post(
            "/owner/settings/try",
            &[("csrf", &csrf), ("business", "test"), ("sample", "  ")],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("Type a customer&#"), "{}", page.body);
}

#[tokio::test]
async fn settings_need_a_session_and_a_csrf_token() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let page = client
        .get(format!("{}/owner/settings", app.address))
        .send()
        .await
        .unwrap();
    assert!(page.status().is_redirection() || page.status() == StatusCode::OK);
    assert!(!page.text().await.unwrap().contains("assembled-prompt"));
    let (mut browser, _) = Browser::logged_in(&app).await;
    let page = browser
        .post("/owner/settings", &[("business", "test"), ("tone", "casual")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let stored: &dyn Store = app.store.as_ref();
    assert!(stored.assistant_fragments().await.unwrap().is_empty());
}

#[tokio::test]
async fn try_it_books_in_its_scratch_conversation_only() {
    if crate::helpers::skipped() {
        return;
    }
    use crate::quotes::{ScriptedClaude, claude_tool};
    use serde_json::json;
    use wiremock::Mock;
    use wiremock::matchers::{method, path};
    let app = spawn_app_with(Options {
        default_fakes: false,
        ..Options::default()
    })
    .await;
    mount_twilio_accepting(&app.twilio).await;
    // A model that quotes, asks for openings and books one, in one turn.
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ScriptedClaude::new(vec![
            claude_tool(
                "t1",
                "record_job_details",
                json!({"size": "half_truck", "address": "12 Oak St, Portland", "customer_name": "Dana"}),
            ),
            claude_tool("t2", "get_quote", json!({})),
            claude_tool(
                "t3",
                "get_available_slots",
                json!({"preference": "next Tuesday afternoon"}),
            ),
            // Confirmed by code, with no model call after the booking.
            claude_tool("t4", "book_slot", json!({"slot_id": 1})),
        ]))
        .mount(&app.anthropic)
        .await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let page = browser
        .post(
            "/owner/settings/try",
            &[
                ("csrf", &csrf),
                ("business", "test"),
                (
                    "sample",
                    "Half a truck at 12 Oak St, book me next Tuesday afternoon",
                ),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("Conversation state after it: BOOKED"),
        "{}",
        page.body
    );
    assert!(app.twilio.received_requests().await.unwrap().is_empty());
    for (table, query) in WRITTEN_BY_A_TURN {
        assert_eq!(count(&app, query).await, 0, "{table}");
    }
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM alerts").await, 0);
}

#[tokio::test]
async fn try_it_answers_when_the_owners_phone_is_the_usual_sample_number() {
    if crate::helpers::skipped() {
        return;
    }
    // The number business.toml's comment suggests for owner_phone: the
    // scratch customer must never be the owner, whose texts get no reply.
    let app = spawn_app_with(Options {
        with_model: false,
        business: Some(
            "[business]\nname = \"Rose City\"\nphone = \"+15035550100\"\n\
             owner_phone = \"+15035550199\"\n"
                .into(),
        ),
        ..Options::default()
    })
    .await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let page = browser
        .post(
            "/owner/settings/try",
            &[
                ("csrf", &csrf),
                ("business", "test"),
                ("sample", "I need junk hauled"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let at = page.body.find("id=\"try-reply\"").expect("a reply");
    assert!(page.body[at..].contains("bubble-reply"), "{}", &page.body[at..]);
}

#[tokio::test]
async fn approval_is_a_choice_showing_the_files_value_with_an_editable_holding_text() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app_with(Options {
        business: Some(
            "[business]\nname = \"Rose City\"\nphone = \"+15035550142\"\n\n\
             [assistant]\napproval = \"quotes\"\n"
                .into(),
        ),
        ..Options::default()
    })
    .await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let page = browser.get("/owner/settings").await;
    // The file's policy shows as the checked choice, not an empty box.
    assert!(
        page.body
            .contains("name=\"approval_mode\" value=\"quotes\" checked data-saved=\"1\""),
        "{}",
        page.body
    );
    for value in ["off", "over", "all"] {
        assert!(
            page.body
                .contains(&format!("name=\"approval_mode\" value=\"{value}\"")),
            "{value}"
        );
    }
    assert!(
        page.body.contains("id=\"approval_holding_text\""),
        "{}",
        page.body
    );

    let saved = browser
        .post(
            "/owner/settings",
            &[
                ("csrf", &csrf),
                ("business", "test"),
                ("approval_mode", "over"),
                ("approval_over", "$500"),
                ("approval_holding_text", "Thanks! We'll text you back shortly."),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let stored = app.store.assistant_fragments().await.unwrap();
    let values: Vec<_> = stored["test"]
        .iter()
        .map(|f| (f.key.as_str(), f.value.as_str()))
        .collect();
    assert!(values.contains(&("approval", "\"over:500\"")), "{values:?}");
    assert!(
        values.contains(&(
            "approval_holding_text",
            "\"Thanks! We'll text you back shortly.\""
        )),
        "{values:?}"
    );
    let page = browser.get("/owner/settings").await;
    assert!(
        page.body
            .contains("name=\"approval_mode\" value=\"over\" checked data-saved=\"1\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("value=\"500\""), "{}", page.body);
}
