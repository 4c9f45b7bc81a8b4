//! Twilio: webhook signatures and the Messages API, in Twilio's own terms
//! (HTTP statuses, error codes). What those mean for a conversation is
//! decided in `channel::twilio`.

pub mod signature;

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

use crate::config::settings::TwilioCredentials;
use crate::domain::phone::{E164, redact_phone_numbers};

/// Twilio's error for a recipient who has replied STOP.
pub const ERROR_OPTED_OUT: i64 = 21610;

/// Twilio's error for free-form WhatsApp text outside the 24-hour window.
pub const ERROR_OUTSIDE_WHATSAPP_WINDOW: i64 = 63016;

/// How one request to the Messages API failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// Twilio answered with an error.
    #[error("HTTP {status}, code {code:?}: {message}")]
    Refused {
        status: u16,
        code: Option<i64>,
        /// Phone numbers Twilio quoted back are masked.
        message: String,
    },
    /// No connection was made: the request never reached Twilio.
    #[error("cannot connect: {0}")]
    Unreachable(String),
    /// The request went out but no readable answer came back.
    #[error("{0}")]
    NoAnswer(String),
}

#[derive(Debug, Deserialize)]
struct MessagePage {
    messages: Vec<ListedMessage>,
}

/// One message of the Messages list.
#[derive(Debug, Deserialize)]
pub struct ListedMessage {
    pub sid: String,
    pub body: Option<String>,
    /// RFC 2822, e.g. "Mon, 16 Aug 2010 03:45:01 +0000".
    pub date_created: Option<String>,
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

/// The Messages API of one account: one request per call, no retries
/// (the channel decides what is worth retrying).
pub struct TwilioClient {
    http: reqwest::Client,
    messages_url: Url,
    credentials: TwilioCredentials,
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
            status_callback: None,
        }
    }

    /// Asks Twilio to report each text's delivery to `url`
    /// (`PUBLIC_BASE_URL` + `/api/sms/status`).
    pub fn with_status_callback(mut self, url: String) -> Self {
        self.status_callback = Some(url);
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

    /// Creates one message and returns its SID.
    pub async fn create_message(
        &self,
        from: &E164,
        to: &E164,
        content: &[(&'static str, &str)],
    ) -> Result<String, ApiError> {
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
                    ApiError::Unreachable(e.to_string())
                } else {
                    ApiError::NoAnswer(e.to_string())
                }
            })?;
        let status = response.status();
        if status.is_success() {
            let created: MessageCreated = response
                .json()
                .await
                .map_err(|e| ApiError::NoAnswer(format!("unreadable success body: {e}")))?;
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
        Err(ApiError::Refused {
            status: status.as_u16(),
            code,
            message,
        })
    }

    /// Messages from `from` to `to` sent on or after `day` (Twilio filters
    /// by day only), newest first, one page.
    pub async fn list_messages(
        &self,
        from: &E164,
        to: &E164,
        day: chrono::NaiveDate,
    ) -> Result<Vec<ListedMessage>, ApiError> {
        let mut url = self.messages_url.clone();
        url.query_pairs_mut()
            .append_pair("To", to.as_str())
            .append_pair("From", from.as_str())
            .append_pair("DateSent>", &day.format("%Y-%m-%d").to_string())
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
            .map_err(|e| ApiError::Unreachable(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ApiError::Refused {
                status: status.as_u16(),
                code: None,
                message: "listing messages".into(),
            });
        }
        let page: MessagePage = response
            .json()
            .await
            .map_err(|e| ApiError::NoAnswer(format!("listing messages: {e}")))?;
        Ok(page.messages)
    }
}
