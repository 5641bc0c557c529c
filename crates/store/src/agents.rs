//! Enrolled agents and the latest status each reported.

use crate::{Result, Store, json_column, now_ms, to_json, unique_violation};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub id: String,
    pub hostname: String,
    pub tags: Vec<String>,
    pub enrolled_at: i64,
    pub last_seen_at: Option<i64>,
    /// The last heartbeat, as the server's protocol type serialised it.
    pub status: Option<serde_json::Value>,
    /// When a client certificate was last signed for this agent. Set, its credential is only
    /// good together with that certificate.
    pub client_cert_issued_at: Option<i64>,
    /// When an operator decommissioned it: its credential (and with it its certificate) no
    /// longer works, and rollout gates leave it out.
    pub decommissioned_at: Option<i64>,
}

/// What [`Store::decommission_agent`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Decommission {
    /// Done now; the agent as it is stored afterwards.
    Done(AgentRecord),
    /// It was decommissioned before (at the time in the record); nothing changed.
    Already(AgentRecord),
    /// No agent has that id.
    Unknown,
}

/// An agent about to be enrolled.
#[derive(Debug, Clone, Copy)]
pub struct NewAgent<'a> {
    pub id: &'a str,
    pub credential_hash: &'a str,
    pub hostname: &'a str,
    pub tags: &'a [String],
    /// A client certificate was signed for it with this enrollment.
    pub client_cert_issued: bool,
}

/// A SELECT of every column `agent` reads, as one static statement.
macro_rules! select_agents {
    ($rest:literal) => {
        concat!(
            "SELECT id, hostname, tags, enrolled_at, last_seen_at, status, client_cert_issued_at, \
             decommissioned_at FROM agents ",
            $rest
        )
    };
}

/// One agent's newest heartbeat, written in batches.
#[derive(Debug, Clone)]
pub struct AgentStatusUpdate {
    pub agent_id: String,
    pub seen_at: i64,
    pub status: serde_json::Value,
}

fn agent(row: &AnyRow) -> Result<AgentRecord> {
    let status: Option<String> = row.try_get("status")?;
    Ok(AgentRecord {
        id: row.try_get("id")?,
        hostname: row.try_get("hostname")?,
        tags: json_column(row, "tags")?,
        enrolled_at: row.try_get("enrolled_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        status: status.and_then(|s| serde_json::from_str(&s).ok()),
        client_cert_issued_at: row.try_get("client_cert_issued_at")?,
        decommissioned_at: row.try_get("decommissioned_at")?,
    })
}

async fn insert<'c>(
    agent: &NewAgent<'_>,
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
) -> Result<()> {
    let issued_at = agent.client_cert_issued.then(now_ms);
    sqlx::query(
        "INSERT INTO agents (id, credential_hash, hostname, tags, enrolled_at, last_seen_at, status, \
         client_cert_issued_at) VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6)",
    )
    .bind(agent.id)
    .bind(agent.credential_hash)
    .bind(agent.hostname)
    .bind(to_json(&agent.tags))
    .bind(now_ms())
    .bind(issued_at)
    .execute(executor)
    .await
    .map_err(|e| unique_violation(e, format!("agent {}", agent.id)))?;
    Ok(())
}

impl Store {
    pub async fn insert_agent(
        &self,
        id: &str,
        credential_hash: &str,
        hostname: &str,
        tags: &[String],
    ) -> Result<()> {
        let agent = NewAgent {
            id,
            credential_hash,
            hostname,
            tags,
            client_cert_issued: false,
        };
        insert(&agent, self.pool()).await
    }

