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
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{Notify, watch};

use super::payload::{
    ApprovalTimeout, BookingChangeNotice, BookingNotice, BookingReminder, EMAIL, FETCH_MEDIA, FetchMedia,
    JobPayload, OWNER_TEXT, OwnerText, QuoteFollowUp, VERIFICATION_CODE,
};
use super::plan;
use super::turns::Engine;
use crate::clock::Clock;
use crate::config::business::BusinessConfig;
pub use crate::config::settings::RunnerSettings;
use crate::domain::conversation::ConversationState;
use crate::email::{Attachment, Email, EmailError, EmailSender};
use crate::media::{FetchError, MAX_MEDIA_PER_MESSAGE, MediaFetcher};
use crate::store::{
    AlertKind, Delivery, Job, JobClaim, JobOutcome, MediaFetch, MediaStatus, MessageKind, NewAlert,
    OutboundDraft, Store, StoreError,
};
use crate::templates;

pub struct JobRunner {
    pub store: Arc<dyn Store>,
    /// Each business's engine; a job runs on its business's current one.
    pub desks: Arc<crate::app::Desks>,
    pub email: Arc<dyn EmailSender>,
    pub settings: RunnerSettings,
    /// Fetches customers' photos; `None` without provider credentials, and
    /// then photos are recorded but never fetched.
    pub media: Option<Arc<MediaFetcher>>,
    /// When jobs are due, and whether it is quiet hours.
    pub clock: Arc<dyn Clock>,
}

/// Attempts an email with photos waits for photos still being fetched.
const PHOTO_WAIT_ATTEMPTS: u32 = 3;

/// Why a job failed, and whether trying again can help.
enum Failure {
    Retryable(String),
    Permanent(String),
}

/// The claim `job` was taken under.
fn claim_of(job: &Job) -> JobClaim {
    JobClaim {
        id: job.id,
        attempts: job.attempts,
    }
}

/// A job's outcome on its way to the recorder, and who waits for it.
type Recording = (JobClaim, JobOutcome, tokio::sync::oneshot::Sender<()>);

/// What orders a job among the others of its batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ChainKey {
    Conversation(i64),
    Recipient(String),
}

/// The batch's jobs in chains whose order matters, each in batch order
/// (soonest due first), chains ordered by their first job. A
/// conversation's jobs run one after another (a held reply, then its
/// timeout; a reminder, then a follow-up), as do texts to one phone that
/// are not about its conversation (the owner's alerts, a visitor's codes,
/// written into that phone's own conversation). Other jobs (an email or a
/// photo fetch not tied to a conversation) are chains of their own, run
/// side by side.
fn chains(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut index: HashMap<ChainKey, usize> = HashMap::new();
    let mut chains: Vec<Vec<Job>> = Vec::new();
    for job in jobs {
        let key = match job.kind.as_str() {
            OWNER_TEXT | VERIFICATION_CODE => Some(ChainKey::Recipient(job.recipient.clone())),
            _ => match job.conversation_id {
                Some(conversation) => Some(ChainKey::Conversation(conversation.0)),
                None if job.kind == EMAIL || job.kind == FETCH_MEDIA => None,
                None => Some(ChainKey::Recipient(job.recipient.clone())),
            },
        };
        match key.and_then(|key| match index.get(&key) {
            Some(&at) => Some(at),
            None => {
                index.insert(key, chains.len());
                None
            }
        }) {
            Some(at) => chains[at].push(job),
            None => chains.push(vec![job]),
        }
    }
    chains
}

/// A set of claims; its updates cannot be left half done by a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Retryable(e.to_string())
    }
}

