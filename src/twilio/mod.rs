//! Twilio: webhook signatures and the Messages API.

pub mod signature;

use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

use crate::config::settings::TwilioCredentials;
use crate::domain::phone::{E164, redact_phone_numbers};

/// Twilio's error for a recipient who has replied STOP.
pub const ERROR_OPTED_OUT: i64 = 21610;

/// Twilio's error for free-form WhatsApp text outside the 24-hour window.
pub const ERROR_OUTSIDE_WHATSAPP_WINDOW: i64 = 63016;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("recipient has opted out (Twilio {ERROR_OPTED_OUT})")]
    OptedOut,
    /// WhatsApp accepts only an approved template now. Retrying the same
    /// text cannot succeed.
    #[error("outside WhatsApp's 24-hour window: {0}")]
    OutsideWindow(String),
    #[error("Twilio rejected the message (HTTP {status}, code {code:?}): {message}")]
    Rejected {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    /// Twilio could not take the message now (429, 5xx, no connection) and
    /// retries ran out. It was not sent.
    #[error("Twilio unavailable: {0}")]
    Unavailable(String),
    /// The request went out but no answer came back: it may have been sent.
    #[error("no answer from Twilio, the message may have been sent: {0}")]
    Ambiguous(String),
}

/// Where replies go: Twilio, or the console when there are no credentials.
#[async_trait]
pub trait SmsSender: Send + Sync + 'static {
    /// Sends one text from `from` (the business number the customer
    /// texted) and returns its message SID.
    async fn send(&self, from: &E164, to: &E164, body: &str) -> Result<String, SendError>;

    /// Sends an approved WhatsApp template (`content_sid`, `HX...`) with
    /// its `ContentVariables` (a JSON object) and returns its message SID.
    async fn send_template(
        &self,
        from: &E164,
        to: &E164,
        content_sid: &str,
        variables: &str,
    ) -> Result<String, SendError>;

    /// The SID of this exact text if it was already sent since `since`: how
    /// a send cut off by a crash is recognized instead of repeated.
    async fn find_sent(
        &self,
        _from: &E164,
        _to: &E164,
        _body: &str,
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<String>, SendError> {
        Ok(None)
    }
}

#[derive(Debug, Deserialize)]
struct MessagePage {
    messages: Vec<ListedMessage>,
}

