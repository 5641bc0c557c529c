//! The control plane's database. SQLite (embedded, the default) and PostgreSQL (several server
//! replicas) run the same queries through sqlx's `Any` driver; only the schema differs, in
//! `migrations.rs`.
//!
//! Architecture invariant: this is the only crate that contains SQL. Everything above it speaks
//! in the typed records defined here.
//!
//! On SQLite every write goes through one connection (`pool()`, the writer) and reads through a
//! read-only pool (`reader()`): two writers in one process would make SQLite answer the second
//! with `database is locked` instead of waiting its turn, and that must never reach a client.
//! `open.rs` refuses databases that are empty, truncated or corrupt before anything is served.
#![forbid(unsafe_code)]

mod agents;
mod alerts;
mod audit;
mod gate_samples;
mod leader;
mod migrations;
mod open;
mod outbox;
mod releases;
mod remediations;
mod reports;
mod rollouts;
mod tokens;

pub use agents::{AgentRecord, AgentStatusUpdate, Decommission, NewAgent};
pub use alerts::AlertFilter;
pub use audit::AuditEntry;
pub use gate_samples::{GateSample, MAX_KEPT_EVALUATIONS};
pub use open::OpenOptions;
pub use outbox::{OutboxItem, OutboxPolicy, SinkState, StoredReports};
pub use releases::{PreflightStatus, ReleaseKeyRecord, ReleaseRecord};
pub use remediations::RemediationRecord;
pub use reports::ReportRecord;
pub use rollouts::RolloutRecord;
pub use tokens::{Revocation, TOKEN_ID_LEN, TokenKind, TokenRecord};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::time::Duration;

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
    /// The database is not one this server may start on without an operator saying so: empty,
    /// truncated, corrupt, or written by a newer version.
    #[error("{0}")]
    Refused(String),
    /// The data files could not be created or given their permissions.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
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
    /// Every write (and, on PostgreSQL, every read). On SQLite it holds one connection, so
    /// writes queue here in-process instead of failing with `database is locked`.
    pool: AnyPool,
    /// Reads. On SQLite a read-only pool beside the writer (WAL lets them run while it
    /// writes); on PostgreSQL the same pool as `pool`.
    reader: AnyPool,
    backend: Backend,
}

/// Milliseconds since the Unix epoch; all timestamps in the database use it.
pub fn now_ms() -> i64 {
    ringfence_protocol::clock::unix_ms()
}

/// Statements every SQLite connection runs first. The busy timeout covers other processes
/// (`ringfence server token create` while the server runs) and WAL checkpoints.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
    "PRAGMA synchronous = NORMAL",
];

/// How long a write waits for the single writer connection before it gives up: long enough
/// that a burst of writers queues instead of failing.
const WRITER_WAIT: Duration = Duration::from_secs(30);

impl Store {
    /// Connects, checks the database (see [`OpenOptions`]) and applies migrations.
    /// `sqlite://PATH` creates the file (0600) when missing.
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_with(url, &OpenOptions::default()).await
    }

    /// [`Store::connect`] with options: `init` lets an existing but empty or corrupt SQLite
    /// database be (re)initialised.
    pub async fn connect_with(url: &str, options: &OpenOptions) -> Result<Store> {
        let store = open::open_checked(url, options).await?;
        migrations::apply(&store).await?;
        Ok(store)
    }

    /// Connects without touching the schema: migration tests start from an older one.
    async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        match backend {
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .acquire_timeout(Duration::from_secs(5))
                    .max_connections(16)
                    .connect(url)
                    .await?;
                Ok(Store {
                    reader: pool.clone(),
                    pool,
                    backend,
                })
            }
            Backend::Sqlite => {
                let base = url.split_once('?').map_or(url, |(base, _)| base);
                let writer = AnyPoolOptions::new()
                    .acquire_timeout(WRITER_WAIT)
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA journal_mode = WAL")
                                .execute(&mut *conn)
                                .await?;
                            for pragma in SQLITE_PRAGMAS {
                                sqlx::query(*pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    // A statement that failed half way (a full disk during COMMIT) can leave
                    // the connection inside a transaction that holds SQLite's write lock;
                    // returned to the pool, every later write would fail with `database is
                    // locked` until a restart. A deferred BEGIN succeeds only outside a
                    // transaction and takes no lock: if it fails, the connection is closed and
                    // the next write opens a clean one.
                    .after_release(|conn, _| {
                        Box::pin(async move {
                            if sqlx::query("BEGIN").execute(&mut *conn).await.is_err() {
                                tracing::warn!(
                                    "the database writer was left inside a transaction; reconnecting"
                                );
                                return Ok(false);
                            }
                            Ok(sqlx::query("ROLLBACK").execute(&mut *conn).await.is_ok())
                        })
                    })
                    .connect(&format!("{base}?mode=rwc"))
                    .await?;
                let reader = AnyPoolOptions::new()
                    .acquire_timeout(WRITER_WAIT)
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in SQLITE_PRAGMAS {
                                sqlx::query(*pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_lazy(&format!("{base}?mode=ro"))?;
                Ok(Store {
                    pool: writer,
                    reader,
                    backend,
                })
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The writer: every statement that changes something.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// For statements that only read.
    pub(crate) fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// True when a trivial query succeeds: the database answers reads.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Writes one row and takes it back in a transaction that is committed: proves the
    /// database accepts writes now (a full disk, a read-only file system, a lock held by
    /// someone else all fail it), which a read cannot. For `/healthz`.
    pub async fn write_probe(&self, holder: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO write_probes (holder, at) VALUES ($1, $2)")
            .bind(holder)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM write_probes WHERE holder = $1")
            .bind(holder)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
        self.reader.close().await;
    }
}

/// Which backend a URL names.
fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
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

#[cfg(test)]
mod fault_tests;
