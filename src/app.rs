//! Wiring: which adapter serves each port, chosen from configuration.
//!
//! `Application::build` binds the listener (port 0 works, for tests) and
//! starts the worker; `Services` is the part `textdesk chat` shares with it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::anthropic::AnthropicClient;
use crate::assistant::guided::GuidedResponder;
use crate::assistant::tools::ToolRegistry;
use crate::assistant::{ClaudeResponder, Responder, job_tools, schedule_tools};
use crate::calendar::google::{GoogleCalendar, GoogleSetupError};
use crate::calendar::{Calendar, LocalCalendar};
use crate::config::business::BusinessConfig;
use crate::config::directory::BusinessDirectory;
use crate::config::settings::{AnthropicSettings, Settings};
use crate::domain::prompt;
use crate::email::{EmailSender, OutboxEmail, SesEmail};
use crate::http::{self, AppState};
use crate::jobs::runner::JobRunner;
use crate::jobs::turns::Engine;
use crate::jobs::worker::TurnWorker;
use crate::scheduling::{CrewLocks, Scheduler};
use crate::store::console::ConsoleStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{NewAlert, Store, StoreError};
use crate::twilio::{ConsoleSender, SmsSender, TwilioClient};

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
}

/// What every business's engine shares: the store and the adapters.
struct Adapters {
    store: Arc<dyn Store>,
    sender: Arc<dyn SmsSender>,
    calendar: Arc<dyn Calendar>,
    anthropic: Option<(Arc<AnthropicClient>, AnthropicSettings)>,
    lease: std::time::Duration,
    /// Per business, kept across reloads.
    crew_locks: std::sync::Mutex<HashMap<String, CrewLocks>>,
}

/// The turn engines, one per business, built from the directory's
/// current configuration. A turn takes its engine (and so its business's
/// configuration) once, at its start, and finishes on it; after a reload
/// the next lookup builds engines on the new configuration.
pub struct Desks {
    directory: Option<Arc<BusinessDirectory>>,
    adapters: Option<Adapters>,
    current: RwLock<Arc<DeskSet>>,
}

struct DeskSet {
    version: u64,
    engines: HashMap<String, Arc<Engine>>,
    /// The only engine, when one business answers everything.
    only: Option<Arc<Engine>>,
}

impl Desks {
    /// One fixed engine answering every business (tests).
    pub fn single(engine: Arc<Engine>) -> Arc<Self> {
        Arc::new(Self {
            directory: None,
            adapters: None,
            current: RwLock::new(Arc::new(DeskSet {
                version: 0,
                engines: HashMap::new(),
                only: Some(engine),
            })),
        })
    }

    /// The engine of `business_id`, on that business's current configuration.
    pub fn engine(&self, business_id: &str) -> Option<Arc<Engine>> {
        let set = self.set();
        set.only.clone().or_else(|| set.engines.get(business_id).cloned())
    }

    /// Any engine: for work every engine does alike (delivering queued texts).
    pub fn any(&self) -> Option<Arc<Engine>> {
        let set = self.set();
        set.only.clone().or_else(|| set.engines.values().next().cloned())
    }

    pub fn directory(&self) -> Option<&Arc<BusinessDirectory>> {
        self.directory.as_ref()
    }

    fn set(&self) -> Arc<DeskSet> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (Some(directory), Some(adapters)) = (&self.directory, &self.adapters) else {
            return current;
        };
        let businesses = directory.current();
        if current.version == businesses.version {
            return current;
        }
        let engines: HashMap<String, Arc<Engine>> = businesses
            .iter()
            .map(|b| (b.business.id.clone(), Arc::new(adapters.engine(b.clone()))))
            .collect();
        // One file answers every number, and so every conversation, even
        // ones stored under an id the owner has since changed.
        let only = match (directory.path().is_dir(), businesses.single()) {
            (false, Some(b)) => engines.get(&b.business.id).cloned(),
            _ => None,
        };
        let fresh = Arc::new(DeskSet {
            version: businesses.version,
            engines,
            only,
        });
        let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
        if slot.version < fresh.version {
            *slot = fresh.clone();
        }
        slot.clone()
    }

    /// A new engine for `business` on the shared adapters (tests replace
    /// its parts).
    pub fn build_engine(&self, business: Arc<BusinessConfig>) -> Option<Engine> {
        self.adapters.as_ref().map(|a| a.engine(business))
    }
}

