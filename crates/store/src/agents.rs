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
    })
}

impl Store {
    pub async fn insert_agent(
        &self,
        id: &str,
        credential_hash: &str,
        hostname: &str,
        tags: &[String],
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO agents (id, credential_hash, hostname, tags, enrolled_at, last_seen_at, status) \
             VALUES ($1, $2, $3, $4, $5, NULL, NULL)",
        )
        .bind(id)
        .bind(credential_hash)
        .bind(hostname)
        .bind(to_json(&tags))
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(|e| unique_violation(e, format!("agent {id}")))?;
        Ok(())
    }

    /// The agent owning this credential hash.
    pub async fn agent_by_credential(&self, credential_hash: &str) -> Result<Option<AgentRecord>> {
        let row = sqlx::query(
            "SELECT id, hostname, tags, enrolled_at, last_seen_at, status FROM agents WHERE credential_hash = $1",
        )
        .bind(credential_hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(agent).transpose()
    }

    pub async fn agent(&self, id: &str) -> Result<Option<AgentRecord>> {
        let row = sqlx::query(
            "SELECT id, hostname, tags, enrolled_at, last_seen_at, status FROM agents WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(agent).transpose()
    }

    pub async fn agents(&self) -> Result<Vec<AgentRecord>> {
        let rows = sqlx::query(
            "SELECT id, hostname, tags, enrolled_at, last_seen_at, status FROM agents ORDER BY id",
        )
        .fetch_all(self.pool())
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
            .fetch_one(self.pool())
            .await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
