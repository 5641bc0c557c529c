//! Schema migrations, applied in order on every start. SQLite and PostgreSQL share the
//! statements; only the binary and identity-column types differ.

use crate::{Backend, Result, Store, now_ms};

/// One schema step. Statements are written once; `{blob}` and `{id}` become the backend's
/// binary and identity-column types.
struct Migration {
    version: i64,
    statements: &'static [&'static str],
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        statements: &[
            "CREATE TABLE tokens (hash TEXT PRIMARY KEY, kind TEXT NOT NULL, label TEXT NOT NULL, \
         created_at BIGINT NOT NULL, expires_at BIGINT, used_at BIGINT)",
            "CREATE TABLE agents (id TEXT PRIMARY KEY, credential_hash TEXT NOT NULL UNIQUE, \
         hostname TEXT NOT NULL, tags TEXT NOT NULL, enrolled_at BIGINT NOT NULL, \
         last_seen_at BIGINT, status TEXT)",
            "CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, bytes {blob} NOT NULL)",
            "CREATE TABLE releases (channel TEXT NOT NULL, version TEXT NOT NULL, \
         manifest TEXT NOT NULL, bundle_sha256 TEXT NOT NULL, published_at BIGINT NOT NULL, \
         preflight_status TEXT NOT NULL, preflight_report TEXT, PRIMARY KEY (channel, version))",
            "CREATE TABLE rollouts (id TEXT PRIMARY KEY, channel TEXT NOT NULL, version TEXT NOT NULL, \
         spec TEXT NOT NULL, state TEXT NOT NULL, revision BIGINT NOT NULL, \
         created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
            "CREATE TABLE audit (id {id}, at BIGINT NOT NULL, \
         actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, reason TEXT NOT NULL)",
            "CREATE TABLE reports (id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, kind TEXT NOT NULL, \
         at BIGINT NOT NULL, received_at BIGINT NOT NULL, body TEXT NOT NULL)",
            "CREATE INDEX reports_kind_at ON reports (kind, at)",
            "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)",
        ],
    },
    Migration {
        version: 2,
        statements: &[
            "CREATE TABLE remediations (id TEXT PRIMARY KEY, scope TEXT NOT NULL, channel TEXT NOT NULL, \
         action TEXT NOT NULL, version TEXT, reason TEXT NOT NULL, created_by TEXT NOT NULL, \
         created_at BIGINT NOT NULL, active BIGINT NOT NULL)",
        ],
    },
    Migration {
        version: 3,
        // Once a client certificate was signed for an agent, its credential alone is no longer
        // enough: a copy of it must not work without the key that stayed on the host.
        statements: &["ALTER TABLE agents ADD COLUMN client_cert_issued_at BIGINT"],
    },
];

/// The statement in the backend's dialect.
fn dialect(statement: &str, backend: Backend) -> String {
    let (blob, id) = match backend {
        Backend::Sqlite => ("BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        Backend::Postgres => ("BYTEA", "BIGSERIAL PRIMARY KEY"),
    };
    statement.replace("{blob}", blob).replace("{id}", id)
}

/// Applies every migration not yet recorded, each in its own transaction. Concurrent replicas
/// starting together are serialised by the primary key on `schema_migrations`.
pub(crate) async fn apply(store: &Store) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(store.pool())
    .await?;
    for migration in MIGRATIONS {
        let applied: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(migration.version)
                .fetch_optional(store.pool())
                .await?;
        if applied.is_some() {
            continue;
        }
        let mut tx = store.pool().begin().await?;
        // Claim the version first: a replica racing us fails here and rolls back cleanly.
        let claimed =
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(migration.version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await;
        if claimed.is_err() {
            tx.rollback().await?;
            continue;
        }
        for statement in migration.statements {
            // Our own constant DDL, only with type names substituted.
            let sql = sqlx::AssertSqlSafe(dialect(statement, store.backend()));
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        tracing::info!(version = migration.version, "applied schema migration");
    }
    Ok(())
}
