//! The owner's console under `/owner/`: server-rendered pages (askama,
//! `templates/owner/`), one password, sessions in our database.
//!
//! Layers, outermost first: security headers on every response; the
//! session; the CSRF check on every POST; then, on every route but the
//! login page and the stylesheet, the owner check (no password yet: how to
//! set one; no session: the login page). Pages read through
//! `ConsoleStore`; whatever changes a conversation goes through the desk
//! layer, so the console is never a second implementation.

mod actions;
mod approval;
mod auth;
mod pages;
pub mod password;
mod sessions;
mod settings;
mod views;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_sessions::cookie::SameSite;
use tower_sessions::cookie::time::Duration as CookieDuration;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::clock::Clock;
use crate::store::console::ConsoleStore;

use super::AppState;

pub use sessions::DbSessionStore;

/// The session cookie's name. Its path is `/owner`, so the webhook never
/// sees it.
pub const SESSION_COOKIE: &str = "textdesk_owner";
/// A session unused this long is over.
pub const IDLE_TIMEOUT_HOURS: i64 = 12;
/// And however busy, a login lasts at most this long.
pub const MAX_SESSION_DAYS: i64 = 7;
/// Failed logins allowed per address per `LOGIN_WINDOW`; the next is 429.
pub const LOGIN_FAILURES_ALLOWED: usize = 5;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Session keys.
const OWNER_SINCE: &str = "owner_since";
const CSRF: &str = "csrf";
/// The form field (and header) a POST carries its token in.
pub const CSRF_FIELD: &str = "csrf";
const CSRF_HEADER: &str = "x-csrf-token";

const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What the console needs beside the rest of the app's state.
#[derive(Clone)]
pub struct OwnerConsole {
    pub console: Arc<dyn ConsoleStore>,
    /// `PUBLIC_BASE_URL` is https: the cookie is Secure.
    pub secure_cookie: bool,
    pub limiter: Arc<LoginLimiter>,
    pub clock: Arc<dyn Clock>,
    /// For the conversation page's cost estimate.
    pub model_prices: crate::config::settings::ModelPrices,
}

impl OwnerConsole {
    pub fn new(console: Arc<dyn ConsoleStore>, public_base_url: &url::Url, clock: Arc<dyn Clock>) -> Self {
        Self {
            console,
            secure_cookie: public_base_url.scheme() == "https",
            limiter: Arc::new(LoginLimiter::default()),
            clock,
            model_prices: Default::default(),
        }
    }

    /// Prices the conversation page's cost estimate with `prices`.
    pub fn with_model_prices(mut self, prices: crate::config::settings::ModelPrices) -> Self {
        self.model_prices = prices;
        self
    }
}

/// Failed logins per client address, in memory: a restart forgets them,
/// which costs an attacker a restart per five guesses.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl LoginLimiter {
    /// Takes one attempt for this address, counted as a failure until
    /// `succeeded` says otherwise; false (and nothing taken) once the
    /// window's failures are used up. Counting before the password is
    /// checked means a burst of parallel guesses cannot all slip in before
    /// the first failure is recorded.
    pub fn take_attempt(&self, ip: IpAddr, now: Instant) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Forget addresses whose failures are all old, so the map stays small.
        failures.retain(|_, times| {
            times.retain(|t| now.duration_since(*t) < LOGIN_WINDOW);
            !times.is_empty()
        });
        let times = failures.entry(ip).or_default();
        if times.len() >= LOGIN_FAILURES_ALLOWED {
            return false;
        }
        times.push(now);
        true
    }

    /// How many attempts this address has in the window.
    pub fn failures(&self, ip: IpAddr) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .map_or(0, Vec::len)
    }

    /// The right password: this address starts afresh.
    pub fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }
}

/// The client's address as the socket reports it. Behind a reverse proxy
/// every visitor shares the proxy's address (and so its login limit):
/// forwarded headers are not trusted, since anyone can send them.
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip()),
        ))
    }
}

