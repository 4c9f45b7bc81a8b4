//! Wiring: which adapter serves each port, chosen from configuration.
//!
//! `Application::build` binds the listener (port 0 works, for tests) and
//! starts the worker; `Services` is the part `textdesk chat` shares with it.

use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::anthropic::AnthropicClient;
use crate::assistant::guided::GuidedResponder;
use crate::assistant::prompt;
use crate::assistant::tools::ToolRegistry;
use crate::assistant::{ClaudeResponder, Responder, job_tools, schedule_tools};
use crate::calendar::google::{GoogleCalendar, GoogleSetupError};
use crate::calendar::{Calendar, LocalCalendar};
use crate::channel::Channels;
use crate::channel::console::ConsoleChannel;
use crate::channel::twilio::TwilioChannel;
use crate::clock::Clock;
use crate::config::business::BusinessConfig;
use crate::config::directory::BusinessDirectory;
use crate::config::settings::{AnthropicSettings, Settings};
use crate::email::{EmailSender, OutboxEmail, SesEmail};
use crate::http::{self, AppState};
use crate::jobs::dispatch::Dispatcher;
use crate::jobs::runner::{JobRunner, RunnerSettings};
use crate::jobs::turns::{Engine, EngineParts};
use crate::jobs::worker::TurnWorker;
use crate::rehearsal::Rehearsals;
use crate::scheduling::Scheduler;
use crate::store::console::ConsoleStore;
use crate::store::{AlertKind, NewAlert, Store, StoreError};
use crate::twilio::TwilioClient;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
    #[error("cannot set up Google Calendar: {0}")]
    Google(#[from] GoogleSetupError),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
}

/// The store and the turn engines, built from configuration.
pub struct Services {
    pub store: Arc<dyn Store>,
    /// The owner console's reads and records (the same database).
    pub console: Arc<dyn ConsoleStore>,
    pub desks: Arc<Desks>,
    /// The engine of the only (or first) business: what `chat` talks to.
    pub engine: Arc<Engine>,
    /// What every engine, the worker and the job runner read the time from.
    pub clock: Arc<dyn Clock>,
    /// The web chat's sessions, and the hub its port wakes waiting
    /// requests through.
    pub webchat: Arc<dyn crate::store::webchat::WebChatStore>,
    pub webchat_hub: crate::channel::webchat::WebChatHub,
    /// How `serve` hears of work other instances stored (Postgres).
    pub wakeups: crate::store::backend::Wakeups,
}

/// Hands each turn its engine: the adapters every business shares, and
/// the business's current configuration from the directory, taken once at
/// the turn's start and kept to its end. Nothing here is rebuilt by a
/// reload; the next lookup simply finds the new configuration.
pub struct Desks {
    directory: Option<Arc<BusinessDirectory>>,
    parts: Option<Arc<EngineParts>>,
    /// One engine answering every business (tests).
    fixed: Option<Arc<Engine>>,
    /// The console's "Try it" runs on these, in a scratch conversation.
    rehearsals: Option<Rehearsals>,
}

impl Desks {
    /// One fixed engine answering every business (tests).
    pub fn single(engine: Arc<Engine>) -> Arc<Self> {
        Arc::new(Self {
            directory: None,
            parts: None,
            fixed: Some(engine),
            rehearsals: None,
        })
    }

    /// The engine of `business_id`, on that business's current configuration.
    pub fn engine(&self, business_id: &str) -> Option<Arc<Engine>> {
        if let Some(fixed) = &self.fixed {
            return Some(fixed.clone());
        }
        let (directory, parts) = (self.directory.as_ref()?, self.parts.as_ref()?);
        let businesses = directory.current();
        // One file answers every number, and so every conversation, even
        // ones stored under an id the owner has since changed.
        let business = match businesses.single() {
            Some(only) if businesses.answers_every_number() => only,
            _ => businesses.get(business_id)?,
        };
        Some(Arc::new(Engine {
            parts: parts.clone(),
            business: business.clone(),
        }))
    }

