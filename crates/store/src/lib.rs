//! The control plane's database. SQLite (embedded, the default) and PostgreSQL (several server
//! replicas) run the same queries through sqlx's `Any` driver; only the schema differs, in
//! `migrations.rs`.
//!
//! Architecture invariant: this is the only crate that contains SQL. Everything above it speaks
//! in the typed records defined here.

mod agents;
mod audit;
mod leader;
mod migrations;
mod releases;
mod remediations;
mod reports;
mod rollouts;
mod tokens;

pub use agents::{AgentRecord, AgentStatusUpdate, NewAgent};
pub use audit::AuditEntry;
pub use releases::{PreflightStatus, ReleaseRecord};
pub use remediations::RemediationRecord;
pub use reports::ReportRecord;
pub use rollouts::RolloutRecord;
pub use tokens::{TokenKind, TokenRecord};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database URL is not one we support.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// A stored value did not decode; the row names what.
    #[error("corrupt {what} in the database: {reason}")]
    Corrupt { what: &'static str, reason: String },
    /// An update lost a race with another writer (optimistic concurrency).
    #[error("{0} was changed concurrently; retry")]
    Conflict(&'static str),
    /// A unique key already exists.
    #[error("{0} already exists")]
    Duplicate(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Which database is behind the pool; the schema and a few statements differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Milliseconds since the Unix epoch; all timestamps in the database use it.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Store {
    /// Connects and applies migrations. `sqlite://PATH` creates the file when missing.
    pub async fn connect(url: &str) -> Result<Store> {
        let store = Store::open(url).await?;
        migrations::apply(&store).await?;
        Ok(store)
    }

    /// Connects without touching the schema: migration tests start from an older one.
    async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(5));
        options = match backend {
            // One writer at a time is SQLite's model; a small pool avoids lock contention.
            Backend::Sqlite => options.max_connections(4),
            Backend::Postgres => options.max_connections(16),
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let pool = options
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA busy_timeout = 5000",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// True when a trivial query succeeds: for health checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Reads a JSON column into `T`, naming the column on failure.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &'static str,
) -> Result<T> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        what: column,
        reason: e.to_string(),
    })
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Our own types always serialise; a failure here is a bug, and an empty object is a safe
    // stand-in that decoding will reject loudly.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// Maps a unique-constraint violation to `Duplicate`.
pub(crate) fn unique_violation(error: sqlx::Error, what: impl Into<String>) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate(what.into()),
        _ => StoreError::Database(error),
    }
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
