//! Rollouts: the spec chosen at start and the controller's state, updated with optimistic
//! concurrency so that two would-be leaders can never both apply a transition.

use crate::{Result, Store, StoreError, json_column, now_ms, to_json};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRecord {
    pub id: String,
    pub channel: String,
    pub version: String,
    pub spec: serde_json::Value,
    pub state: serde_json::Value,
    /// Incremented by every state change.
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

fn rollout(row: &AnyRow) -> Result<RolloutRecord> {
    Ok(RolloutRecord {
        id: row.try_get("id")?,
        channel: row.try_get("channel")?,
        version: row.try_get("version")?,
        spec: json_column(row, "spec")?,
        state: json_column(row, "state")?,
        revision: row.try_get("revision")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

macro_rules! columns {
    () => {
        "id, channel, version, spec, state, revision, created_at, updated_at"
    };
}

impl Store {
    pub async fn insert_rollout(&self, record: &RolloutRecord) -> Result<()> {
        let now = now_ms();
        sqlx::query(concat!(
            "INSERT INTO rollouts (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, 0, $6, $6)"
        ))
        .bind(&record.id)
        .bind(&record.channel)
        .bind(&record.version)
        .bind(to_json(&record.spec))
        .bind(to_json(&record.state))
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn rollout(&self, id: &str) -> Result<Option<RolloutRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM rollouts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(rollout).transpose()
    }

    /// Every rollout, newest first.
    pub async fn rollouts(&self) -> Result<Vec<RolloutRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM rollouts ORDER BY created_at DESC, id"
        ))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(rollout).collect()
    }

    /// Replaces the state if nobody changed it since `expected_revision`.
    pub async fn update_rollout_state(
        &self,
        id: &str,
        expected_revision: i64,
        state: &serde_json::Value,
    ) -> Result<i64> {
        let done = sqlx::query(
            "UPDATE rollouts SET state = $1, revision = revision + 1, updated_at = $2 \
             WHERE id = $3 AND revision = $4",
        )
        .bind(to_json(state))
        .bind(now_ms())
        .bind(id)
        .bind(expected_revision)
        .execute(self.pool())
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict("rollout"));
        }
        Ok(expected_revision + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_revision_loses() {
        for (backend, store, _dir) in crate::testing::stores().await {
            let record = RolloutRecord {
                id: "r1".into(),
                channel: "c".into(),
                version: "1.0.0".into(),
                spec: serde_json::json!({}),
                state: serde_json::json!({"phase": "running"}),
                revision: 0,
                created_at: 0,
                updated_at: 0,
            };
            store.insert_rollout(&record).await.expect("insert");
            let next = store
                .update_rollout_state("r1", 0, &serde_json::json!({"phase": "halted"}))
                .await
                .expect("first writer wins");
            assert_eq!(next, 1);
            let lost = store
                .update_rollout_state("r1", 0, &serde_json::json!({"phase": "completed"}))
                .await;
            assert!(matches!(lost, Err(StoreError::Conflict(_))), "{backend}");
            let back = store.rollout("r1").await.expect("get").expect("exists");
            assert_eq!(back.state["phase"], "halted");
        }
    }
}