    /// Any engine: for work every engine does alike (delivering queued texts).
    pub fn any(&self) -> Option<Arc<Engine>> {
        if let Some(fixed) = &self.fixed {
            return Some(fixed.clone());
        }
        let first = self
            .directory
            .as_ref()?
            .current()
            .iter()
            .next()?
            .business
            .id
            .clone();
        self.engine(&first)
    }

    pub fn directory(&self) -> Option<&Arc<BusinessDirectory>> {
        self.directory.as_ref()
    }

    /// What the console's "Try it" answers with: the same model (or the
    /// guided flow) as real turns.
    pub fn rehearsals(&self) -> Option<&Rehearsals> {
        self.rehearsals.as_ref()
    }

    /// A new engine for `business` on the shared parts (tests replace
    /// its parts).
    pub fn build_engine(&self, business: Arc<BusinessConfig>) -> Option<Engine> {
        self.parts.as_ref().map(|parts| Engine {
            parts: parts.clone(),
            business,
        })
    }
}

/// The adapters every turn shares, whatever its business (and a
/// rehearsal's, on its scratch store).
pub(crate) fn engine_parts(
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    scheduler: Arc<Scheduler>,
    anthropic: Option<(Arc<AnthropicClient>, AnthropicSettings)>,
    turn_budget: std::time::Duration,
    clock: Arc<dyn Clock>,
) -> EngineParts {
    let guided = GuidedResponder {
        scheduler: scheduler.clone(),
        clock: clock.clone(),
    };
    let responder: Arc<dyn Responder> = match anthropic {
        Some((client, anthropic)) => {
            let mut tools = ToolRegistry::default();
            job_tools::register(&mut tools);
            schedule_tools::register(&mut tools, scheduler);
            Arc::new(ClaudeResponder {
                client,
                model: anthropic.model.clone(),
                max_tokens: anthropic.max_tokens,
                max_tool_rounds: anthropic.max_tool_rounds,
                tools,
                // A third of the turn's budget: the engine's backstop is
                // half. (The lease is renewed while the turn runs, so it
                // does not bound the turn.)
                deadline: turn_budget / 3,
                clock: clock.clone(),
            })
        }
        None => Arc::new(guided.clone()),
    };
    EngineParts {
        store,
        responder,
        guided,
        dispatcher,
        // Well inside the budget, so a slow turn ends (with an apology)
        // and its conversation's texts do not wait behind it forever.
        turn_deadline: turn_budget / 2,
        clock,
        webchat: None,
    }
}

impl Services {
    /// One business, answering every number (`chat`, tests).
    pub async fn build(
        settings: &Settings,
        business: Arc<BusinessConfig>,
        channels: Option<Channels>,
    ) -> Result<Self, StartupError> {
        let directory = BusinessDirectory::from_configs(
            &settings.business_config,
            vec![(settings.business_config.clone(), (*business).clone())],
        )
        .map_err(|e| StartupError::Config(e.to_string()))?;
        Self::build_for(settings, Arc::new(directory), channels).await
    }