impl Adapters {
    fn engine(&self, business: Arc<BusinessConfig>) -> Engine {
        let store = self.store.clone();
        let locks = self
            .crew_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(business.business.id.clone())
            .or_default()
            .clone();
        let scheduler = Arc::new(Scheduler::with_locks(
            store.clone(),
            self.calendar.clone(),
            business.clone(),
            locks,
        ));
        let responder: Arc<dyn Responder> = match &self.anthropic {
            Some((client, anthropic)) => {
                let mut tools = ToolRegistry::default();
                job_tools::register(&mut tools, business.clone());
                schedule_tools::register(&mut tools, scheduler.clone(), business.clone());
                Arc::new(ClaudeResponder {
                    client: client.clone(),
                    model: anthropic.model.clone(),
                    max_tokens: anthropic.max_tokens,
                    max_tool_rounds: anthropic.max_tool_rounds,
                    tools,
                    business: business.clone(),
                    // A third of the lease: the engine's backstop is half.
                    deadline: self.lease / 3,
                })
            }
            None => Arc::new(GuidedResponder {
                business: business.clone(),
                scheduler: scheduler.clone(),
            }),
        };
        Engine {
            store,
            responder,
            guided: GuidedResponder {
                business: business.clone(),
                scheduler,
            },
            sender: self.sender.clone(),
            business,
            // Well inside the lease, so a slow turn ends (with an apology)
            // before anyone else could claim its conversation.
            turn_deadline: self.lease / 2,
        }
    }
}

impl Services {
    /// One business, answering every number (`chat`, tests).
    pub async fn build(
        settings: &Settings,
        business: Arc<BusinessConfig>,
        sender: Option<Arc<dyn SmsSender>>,
    ) -> Result<Self, StartupError> {
        let directory = BusinessDirectory::from_configs(
            &settings.business_config,
            vec![(settings.business_config.clone(), (*business).clone())],
        )
        .map_err(|e| StartupError::Config(e.to_string()))?;
        Self::build_for(settings, Arc::new(directory), sender).await
    }