impl JobRunner {
    /// Polls for due jobs until `shutdown`.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        self.run_woken(None, shutdown).await
    }

    /// Polls for due jobs until `shutdown`, and also runs them as soon as
    /// `wake` is notified (a job stored by another instance, on Postgres).
    /// On `shutdown` the job in hand finishes (its lease renewed meanwhile)
    /// and the rest of its batch goes back to the queue.
    pub async fn run_woken(self, wake: Option<Arc<Notify>>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let woken = async |wake: &Option<Arc<Notify>>| match wake {
            Some(wake) => wake.notified().await,
            None => std::future::pending().await,
        };
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = woken(&wake) => {}
                _ = shutdown.changed() => break,
            }
            loop {
                if *shutdown.borrow() {
                    return;
                }
                match self.run_due_until(self.clock.now(), &shutdown).await {
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
        let (_never, running) = watch::channel(false);
        self.run_due_until(now, &running).await
    }

    /// As `run_due`; once `stop` turns true, jobs of the batch not yet
    /// started go back to the queue unattempted.
    async fn run_due_until(
        &self,
        now: DateTime<Utc>,
        stop: &watch::Receiver<bool>,
    ) -> Result<usize, StoreError> {
        let jobs = self
            .store
            .claim_due_jobs(now, self.settings.batch, self.settings.lease)
            .await?;
        let claimed = jobs.len();
        if claimed == 0 {
            return Ok(0);
        }
        // Every claim of the batch is renewed until its job is finished
        // (or handed back), so a long batch is never taken over while
        // this instance is alive, and is within a lease once it dies.
        let held: Arc<Mutex<HashSet<JobClaim>>> = Arc::new(Mutex::new(jobs.iter().map(claim_of).collect()));
        let heartbeat = super::lease::Heartbeat::from(self.heartbeat(held.clone()));
        // Photo downloads run in a lane of their own: a slow media server
        // must not hold back a reminder or the crew's email.
        let (media, other): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.kind == FETCH_MEDIA);
        tokio::join!(
            self.run_lane(media, now, &held, stop),
            self.run_lane(other, now, &held, stop)
        );
        drop(heartbeat);
        Ok(claimed)
    }

    /// Renews the leases of the claims in `held` every third of the lease.
    fn heartbeat(&self, held: Arc<Mutex<HashSet<JobClaim>>>) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let lease = self.settings.lease;
        tokio::spawn(async move {
            let every = super::lease::renewal_interval(lease);
            loop {
                tokio::time::sleep(every).await;
                let claims: Vec<JobClaim> = lock(&held).iter().copied().collect();
                match store.renew_job_leases(&claims, lease).await {
                    Ok(still) if still.len() < claims.len() => {
                        let lost = claims.len() - still.len();
                        tracing::warn!(
                            lost,
                            "job leases were lost to another runner; those jobs may run twice"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not renew job leases"),
                }
            }
        })
    }

    /// Runs claimed jobs, recording each outcome: up to
    /// `settings.concurrency` at once, each chain (see [`chains`]) in
    /// order. Once `stop` is set, jobs not started go back to the queue.
    ///
    /// Outcomes are written as a group commit: a job hands its outcome to
    /// the lane's recorder and waits until it is stored before its chain
    /// goes on (or its claim leaves the heartbeat); the recorder writes
    /// every outcome handed to it meanwhile in one statement. So a job's
    /// outcome is as durable, as soon, as when each wrote its own, with
    /// one round trip and one commit for several.
    async fn run_lane(
        &self,
        jobs: Vec<Job>,
        now: DateTime<Utc>,
        held: &Mutex<HashSet<JobClaim>>,
        stop: &watch::Receiver<bool>,
    ) {
        use futures_util::StreamExt;
        let (outcomes, pending) = tokio::sync::mpsc::unbounded_channel();
        let work = async move {
            let outcomes = &outcomes;
            futures_util::stream::iter(chains(jobs))
                .for_each_concurrent(self.settings.concurrency.max(1), |chain| {
                    self.run_chain(chain, now, held, stop, outcomes)
                })
                .await;
        };
        tokio::join!(work, self.record_outcomes(pending));
    }

    /// Runs a chain's jobs one after another; once `stop` is set, hands
    /// the rest back.
    async fn run_chain(
        &self,
        chain: Vec<Job>,
        now: DateTime<Utc>,
        held: &Mutex<HashSet<JobClaim>>,
        stop: &watch::Receiver<bool>,
        outcomes: &tokio::sync::mpsc::UnboundedSender<Recording>,
    ) {
        let mut jobs = chain.into_iter();
        while let Some(job) = jobs.next() {
            if *stop.borrow() {
                let rest: Vec<JobClaim> = std::iter::once(&job)
                    .chain(jobs.as_slice())
                    .map(claim_of)
                    .collect();
                match self.store.release_jobs(&rest).await {
                    Ok(n) => tracing::info!(released = n, "stopping: jobs not started go back to the queue"),
                    Err(e) => {
                        tracing::error!(error = %e, "could not hand jobs back; their leases will expire")
                    }
                }
                let mut held = lock(held);
                for claim in &rest {
                    held.remove(claim);
                }
                return;
            }
            let claim = claim_of(&job);
            let outcome = self.run_one(&job, now).await;
            let (stored, recorded) = tokio::sync::oneshot::channel();
            if outcomes.send((claim, outcome, stored)).is_ok() {
                // The recorder logged whatever became of it.
                let _ = recorded.await;
            }
            lock(held).remove(&claim);
        }
    }

    /// Writes the outcomes handed over, each group that gathered while the
    /// last was being written in one `finish_jobs`, until every sender is
    /// gone; tells each job once its outcome is written (or failed to be).
    async fn record_outcomes(&self, mut pending: tokio::sync::mpsc::UnboundedReceiver<Recording>) {
        while let Some(first) = pending.recv().await {
            let mut group = vec![first];
            while let Ok(more) = pending.try_recv() {
                group.push(more);
            }
            let outcomes: Vec<(JobClaim, JobOutcome)> = group
                .iter()
                .map(|(claim, outcome, _)| (*claim, outcome.clone()))
                .collect();
            match self.store.finish_jobs(&outcomes).await {
                Ok(recorded) => {
                    for ((claim, _), recorded) in outcomes.iter().zip(recorded) {
                        // Taken over after this runner stalled past the
                        // lease, or handed back by a restart: the claim now
                        // holding it records its own outcome.
                        if !recorded {
                            tracing::warn!(
                                job = claim.id,
                                attempt = claim.attempts,
                                "lost the job's claim before its outcome was recorded; recorded nothing"
                            );
                        }
                    }
                }
                // One group's bookkeeping failing must not strand the rest
                // of the batch; those jobs' leases expire and they are taken
                // over.
                Err(e) => {
                    let jobs: Vec<i64> = outcomes.iter().map(|(claim, _)| claim.id).collect();
                    tracing::error!(?jobs, error = %e, "could not record jobs' outcomes");
                }
            }
            for (_, _, stored) in group {
                let _ = stored.send(());
            }
        }
    }

    /// Runs one claimed job; returns its outcome, to be recorded.
    async fn run_one(&self, job: &Job, now: DateTime<Utc>) -> JobOutcome {
        // Each job at its own moment: a batch that starts at 20:59 must
        // not keep texting after 21:00. (`now` may be ahead, in tests.)
        let now = now.max(self.clock.now());
        // An owner's email or text raised outside any conversation (a
        // refused reload, say) needs no business of its own to be sent
        // (the text names the business it goes out from).
        let engine = self.desks.engine(&job.business_id).or_else(|| {
            if job.kind == EMAIL || job.kind == OWNER_TEXT {
                self.desks.any()
            } else {
                None
            }
        });
        let Some(engine) = engine else {
            tracing::error!(job = job.id, business = %job.business_id, "a job of a business no longer configured");
            return JobOutcome::Dead {
                error: format!("business `{}` is not configured", job.business_id),
            };
        };
        let business = engine.business.clone();
        match self.run_job(&engine, job, now).await {
            Ok(outcome) => outcome,
            Err(Failure::Permanent(error)) => self.dead(&business, job, error).await,
            Err(Failure::Retryable(error)) if job.attempts >= job.max_attempts => {
                self.dead(&business, job, error).await
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
        if self
            .store
            .record_alert(&alert.kind, job.conversation_id, &alert.detail)
            .await
            .is_ok()
        {
            crate::meters::alert(&alert.kind);
        }
        // An email failing does not email about itself.
        if job.kind != EMAIL {
            let owner_jobs = plan::alert_jobs_about(
                business,
                &alert,
                job.conversation_id,
                customer.as_ref(),
                &format!("job{}", job.id),
                self.clock.now(),
            );
            let _ = self.store.enqueue_jobs(&owner_jobs).await;
        }
        JobOutcome::Dead { error }
    }

    /// Texts wait for the end of quiet hours.
    fn quiet_until(business: &BusinessConfig, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let allowed = business.quiet_hours.next_allowed(now, business.business.timezone);
        (allowed > now).then_some(allowed)
    }

    async fn run_job(&self, engine: &Engine, job: &Job, now: DateTime<Utc>) -> Result<JobOutcome, Failure> {
        // A row that does not read as its kind fails the same way every
        // time: dead at once, with the reason.
        match JobPayload::of(job).map_err(|e| Failure::Permanent(e.to_string()))? {
            JobPayload::Email(email) => self.send_email(job, email).await,
            JobPayload::FetchMedia(media) => self.fetch_media(job, &media).await,
            JobPayload::ApprovalTimeout(timeout) => self.expire_held_reply(engine, job, &timeout, now).await,
            JobPayload::OwnerText(text) => self.text_owner(job, &text, now).await,
            JobPayload::VerificationCode(code) => self.text_code(job, &code, now).await,
            text => self.send_text(engine, job, &text, now).await,
        }
    }

    /// A job that texts the customer: a reminder, a follow-up or a held
    /// reply, each out of quiet hours and only while it still applies.
    async fn send_text(
        &self,
        engine: &Engine,
        job: &Job,
        text: &JobPayload,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, Failure> {
        let business = &engine.business;
        // A web visitor is rarely on the page when a reminder or follow-up
        // is due: it goes by text to the phone they verified, in that
        // number's SMS conversation, where quiet hours hold it as any text.
        let linked = match text {
            JobPayload::Reminder(_) | JobPayload::FollowUp(_) | JobPayload::BookingNotice(_) => {
                Self::verified_phone_conversation(engine, &job.recipient).await?
            }
            _ => None,
        };
        let channel = match linked {
            Some(_) => crate::channel::Channel::Sms,
            None => crate::channel::Channel::of_address(&job.recipient),
        };
        if channel.observes_quiet_hours()
            && let Some(at) = Self::quiet_until(business, now)
        {
            return Ok(JobOutcome::Defer { at });
        }
        let Some(conversation) = job.conversation_id else {
            return Err(Failure::Permanent("a text job without a conversation".into()));
        };
        let (kind, body) = match text {
            JobPayload::Reminder(reminder) => (
                MessageKind::Reminder,
                self.reminder_text(business, reminder, now).await?,
            ),
            JobPayload::FollowUp(follow_up) => (
                MessageKind::FollowUp,
                self.follow_up_text(business, follow_up, conversation, now)
                    .await?,
            ),
            JobPayload::DeferredReply(reply) => (MessageKind::Reply, Some(reply.body.clone())),
            JobPayload::OwnerReply(reply) => (MessageKind::OwnerReply, Some(reply.body.clone())),
            JobPayload::BookingNotice(notice) => (
                notice.change.message_kind(),
                self.notice_text(notice, conversation, now).await?,
            ),
            JobPayload::Email(_)
            | JobPayload::FetchMedia(_)
            | JobPayload::ApprovalTimeout(_)
            | JobPayload::OwnerText(_)
            | JobPayload::VerificationCode(_) => {
                return Err(Failure::Permanent(format!(
                    "a `{}` job sends no text",
                    text.kind()
                )));
            }
        };
        let Some(body) = body else {
            return Ok(JobOutcome::Cancelled {
                reason: "no longer applies".into(),
            });
        };
        self.queue_and_send(
            engine,
            job,
            linked.unwrap_or(conversation),
            OutboundDraft { kind, body },
            now,
        )
        .await
    }

    /// The SMS conversation of the phone a web visitor (`recipient`, a
    /// `web:` address) verified, if they did.
    async fn verified_phone_conversation(
        engine: &Engine,
        recipient: &str,
    ) -> Result<Option<crate::store::ConversationId>, Failure> {
        let (Some(store), Ok(address)) = (
            &engine.webchat,
            crate::domain::phone::E164::parse_address(recipient),
        ) else {
            return Ok(None);
        };
        if !address.is_web() {
            return Ok(None);
        }
        Ok(store
            .web_session_of(&address)
            .await?
            .and_then(|s| s.linked_conversation))
    }

    /// Stores a job's text under the job (once, however often it runs) and
    /// sends it through the Dispatcher.
    async fn queue_and_send(
        &self,
        engine: &Engine,
        job: &Job,
        conversation: crate::store::ConversationId,
        draft: OutboundDraft,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, Failure> {
        match self.store.queue_job_message(conversation, job.id, draft).await? {
            Some(text) => match engine
                .dispatcher
                .send_claimed(&engine.business, text, now, None)
                .await?
            {
                Delivery::Sent { channel_message_id } => Ok(JobOutcome::Done {
                    result: Some(channel_message_id),
                }),
                Delivery::OptedOut => Ok(JobOutcome::Cancelled {
                    reason: "the recipient opted out".into(),
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

    /// The owner did not act on a held reply in time: it expires unsent,
    /// the conversation is theirs, and they are told. A reply decided
    /// meanwhile leaves nothing to do; a turn or the owner holding the
    /// conversation right now means trying again shortly.
    async fn expire_held_reply(
        &self,
        engine: &Engine,
        job: &Job,
        timeout: &ApprovalTimeout,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, Failure> {
        let Some(conversation) = job.conversation_id else {
            return Err(Failure::Permanent(
                "an approval timeout without a conversation".into(),
            ));
        };
        let expired = crate::desk::approval::expire(
            self.store.as_ref(),
            &engine.business,
            conversation,
            crate::store::MessageId(timeout.answers),
            timeout.minutes,
            now,
        )
        .await
        .map_err(|e| Failure::Retryable(e.to_string()))?;
        let Some((_, alert)) = expired else {
            return Ok(JobOutcome::Done {
                result: Some("already decided".into()),
            });
        };
        // Stored, with its email and text to the owner, by the commit.
        crate::jobs::turns::stored_alert(
            &alert.kind,
            &crate::domain::phone::redact_phone_numbers(&alert.detail),
            Some(conversation.0),
        );
        Ok(JobOutcome::Done {
            result: Some("handed to the owner".into()),
        })
    }

    /// An alert texted to the owner, from the business's number, in the
    /// owner's own conversation with it. Not held by quiet hours: the owner
    /// asked to hear what needs a person, and a STOP from the owner's phone
    /// is honoured like any customer's.
    async fn text_owner(
        &self,
        job: &Job,
        text: &OwnerText,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, Failure> {
        let Some(engine) = self.desks.engine(&text.business_id) else {
            return Err(Failure::Permanent(format!(
                "business `{}` is not configured",
                text.business_id
            )));
        };
        let info = &engine.business.business;
        let Some(owner) = info.owner_phone.clone() else {
            return Ok(JobOutcome::Cancelled {
                reason: "`[business] owner_phone` is no longer set".into(),
            });
        };
        let Some(from) = info.phone.clone() else {
            return Err(Failure::Permanent(
                "the business has no `[business] phone` to text the owner from".into(),
            ));
        };
        let conversation = self.store.owner_conversation(&info.id, &owner, &from).await?;
        let link = match (&self.settings.console_base_url, text.conversation_id) {
            (Some(base), Some(id)) => format!("\n{base}/owner/conversations/{id}"),
            (Some(base), None) => format!("\n{base}/owner/alerts"),
            (None, _) => String::new(),
        };
        let draft = OutboundDraft {
            kind: MessageKind::OwnerAlert,
            body: format!("{}{link}", text.body),
        };
        self.queue_and_send(&engine, job, conversation, draft, now).await
    }

    /// A web chat visitor's code, texted now (they are waiting for it, so
    /// quiet hours do not hold it) in the SMS conversation of the number
    /// they typed, made on first use: the customer record their texts use.
    async fn text_code(
        &self,
        job: &Job,
        code: &super::payload::VerificationCode,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, Failure> {
        let Some(engine) = self.desks.engine(&code.business_id) else {
            return Err(Failure::Permanent(format!(
                "business `{}` is not configured",
                code.business_id
            )));
        };
        let info = &engine.business.business;
        let Some(from) = info.phone.clone() else {
            return Err(Failure::Permanent(
                "the business has no `[business] phone` to text the code from".into(),
            ));
        };
        let conversation = self
            .store
            .owner_conversation(&info.id, &code.phone, &from)
            .await?;
        let draft = OutboundDraft {
            kind: MessageKind::VerificationCode,
            body: code.body.clone(),
        };
        self.queue_and_send(&engine, job, conversation, draft, now).await
    }

    /// A reminder's text, or `None` if the booking no longer stands at
    /// the reminded time.
    async fn reminder_text(
        &self,
        business: &BusinessConfig,
        reminder: &BookingReminder,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, Failure> {
        let booking = self.store.booking(&reminder.booking_id).await?;
        if booking
            .as_ref()
            .is_some_and(|b| b.status == crate::store::BookingStatus::Pending)
        {
            // Being moved right now: decide once it settles.
            return Err(Failure::Retryable("the booking is being changed".into()));
        }
        let still_on = booking.as_ref().is_some_and(|b| {
            b.status == crate::store::BookingStatus::Confirmed && b.slot.start == reminder.start
        });
        // A reminder after the job started (say, restored by START too
        // late) helps nobody.
        if !still_on || now >= reminder.start {
            return Ok(None);
        }
        let tomorrow = reminder.reminder == crate::domain::reminders::ReminderKind::DayBefore;
        Ok(Some(templates::reminder(
            business,
            &reminder.label,
            reminder.total,
            tomorrow,
        )))
    }

    /// The owner's change told to the customer, or `None` once it no
    /// longer stands: the booking moved again, cancelled, or started.
    async fn notice_text(
        &self,
        notice: &BookingNotice,
        conversation: crate::store::ConversationId,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, Failure> {
        use crate::store::BookingStatus;
        let Some(booking) = self.store.booking(&notice.booking_id).await? else {
            return Ok(None);
        };
        let stands = match (notice.change, booking.status) {
            // Being changed right now: decide once it settles.
            (_, BookingStatus::Pending) => {
                return Err(Failure::Retryable("the booking is being changed".into()));
            }
            // Still worth saying while the job is on (a move at night to a
            // slot that starts as quiet hours end).
            (BookingChangeNotice::Moved, BookingStatus::Confirmed) => {
                booking.slot.start == notice.start && now < booking.slot.end
            }
            // Not once the customer has moved on to a new quote or
            // booking: the news would read as if that were off.
            (BookingChangeNotice::Cancelled, BookingStatus::Cancelled) => {
                let state = self.store.turn_input(conversation, 0).await?.state;
                state.standing_booking().is_none()
                    && !matches!(
                        state,
                        ConversationState::Quoted(_)
                            | ConversationState::Scheduling(_)
                            | ConversationState::Booked(_)
                    )
            }
            _ => false,
        };
        Ok(stands.then(|| notice.body.clone()))
    }

    /// A follow-up's text, or `None` once the quote is no longer open or
    /// the customer has texted.
    async fn follow_up_text(
        &self,
        business: &BusinessConfig,
        follow_up: &QuoteFollowUp,
        conversation: crate::store::ConversationId,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, Failure> {
        let turn = self.store.turn_input(conversation, 50).await?;
        let open = match &turn.state {
            ConversationState::Quoted(q) => Some(&q.quote),
            ConversationState::Scheduling(s) if s.rescheduling.is_none() => Some(&s.quote),
            _ => None,
        }
        .filter(|q| q.id == follow_up.quote_id && !q.is_expired(now));
        // One nudge per quote, ever; and none once the customer has texted.
        let nudged = turn.history.iter().any(|m| m.kind == "follow_up");
        match open {
            Some(quote) if !nudged && turn.pending.is_empty() => {
                Ok(Some(templates::follow_up(business, quote)))
            }
            _ => Ok(None),
        }
    }

    /// Fetches one photo into the store. Its turn never waits for this: a
    /// photo not fetched yet is named to the model instead of shown.
    async fn fetch_media(&self, job: &Job, media: &FetchMedia) -> Result<JobOutcome, Failure> {
        let id = media.media_id;
        let Some(item) = self.store.media_item(id).await? else {
            return Err(Failure::Permanent(format!("no media {id}")));
        };
        if item.status != MediaStatus::Pending {
            return Ok(JobOutcome::Done { result: None });
        }
        let Some(fetcher) = &self.media else {
            let error = "no provider credentials to fetch media with".to_string();
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

    async fn send_email(&self, job: &Job, mut email: Email) -> Result<JobOutcome, Failure> {
        // Emails queued before they carried a date are dated when sent.
        email.date.get_or_insert_with(|| self.clock.now());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ConversationId, JobStatus};

    fn job(id: i64, kind: &str, conversation: Option<i64>, recipient: &str) -> Job {
        Job {
            id,
            kind: kind.into(),
            dedupe_key: format!("k{id}"),
            conversation_id: conversation.map(ConversationId),
            customer_id: None,
            recipient: recipient.into(),
            payload: serde_json::json!({}),
            run_at: chrono::DateTime::UNIX_EPOCH,
            status: JobStatus::Running,
            attempts: 1,
            max_attempts: 5,
            last_error: None,
            business_id: "default".into(),
        }
    }

    fn ids(chains: &[Vec<Job>]) -> Vec<Vec<i64>> {
        chains.iter().map(|c| c.iter().map(|j| j.id).collect()).collect()
    }

    #[test]
    fn a_conversations_jobs_and_one_phones_texts_keep_their_order() {
        let batch = vec![
            job(1, "reminder", Some(7), "+15035550100"),
            job(2, EMAIL, None, "crew@example.com"),
            job(3, OWNER_TEXT, Some(7), "+15035550199"),
            job(4, "quote_follow_up", Some(8), "+15035550101"),
            job(5, EMAIL, None, "crew@example.com"),
            job(6, APPROVAL_TIMEOUT_KIND, Some(7), ""),
            job(7, VERIFICATION_CODE, None, "+15035550199"),
            job(8, EMAIL, Some(8), "crew@example.com"),
            job(9, "deferred_reply", None, "+15035550102"),
            job(10, "deferred_reply", None, "+15035550102"),
        ];
        assert_eq!(
            ids(&chains(batch)),
            vec![
                vec![1, 6],  // conversation 7, in order
                vec![2],     // an email about no conversation: alone
                vec![3, 7],  // texts to the owner's phone, in order
                vec![4, 8],  // conversation 8, its email included
                vec![5],     // alone
                vec![9, 10], // one phone, no conversation
            ]
        );
    }

    #[test]
    fn independent_jobs_are_chains_of_their_own() {
        let batch: Vec<Job> = (1..=5)
            .map(|id| job(id, EMAIL, None, "crew@example.com"))
            .collect();
        assert_eq!(ids(&chains(batch)).len(), 5);
    }

    const APPROVAL_TIMEOUT_KIND: &str = super::super::payload::APPROVAL_TIMEOUT;
}