    /// `channels` overrides the configured channels (for `chat`).
    pub async fn build_for(
        settings: &Settings,
        directory: Arc<BusinessDirectory>,
        channels: Option<Channels>,
    ) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, directory, channels, crate::clock::system()).await
    }

    /// As `build_for`, reading the time from `clock` (tests set the hour).
    pub async fn build_with_clock(
        settings: &Settings,
        directory: Arc<BusinessDirectory>,
        channels: Option<Channels>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        // A send is the check of an interrupted one and the send itself, two
        // channel requests at the channel's timeout, plus the writes around.
        let send_lease = 2 * settings.twilio.timeout + std::time::Duration::from_secs(5);
        let backend = crate::store::backend::connect_with(
            &settings.database_url,
            clock.clone(),
            crate::store::backend::ConnectOptions {
                send_lease: Some(send_lease),
                max_connections: Some(settings.database_max_connections),
            },
        )
        .await?;
        let console: Arc<dyn ConsoleStore> = backend.console;
        let webchat = backend.webchat;
        let webchat_hub = crate::channel::webchat::WebChatHub::default();
        let store: Arc<dyn Store> = backend.store;
        let wakeups = backend.wakeups;
        // The owner console's assistant settings, over the files, before
        // anything reads a configuration.
        for problem in directory.apply_stored_fragments(store.assistant_fragments().await?) {
            tracing::error!(%problem, "a console setting no longer fits its business file; the file's value serves");
        }
        let businesses = directory.current();
        // Rows from before businesses existed belong to the business that
        // answered them: the only one, or the one owning their number.
        match businesses.single() {
            Some(only) if !directory.path().is_dir() => {
                store.adopt_legacy_rows(&only.business.id, None).await?;
            }
            _ => {
                for business in businesses.iter() {
                    store
                        .adopt_legacy_rows(&business.business.id, Some(&business.senders()))
                        .await?;
                }
            }
        }

        let channels = channels.unwrap_or_else(|| {
            let console = Arc::new(ConsoleChannel { label: None });
            match settings.twilio.credentials() {
                Some(credentials) => {
                    // One account carries SMS and WhatsApp alike.
                    let twilio = Arc::new(TwilioChannel::new(
                        TwilioClient::new(
                            &settings.twilio.api_base_url,
                            credentials,
                            settings.twilio.timeout,
                        )
                        .with_status_callback(http::status_callback_url(&settings.public_base_url)),
                    ));
                    Channels::new(twilio.clone(), twilio, console)
                }
                None => {
                    tracing::warn!(
                        "Twilio is not configured: replies are printed to the console instead of sent"
                    );
                    Channels::only(console)
                }
            }
        });
        // The web chat's port is the app's own whatever the other channels
        // are: it wakes the HTTP requests waiting on this hub.
        let channels = channels.with_web(Arc::new(crate::channel::webchat::WebChatChannel::new(
            webchat_hub.clone(),
        )));
        let dispatcher = Arc::new(Dispatcher {
            store: store.clone(),
            channels,
            clock: clock.clone(),
        });

        for business in businesses.iter() {
            if prompt::assemble(business, clock.now()).base_is_overridden() {
                tracing::warn!(
                    business = %business.business.id,
                    "[assistant] base_prompt REPLACES the built-in base prompt; \
                     run `textdesk check-config` to review the assembled prompt"
                );
            }
        }
        let calendar: Arc<dyn Calendar> = match &settings.google.credentials {
            Some(key) => {
                for business in businesses.iter() {
                    if let Some(p) = business.providers.iter().find(|p| p.calendar_id.is_none()) {
                        return Err(StartupError::Config(format!(
                            "provider `{}` of business `{}` has no calendar_id; with Google Calendar every provider needs one",
                            p.id, business.business.id
                        )));
                    }
                }
                // One service account for every business; delegation is
                // taken from the first business that sets it.
                let subject = businesses.iter().find_map(|b| b.google.delegated_subject.clone());
                let google = GoogleCalendar::connect(
                    key,
                    subject.as_deref(),
                    settings.google.base_url.as_ref(),
                    settings.google.timeout,
                )
                .await?;
                tracing::info!("booking on Google Calendar");
                Arc::new(google)
            }
            None => {
                tracing::warn!(
                    "GOOGLE_APPLICATION_CREDENTIALS is not set: textdesk's own bookings table is the crews' calendar"
                );
                Arc::new(LocalCalendar)
            }
        };
        let anthropic = match &settings.anthropic {
            Some(anthropic) => {
                tracing::info!(model = %anthropic.model, "answering with Claude");
                Some((
                    Arc::new(AnthropicClient::new(anthropic.clone())),
                    anthropic.clone(),
                ))
            }
            None => {
                tracing::warn!(
                    "ANTHROPIC_API_KEY is not set: customers are answered by the guided flow \
                     (numbered questions, the same quotes), without a model"
                );
                None
            }
        };
        let scheduler = Arc::new(Scheduler::new(store.clone(), calendar));
        let rehearsals = Rehearsals {
            anthropic: anthropic.clone(),
            lease: settings.worker.turn_budget,
            clock: clock.clone(),
        };
        let desks = Arc::new(Desks {
            directory: Some(directory),
            parts: Some(Arc::new(EngineParts {
                webchat: Some(webchat.clone()),
                ..engine_parts(
                    store.clone(),
                    dispatcher,
                    scheduler,
                    anthropic,
                    settings.worker.turn_budget,
                    clock.clone(),
                )
            })),
            fixed: None,
            rehearsals: Some(rehearsals),
        });
        let first = businesses
            .iter()
            .next()
            .map(|b| b.business.id.clone())
            .unwrap_or_default();
        let engine = desks
            .engine(&first)
            .ok_or_else(|| StartupError::Config("no business is configured".into()))?;
        Ok(Self {
            store,
            console,
            desks,
            engine,
            clock,
            webchat,
            webchat_hub,
            wakeups,
        })
    }
}

