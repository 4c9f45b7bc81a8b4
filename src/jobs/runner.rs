//! Runs due jobs: reminders, quote follow-ups, emails.
//!
//! A job is claimed atomically (so two workers never run one), its effect
//! is tied to it (a job's text is stored under the job's id, an email is
//! sent once per claim), and its outcome recorded: done, deferred (quiet
//! hours: no attempt counted), retried with exponential backoff, or dead
//! after `max_attempts`, which alerts the owner.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::plan::{self, DEFERRED_REPLY, EMAIL, FETCH_MEDIA, FOLLOW_UP, REMINDER};
use super::turns::Engine;
use crate::config::business::BusinessConfig;
use crate::domain::conversation::ConversationState;
use crate::email::{Attachment, Email, EmailError, EmailSender};
use crate::media::{FetchError, MAX_MEDIA_PER_MESSAGE, MediaFetcher};
use crate::store::{
    AlertKind, Delivery, Job, JobOutcome, MediaFetch, MediaStatus, MessageKind, NewAlert, OutboundDraft,
    Store, StoreError,
};
use crate::templates;

#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub poll_interval: Duration,
    pub batch: usize,
    pub lease: Duration,
    /// First retry delay; doubles each attempt, up to an hour.
    pub retry_base: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            batch: 100,
            lease: Duration::from_secs(300),
            retry_base: Duration::from_secs(30),
        }
    }
}

pub struct JobRunner {
    pub store: Arc<dyn Store>,
    /// Each business's engine; a job runs on its business's current one.
    pub desks: Arc<crate::app::Desks>,
    pub email: Arc<dyn EmailSender>,
    pub settings: RunnerSettings,
    /// Fetches customers' photos; `None` without provider credentials, and
    /// then photos are recorded but never fetched.
    pub media: Option<Arc<MediaFetcher>>,
}

/// Attempts an email with photos waits for photos still being fetched.
const PHOTO_WAIT_ATTEMPTS: u32 = 3;

/// Why a job failed, and whether trying again can help.
enum Failure {
    Retryable(String),
    Permanent(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Retryable(e.to_string())
    }
}