#[derive(Debug, Deserialize)]
struct ListedMessage {
    sid: String,
    body: Option<String>,
    /// RFC 2822, e.g. "Mon, 16 Aug 2010 03:45:01 +0000".
    date_created: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageCreated {
    sid: String,
}

#[derive(Debug, Deserialize)]
struct TwilioErrorBody {
    code: Option<i64>,
    message: Option<String>,
}

/// Sends through Twilio's Messages API. Each text goes out from the
/// conversation's own business number; `TWILIO_FROM_NUMBER` names the
/// default one.
pub struct TwilioClient {
    http: reqwest::Client,
    messages_url: Url,
    credentials: TwilioCredentials,
    retry_base: Duration,
    max_retries: u32,
    /// Where Twilio posts delivery receipts for every text sent.
    status_callback: Option<String>,
}

impl TwilioClient {
    pub fn new(api_base_url: &Url, credentials: TwilioCredentials, timeout: Duration) -> Self {
        let mut messages_url = api_base_url.clone();
        messages_url.set_path(&format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            api_base_url.path().trim_end_matches('/'),
            credentials.account_sid
        ));
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("a TLS backend is compiled in"),
            messages_url,
            credentials,
            retry_base: Duration::from_millis(500),
            max_retries: 2,
            status_callback: None,
        }
    }

    /// Asks Twilio to report each text's delivery to `url`
    /// (`PUBLIC_BASE_URL` + `/api/sms/status`).
    pub fn with_status_callback(mut self, url: String) -> Self {
        self.status_callback = Some(url);
        self
    }

    /// Shorter backoff, for tests.
    pub fn with_retry_base(mut self, retry_base: Duration) -> Self {
        self.retry_base = retry_base;
        self
    }

    /// The Messages API form: `content` is `Body`, or `ContentSid` and
    /// `ContentVariables` for a template. WhatsApp addresses carry their
    /// `whatsapp:` prefix in `From` and `To`, which is all Twilio needs.
    fn send_form<'a>(
        &'a self,
        from: &'a E164,
        to: &'a E164,
        content: &[(&'static str, &'a str)],
    ) -> Vec<(&'static str, &'a str)> {
        let mut form = vec![("To", to.as_str()), ("From", from.as_str())];
        form.extend_from_slice(content);
        if let Some(url) = &self.status_callback {
            form.push(("StatusCallback", url.as_str()));
        }
        form
    }

    async fn send_with_retries(
        &self,
        from: &E164,
        to: &E164,
        content: &[(&'static str, &str)],
    ) -> Result<String, SendError> {
        let mut attempt = 0;
        loop {
            match self.attempt(from, to, content).await {
                Err(SendError::Unavailable(reason)) if attempt < self.max_retries => {
                    let delay = self.retry_base * 2u32.pow(attempt);
                    tracing::warn!(%reason, ?delay, "Twilio unavailable; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn attempt(
        &self,
        from: &E164,
        to: &E164,
        content: &[(&'static str, &str)],
    ) -> Result<String, SendError> {
        let response = self
            .http
            .post(self.messages_url.clone())
            .basic_auth(
                &self.credentials.account_sid,
                Some(self.credentials.auth_token.expose_secret()),
            )
            .form(&self.send_form(from, to, content))
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    SendError::Unavailable(format!("cannot connect: {e}"))
                } else {
                    SendError::Ambiguous(e.to_string())
                }
            })?;
        let status = response.status();
        if status.is_success() {
            let created: MessageCreated = response
                .json()
                .await
                .map_err(|e| SendError::Ambiguous(format!("unreadable success body: {e}")))?;
            return Ok(created.sid);
        }
        let text = response.text().await.unwrap_or_default();
        let parsed: Option<TwilioErrorBody> = serde_json::from_str(&text).ok();
        let code = parsed.as_ref().and_then(|b| b.code);
        // Twilio's messages often quote the number ("The 'To' number
        // +1503... is not valid"); they end up in logs and alerts.
        let message = redact_phone_numbers(
            &parsed
                .and_then(|b| b.message)
                .unwrap_or_else(|| text.chars().take(200).collect()),
        );
        if code == Some(ERROR_OPTED_OUT) {
            return Err(SendError::OptedOut);
        }
        if code == Some(ERROR_OUTSIDE_WHATSAPP_WINDOW) {
            return Err(SendError::OutsideWindow(format!(
                "Twilio refused free-form text ({ERROR_OUTSIDE_WHATSAPP_WINDOW})"
            )));
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(SendError::Unavailable(format!("HTTP {status}: {message}")));
        }
        Err(SendError::Rejected {
            status: status.as_u16(),
            code,
            message,
        })
    }
}

#[async_trait]
impl SmsSender for TwilioClient {
    #[tracing::instrument(name = "twilio_send", skip_all, fields(to = %to.masked()))]
    async fn send(&self, from: &E164, to: &E164, body: &str) -> Result<String, SendError> {
        self.send_with_retries(from, to, &[("Body", body)]).await
    }

    #[tracing::instrument(name = "twilio_send_template", skip_all, fields(to = %to.masked()))]
    async fn send_template(
        &self,
        from: &E164,
        to: &E164,
        content_sid: &str,
        variables: &str,
    ) -> Result<String, SendError> {
        self.send_with_retries(
            from,
            to,
            &[("ContentSid", content_sid), ("ContentVariables", variables)],
        )
        .await
    }

    #[tracing::instrument(name = "twilio_find_sent", skip_all, fields(to = %to.masked()))]
    async fn find_sent(
        &self,
        from: &E164,
        to: &E164,
        body: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<String>, SendError> {
        // Twilio filters by day; the body match does the rest.
        let day = (since - chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
        let mut url = self.messages_url.clone();
        url.query_pairs_mut()
            .append_pair("To", to.as_str())
            .append_pair("From", from.as_str())
            .append_pair("DateSent>", &day)
            .append_pair("PageSize", "50");
        let response = self
            .http
            .get(url)
            .basic_auth(
                &self.credentials.account_sid,
                Some(self.credentials.auth_token.expose_secret()),
            )
            .send()
            .await
            .map_err(|e| SendError::Unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(SendError::Unavailable(format!(
                "listing messages: HTTP {}",
                response.status()
            )));
        }
        let page: MessagePage = response
            .json()
            .await
            .map_err(|e| SendError::Unavailable(format!("listing messages: {e}")))?;
        Ok(page
            .messages
            .into_iter()
            .find(|m| {
                // The same words sent earlier (a second HELP, say) are not this text.
                let created = m
                    .date_created
                    .as_deref()
                    .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
                m.body.as_deref() == Some(body)
                    && created.is_none_or(|c| c >= since - chrono::Duration::seconds(5))
            })
            .map(|m| m.sid))
    }
}

/// The embedded default: texts are printed, not sent.
pub struct ConsoleSender {
    /// Prefix for each printed text, e.g. the business name in `chat`.
    pub label: Option<String>,
}

#[async_trait]
impl SmsSender for ConsoleSender {
    async fn send(&self, _from: &E164, to: &E164, body: &str) -> Result<String, SendError> {
        let sid = format!("CONSOLE{}", uuid::Uuid::new_v4().simple());
        match &self.label {
            Some(label) => println!("{label}: {body}\n"),
            None => {
                println!("--- SMS to {} ---\n{body}\n---", to.masked());
                tracing::info!(to = %to.masked(), %sid, "text printed to console (Twilio not configured)");
            }
        }
        Ok(sid)
    }

    async fn send_template(
        &self,
        from: &E164,
        to: &E164,
        content_sid: &str,
        variables: &str,
    ) -> Result<String, SendError> {
        // The console has no templates: show what WhatsApp would deliver.
        self.send(from, to, &format!("[template {content_sid}] {variables}"))
            .await
    }
}