pub struct Application {
    port: u16,
    store: Arc<dyn Store>,
    directory: Arc<BusinessDirectory>,
    clock: Arc<dyn Clock>,
    reloads: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    worker: JoinHandle<()>,
    jobs: JoinHandle<()>,
    /// The `LISTEN` task (Postgres only).
    listener: Option<JoinHandle<()>>,
    /// How long work in flight may take to finish on SIGTERM.
    grace: std::time::Duration,
}

impl Application {
    /// One business, answering every number.
    pub async fn build(settings: Settings, business: BusinessConfig) -> Result<Self, StartupError> {
        let directory = BusinessDirectory::from_configs(
            &settings.business_config,
            vec![(settings.business_config.clone(), business)],
        )
        .map_err(|e| StartupError::Config(e.to_string()))?;
        Self::build_for(settings, Arc::new(directory)).await
    }

    /// Every business of `directory`, each on the numbers it claims.
    pub async fn build_for(
        settings: Settings,
        directory: Arc<BusinessDirectory>,
    ) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, directory, crate::clock::system()).await
    }

    /// As `build_for`, with every part of the application reading the time
    /// from `clock`: tests set the hour instead of picking a time zone
    /// where it happens to be day.
    pub async fn build_with_clock(
        settings: Settings,
        directory: Arc<BusinessDirectory>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        // Before anything records: `/metrics` reads this process's recorder.
        crate::meters::install();
        let services = Services::build_with_clock(&settings, directory.clone(), None, clock.clone()).await?;
        // `serve` is the one process that owns the database's background
        // work, so whatever holds a lease now was interrupted. (`chat`
        // never does this: it may run beside a live `serve`.)
        let recovered = services.store.recover_interrupted_work().await?;
        if recovered.leases_freed > 0 || recovered.sends_requeued > 0 || recovered.jobs_requeued > 0 {
            tracing::warn!(
                leases_freed = recovered.leases_freed,
                sends_requeued = recovered.sends_requeued,
                jobs_requeued = recovered.jobs_requeued,
                "resuming work interrupted by the last shutdown"
            );
        }
        warn_of_unanswered_businesses(&directory, services.store.as_ref(), services.clock.now()).await;
        let wake = Arc::new(Notify::new());

        if settings.twilio.skip_signature_validation {
            tracing::warn!(
                "TWILIO_SKIP_SIGNATURE_VALIDATION is on: webhooks are NOT verified (localhost only)"
            );
        } else if settings.twilio.auth_token.is_none() {
            tracing::warn!("TWILIO_AUTH_TOKEN is not set: every webhook will be refused with 403");
        }
        let state = AppState {
            businesses: directory.clone(),
            store: services.store.clone(),
            wake_worker: wake.clone(),
            public_base_url: settings
                .public_base_url
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            twilio_auth_token: settings.twilio.auth_token.clone(),
            skip_signature_validation: settings.twilio.skip_signature_validation,
            desks: services.desks.clone(),
            media_base_url: settings.twilio.api_base_url.clone(),
            owner: http::owner::OwnerConsole::new(
                services.console.clone(),
                &settings.public_base_url,
                services.clock.clone(),
            )
            .with_model_prices(settings.model_prices),
            webchat: http::webchat::WebChat::new(
                services.webchat.clone(),
                services.webchat_hub.clone(),
                settings.webchat.clone(),
            ),
            calls: Arc::new(crate::jobs::call::Calls::new(
                services.store.clone(),
                settings
                    .anthropic
                    .as_ref()
                    .map(|anthropic| crate::jobs::call::CallModel {
                        client: Arc::new(crate::anthropic::stream::StreamingClient::new(anthropic.clone())),
                        model: anthropic.model.clone(),
                        max_tokens: anthropic.max_tokens,
                        max_tool_rounds: anthropic.max_tool_rounds,
                    }),
                services.clock.clone(),
                settings.worker.lease,
            )),
        };

        let address = format!("{}:{}", settings.host, settings.port);
        let listener =
            tokio::net::TcpListener::bind(&address)
                .await
                .map_err(|source| StartupError::Bind {
                    address: address.clone(),
                    source,
                })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address, source })?
            .port();

        let (shutdown, shutdown_rx) = watch::channel(false);
        let email = email_sender_with_clock(&settings, clock.clone()).await;
        let runner = JobRunner {
            store: services.store.clone(),
            desks: services.desks.clone(),
            email,
            settings: RunnerSettings {
                console_base_url: Some(
                    settings
                        .public_base_url
                        .as_str()
                        .trim_end_matches('/')
                        .to_string(),
                ),
                ..settings.jobs.clone()
            },
            media: media_fetcher(&settings),
            clock: clock.clone(),
        };
        let targets = crate::store::backend::WakeTargets {
            worker: wake.clone(),
            jobs: Arc::new(Notify::new()),
        };
        let listening = services
            .wakeups
            .start(targets.clone(), shutdown_rx.clone())
            .map(|listening| listening.task);
        let jobs = tokio::spawn(runner.run_woken(Some(targets.jobs), shutdown_rx.clone()));
        let grace = settings.worker.shutdown_grace;
        let worker = TurnWorker {
            desks: services.desks.clone(),
            store: services.store.clone(),
            wake,
            settings: settings.worker.clone(),
            worker_id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            claims: Default::default(),
            clock: clock.clone(),
        };
        let worker = tokio::spawn(worker.run(shutdown_rx.clone()));

        let router = http::router(state);
        let mut server_shutdown = shutdown_rx;
        let server = tokio::spawn(async move {
            // The client's address is the console's login rate-limit key.
            let router = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
            // Nagle off: a call's spoken reply goes out as several small
            // WebSocket frames, and each after the first would otherwise
            // wait for the ACK of the one before (up to the peer's delayed
            // ACK, 40 ms on Linux).
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
            });
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        let reloads = reload_on_hangup(
            directory.clone(),
            services.store.clone(),
            clock.clone(),
            shutdown.subscribe(),
        );
        tracing::info!(port, "textdesk is listening");
        Ok(Self {
            port,
            store: services.store,
            directory,
            clock,
            reloads,
            shutdown,
            server,
            worker,
            jobs,
            listener: listening,
            grace,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// What SIGHUP does: re-read and validate the configuration; a good
    /// edit serves the next turn, a bad one is refused, logged, and the
    /// owner alerted, while the old configuration keeps serving.
    pub async fn reload_configuration(&self) -> Result<u64, String> {
        reload(&self.directory, self.store.as_ref(), self.clock.now()).await
    }

    /// Serves until Ctrl-C or SIGTERM, then stops gracefully.
    pub async fn run_until_stopped(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await;
    }

    /// Stops taking connections and new work, and waits for turns and
    /// jobs in flight, at most the shutdown grace (the worker and the job
    /// runner then stop what still runs and give its leases back).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        // The worker and the runner bound themselves by the grace; this is
        // the backstop if one of them is stuck outside their own bounds.
        let backstop = self.grace + std::time::Duration::from_secs(5);
        let stopped = tokio::time::timeout(backstop, async {
            let _ = tokio::join!(self.worker, self.jobs);
        })
        .await;
        if stopped.is_err() {
            tracing::error!("the worker or the job runner did not stop within the shutdown grace");
        }
        // In-flight requests finish; idle connections are closed. A client
        // holding a request open past the grace is cut off.
        if tokio::time::timeout(backstop, self.server).await.is_err() {
            tracing::warn!("HTTP connections still open after the shutdown grace were closed");
        }
        let _ = self.reloads.await;
        if let Some(listener) = self.listener {
            let _ = listener.await;
        }
        tracing::info!("stopped");
    }

    /// Stops at once, mid-turn if need be, as a crash would. For tests.
    pub async fn kill(self) {
        self.server.abort();
        self.worker.abort();
        self.jobs.abort();
        self.reloads.abort();
        if let Some(listener) = &self.listener {
            listener.abort();
        }
        let _ = self.server.await;
        let _ = self.worker.await;
        let _ = self.jobs.await;
    }
}

