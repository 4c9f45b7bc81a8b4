//! The one place that picks a backend, from the database URL's scheme.

use std::sync::Arc;

use tokio::sync::{Notify, watch};

use super::console::ConsoleStore;
use super::postgres::PgStore;
use super::postgres::listen::{self, Listening};
use super::sqlite::SqliteStore;
use super::{Store, StoreError};
use crate::clock::Clock;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

impl BackendKind {
    /// `postgres://` and `postgresql://` are Postgres; `sqlite:` (and
    /// anything else, for which SQLite gives the error) is SQLite.
    pub fn of(url: &str) -> Self {
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgres" | "postgresql") => Self::Postgres,
            _ => Self::Sqlite,
        }
    }
}

/// A connected backend, as the ports wiring hands out.
#[derive(Clone)]
pub struct Backend {
    pub kind: BackendKind,
    pub store: Arc<dyn Store>,
    pub console: Arc<dyn ConsoleStore>,
    /// The web chat's sessions (a port of its own, outside `Store`).
    pub webchat: Arc<dyn super::webchat::WebChatStore>,
    /// How this process hears of work another process stored.
    pub wakeups: Wakeups,
}

/// What a wake-up from the database wakes.
#[derive(Clone, Default)]
pub struct WakeTargets {
    /// The turn worker: a customer's text was stored.
    pub worker: Arc<Notify>,
    /// The job runner: a job is pending.
    pub jobs: Arc<Notify>,
}

/// How a process hears of work stored by another, per backend. On SQLite
/// one process serves the database and the webhook wakes its worker in
/// process (a `chat` beside it is found by the poll); on Postgres every
/// instance `LISTEN`s (`postgres::listen`).
#[derive(Clone, Debug)]
pub enum Wakeups {
    InProcess,
    Listen { url: String },
}

impl Wakeups {
    /// The wake-up `url`'s backend uses.
    pub fn of(url: &str) -> Self {
        match BackendKind::of(url) {
            BackendKind::Sqlite => Self::InProcess,
            BackendKind::Postgres => Self::Listen { url: url.to_string() },
        }
    }

    /// Starts listening (Postgres) until `shutdown`; `None` when nothing
    /// needs to run (SQLite).
    pub fn start(&self, targets: WakeTargets, shutdown: watch::Receiver<bool>) -> Option<Listening> {
        match self {
            Self::InProcess => None,
            Self::Listen { url } => Some(listen::spawn(url.clone(), targets, shutdown)),
        }
    }
}

/// Connects to `url` (migrating it) with the backend its scheme names.
pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Backend, StoreError> {
    connect_with(url, clock, ConnectOptions::default()).await
}

/// What a process may tune about its connection (Postgres only; SQLite
/// has one process with one writer).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOptions {
    /// How long a text being sent stays its sender's (see
    /// `PgStore::with_send_lease`).
    pub send_lease: Option<std::time::Duration>,
    /// Most connections the pool opens (16 when `None`).
    pub max_connections: Option<u32>,
}

/// As [`connect`], with `options` for a database several instances share.
pub async fn connect_with(
    url: &str,
    clock: Arc<dyn Clock>,
    options: ConnectOptions,
) -> Result<Backend, StoreError> {
    match BackendKind::of(url) {
        BackendKind::Sqlite => {
            let sqlite = Arc::new(SqliteStore::connect_with_clock(url, clock).await?);
            Ok(Backend {
                kind: BackendKind::Sqlite,
                store: sqlite.clone(),
                webchat: sqlite.clone(),
                console: sqlite,
                wakeups: Wakeups::of(url),
            })
        }
        BackendKind::Postgres => {
            let mut postgres =
                PgStore::connect_with_pool(url, clock, options.max_connections.unwrap_or(16)).await?;
            if let Some(lease) = options.send_lease {
                postgres = postgres.with_send_lease(lease);
            }
            let postgres = Arc::new(postgres);
            Ok(Backend {
                kind: BackendKind::Postgres,
                store: postgres.clone(),
                webchat: postgres.clone(),
                console: postgres,
                wakeups: Wakeups::of(url),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_backend() {
        assert_eq!(BackendKind::of("postgres://u@h/db"), BackendKind::Postgres);
        assert_eq!(BackendKind::of("postgresql://h/db"), BackendKind::Postgres);
        assert_eq!(BackendKind::of("POSTGRES://h/db"), BackendKind::Postgres);
        assert_eq!(BackendKind::of("sqlite://textdesk.db"), BackendKind::Sqlite);
        assert_eq!(BackendKind::of("sqlite::memory:"), BackendKind::Sqlite);
    }
}