impl JobRunner {
    /// Polls for due jobs until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            loop {
                match self.run_due(Utc::now()).await {
                    Ok(n) if n == self.settings.batch => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "could not run due jobs");
                        break;
                    }
                }
            }
        }
    }

    /// Runs one batch of due jobs; returns how many it claimed.
    pub async fn run_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let jobs = self
            .store
            .claim_due_jobs(now, self.settings.batch, self.settings.lease)
            .await?;
        let claimed = jobs.len();
        // Photo downloads run in a lane of their own: a slow media server
        // must not hold back a reminder or the crew's email.
        let (media, other): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.kind == FETCH_MEDIA);
        tokio::join!(self.run_lane(media, now), self.run_lane(other, now));
        Ok(claimed)
    }

    /// Runs claimed jobs one after another, recording each outcome.
    async fn run_lane(&self, jobs: Vec<Job>, now: DateTime<Utc>) {
        for job in jobs {
            // Each job at its own moment: a batch that starts at 20:59 must
            // not keep texting after 21:00. (`now` may be ahead, in tests.)
            let now = now.max(Utc::now());
            // An owner's email raised outside any conversation (a refused
            // reload, say) needs no business of its own to be sent.
            let engine = self
                .desks
                .engine(&job.business_id)
                .or_else(|| if job.kind == EMAIL { self.desks.any() } else { None });
            let Some(engine) = engine else {
                tracing::error!(job = job.id, business = %job.business_id, "a job of a business no longer configured");
                let _ = self
                    .store
                    .finish_job(
                        job.id,
                        &JobOutcome::Dead {
                            error: format!("business `{}` is not configured", job.business_id),
                        },
                    )
                    .await;
                continue;
            };
            let business = engine.business.clone();
            let outcome = match self.run_job(&engine, &job, now).await {
                Ok(outcome) => outcome,
                Err(Failure::Permanent(error)) => self.dead(&business, &job, error).await,
                Err(Failure::Retryable(error)) if job.attempts >= job.max_attempts => {
                    self.dead(&business, &job, error).await
                }
                Err(Failure::Retryable(error)) => {
                    let factor = 2u32.saturating_pow(job.attempts.saturating_sub(1).min(16));
                    let delay = (self.settings.retry_base * factor).min(Duration::from_secs(3600));
                    tracing::warn!(job = job.id, kind = %job.kind, %error, ?delay, "job failed; will retry");
                    JobOutcome::Retry {
                        at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                        error,
                    }
                }
            };
            // One job's bookkeeping failing must not strand the rest of the
            // batch; its lease expires and it is taken over.
            if let Err(e) = self.store.finish_job(job.id, &outcome).await {
                tracing::error!(job = job.id, error = %e, "could not record a job's outcome");
            }
        }
    }

    async fn dead(&self, business: &BusinessConfig, job: &Job, error: String) -> JobOutcome {
        tracing::error!(job = job.id, kind = %job.kind, %error, "job dead after its last attempt");
        // A text job's recipient is a customer the owner may need to call.
        let customer = crate::domain::phone::E164::parse_address(&job.recipient)
            .ok()
            .map(|phone| plan::CustomerContact { name: None, phone });
        let alert = NewAlert {
            kind: AlertKind::DeadJob,
            detail: format!(
                "A {} job for {} ({}) failed {} time(s) and was given up: {error}",
                job.kind, job.recipient, job.dedupe_key, job.attempts
            ),
        };
        let _ = self
            .store
            .record_alert(&alert.kind, job.conversation_id, &alert.detail)
            .await;
        // An email failing does not email about itself.
        if job.kind != EMAIL
            && let Some(owner_job) = plan::alert_job_about(
                business,
                &alert,
                job.conversation_id,
                customer.as_ref(),
                &format!("job{}", job.id),
                Utc::now(),
            )
        {
            let _ = self.store.enqueue_jobs(&[owner_job]).await;
        }
        JobOutcome::Dead { error }
    }

    /// Texts wait for the end of quiet hours.
    fn quiet_until(business: &BusinessConfig, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let allowed = business.quiet_hours.next_allowed(now, business.business.timezone);
        (allowed > now).then_some(allowed)
    }

    async fn run_job(&self, engine: &Engine, job: &Job, now: DateTime<Utc>) -> Result<JobOutcome, Failure> {
        let business = &engine.business;
        match job.kind.as_str() {
            EMAIL => self.send_email(job).await,
            FETCH_MEDIA => self.fetch_media(job).await,
            REMINDER | FOLLOW_UP | DEFERRED_REPLY => {
                if crate::channel::Channel::of_address(&job.recipient).observes_quiet_hours()
                    && let Some(at) = Self::quiet_until(business, now)
                {
                    return Ok(JobOutcome::Defer { at });
                }
                let Some(conversation) = job.conversation_id else {
                    return Err(Failure::Permanent("a text job without a conversation".into()));
                };
                let Some(body) = self.text_for(business, job, conversation).await? else {
                    return Ok(JobOutcome::Cancelled {
                        reason: "no longer applies".into(),
                    });
                };
                let kind = match job.kind.as_str() {
                    REMINDER => MessageKind::Reminder,
                    FOLLOW_UP => MessageKind::FollowUp,
                    _ => MessageKind::Reply,
                };
                match self
                    .store
                    .queue_job_message(conversation, job.id, OutboundDraft { kind, body })
                    .await?
                {
                    Some(sms) => match engine.send_claimed(sms, now).await? {
                        Delivery::Sent { channel_message_id } => Ok(JobOutcome::Done {
                            result: Some(channel_message_id),
                        }),
                        Delivery::OptedOut => Ok(JobOutcome::Cancelled {
                            reason: "the customer opted out".into(),
                        }),
                        // Not sent: the queue's retry and backoff apply.
                        Delivery::Failed { error } => Err(Failure::Retryable(error)),
                        // The channel forbids it now; the owner was alerted.
                        Delivery::Withheld { reason } => Ok(JobOutcome::Cancelled { reason }),
                        // May have been sent: never again (the owner was alerted).
                        Delivery::Unknown { error } => Ok(JobOutcome::Done {
                            result: Some(format!("unknown: {error}")),
                        }),
                    },
                    // This job's text was sent (or may have been) before.
                    None => Ok(JobOutcome::Done { result: None }),
                }
            }
            other => Err(Failure::Permanent(format!("unknown job kind `{other}`"))),
        }
    }

    /// The text a job sends, or `None` if it no longer applies.
    async fn text_for(
        &self,
        business: &BusinessConfig,
        job: &Job,
        conversation: crate::store::ConversationId,
    ) -> Result<Option<String>, Failure> {
        let p = &job.payload;
        match job.kind.as_str() {
            REMINDER => {
                let Some(id) = p["booking_id"].as_str() else {
                    return Err(Failure::Permanent("reminder without a booking".into()));
                };
                let booking = self.store.booking(id).await?;
                let start: Option<DateTime<Utc>> = p["start"].as_str().and_then(|s| s.parse().ok());
                if booking
                    .as_ref()
                    .is_some_and(|b| b.status == crate::store::BookingStatus::Pending)
                {
                    // Being moved right now: decide once it settles.
                    return Err(Failure::Retryable("the booking is being changed".into()));
                }
                let still_on = booking.as_ref().is_some_and(|b| {
                    b.status == crate::store::BookingStatus::Confirmed && Some(b.slot.start) == start
                });
                // A reminder after the job started (say, restored by START
                // too late) helps nobody.
                if !still_on || start.is_none_or(|s| Utc::now() >= s) {
                    return Ok(None);
                }
                let total: crate::domain::money::Money = serde_json::from_value(p["total"].clone())
                    .map_err(|e| Failure::Permanent(e.to_string()))?;
                let label = p["label"].as_str().unwrap_or_default();
                let tomorrow = p["reminder"] == "day_before";
                Ok(Some(templates::reminder(business, label, total, tomorrow)))
            }
            FOLLOW_UP => {
                let turn = self.store.turn_input(conversation, 50).await?;
                let quote_id = p["quote_id"].as_str().unwrap_or_default();
                let open = match &turn.state {
                    ConversationState::Quoted(q) => Some(&q.quote),
                    ConversationState::Scheduling(s) if s.rescheduling.is_none() => Some(&s.quote),
                    _ => None,
                }
                .filter(|q| q.id == quote_id && !q.is_expired(Utc::now()));
                // One nudge per quote, ever; and none once the customer has texted.
                let nudged = turn.history.iter().any(|m| m.kind == MessageKind::FollowUp);
                match open {
                    Some(quote) if !nudged && turn.pending.is_empty() => {
                        Ok(Some(templates::follow_up(business, quote)))
                    }
                    _ => Ok(None),
                }
            }
            _ => Ok(p["body"].as_str().map(str::to_string)),
        }
    }

    /// Fetches one photo into the store. Its turn never waits for this: a
    /// photo not fetched yet is named to the model instead of shown.
    async fn fetch_media(&self, job: &Job) -> Result<JobOutcome, Failure> {
        let Some(id) = job.payload["media_id"].as_i64() else {
            return Err(Failure::Permanent("a media job without a media id".into()));
        };
        let Some(item) = self.store.media_item(id).await? else {
            return Err(Failure::Permanent(format!("no media {id}")));
        };
        if item.status != MediaStatus::Pending {
            return Ok(JobOutcome::Done { result: None });
        }
        let Some(fetcher) = &self.media else {
            let error = "no Twilio credentials to fetch media with".to_string();
            self.store
                .record_media_fetch(id, &MediaFetch::Failed(error.clone()))
                .await?;
            return Err(Failure::Permanent(error));
        };
        let (fetch, outcome) = match fetcher.fetch(&item.url).await {
            Ok(bytes) => {
                let size = bytes.len();
                (
                    MediaFetch::Fetched(bytes),
                    Ok(JobOutcome::Done {
                        result: Some(format!("{size} bytes")),
                    }),
                )
            }
            Err(FetchError::TooLarge) => {
                tracing::warn!(media = id, "a customer's file is over the size limit; not kept");
                (
                    MediaFetch::TooLarge,
                    Ok(JobOutcome::Done {
                        result: Some("too large".into()),
                    }),
                )
            }
            Err(FetchError::Refused) => (
                MediaFetch::Refused,
                Ok(JobOutcome::Cancelled {
                    reason: "not a provider URL".into(),
                }),
            ),
            Err(FetchError::Unavailable(error)) if job.attempts < job.max_attempts => {
                return Err(Failure::Retryable(error));
            }
            Err(FetchError::Unavailable(error) | FetchError::Rejected(error)) => {
                (MediaFetch::Failed(error.clone()), Err(Failure::Permanent(error)))
            }
        };
        self.store.record_media_fetch(id, &fetch).await?;
        outcome
    }

    async fn send_email(&self, job: &Job) -> Result<JobOutcome, Failure> {
        let mut email: Email = serde_json::from_value(job.payload.clone())
            .map_err(|e| Failure::Permanent(format!("bad email job: {e}")))?;
        if email.attach_photos
            && let Some(conversation) = job.conversation_id
        {
            let photos = self
                .store
                .conversation_photos(conversation, MAX_MEDIA_PER_MESSAGE)
                .await?;
            // A photo sent with the text that booked is usually fetched
            // within seconds: wait for it a little, then send without it.
            if photos.iter().any(|p| p.status == MediaStatus::Pending) && job.attempts < PHOTO_WAIT_ATTEMPTS {
                return Err(Failure::Retryable(
                    "waiting for the customer's photos to be fetched".into(),
                ));
            }
            email.attachments = photos
                .into_iter()
                .filter_map(|photo| Some((photo.content_type, photo.data?)))
                .enumerate()
                .map(|(i, (content_type, data))| Attachment::photo(i + 1, &content_type, data))
                .collect();
        }
        // Claimed before with no failure recorded: the last attempt was cut
        // off mid-send. A provider without idempotency may have sent it, so
        // a person decides rather than the recipient getting it twice.
        if job.attempts > 1 && job.last_error.is_none() && !self.email.idempotent() {
            return Err(Failure::Permanent(
                "interrupted mid-send; it may have been sent already".into(),
            ));
        }
        match self.email.send(&job.dedupe_key, &email).await {
            Ok(id) => Ok(JobOutcome::Done { result: Some(id) }),
            Err(EmailError::Unavailable(e)) => Err(Failure::Retryable(e)),
            Err(EmailError::Rejected(e)) => Err(Failure::Permanent(e)),
            Err(EmailError::Unknown(e)) => Err(Failure::Permanent(format!("may have been sent: {e}"))),
        }
    }
}
