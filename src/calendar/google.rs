//! Google Calendar through google-calendar3, authenticated as a service
//! account by yup-oauth2.
//!
//! - A calendar that reports `errors` inside a 200 freebusy answer is
//!   unknown, never free.
//! - Events are inserted with our deterministic id, so a 409 ("already
//!   exists") after a retry means the first attempt succeeded.
//! - `invalid_grant` (a revoked or expired key) is reported as such, so the
//!   owner hears about it instead of customers hearing "no openings".

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use google_calendar3::api::{Event, EventAttendee, EventDateTime, FreeBusyRequest, FreeBusyRequestItem};
use google_calendar3::{CalendarHub, hyper_rustls, hyper_util, yup_oauth2};
use url::Url;

use super::{Busy, Calendar, CalendarError, CalendarEvent};
use crate::domain::availability::Interval;

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

pub struct GoogleCalendar {
    hub: CalendarHub<Connector>,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum GoogleSetupError {
    #[error("cannot read the service account key {path}: {source}")]
    Key { path: String, source: std::io::Error },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("cannot set up the service account: {0}")]
    Auth(String),
}

impl GoogleCalendar {
    /// `base_url` (GOOGLE_CALENDAR_BASE_URL) replaces `https://www.googleapis.com`
    /// for tests and local fakes; the token endpoint comes from the key file.
    pub async fn connect(
        key_path: &Path,
        subject: Option<&str>,
        base_url: Option<&Url>,
        timeout: Duration,
    ) -> Result<Self, GoogleSetupError> {
        let key = yup_oauth2::read_service_account_key(key_path)
            .await
            .map_err(|source| GoogleSetupError::Key {
                path: key_path.display().to_string(),
                source,
            })?;
        // reqwest and the Google stack bring different rustls crypto
        // backends; with both compiled in, rustls needs to be told which.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| GoogleSetupError::Tls(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build();
        let executor = hyper_util::rt::TokioExecutor::new();
        // The token client and the API client carry different body types.
        let token_client =
            hyper_util::client::legacy::Client::builder(executor.clone()).build(connector.clone());
        let client = hyper_util::client::legacy::Client::builder(executor).build(connector);
        let mut auth = yup_oauth2::ServiceAccountAuthenticator::with_client(
            key,
            yup_oauth2::client::CustomHyperClientBuilder::from(token_client),
        );
        if let Some(subject) = subject {
            auth = auth.subject(subject);
        }
        let auth = auth
            .build()
            .await
            .map_err(|e| GoogleSetupError::Auth(e.to_string()))?;
        let mut hub = CalendarHub::new(client, auth);
        if let Some(base) = base_url {
            let base = base.as_str().trim_end_matches('/');
            hub.base_url(format!("{base}/calendar/v3/"));
            hub.root_url(format!("{base}/"));
        }
        Ok(Self { hub, timeout })
    }

    async fn bounded<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = google_calendar3::Result<T>>,
    ) -> Result<T, CalendarError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(CalendarError::Unavailable(format!(
                "{what} timed out after {:?}",
                self.timeout
            ))),
        }
    }
}

/// The HTTP status inside a google-calendar3 error, if it has one.
fn status_of(e: &google_calendar3::Error) -> Option<u16> {
    match e {
        google_calendar3::Error::BadRequest(body) => body["error"]["code"].as_u64().map(|c| c as u16),
        google_calendar3::Error::Failure(response) => Some(response.status().as_u16()),
        _ => None,
    }
}

fn classify(e: google_calendar3::Error) -> CalendarError {
    let status = status_of(&e);
    let text = match &e {
        google_calendar3::Error::BadRequest(body) => body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string()),
        other => other.to_string(),
    };
    let revoked = [
        "invalid_grant",
        "unauthorized_client",
        "invalid_client",
        "access_denied",
    ]
    .iter()
    .any(|code| text.contains(code));
    match (&e, status) {
        (google_calendar3::Error::MissingToken(_), _) if revoked => CalendarError::CredentialsRevoked(text),
        (google_calendar3::Error::MissingToken(_), _) => {
            CalendarError::Unavailable(format!("no token: {text}"))
        }
        (_, Some(401)) => CalendarError::CredentialsRevoked(text),
        (_, Some(s)) if s == 429 || s >= 500 => CalendarError::Unavailable(format!("HTTP {s}: {text}")),
        (_, Some(s)) => CalendarError::Rejected(format!("HTTP {s}: {text}")),
        _ => CalendarError::Unavailable(text),
    }
}

