//! Reports uploaded from agent spools: alerts, engine failure records, install outcomes.
//! Each carries an id the agent chose, so a retried upload is stored once. The agent's time
//! (`at`) is a claim; what orders and filters reports is `received_at`, the server's clock when
//! the report was stored, which no agent can move.

#[cfg(test)]
use crate::now_ms;
use crate::{Result, Store};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReportRecord {
    pub id: String,
    pub agent_id: String,
    pub kind: String,
    /// When the agent says it happened (its clock, clamped by the server): shown, never trusted.
    pub at: i64,
    /// When this server stored it (its own clock): set by [`Store::insert_reports`], whatever
    /// the record says.
    pub received_at: i64,
    pub body: serde_json::Value,
}

impl Store {
    /// Inserts reports that are not stored yet, stamped with the server's clock; returns how
    /// many were new.
    pub async fn insert_reports(&self, reports: &[ReportRecord]) -> Result<usize> {
        Ok(self.insert_reports_queued(reports, None).await?.new)
    }

    /// Reports of `kind` the server received at or after `since_ms` (its own clock), oldest
    /// first. The agent's claimed time plays no part: a report dated in the future must not
    /// count against every later rollout.
    pub async fn reports_since(&self, kind: &str, since_ms: i64) -> Result<Vec<ReportRecord>> {
        let rows = sqlx::query(
            "SELECT id, agent_id, kind, at, received_at, body FROM reports \
             WHERE kind = $1 AND received_at >= $2 ORDER BY received_at, id",
        )
        .bind(kind)
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(report).collect()
    }

    /// The newest `limit` reports of `agent_id` whose kind is one of `kinds`, newest first
    /// (by the server's receive time), for a host's page.
    pub async fn agent_reports(
        &self,
        agent_id: &str,
        kinds: &[&str],
        limit: i64,
    ) -> Result<Vec<ReportRecord>> {
        let mut out = Vec::new();
        // One bounded query per kind keeps the statement constant (no list binding through the
        // `Any` driver); the caller asks for a handful of kinds.
        for kind in kinds {
            let rows = sqlx::query(
                "SELECT id, agent_id, kind, at, received_at, body FROM reports \
                 WHERE agent_id = $1 AND kind = $2 ORDER BY received_at DESC, id DESC LIMIT $3",
            )
            .bind(agent_id)
            .bind(*kind)
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
            for row in &rows {
                out.push(report(row)?);
            }
        }
        out.sort_by(|a, b| (b.received_at, &b.id).cmp(&(a.received_at, &a.id)));
        out.truncate(usize::try_from(limit.max(0)).unwrap_or(usize::MAX));
        Ok(out)
    }
}

pub(crate) fn report(row: &sqlx::any::AnyRow) -> Result<ReportRecord> {
    let body: String = row.try_get("body")?;
    Ok(ReportRecord {
        id: row.try_get("id")?,
        agent_id: row.try_get("agent_id")?,
        kind: row.try_get("kind")?,
        at: row.try_get("at")?,
        received_at: row.try_get("received_at")?,
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retried_reports_are_stored_once() {
        for (backend, store, _dir) in crate::testing::stores().await {
            let report = ReportRecord {
                id: "agent-1:7".into(),
                agent_id: "agent-1".into(),
                kind: "failure".into(),
                at: 10,
                received_at: 0,
                body: serde_json::json!({"kind": "trap"}),
            };
            assert_eq!(
                store
                    .insert_reports(std::slice::from_ref(&report))
                    .await
                    .expect("first"),
                1
            );
            assert_eq!(
                store.insert_reports(&[report]).await.expect("retry"),
                0,
                "{backend}"
            );
            assert_eq!(
                store.reports_since("failure", 0).await.expect("list").len(),
                1
            );
            // Counted by the server's receive time, not the claimed `at` (10).
            let received = store.reports_since("failure", 1_000).await.expect("list");
            assert_eq!(received.len(), 1, "{backend}");
            assert!(received[0].received_at >= 1_000);
            let later = store
                .reports_since("failure", now_ms() + 60_000)
                .await
                .expect("list");
            assert!(later.is_empty(), "{backend}");
        }
    }

    #[tokio::test]
    async fn reports_are_found_by_the_servers_clock_not_the_agents() {
        for (backend, store, _dir) in crate::testing::stores().await {
            let before = now_ms();
            let report = ReportRecord {
                id: "agent-1:2100".into(),
                agent_id: "agent-1".into(),
                kind: "crash".into(),
                // Dated 2100 by a hostile agent, with a receipt time it made up too.
                at: 4_102_444_800_000,
                received_at: 4_102_444_800_000,
                body: serde_json::json!({}),
            };
            store.insert_reports(&[report]).await.expect("insert");
            let after = now_ms();
            let found = store.reports_since("crash", before).await.expect("list");
            assert_eq!(found.len(), 1, "{backend}");
            assert!(
                (before..=after).contains(&found[0].received_at),
                "{backend}: the store stamps its own clock"
            );
            assert!(
                store
                    .reports_since("crash", after + 1)
                    .await
                    .expect("list")
                    .is_empty(),
                "{backend}: a later window does not see it, whatever its claimed date"
            );
        }
    }

    #[tokio::test]
    async fn a_hosts_reports_are_its_own_of_the_kinds_asked_newest_first() {
        for (backend, store, _dir) in crate::testing::stores().await {
            let report = |id: &str, agent: &str, kind: &str| ReportRecord {
                id: id.into(),
                agent_id: agent.into(),
                kind: kind.into(),
                at: 0,
                received_at: 0,
                body: serde_json::json!({"n": id}),
            };
            // Stored one by one so each has its own (later) receive time.
            for r in [
                report("a:1", "a", "failure"),
                report("a:2", "a", "restore"),
                report("a:3", "a", "alert"),
                report("b:1", "b", "failure"),
                report("a:4", "a", "failure"),
            ] {
                store.insert_reports(&[r]).await.expect("insert");
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            let found = store
                .agent_reports("a", &["failure", "restore"], 10)
                .await
                .expect("list");
            let ids: Vec<&str> = found.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(ids, ["a:4", "a:2", "a:1"], "{backend}");
            let two = store
                .agent_reports("a", &["failure", "restore"], 2)
                .await
                .expect("list");
            assert_eq!(two.len(), 2, "{backend}");
        }
    }
}
