//! Logging in and out.

use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

use super::views::{self, LoginPage};
use super::{CSRF, ClientIp, LOGIN_WINDOW, OWNER_SINCE, csrf_token, password, random_token};
use crate::http::AppState;

pub(super) fn to_login() -> Response {
    Redirect::to("/owner/login").into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console: login failed");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

pub(super) async fn login_form(State(state): State<AppState>, session: Session) -> Response {
    match state.owner.console.owner_password_hash().await {
        Ok(Some(_)) => {}
        Ok(None) => return views::setup_page(),
        Err(e) => return internal(e),
    }
    if session.get::<i64>(OWNER_SINCE).await.ok().flatten().is_some() {
        return Redirect::to("/owner/").into_response();
    }
    match csrf_token(&session).await {
        Ok(csrf) => views::render(StatusCode::OK, &LoginPage { csrf, error: None }),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    password: String,
}

pub(super) async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    Form(form): Form<LoginForm>,
) -> Response {
    let limiter = &state.owner.limiter;
    if !limiter.take_attempt(ip, Instant::now()) {
        tracing::warn!("console: login refused, too many failures from one address");
        let mut response = views::error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong passwords. Wait a minute and try again.",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&LOGIN_WINDOW.as_secs().to_string())
                .unwrap_or(HeaderValue::from_static("60")),
        );
        return response;
    }
    let hash = match state.owner.console.owner_password_hash().await {
        Ok(Some(hash)) => hash,
        Ok(None) => return views::setup_page(),
        Err(e) => return internal(e),
    };
    let attempt = form.password;
    // argon2 is deliberately slow: off the async threads.
    let matches = tokio::task::spawn_blocking(move || password::verify_password(&attempt, &hash))
        .await
        .unwrap_or(false);
    if !matches {
        let failures = limiter.failures(ip);
        tracing::warn!(failures, "console: wrong password");
        // Each failure answers a little later than the one before.
        tokio::time::sleep(Duration::from_millis(200 * failures.min(5) as u64)).await;
        return match csrf_token(&session).await {
            Ok(csrf) => views::render(
                StatusCode::UNAUTHORIZED,
                &LoginPage {
                    csrf,
                    error: Some("That password is not right.".into()),
                },
            ),
            Err(e) => internal(e),
        };
    }
    limiter.succeeded(ip);
    // A new id and a new token: whatever a visitor saw before logging in
    // (a planted cookie, the login form's token) is worth nothing after.
    let logged_in = async {
        session.cycle_id().await?;
        session
            .insert(OWNER_SINCE, state.owner.clock.now().timestamp())
            .await?;
        session.insert(CSRF, random_token()).await
    };
    match logged_in.await {
        Ok(()) => {
            tracing::info!("console: the owner logged in");
            Redirect::to("/owner/").into_response()
        }
        Err(e) => internal(e),
    }
}

pub(super) async fn logout(session: Session) -> Response {
    // `flush` deletes the record, so the cookie is worth nothing even if
    // the browser keeps it.
    match session.flush().await {
        Ok(()) => Redirect::to("/owner/login").into_response(),
        Err(e) => internal(e),
    }
}
