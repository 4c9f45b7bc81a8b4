//! A Postgres database of its own for one test, when `TEST_DATABASE_URL`
//! names a server: created with a name that starts with a given prefix,
//! dropped by [`TestDb::drop`]. For tests only.

use std::sync::Arc;

use sqlx::Connection;

use super::PgStore;
use crate::clock::Clock;

pub struct TestDb {
    server: String,
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// `None` (after saying so on stderr) when `TEST_DATABASE_URL` is not
    /// set to a Postgres server.
    pub async fn create(prefix: &str) -> Option<Self> {
        let server = match std::env::var("TEST_DATABASE_URL") {
            Ok(server) if server.starts_with("postgres") => server,
            _ => {
                eprintln!("TEST_DATABASE_URL is not a Postgres URL: skipping the Postgres test");
                return None;
            }
        };
        // `name` is ours: a fixed prefix and a UUID's hex digits.
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .expect("TEST_DATABASE_URL's server answers");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let url = format!("{}{name}", url_without_database(&server));
        Some(Self { server, name, url })
    }

    /// A store on the database, migrated, reading the time from `clock`.
    pub async fn store<C: Clock + Clone>(&self, clock: &C) -> Arc<dyn crate::store::Store> {
        Arc::new(
            PgStore::connect_with_clock(&self.url, Arc::new(clock.clone()))
                .await
                .expect("connect to the test database"),
        )
    }

    /// Drops the database, closing whatever is still connected to it.
    pub async fn drop(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.server).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await;
        }
    }
}

/// `postgres://user@host:port/db?opts` without `db?opts`, ending in `/`.
pub fn url_without_database(server: &str) -> String {
    let after_scheme = server.find("://").map(|i| i + 3).unwrap_or(0);
    match server[after_scheme..].find('/') {
        Some(slash) => server[..after_scheme + slash + 1].to_string(),
        None => format!("{server}/"),
    }
}