fn when(at: chrono::DateTime<chrono::Utc>) -> EventDateTime {
    EventDateTime {
        date_time: Some(at),
        ..EventDateTime::default()
    }
}

#[async_trait]
impl Calendar for GoogleCalendar {
    /// Google's event page: `eid` is the event id and calendar id, base64.
    fn event_link(&self, calendar: &str, event_id: &str) -> Option<String> {
        use base64::Engine;
        let eid = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{event_id} {calendar}"));
        Some(format!("https://www.google.com/calendar/event?eid={eid}"))
    }

    #[tracing::instrument(name = "google_freebusy", skip_all, fields(calendars = calendars.len()))]
    async fn busy(
        &self,
        calendars: &[String],
        range: Interval,
    ) -> Result<HashMap<String, Busy>, CalendarError> {
        let request = FreeBusyRequest {
            time_min: Some(range.start),
            time_max: Some(range.end),
            items: Some(
                calendars
                    .iter()
                    .map(|id| FreeBusyRequestItem { id: Some(id.clone()) })
                    .collect(),
            ),
            ..FreeBusyRequest::default()
        };
        let (_, response) = self
            .bounded("freebusy", self.hub.freebusy().query(request).doit())
            .await?;
        let mut answered = response.calendars.unwrap_or_default();
        let mut out = HashMap::new();
        for id in calendars {
            let busy = match answered.remove(id) {
                None => Busy::Unknown("not in the freebusy answer".into()),
                Some(calendar) => match calendar.errors.filter(|e| !e.is_empty()) {
                    Some(errors) => Busy::Unknown(
                        errors
                            .iter()
                            .map(|e| e.reason.clone().unwrap_or_else(|| "unknown error".into()))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    None => Busy::Known(
                        calendar
                            .busy
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|p| {
                                Some(Interval {
                                    start: p.start?,
                                    end: p.end?,
                                })
                            })
                            .collect(),
                    ),
                },
            };
            if let Busy::Unknown(reason) = &busy {
                tracing::warn!(%reason, "calendar busy time unknown; treating it as unavailable");
            }
            out.insert(id.clone(), busy);
        }
        Ok(out)
    }

    #[tracing::instrument(name = "google_insert_event", skip_all, fields(event = %event.id))]
    async fn insert_event(&self, calendar: &str, event: &CalendarEvent) -> Result<(), CalendarError> {
        let body = Event {
            id: Some(event.id.clone()),
            summary: Some(event.summary.clone()),
            description: Some(event.description.clone()),
            location: event.location.clone(),
            start: Some(when(event.start)),
            end: Some(when(event.end)),
            attendees: event.attendee_email.as_ref().map(|email| {
                vec![EventAttendee {
                    email: Some(email.clone()),
                    ..EventAttendee::default()
                }]
            }),
            ..Event::default()
        };
        match tokio::time::timeout(self.timeout, self.hub.events().insert(body, calendar).doit()).await {
            Ok(Ok(_)) => Ok(()),
            // Our id is deterministic: a duplicate is our own earlier insert.
            Ok(Err(e)) if status_of(&e) == Some(409) => {
                tracing::info!("event already exists; an earlier attempt created it");
                Ok(())
            }
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(CalendarError::Unavailable(format!(
                "event insert timed out after {:?}",
                self.timeout
            ))),
        }
    }

    #[tracing::instrument(name = "google_move_event", skip_all, fields(event = %event.id))]
    async fn move_event(&self, calendar: &str, event: &CalendarEvent) -> Result<(), CalendarError> {
        // The text moves with the times: the crew reads the arrival window
        // in the description.
        let patch = Event {
            start: Some(when(event.start)),
            end: Some(when(event.end)),
            summary: Some(event.summary.clone()),
            description: Some(event.description.clone()),
            ..Event::default()
        };
        self.bounded(
            "event patch",
            self.hub.events().patch(patch, calendar, &event.id).doit(),
        )
        .await
        .map(|_| ())
    }

    #[tracing::instrument(name = "google_delete_event", skip_all, fields(event = %event_id))]
    async fn delete_event(&self, calendar: &str, event_id: &str) -> Result<(), CalendarError> {
        match tokio::time::timeout(self.timeout, self.hub.events().delete(calendar, event_id).doit()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if matches!(status_of(&e), Some(404 | 410)) => Ok(()),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(CalendarError::Unavailable(format!(
                "event delete timed out after {:?}",
                self.timeout
            ))),
        }
    }
}