    /// `sender` overrides the configured text sender (for `chat`).
    pub async fn build_for(
        settings: &Settings,
        directory: Arc<BusinessDirectory>,
        sender: Option<Arc<dyn SmsSender>>,
    ) -> Result<Self, StartupError> {
        let sqlite = Arc::new(SqliteStore::connect(&settings.database_url).await?);
        let console: Arc<dyn ConsoleStore> = sqlite.clone();
        let store: Arc<dyn Store> = sqlite;
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

        let sender = sender.unwrap_or_else(|| match settings.twilio.credentials() {
            Some(credentials) => Arc::new(
                TwilioClient::new(
                    &settings.twilio.api_base_url,
                    credentials,
                    settings.twilio.timeout,
                )
                .with_status_callback(http::status_callback_url(&settings.public_base_url)),
            ),
            None => {
                tracing::warn!(
                    "Twilio is not configured: replies are printed to the console instead of sent"
                );
                Arc::new(ConsoleSender { label: None })
            }
        });

        for business in businesses.iter() {
            if prompt::assemble(business, chrono::Utc::now()).base_is_overridden() {
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
        let desks = Arc::new(Desks {
            directory: Some(directory),
            adapters: Some(Adapters {
                store: store.clone(),
                sender,
                calendar,
                anthropic,
                lease: settings.worker.lease,
                crew_locks: Default::default(),
            }),
            current: RwLock::new(Arc::new(DeskSet {
                version: 0,
                engines: HashMap::new(),
                only: None,
            })),
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
        })
    }
}

/// The owner alert raised when a reload is refused.
pub const CONFIG_REJECTED: &str = "config_rejected";

pub struct Application {
    port: u16,
    store: Arc<dyn Store>,
    directory: Arc<BusinessDirectory>,
    reloads: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    worker: JoinHandle<()>,
    jobs: JoinHandle<()>,
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
        let services = Services::build_for(&settings, directory.clone(), None).await?;
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
                crate::clock::system(),
            ),
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
        let email = email_sender(&settings).await;
        let runner = JobRunner {
            store: services.store.clone(),
            desks: services.desks.clone(),
            email,
            settings: settings.jobs.clone(),
            media: media_fetcher(&settings),
        };
        let jobs = tokio::spawn(runner.run(shutdown_rx.clone()));
        let worker = TurnWorker {
            desks: services.desks.clone(),
            store: services.store.clone(),
            wake,
            settings: settings.worker.clone(),
            worker_id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            claims: Default::default(),
        };
        let worker = tokio::spawn(worker.run(shutdown_rx.clone()));

        let router = http::router(state);
        let mut server_shutdown = shutdown_rx;
        let server = tokio::spawn(async move {
            // The client's address is the console's login rate-limit key.
            let router = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        let reloads = reload_on_hangup(directory.clone(), services.store.clone(), shutdown.subscribe());
        tracing::info!(port, "textdesk is listening");
        Ok(Self {
            port,
            store: services.store,
            directory,
            reloads,
            shutdown,
            server,
            worker,
            jobs,
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
        reload(&self.directory, self.store.as_ref()).await
    }

    /// Serves until Ctrl-C or SIGTERM, then stops gracefully.
    pub async fn run_until_stopped(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await;
    }

    /// Stops taking requests and new turns, and waits for turns in flight.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.worker.await;
        let _ = self.jobs.await;
        let _ = self.reloads.await;
    }

    /// Stops at once, mid-turn if need be, as a crash would. For tests.
    pub async fn kill(self) {
        self.server.abort();
        self.worker.abort();
        self.jobs.abort();
        self.reloads.abort();
        let _ = self.server.await;
        let _ = self.worker.await;
        let _ = self.jobs.await;
    }
}

async fn reload(directory: &BusinessDirectory, store: &dyn Store) -> Result<u64, String> {
    match directory.reload() {
        Ok(businesses) => {
            tracing::info!(
                version = businesses.version,
                "configuration reloaded; the next turn uses it"
            );
            Ok(businesses.version)
        }
        Err(e) => {
            let detail = format!(
                "Your edit to {} was refused, and the previous configuration is still in use:\n{e}",
                directory.path().display()
            );
            tracing::error!(error = %e, "configuration reload refused; the old configuration keeps serving");
            let alert = NewAlert {
                kind: CONFIG_REJECTED,
                detail,
            };
            if let Err(e) = store.record_alert(alert.kind, None, &alert.detail).await {
                tracing::error!(error = %e, "could not record the refused reload's alert");
            }
            let now = chrono::Utc::now();
            let key = format!("config:{}", now.timestamp_millis());
            let emails: Vec<_> = directory
                .current()
                .iter()
                .filter_map(|b| {
                    crate::jobs::plan::alert_job(b, &alert, None, &format!("{key}:{}", b.business.id), now)
                })
                .collect();
            if let Err(e) = store.enqueue_jobs(&emails).await {
                tracing::error!(error = %e, "could not queue the refused reload's email");
            }
            Err(e.to_string())
        }
    }
}

/// SIGHUP re-reads the configuration (the documented contract). The
/// handler is registered before this returns, and so before "listening" is
/// logged: a SIGHUP sent as soon as the server answers reloads instead of
/// killing the process (the signal's default action).
fn reload_on_hangup(
    directory: Arc<BusinessDirectory>,
    store: Arc<dyn Store>,
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
                        let _ = reload(&directory, store.as_ref()).await;
                    }
                    _ = shutdown.changed() => return,
                }
            }
        })
    }
    #[cfg(not(unix))]
    {
        tokio::spawn(async move {
            let _ = (directory, store);
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
    if settings.email.ses {
        let from = settings.email.from.clone().unwrap_or_default();
        tracing::info!(%from, "email goes through Amazon SES");
        Arc::new(SesEmail::from_env(from).await)
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