async fn reload(
    directory: &BusinessDirectory,
    store: &dyn Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64, String> {
    match directory.reload() {
        Ok(businesses) => {
            tracing::info!(
                version = businesses.version,
                "configuration reloaded; the next turn uses it"
            );
            warn_of_unanswered_businesses(directory, store, now).await;
            Ok(businesses.version)
        }
        Err(e) => {
            let detail = format!(
                "Your edit to {} was refused, and the previous configuration is still in use:\n{e}",
                directory.path().display()
            );
            tracing::error!(error = %e, "configuration reload refused; the old configuration keeps serving");
            let alert = NewAlert {
                kind: AlertKind::ConfigRejected,
                detail,
            };
            let key = format!("config:{}", now.timestamp_millis());
            alert_every_owner(directory, store, &alert, &key, now).await;
            Err(e.to_string())
        }
    }
}

/// In a directory of businesses, conversations stored under an id no file
/// has any more (a renamed file: the id defaults to its stem) are answered
/// by nobody: their customers' texts and reminders wait. The owner hears it
/// at start and after each reload, with how to bring them back. (One file
/// answers every conversation, whatever id it was stored under.)
pub async fn warn_of_unanswered_businesses(
    directory: &BusinessDirectory,
    store: &dyn Store,
    now: chrono::DateTime<chrono::Utc>,
) {
    if !directory.path().is_dir() {
        return;
    }
    let businesses = directory.current();
    let stored = match store.businesses_with_conversations().await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(error = %e, "could not list the businesses with conversations");
            return;
        }
    };
    for (id, count) in stored {
        // `default` holds rows from before businesses existed that no
        // business's number claimed.
        if id == "default" || businesses.iter().any(|b| b.business.id == id) {
            continue;
        }
        let detail = format!(
            "{count} conversation(s) belong to the business id `{id}`, which no file in {} has any more, \
             so nobody answers them and their reminders are not sent. If a file was renamed, put \
             `[business] id = \"{id}\"` in it (an id defaults to the file's name) and reload.",
            directory.path().display()
        );
        tracing::error!(business = %id, count, "conversations belong to no configured business");
        let alert = NewAlert {
            kind: AlertKind::UnansweredBusiness,
            detail,
        };
        // One email per owner per missing id per day, however often the
        // configuration is reloaded.
        let key = format!("unanswered:{id}:{}", now.date_naive());
        alert_every_owner(directory, store, &alert, &key, now).await;
    }
}

