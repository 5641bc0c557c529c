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
    Migration {
        version: 4,
        // Agents certified before migration 3 have no client_cert_issued_at, so a copy of their
        // credential would work alone until their next renewal, months away. Every certificate
        // the server signed is in the audit log: enrollments that issued one (by their reason)
        // and renewals. A separate migration, because databases that already applied 3 must be
        // filled too. One grouped pass over the audit log with UPDATE ... FROM (SQLite 3.33+,
        // PostgreSQL) instead of a subquery per agent: audit.actor has no index, and a large
        // fleet would otherwise scan the log once per agent inside the start-up transaction.
        statements: &["UPDATE agents SET client_cert_issued_at = issued.at \
         FROM (SELECT actor, MAX(at) AS at FROM audit \
         WHERE action = 'renew_certificate' \
         OR (action = 'enroll' AND reason LIKE '%client certificate issued%') \
         GROUP BY actor) AS issued \
         WHERE issued.actor = 'agent:' || agents.id AND agents.client_cert_issued_at IS NULL"],
    },
    Migration {
        version: 5,
        statements: &[
            // `/healthz` proves writes work by writing (a read succeeds on a full disk).
            "CREATE TABLE write_probes (holder TEXT NOT NULL, at BIGINT NOT NULL)",
            // Operator tokens can be revoked; revoked ones are kept for the audit trail.
            "ALTER TABLE tokens ADD COLUMN revoked_at BIGINT",
            // A decommissioned agent keeps its row (history, reports) but no credential, and
            // rollout gates leave it out.
            "ALTER TABLE agents ADD COLUMN decommissioned_at BIGINT",
            // When the server first trusted each release key: agents enrolled before then were
            // never told about it and refuse releases it signed.
            "CREATE TABLE release_keys (key_id TEXT PRIMARY KEY, public_key TEXT NOT NULL, \
         first_trusted_at BIGINT NOT NULL)",
        ],
    },
    Migration {
        version: 6,
        statements: &[
            // Gate values over time, for the dashboard's charts: a bounded history per rollout
            // (`gate_samples.rs`), read back per rollout in time order.
            "CREATE TABLE gate_samples (rollout_id TEXT NOT NULL, at BIGINT NOT NULL, \
         ring BIGINT NOT NULL, gate TEXT NOT NULL, value DOUBLE PRECISION NOT NULL, \
         threshold DOUBLE PRECISION NOT NULL, passed BIGINT NOT NULL)",
            "CREATE INDEX gate_samples_rollout_at ON gate_samples (rollout_id, at)",
            // A host's page lists its own recent reports, newest first.
            "CREATE INDEX reports_agent_received ON reports (agent_id, received_at)",
        ],
    },
    Migration {
        version: 7,
        statements: &[
            // Alerts waiting for the configured sinks (`outbox.rs`): the upload is acknowledged
            // once its alerts are here, and each sink reads them in `seq` order behind its own
            // cursor. `report_id` is the alert's event id, the same on every resend.
            "CREATE TABLE outbox (seq {id}, report_id TEXT NOT NULL UNIQUE, \
         agent_id TEXT NOT NULL, received_at BIGINT NOT NULL, body TEXT NOT NULL)",
            "CREATE TABLE sink_cursors (sink TEXT PRIMARY KEY, delivered BIGINT NOT NULL, \
         sent BIGINT NOT NULL, dropped BIGINT NOT NULL, failures BIGINT NOT NULL, \
         last_error TEXT, last_sent_at BIGINT)",
            // Alert queries filter by time (and host); failure and crash reports keep theirs.
            "CREATE INDEX reports_kind_received ON reports (kind, received_at)",
        ],
    },
];

/// The newest schema version this build knows.
pub(crate) fn newest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

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
    apply_these(store, MIGRATIONS).await
}

/// Applies those of `migrations` not yet recorded, in order.
async fn apply_these(store: &Store, migrations: &[Migration]) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(store.pool())
    .await?;
    for migration in migrations {
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
            // Our own constant statements, only with type names substituted.
            let sql = sqlx::AssertSqlSafe(dialect(statement, store.backend()));
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        tracing::info!(version = migration.version, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The audit rows the servers that predate migration 3 wrote when they signed certificates.
    async fn audit(store: &Store, at: i64, actor: &str, action: &str, reason: &str) {
        sqlx::query(
            "INSERT INTO audit (at, actor, action, subject, reason) VALUES ($1, $2, $3, 'host', $4)",
        )
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(reason)
        .execute(store.pool())
        .await
        .expect("audit row");
    }

    #[tokio::test]
    async fn agents_certified_before_migration_3_are_bound_by_the_audit_log() {
        // From before migration 3 (released schema) and from after it (servers that recorded
        // certificates but did not fill in the older ones).
        for from in [2, 3] {
            for (backend, store, _dir) in crate::testing::unmigrated_stores().await {
                let old = MIGRATIONS.partition_point(|m| m.version <= from);
                apply_these(&store, &MIGRATIONS[..old])
                    .await
                    .expect("old schema");
                for id in ["a-cert", "a-renewed", "a-plain", "a-cert-x"] {
                    sqlx::query(
                        "INSERT INTO agents (id, credential_hash, hostname, tags, enrolled_at) \
                         VALUES ($1, $1, 'host', '[]', 1)",
                    )
                    .bind(id)
                    .execute(store.pool())
                    .await
                    .expect("agent");
                }
                let with_cert = "enrolled with a single-use token; client certificate issued";
                let without = "enrolled with a single-use token";
                audit(&store, 10, "agent:a-cert", "enroll", with_cert).await;
                // Enrolled without a certificate, given one by a renewal, renewed again.
                audit(&store, 20, "agent:a-renewed", "enroll", without).await;
                audit(
                    &store,
                    30,
                    "agent:a-renewed",
                    "renew_certificate",
                    "renewed",
                )
                .await;
                audit(
                    &store,
                    40,
                    "agent:a-renewed",
                    "renew_certificate",
                    "renewed",
                )
                .await;
                audit(&store, 50, "agent:a-plain", "enroll", without).await;
                // Look-alikes that are no certificate for a-plain: another actor, another action.
                audit(&store, 60, "operator:ci", "enroll", with_cert).await;
                audit(&store, 70, "agent:a-plain", "heartbeat", with_cert).await;
                // An id that only starts like another agent's binds only itself.
                audit(&store, 80, "agent:a-cert-x", "enroll", with_cert).await;

                apply(&store).await.expect("migrate");
                // A second start finds nothing to do.
                apply(&store).await.expect("migrate again");
                let issued = |id| {
                    let store = store.clone();
                    async move {
                        let agent = store.agent(id).await.expect("get").expect("agent");
                        agent.client_cert_issued_at
                    }
                };
                assert_eq!(issued("a-cert").await, Some(10), "{backend} from {from}");
                assert_eq!(issued("a-renewed").await, Some(40), "{backend} from {from}");
                assert_eq!(issued("a-plain").await, None, "{backend} from {from}");
                assert_eq!(issued("a-cert-x").await, Some(80), "{backend} from {from}");
            }
        }
    }
}