    /// Enrolls an agent with an enrollment token in one transaction with its audit row
    /// (`enroll`, by `agent:<id>`, about its hostname): the token is spent only if the agent and
    /// the audit row are stored, and those are stored only if the token was valid, unexpired
    /// and unused (false: nothing was written). An enrollment the client is told failed must
    /// not have spent its token, and one that happened must be in the audit log.
    pub async fn enroll_agent(&self, token_hash: &str, agent: &NewAgent<'_>) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        if !crate::tokens::consume_enroll_token(token_hash, &mut *tx).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        insert(agent, &mut *tx).await?;
        // Migration 4 recognises enrollments with a certificate by this reason.
        let reason = if agent.client_cert_issued {
            "enrolled with a single-use token; client certificate issued"
        } else {
            "enrolled with a single-use token"
        };
        let actor = format!("agent:{}", agent.id);
        crate::audit::insert(&actor, "enroll", agent.hostname, reason, &mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Remembers that a renewal signed a new client certificate for this agent, with its audit
    /// row (`renew_certificate`, by `agent:<id>`), in one transaction: the agent is bound to
    /// certificates exactly when the log says it was given one.
    pub async fn record_certificate_renewal(&self, id: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE agents SET client_cert_issued_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let actor = format!("agent:{id}");
        let reason = "client certificate renewed";
        crate::audit::insert(&actor, "renew_certificate", id, reason, &mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The agent owning this credential hash.
    pub async fn agent_by_credential(&self, credential_hash: &str) -> Result<Option<AgentRecord>> {
        let row = sqlx::query(select_agents!("WHERE credential_hash = $1"))
            .bind(credential_hash)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(agent).transpose()
    }

    pub async fn agent(&self, id: &str) -> Result<Option<AgentRecord>> {
        let row = sqlx::query(select_agents!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(agent).transpose()
    }

    pub async fn agents(&self) -> Result<Vec<AgentRecord>> {
        let rows = sqlx::query(select_agents!("ORDER BY id"))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(agent).collect()
    }

    /// Writes a batch of heartbeats in one transaction: the server buffers heartbeats and
    /// flushes them together, which is what lets SQLite take tens of thousands per second.
    pub async fn update_agent_status(&self, updates: &[AgentStatusUpdate]) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        for update in updates {
            sqlx::query("UPDATE agents SET last_seen_at = $1, status = $2 WHERE id = $3")
                .bind(update.seen_at)
                .bind(update.status.to_string())
                .bind(&update.agent_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Agents counted, for metrics without loading every row.
    pub async fn agent_count(&self) -> Result<i64> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM agents")
            .fetch_one(self.reader())
            .await?;
        Ok(count)
    }

    /// Takes an agent out of the fleet, with its audit row (`decommission`, by `actor`), in one
    /// transaction: its credential hash is replaced by one no token hashes to (so the agent is
    /// refused from the next lookup on), and `decommissioned_at` is set (rollout gates leave it
    /// out). The row stays for history: reports and the audit log still name it.
    pub async fn decommission_agent(
        &self,
        id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Decommission> {
        let mut tx = self.pool().begin().await?;
        // `decommissioned:` cannot be a sha256 in hex, so no credential matches it again;
        // unique because ids are.
        let done = sqlx::query(
            "UPDATE agents SET decommissioned_at = $1, credential_hash = 'decommissioned:' || id \
             WHERE id = $2 AND decommissioned_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(select_agents!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(record) = row.as_ref().map(agent).transpose()? else {
            tx.rollback().await?;
            return Ok(Decommission::Unknown);
        };
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Decommission::Already(record));
        }
        crate::audit::insert(
            actor,
            "decommission",
            &format!("agent:{id}"),
            reason,
            &mut *tx,
        )
        .await?;
        tx.commit().await?;
        Ok(Decommission::Done(record))
    }

    /// Ids of agents decommissioned at or after `since_ms`: replicas drop them from their
    /// credential caches.
    pub async fn decommissioned_since(&self, since_ms: i64) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM agents WHERE decommissioned_at IS NOT NULL AND decommissioned_at >= $1",
        )
        .bind(since_ms)
        .fetch_all(self.reader())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_decommissioned_agent_loses_its_credential_and_is_audited() {
        for (backend, store, _dir) in crate::testing::stores().await {
            store
                .insert_agent("a1", "h1", "host-1", &[])
                .await
                .expect("insert");
            store
                .insert_agent("a2", "h2", "host-2", &[])
                .await
                .expect("insert");
            let before = crate::now_ms();
            let done = store
                .decommission_agent("a1", "operator:ops", "host retired")
                .await
                .expect("decommission");
            let Decommission::Done(record) = done else {
                panic!("{backend}: {done:?}");
            };
            assert!(record.decommissioned_at.is_some_and(|at| at >= before));
            assert_eq!(
                store.agent_by_credential("h1").await.expect("lookup"),
                None,
                "{backend}: the credential no longer names it"
            );
            let again = store
                .decommission_agent("a1", "operator:ops", "twice")
                .await
                .expect("again");
            assert!(matches!(again, Decommission::Already(_)), "{backend}");
            let unknown = store
                .decommission_agent("nope", "operator:ops", "typo")
                .await
                .expect("unknown");
            assert_eq!(unknown, Decommission::Unknown, "{backend}");
            assert_eq!(
                store.decommissioned_since(before).await.expect("since"),
                vec!["a1".to_owned()],
                "{backend}"
            );
            assert!(
                store
                    .agent_by_credential("h2")
                    .await
                    .expect("lookup")
                    .is_some_and(|a| a.decommissioned_at.is_none()),
                "{backend}: others untouched"
            );
            let log = store.audit_log(10).await.expect("audit");
            assert_eq!(
                log.len(),
                1,
                "{backend}: only the one that happened: {log:?}"
            );
            assert_eq!(
                (
                    log[0].action.as_str(),
                    log[0].subject.as_str(),
                    log[0].reason.as_str()
                ),
                ("decommission", "agent:a1", "host retired")
            );
        }
    }

    #[tokio::test]
    async fn enroll_and_update_status() {
        for (backend, store, _dir) in crate::testing::stores().await {
            store
                .insert_agent("a1", "h1", "host-1", &["canary".to_owned()])
                .await
                .expect("insert");
            let duplicate = store.insert_agent("a2", "h1", "host-2", &[]).await;
            assert!(
                matches!(duplicate, Err(crate::StoreError::Duplicate(_))),
                "{backend}"
            );
            store
                .update_agent_status(&[AgentStatusUpdate {
                    agent_id: "a1".into(),
                    seen_at: 42,
                    status: serde_json::json!({"release": "x@1"}),
                }])
                .await
                .expect("update");
            let agent = store
                .agent_by_credential("h1")
                .await
                .expect("get")
                .expect("exists");
            assert_eq!(agent.tags, vec!["canary"]);
            assert_eq!(agent.last_seen_at, Some(42));
            assert_eq!(agent.status.expect("status")["release"], "x@1");
            assert_eq!(store.agent_count().await.expect("count"), 1);
        }
    }

    #[tokio::test]
    async fn an_enrollment_spends_its_token_only_with_the_agent_and_remembers_certificates() {
        for (backend, store, _dir) in crate::testing::stores().await {
            for token in ["t1", "t2"] {
                store
                    .insert_token(token, crate::TokenKind::Enroll, "t", None)
                    .await
                    .expect("token");
            }
            let first = NewAgent {
                id: "a1",
                credential_hash: "h1",
                hostname: "host-1",
                tags: &[],
                client_cert_issued: true,
            };
            assert!(store.enroll_agent("t1", &first).await.expect("enroll"));
            let stored = store.agent("a1").await.expect("get").expect("stored");
            assert!(stored.client_cert_issued_at.is_some(), "{backend}");

            // The agent cannot be stored (its id is taken): the token is not spent either.
            let clash = NewAgent {
                credential_hash: "h2",
                ..first
            };
            let refused = store.enroll_agent("t2", &clash).await;
            assert!(
                matches!(refused, Err(crate::StoreError::Duplicate(_))),
                "{backend}: {refused:?}"
            );
            assert!(
                store.enroll_token_usable("t2").await.expect("check"),
                "{backend}"
            );
            let log = store.audit_log(10).await.expect("audit");
            assert_eq!(
                log.len(),
                1,
                "{backend}: only the first enrollment: {log:?}"
            );
            assert_eq!(
                (
                    log[0].actor.as_str(),
                    log[0].action.as_str(),
                    log[0].subject.as_str()
                ),
                ("agent:a1", "enroll", "host-1"),
                "{backend}"
            );
            assert!(
                log[0].reason.contains("client certificate issued"),
                "{backend}: {log:?}"
            );

            let plain = NewAgent {
                id: "a2",
                credential_hash: "h2",
                client_cert_issued: false,
                ..first
            };
            assert!(store.enroll_agent("t2", &plain).await.expect("enroll"));
            let before = store.agent("a2").await.expect("get").expect("stored");
            assert_eq!(before.client_cert_issued_at, None, "{backend}");
            store
                .record_certificate_renewal("a2")
                .await
                .expect("record");
            let after = store
                .agent_by_credential("h2")
                .await
                .expect("get")
                .expect("stored");
            assert!(after.client_cert_issued_at.is_some(), "{backend}");
            assert_eq!(store.agent_count().await.expect("count"), 2);
            let log = store.audit_log(10).await.expect("audit");
            let actions: Vec<_> = log
                .iter()
                .map(|e| (e.actor.as_str(), e.action.as_str(), e.reason.as_str()))
                .collect();
            assert_eq!(
                actions,
                [
                    (
                        "agent:a2",
                        "renew_certificate",
                        "client certificate renewed"
                    ),
                    ("agent:a2", "enroll", "enrolled with a single-use token"),
                    (
                        "agent:a1",
                        "enroll",
                        "enrolled with a single-use token; client certificate issued"
                    ),
                ],
                "{backend}"
            );
        }
    }

    #[tokio::test]
    async fn an_enrollment_that_cannot_be_audited_spends_no_token_and_stores_no_agent() {
        for (backend, store, _dir) in crate::testing::stores().await {
            store
                .insert_token("t1", crate::TokenKind::Enroll, "t", None)
                .await
                .expect("token");
            let agent = NewAgent {
                id: "a1",
                credential_hash: "h1",
                hostname: "host-1",
                tags: &[],
                client_cert_issued: true,
            };
            // The audit row is the last write of the transaction: without its table, the token
            // and the agent written before it must be rolled back.
            sqlx::query("ALTER TABLE audit RENAME TO audit_away")
                .execute(store.pool())
                .await
                .expect("hide audit");
            let failed = store.enroll_agent("t1", &agent).await;
            sqlx::query("ALTER TABLE audit_away RENAME TO audit")
                .execute(store.pool())
                .await
                .expect("restore audit");
            assert!(
                matches!(failed, Err(crate::StoreError::Database(_))),
                "{backend}: {failed:?}"
            );
            assert!(
                store.enroll_token_usable("t1").await.expect("check"),
                "{backend}: token not spent"
            );
            assert_eq!(store.agent("a1").await.expect("get"), None, "{backend}");
            assert_eq!(store.agent_count().await.expect("count"), 0, "{backend}");
            assert!(
                store.audit_log(10).await.expect("audit").is_empty(),
                "{backend}"
            );

            // With its audit log back, the same enrollment goes through, audited.
            assert!(store.enroll_agent("t1", &agent).await.expect("enroll"));
            assert!(store.agent("a1").await.expect("get").is_some(), "{backend}");
            let log = store.audit_log(10).await.expect("audit");
            assert_eq!(log.len(), 1, "{backend}: {log:?}");
            assert_eq!(log[0].actor, "agent:a1", "{backend}");
        }
    }
}