/// An alert about the installation rather than one business (a refused
/// reload, orphaned conversations): stored once, and emailed to every
/// configured business's owner under `key` (one job per owner).
async fn alert_every_owner(
    directory: &BusinessDirectory,
    store: &dyn Store,
    alert: &NewAlert,
    key: &str,
    now: chrono::DateTime<chrono::Utc>,
) {
    match store.record_alert(&alert.kind, None, &alert.detail).await {
        Ok(()) => crate::meters::alert(&alert.kind),
        Err(e) => tracing::error!(error = %e, kind = %alert.kind, "could not record an owner alert"),
    }
    let emails: Vec<_> = directory
        .current()
        .iter()
        .flat_map(|b| crate::jobs::plan::alert_jobs(b, alert, None, &format!("{key}:{}", b.business.id), now))
        .collect();
    if let Err(e) = store.enqueue_jobs(&emails).await {
        tracing::error!(error = %e, kind = %alert.kind, "could not queue an owner alert's email");
    }
}

/// SIGHUP re-reads the configuration (the documented contract). The
/// handler is registered before this returns, and so before "listening" is
/// logged: a SIGHUP sent as soon as the server answers reloads instead of
/// killing the process (the signal's default action).
fn reload_on_hangup(
    directory: Arc<BusinessDirectory>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    #[cfg(unix)]
    {
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        tokio::spawn(async move {
            let Ok(mut hangup) = hangup else {
                tracing::warn!("cannot listen for SIGHUP; configuration reloads are off");
                return;
            };
            loop {
                tokio::select! {
                    _ = hangup.recv() => {
                        let _ = reload(&directory, store.as_ref(), clock.now()).await;
                    }
                    _ = shutdown.changed() => return,
                }
            }
        })
    }
    #[cfg(not(unix))]
    {
        tokio::spawn(async move {
            let _ = (directory, store, clock);
            let _ = shutdown.changed().await;
        })
    }
}

