//! Wiring: which adapter serves each port, chosen from configuration.
//!
//! `Application::build` binds the listener (port 0 works, for tests) and
//! starts the worker; `Services` is the part `textdesk chat` shares with it.

use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::anthropic::AnthropicClient;
use crate::assistant::guided::GuidedResponder;
use crate::assistant::tools::ToolRegistry;
use crate::assistant::{ClaudeResponder, Responder, job_tools, schedule_tools};
use crate::calendar::google::{GoogleCalendar, GoogleSetupError};
use crate::calendar::{Calendar, LocalCalendar};
use crate::config::business::BusinessConfig;
use crate::config::settings::Settings;
use crate::domain::prompt;
use crate::email::{EmailSender, OutboxEmail, SesEmail};
use crate::http::{self, AppState};
use crate::jobs::runner::JobRunner;
use crate::jobs::turns::Engine;
use crate::jobs::worker::TurnWorker;
use crate::scheduling::Scheduler;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
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

/// The store and the turn engine, built from configuration.
pub struct Services {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
}

impl Services {
    /// `sender` overrides the configured text sender (for `chat`).
    pub async fn build(
        settings: &Settings,
        business: Arc<BusinessConfig>,
        sender: Option<Arc<dyn SmsSender>>,
    ) -> Result<Self, StartupError> {
        let sqlite = SqliteStore::connect(&settings.database_url).await?;
        let store: Arc<dyn Store> = Arc::new(sqlite);

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

        if prompt::assemble(&business, chrono::Utc::now()).base_is_overridden() {
            tracing::warn!(
                "business.toml [assistant] base_prompt REPLACES the built-in base prompt; \
                 run `textdesk check-config` to review the assembled prompt"
            );
        }
        let calendar: Arc<dyn Calendar> = match &settings.google.credentials {
            Some(key) => {
                if let Some(p) = business.providers.iter().find(|p| p.calendar_id.is_none()) {
                    return Err(StartupError::Config(format!(
                        "provider `{}` has no calendar_id in business.toml; with Google Calendar every provider needs one",
                        p.id
                    )));
                }
                let google = GoogleCalendar::connect(
                    key,
                    business.google.delegated_subject.as_deref(),
                    settings.google.base_url.as_ref(),
                    settings.google.timeout,
                )
                .await?;
                tracing::info!(providers = business.providers.len(), "booking on Google Calendar");
                Arc::new(google)
            }
            None => {
                tracing::warn!(
                    "GOOGLE_APPLICATION_CREDENTIALS is not set: textdesk's own bookings table is the crews' calendar"
                );
                Arc::new(LocalCalendar)
            }
        };
        let scheduler = Arc::new(Scheduler::new(store.clone(), calendar, business.clone()));
        let responder: Arc<dyn Responder> = match &settings.anthropic {
            Some(anthropic) => {
                tracing::info!(model = %anthropic.model, "answering with Claude");
                let mut tools = ToolRegistry::default();
                job_tools::register(&mut tools, business.clone());
                schedule_tools::register(&mut tools, scheduler.clone(), business.clone());
                Arc::new(ClaudeResponder {
                    client: Arc::new(AnthropicClient::new(anthropic.clone())),
                    model: anthropic.model.clone(),
                    max_tokens: anthropic.max_tokens,
                    max_tool_rounds: anthropic.max_tool_rounds,
                    tools,
                    business: business.clone(),
                    // A third of the lease: the engine's backstop is half.
                    deadline: settings.worker.lease / 3,
                })
            }
            None => {
                tracing::warn!(
                    "ANTHROPIC_API_KEY is not set: customers are answered by the guided flow \
                     (numbered questions, the same quotes), without a model"
                );
                Arc::new(GuidedResponder {
                    business: business.clone(),
                    scheduler: scheduler.clone(),
                })
            }
        };

        let engine = Arc::new(Engine {
            store: store.clone(),
            responder,
            guided: GuidedResponder {
                business: business.clone(),
                scheduler,
            },
            sender,
            business,
            // Well inside the lease, so a slow turn ends (with an apology)
            // before anyone else could claim its conversation.
            turn_deadline: settings.worker.lease / 2,
        });
        Ok(Self { store, engine })
    }
}

pub struct Application {
    port: u16,
    store: Arc<dyn Store>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    worker: JoinHandle<()>,
    jobs: JoinHandle<()>,
}

impl Application {
    pub async fn build(settings: Settings, business: BusinessConfig) -> Result<Self, StartupError> {
        let business = Arc::new(business);
        let services = Services::build(&settings, business, None).await?;
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
            store: services.store.clone(),
            wake_worker: wake.clone(),
            public_base_url: settings
                .public_base_url
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            twilio_auth_token: settings.twilio.auth_token.clone(),
            skip_signature_validation: settings.twilio.skip_signature_validation,
            engine: services.engine.clone(),
            media_base_url: settings.twilio.api_base_url.clone(),
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
            engine: services.engine.clone(),
            email,
            business: services.engine.business.clone(),
            settings: settings.jobs.clone(),
            media: media_fetcher(&settings),
        };
        let jobs = tokio::spawn(runner.run(shutdown_rx.clone()));
        let worker = TurnWorker {
            engine: services.engine.clone(),
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
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        tracing::info!(port, "textdesk is listening");
        Ok(Self {
            port,
            store: services.store,
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
    }

    /// Stops at once, mid-turn if need be, as a crash would. For tests.
    pub async fn kill(self) {
        self.server.abort();
        self.worker.abort();
        self.jobs.abort();
        let _ = self.server.await;
        let _ = self.worker.await;
        let _ = self.jobs.await;
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
