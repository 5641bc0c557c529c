//! The audit log: every rollout transition, publish and operator action, with its reason.

use crate::{Result, Store, now_ms};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    /// `operator:<label>`, `controller`, `agent:<id>`.
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub reason: String,
}

impl Store {
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        reason: &str,
    ) -> Result<()> {
        insert(actor, action, subject, reason, self.pool()).await
    }

    /// The newest `limit` entries, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, subject, reason FROM audit ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    subject: row.try_get("subject")?,
                    reason: row.try_get("reason")?,
                })
            })
            .collect()
    }
}

/// Writes one entry, also inside a caller's transaction: an action and its audit row then
/// happen together or not at all.
pub(crate) async fn insert<'c>(
    actor: &str,
    action: &str,
    subject: &str,
    reason: &str,
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (at, actor, action, subject, reason) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(now_ms())
    .bind(actor)
    .bind(action)
    .bind(subject)
    .bind(reason)
    .execute(executor)
    .await?;
    Ok(())
}