/// SES when configured, else the outbox folder.
/// Fetches customers' media with the Twilio account's credentials, when
/// there are any.
pub fn media_fetcher(settings: &Settings) -> Option<Arc<crate::media::MediaFetcher>> {
    let twilio = &settings.twilio;
    Some(Arc::new(crate::media::MediaFetcher::new(
        twilio.api_base_url.clone(),
        twilio.account_sid.clone()?,
        twilio.auth_token.clone()?,
        // A 5 MB file on a slow link takes longer than a Messages API call.
        twilio.timeout * 3,
    )))
}

pub async fn email_sender(settings: &Settings) -> Arc<dyn EmailSender> {
    email_sender_with_clock(settings, crate::clock::system()).await
}

/// As `email_sender`, dating undated emails by `clock`.
pub async fn email_sender_with_clock(settings: &Settings, clock: Arc<dyn Clock>) -> Arc<dyn EmailSender> {
    if settings.email.ses {
        let from = settings.email.from.clone().unwrap_or_default();
        tracing::info!(%from, "email goes through Amazon SES");
        Arc::new(SesEmail::from_env(from).await.with_clock(clock))
    } else {
        tracing::warn!(
            dir = %settings.email.outbox_dir.display(),
            "SES is not configured (EMAIL_FROM and AWS_REGION): emails are written to the outbox folder"
        );
        Arc::new(OutboxEmail {
            dir: settings.email.outbox_dir.clone(),
            from: settings
                .email
                .from
                .clone()
                .unwrap_or_else(|| "textdesk@localhost".into()),
            clock,
        })
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can listen for SIGTERM");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
