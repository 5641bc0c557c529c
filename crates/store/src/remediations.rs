//! Remediation plans: instructions for hosts that the rollout machinery cannot express — pin a
//! channel to a version, or disable a channel's engine — written by operators or by the
//! controller when a rollout halts with nothing to roll back to.

use crate::{Result, Store, now_ms};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemediationRecord {
    pub id: String,
    /// `fleet`, `agent:<id>` or `tag:<tag>`.
    pub scope: String,
    pub channel: String,
    /// `pin` (run `version` and ignore rollouts) or `disable` (run no engine on the channel).
    pub action: String,
    pub version: Option<String>,
    pub reason: String,
    pub created_by: String,
    pub created_at: i64,
    pub active: bool,
}

impl Store {
    pub async fn insert_remediation(&self, plan: &RemediationRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO remediations (id, scope, channel, action, version, reason, created_by, created_at, active) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&plan.id)
        .bind(&plan.scope)
        .bind(&plan.channel)
        .bind(&plan.action)
        .bind(&plan.version)
        .bind(&plan.reason)
        .bind(&plan.created_by)
        .bind(if plan.created_at == 0 { now_ms() } else { plan.created_at })
        .bind(i64::from(plan.active))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Active plans, oldest first.
    pub async fn active_remediations(&self) -> Result<Vec<RemediationRecord>> {
        let rows = sqlx::query(
            "SELECT id, scope, channel, action, version, reason, created_by, created_at, active \
             FROM remediations WHERE active = $1 ORDER BY created_at, id",
        )
        .bind(1i64)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RemediationRecord {
                    id: row.try_get("id")?,
                    scope: row.try_get("scope")?,
                    channel: row.try_get("channel")?,
                    action: row.try_get("action")?,
                    version: row.try_get("version")?,
                    reason: row.try_get("reason")?,
                    created_by: row.try_get("created_by")?,
                    created_at: row.try_get("created_at")?,
                    active: row.try_get::<i64, _>("active")? != 0,
                })
            })
            .collect()
    }

    /// Retires a plan; true if it was active.
    pub async fn retire_remediation(&self, id: &str) -> Result<bool> {
        // Booleans are 0/1 integers: sqlx's Any driver decodes no boolean type on SQLite.
        let done = sqlx::query("UPDATE remediations SET active = $1 WHERE id = $2 AND active = $3")
            .bind(0i64)
            .bind(id)
            .bind(1i64)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plans_are_listed_until_retired() {
        for (backend, store, _dir) in crate::testing::stores().await {
            let plan = RemediationRecord {
                id: "rm-1".into(),
                scope: "fleet".into(),
                channel: "detection".into(),
                action: "disable".into(),
                version: None,
                reason: "first release crashed".into(),
                created_by: "controller".into(),
                created_at: 0,
                active: true,
            };
            store.insert_remediation(&plan).await.expect("insert");
            assert_eq!(
                store.active_remediations().await.expect("list").len(),
                1,
                "{backend}"
            );
            assert!(store.retire_remediation("rm-1").await.expect("retire"));
            assert!(!store.retire_remediation("rm-1").await.expect("again"));
            assert!(store.active_remediations().await.expect("list").is_empty());
        }
    }
}