pub fn router(state: &AppState) -> Router<AppState> {
    let sessions = SessionManagerLayer::new(DbSessionStore::new(state.owner.console.clone()))
        .with_name(SESSION_COOKIE)
        .with_path("/owner")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.owner.secure_cookie)
        .with_expiry(Expiry::OnInactivity(CookieDuration::hours(IDLE_TIMEOUT_HOURS)))
        // Without it a session that is only read keeps the expiry of its
        // last change, and a busy owner is logged out mid-day.
        .with_always_save(true);
    let owner_only = Router::new()
        .route("/owner/", get(pages::inbox))
        .route("/owner/conversations/{id}", get(pages::conversation))
        .route(
            "/owner/conversations/{id}/held/{msg}/approve",
            post(approval::approve),
        )
        .route("/owner/conversations/{id}/held/{msg}/edit", post(approval::edit))
        .route(
            "/owner/conversations/{id}/held/{msg}/reject",
            post(approval::reject),
        )
        .route("/owner/conversations/{id}/take-over", post(actions::take_over))
        .route("/owner/conversations/{id}/hand-back", post(actions::hand_back))
        .route("/owner/conversations/{id}/reply", post(actions::reply))
        .route("/owner/conversations/{id}/reschedule", post(actions::reschedule))
        .route("/owner/conversations/{id}/cancel", post(actions::cancel))
        .route("/owner/media/{id}", get(pages::media))
        .route("/owner/schedule", get(pages::schedule))
        .route("/owner/alerts", get(pages::alerts))
        .route("/owner/alerts/{id}/resolve", post(pages::resolve_alert))
        .route("/owner/jobs", get(pages::jobs))
        .route("/owner/jobs/{id}/retry", post(pages::retry_job))
        .route("/owner/jobs/{id}/cancel", post(pages::cancel_job))
        .route("/owner/settings", get(settings::settings).post(settings::save))
        .route("/owner/settings/preview", post(settings::preview))
        .route("/owner/settings/try", post(settings::try_it))
        .route("/owner/logout", post(auth::logout))
        // Unknown pages are 404 too, but only to the owner.
        .route("/owner/{*rest}", get(pages::not_found).post(pages::not_found))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_owner));
    Router::new()
        .route(
            "/owner",
            get(|| async { axum::response::Redirect::permanent("/owner/") }),
        )
        .route("/owner/login", get(auth::login_form).post(auth::login))
        .route("/owner/static/console.css", get(static_css))
        .route("/owner/static/settings.css", get(settings::settings_css))
        .route("/owner/static/settings.js", get(settings::settings_js))
        .route("/owner/static/reply-counter.js", get(actions::counter_script))
        .merge(owner_only)
        .layer(middleware::from_fn(require_csrf))
        .layer(sessions)
        .layer(middleware::from_fn(security_headers))
}

/// On every response under /owner/, whatever produced it (an error page,
/// a redirect, a photo).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // Pages carry customers' numbers and texts: no shared or disk cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The session's CSRF token, made on first use.
pub(crate) async fn csrf_token(session: &Session) -> Result<String, tower_sessions::session::Error> {
    if let Some(token) = session.get::<String>(CSRF).await? {
        return Ok(token);
    }
    let token = random_token();
    session.insert(CSRF, &token).await?;
    Ok(token)
}

/// 244 random bits from the OS, as hex.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Every POST under /owner/ carries the session's token, in the form's
/// `csrf` field or the `X-CSRF-Token` header; otherwise 403. Checked here,
/// once, so no handler can forget it.
async fn require_csrf(session: Session, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let expected = match session.get::<String>(CSRF).await {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "console: session unreadable");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let (parts, body) = request.into_parts();
    // The app-wide body limit has already bounded this.
    let bytes = match axum::body::to_bytes(body, super::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let sent = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            form_urlencoded::parse(&bytes)
                .find(|(k, _)| k == CSRF_FIELD)
                .map(|(_, v)| v.into_owned())
        });
    match (expected, sent) {
        (Some(expected), Some(sent)) if constant_time_eq(expected.as_bytes(), sent.as_bytes()) => {
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
        _ => views::error_page(
            StatusCode::FORBIDDEN,
            "This form has expired. Go back, reload the page and try again.",
        ),
    }
}

/// Pages for the owner only: without a password, how to set one; without
/// a session, the login page.
async fn require_owner(
    State(state): State<AppState>,
    session: Session,
    request: Request,
    next: Next,
) -> Response {
    match state.owner.console.owner_password_hash().await {
        Ok(Some(_)) => {}
        Ok(None) => return views::setup_page(),
        Err(e) => {
            tracing::error!(error = %e, "console: cannot read the owner's password");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    let since = session.get::<i64>(OWNER_SINCE).await.ok().flatten();
    let now = state.owner.clock.now().timestamp();
    match since {
        Some(since) if now - since < MAX_SESSION_DAYS * 86_400 => next.run(request).await,
        Some(_) => {
            // Over its absolute limit: gone, whatever its activity.
            let _ = session.flush().await;
            auth::to_login()
        }
        None => auth::to_login(),
    }
}

async fn static_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../templates/owner/console.css"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_attempts_a_minute_per_address_then_none_until_the_window_passes() {
        let limiter = LoginLimiter::default();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let start = Instant::now();
        for _ in 0..LOGIN_FAILURES_ALLOWED {
            assert!(limiter.take_attempt(a, start));
        }
        assert!(!limiter.take_attempt(a, start + Duration::from_secs(59)));
        assert!(limiter.take_attempt(b, start), "another address is not affected");
        assert!(
            limiter.take_attempt(a, start + LOGIN_WINDOW),
            "the window has passed"
        );
        limiter.succeeded(a);
        assert_eq!(limiter.failures(a), 0);
    }
}
