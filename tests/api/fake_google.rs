//! A local fake of Google's OAuth token endpoint and Calendar API, for the
//! real google-calendar3 and yup-oauth2 clients to talk to.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct FakeEvent {
    pub calendar: String,
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub body: Value,
}

#[derive(Default)]
pub struct GoogleState {
    pub events: Mutex<BTreeMap<(String, String), FakeEvent>>,
    /// Every insert attempt, including duplicates.
    pub insert_attempts: AtomicUsize,
    pub token_requests: AtomicUsize,
    /// Answer every Calendar call with 503.
    pub down: AtomicBool,
    /// Refuse tokens with invalid_grant.
    pub revoked: AtomicBool,
    /// Calendars whose freebusy entry carries `errors`.
    pub broken_calendars: Mutex<HashSet<String>>,
    /// Delay the answer to the next insert (after storing the event).
    pub slow_next_insert: Mutex<Option<Duration>>,
    /// Answer inserts with 503 (freebusy still works).
    pub fail_inserts: AtomicBool,
    /// Answer deletes with 503.
    pub fail_deletes: AtomicBool,
    /// Ids of deleted events: Google keeps them reserved, so inserting one
    /// again is a 409.
    pub deleted: Mutex<HashSet<(String, String)>>,
}

pub struct FakeGoogle {
    pub state: Arc<GoogleState>,
    pub addr: SocketAddr,
}

impl FakeGoogle {
    pub async fn start() -> Self {
        let state = Arc::new(GoogleState::default());
        let app = Router::new()
            .route("/token", post(token))
            .route("/calendar/v3/freeBusy", post(freebusy))
            .route("/calendar/v3/calendars/{calendar}/events", post(insert))
            .route(
                "/calendar/v3/calendars/{calendar}/events/{id}",
                patch(update).delete(remove),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { state, addr }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn events(&self) -> Vec<FakeEvent> {
        self.state.events.lock().unwrap().values().cloned().collect()
    }

    /// A service account key file whose token endpoint is this fake.
    pub fn key_file(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/test-service-account-key.pem"
        ))
        .unwrap();
        let key = json!({
            "type": "service_account",
            "project_id": "textdesk-test",
            "private_key_id": "test-key",
            "private_key": pem,
            "client_email": "textdesk@textdesk-test.iam.gserviceaccount.com",
            "client_id": "1",
            "auth_uri": format!("{}/auth", self.base_url()),
            "token_uri": format!("{}/token", self.base_url()),
            "auth_provider_x509_cert_url": format!("{}/certs", self.base_url()),
            "client_x509_cert_url": format!("{}/cert", self.base_url())
        });
        let path = dir.join("service-account.json");
        std::fs::write(&path, key.to_string()).unwrap();
        path
    }
}

async fn token(State(state): State<Arc<GoogleState>>, body: String) -> Response {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    assert!(body.contains("assertion="), "not a JWT bearer grant: {body}");
    if state.revoked.load(Ordering::SeqCst) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})),
        )
            .into_response();
    }
    Json(json!({"access_token": "fake-access-token", "token_type": "Bearer", "expires_in": 3600}))
        .into_response()
}

fn unavailable(state: &GoogleState, headers: &HeaderMap) -> Option<Response> {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "Bearer fake-access-token");
    if !authorized {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"code": 401, "message": "no token"}})),
            )
                .into_response(),
        );
    }
    state.down.load(Ordering::SeqCst).then(|| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"code": 503, "message": "Backend Error"}})),
        )
            .into_response()
    })
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

async fn freebusy(
    State(state): State<Arc<GoogleState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = unavailable(&state, &headers) {
        return r;
    }
    let (min, max) = (time(&body["timeMin"]), time(&body["timeMax"]));
    let events = state.events.lock().unwrap();
    let broken = state.broken_calendars.lock().unwrap();
    let mut calendars = serde_json::Map::new();
    for item in body["items"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap().to_string();
        if broken.contains(&id) {
            calendars.insert(
                id,
                json!({"errors": [{"domain": "global", "reason": "notFound"}]}),
            );
            continue;
        }
        let busy: Vec<Value> = events
            .values()
            .filter(|e| e.calendar == id && e.start < max && e.end > min)
            .map(|e| json!({"start": e.start.to_rfc3339(), "end": e.end.to_rfc3339()}))
            .collect();
        calendars.insert(id, json!({"busy": busy}));
    }
    Json(json!({"kind": "calendar#freeBusy", "timeMin": body["timeMin"], "timeMax": body["timeMax"], "calendars": calendars}))
        .into_response()
}

async fn insert(
    State(state): State<Arc<GoogleState>>,
    Path(calendar): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = unavailable(&state, &headers) {
        return r;
    }
    state.insert_attempts.fetch_add(1, Ordering::SeqCst);
    if state.fail_inserts.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"code": 503, "message": "Backend Error"}})),
        )
            .into_response();
    }
    let id = body["id"]
        .as_str()
        .expect("textdesk always sets the event id")
        .to_string();
    let key = (calendar.clone(), id.clone());
    {
        let mut events = state.events.lock().unwrap();
        if events.contains_key(&key) || state.deleted.lock().unwrap().contains(&key) {
            return (
                StatusCode::CONFLICT,
                Json(
                    json!({"error": {"code": 409, "message": "The requested identifier already exists.",
                                       "errors": [{"domain": "global", "reason": "duplicate"}]}}),
                ),
            )
                .into_response();
        }
        events.insert(
            key,
            FakeEvent {
                calendar,
                id,
                start: time(&body["start"]["dateTime"]),
                end: time(&body["end"]["dateTime"]),
                body: body.clone(),
            },
        );
    }
    let delay = state.slow_next_insert.lock().unwrap().take();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Json(body).into_response()
}

async fn update(
    State(state): State<Arc<GoogleState>>,
    Path((calendar, id)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = unavailable(&state, &headers) {
        return r;
    }
    let mut events = state.events.lock().unwrap();
    match events.get_mut(&(calendar, id)) {
        Some(e) => {
            e.start = time(&body["start"]["dateTime"]);
            e.end = time(&body["end"]["dateTime"]);
            for field in ["summary", "description"] {
                if !body[field].is_null() {
                    e.body[field] = body[field].clone();
                }
            }
            Json(e.body.clone()).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": 404, "message": "Not Found"}})),
        )
            .into_response(),
    }
}

async fn remove(
    State(state): State<Arc<GoogleState>>,
    Path((calendar, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = unavailable(&state, &headers) {
        return r;
    }
    if state.fail_deletes.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"code": 503, "message": "Backend Error"}})),
        )
            .into_response();
    }
    let key = (calendar, id);
    let removed = state.events.lock().unwrap().remove(&key);
    match removed {
        Some(_) => {
            state.deleted.lock().unwrap().insert(key);
            StatusCode::NO_CONTENT.into_response()
        }
        None => (
            StatusCode::GONE,
            Json(json!({"error": {"code": 410, "message": "Resource has been deleted"}})),
        )
            .into_response(),
    }
}
