//! Alert reports for operators: the newest alerts by host and time (`GET /api/v1/alerts`), and
//! the retention that keeps the `reports` table from growing with every alert a fleet raises.
//!
//! Only host and time are filtered here, in SQL both backends read the same way. What an alert
//! says (its rule, its severity) sits in the OCSF body, and JSON operators differ between
//! SQLite and PostgreSQL, so the caller judges those on the parsed body: this module pages
//! through the matching rows newest first and hands each to the caller's predicate until it has
//! enough.
//!
//! Retention deletes `alert` reports only. Failure and crash reports feed the rollout gates and
//! the crash groups, and are never removed here.

use crate::reports::report;
use crate::{ReportRecord, Result, Store};

/// Which alerts to list; `None` means no filter on that field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Received by the server at or after this time (its clock, ms since the epoch).
    pub since_ms: Option<i64>,
    /// An agent id, or a hostname (every agent enrolled under that name matches).
    pub host: Option<String>,
}

/// Rows read from the database per round trip while the caller's predicate drops some.
const PAGE: i64 = 500;

/// The newest possible position: every real row sorts before it.
const START: (i64, &str) = (i64::MAX, "");

impl Store {
    /// The newest `limit` alerts matching `filter` for which `keep` says yes, newest first (by
    /// the server's receive time, then id). `keep` sees every row the SQL filter lets through,
    /// so a predicate that rejects most rows makes this read more of the table; retention bounds
    /// how much there is.
    pub async fn alerts(
        &self,
        filter: &AlertFilter,
        limit: usize,
        mut keep: impl FnMut(&ReportRecord) -> bool,
    ) -> Result<Vec<ReportRecord>> {
        let mut out = Vec::new();
        let since = filter.since_ms.unwrap_or(i64::MIN);
        let (mut before_at, mut before_id) = (START.0, START.1.to_owned());
        let mut first = true;
        while out.len() < limit {
            // Keyset paging: stable while uploads land at the top, and each page is an index
            // range scan on (kind, received_at) or (agent_id, received_at).
            let page = self
                .alert_page(filter, since, first, before_at, &before_id)
                .await?;
            first = false;
            let Some(last) = page.last() else {
                break;
            };
            (before_at, before_id) = (last.received_at, last.id.clone());
            let full = page.len() as i64 == PAGE;
            for record in page {
                if out.len() < limit && keep(&record) {
                    out.push(record);
                }
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// One page of alerts older than (`before_at`, `before_id`), or the newest when `first`.
    async fn alert_page(
        &self,
        filter: &AlertFilter,
        since: i64,
        first: bool,
        before_at: i64,
        before_id: &str,
    ) -> Result<Vec<ReportRecord>> {
        // Constant statements (no SQL built from input): one per combination of filters.
        // `$4 IS NULL`-style optional filters are avoided: PostgreSQL cannot type an untyped
        // NULL parameter through the `Any` driver.
        let rows = match (&filter.host, first) {
            (None, true) => {
                sqlx::query(
                    "SELECT id, agent_id, kind, at, received_at, body FROM reports \
                     WHERE kind = 'alert' AND received_at >= $1 \
                     ORDER BY received_at DESC, id DESC LIMIT $2",
                )
                .bind(since)
                .bind(PAGE)
                .fetch_all(self.reader())
                .await?
            }
            (None, false) => {
                sqlx::query(
                    "SELECT id, agent_id, kind, at, received_at, body FROM reports \
                     WHERE kind = 'alert' AND received_at >= $1 \
                     AND (received_at < $2 OR (received_at = $2 AND id < $3)) \
                     ORDER BY received_at DESC, id DESC LIMIT $4",
                )
                .bind(since)
                .bind(before_at)
                .bind(before_id)
                .bind(PAGE)
                .fetch_all(self.reader())
                .await?
            }
            (Some(host), true) => {
                sqlx::query(
                    "SELECT id, agent_id, kind, at, received_at, body FROM reports \
                     WHERE kind = 'alert' AND received_at >= $1 \
                     AND (agent_id = $2 OR agent_id IN (SELECT id FROM agents WHERE hostname = $2)) \
                     ORDER BY received_at DESC, id DESC LIMIT $3",
                )
                .bind(since)
                .bind(host)
                .bind(PAGE)
                .fetch_all(self.reader())
                .await?
            }
            (Some(host), false) => {
                sqlx::query(
                    "SELECT id, agent_id, kind, at, received_at, body FROM reports \
                     WHERE kind = 'alert' AND received_at >= $1 \
                     AND (agent_id = $2 OR agent_id IN (SELECT id FROM agents WHERE hostname = $2)) \
                     AND (received_at < $3 OR (received_at = $3 AND id < $4)) \
                     ORDER BY received_at DESC, id DESC LIMIT $5",
                )
                .bind(since)
                .bind(host)
                .bind(before_at)
                .bind(before_id)
                .bind(PAGE)
                .fetch_all(self.reader())
                .await?
            }
        };
        rows.iter().map(report).collect()
    }

    /// Deletes `alert` reports the server received before `before_ms`, then the oldest beyond
    /// the newest `keep_max`; returns how many went. Other kinds are never touched.
    pub async fn prune_alerts(&self, before_ms: i64, keep_max: i64) -> Result<u64> {
        let aged = sqlx::query("DELETE FROM reports WHERE kind = 'alert' AND received_at < $1")
            .bind(before_ms)
            .execute(self.pool())
            .await?
            .rows_affected();
        // Counting is an index scan; finding the cut sorts every alert, so it runs only when
        // there is something past the cap (the task runs every minute).
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM reports WHERE kind = 'alert'")
            .fetch_one(self.pool())
            .await?;
        if count <= keep_max.max(0) {
            return Ok(aged);
        }
        // The newest alert past the cap: it and everything older go.
        let cut: Option<(i64, String)> = sqlx::query_as(
            "SELECT received_at, id FROM reports WHERE kind = 'alert' \
             ORDER BY received_at DESC, id DESC LIMIT 1 OFFSET $1",
        )
        .bind(keep_max.max(0))
        .fetch_optional(self.pool())
        .await?;
        let Some((cut_at, cut_id)) = cut else {
            return Ok(aged);
        };
        let capped = sqlx::query(
            "DELETE FROM reports WHERE kind = 'alert' \
             AND (received_at < $1 OR (received_at = $1 AND id <= $2))",
        )
        .bind(cut_at)
        .bind(cut_id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(aged + capped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::now_ms;

    fn report(id: &str, agent: &str, kind: &str, rule: &str) -> ReportRecord {
        ReportRecord {
            id: id.into(),
            agent_id: agent.into(),
            kind: kind.into(),
            at: 0,
            received_at: 0,
            body: serde_json::json!({"unmapped": {"ringfence": {"rule_id": rule}}}),
        }
    }

    /// Stores `reports` one by one, each with its own (later) receive time.
    async fn store_apart(store: &Store, reports: Vec<ReportRecord>) {
        for r in reports {
            store.insert_reports(&[r]).await.expect("insert");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    fn ids(records: &[ReportRecord]) -> Vec<&str> {
        records.iter().map(|r| r.id.as_str()).collect()
    }

    fn rule(record: &ReportRecord) -> &str {
        record.body["unmapped"]["ringfence"]["rule_id"]
            .as_str()
            .unwrap_or("")
    }

    #[tokio::test]
    async fn alerts_are_listed_newest_first_by_host_time_and_predicate() {
        for (backend, store, _dir) in crate::testing::stores().await {
            store
                .insert_agent("agent-b", "hash-b", "web-2", &[])
                .await
                .expect("agent");
            store_apart(
                &store,
                vec![
                    report("a:1", "agent-a", "alert", "ssh"),
                    report("b:1", "agent-b", "alert", "curl"),
                    report("a:2", "agent-a", "failure", "ssh"),
                ],
            )
            .await;
            let middle = now_ms();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            store_apart(
                &store,
                vec![
                    report("a:3", "agent-a", "alert", "curl"),
                    report("b:2", "agent-b", "alert", "ssh"),
                ],
            )
            .await;

            let all = store
                .alerts(&AlertFilter::default(), 100, |_| true)
                .await
                .expect("all");
            assert_eq!(ids(&all), ["b:2", "a:3", "b:1", "a:1"], "{backend}");
            let two = store
                .alerts(&AlertFilter::default(), 2, |_| true)
                .await
                .expect("two");
            assert_eq!(ids(&two), ["b:2", "a:3"], "{backend}");
            let recent = AlertFilter {
                since_ms: Some(middle),
                ..AlertFilter::default()
            };
            let found = store.alerts(&recent, 100, |_| true).await.expect("since");
            assert_eq!(ids(&found), ["b:2", "a:3"], "{backend}");
            // By agent id, and by the hostname it enrolled under.
            for host in ["agent-b", "web-2"] {
                let filter = AlertFilter {
                    host: Some(host.into()),
                    ..AlertFilter::default()
                };
                let found = store.alerts(&filter, 100, |_| true).await.expect("host");
                assert_eq!(ids(&found), ["b:2", "b:1"], "{backend} {host}");
            }
            let nobody = AlertFilter {
                host: Some("web-9".into()),
                ..AlertFilter::default()
            };
            assert!(
                store
                    .alerts(&nobody, 100, |_| true)
                    .await
                    .expect("none")
                    .is_empty(),
                "{backend}"
            );
            let ssh = store
                .alerts(&AlertFilter::default(), 100, |r| rule(r) == "ssh")
                .await
                .expect("rule");
            assert_eq!(ids(&ssh), ["b:2", "a:1"], "{backend}");
        }
    }

    #[tokio::test]
    async fn a_predicate_that_rejects_most_rows_pages_through_all_of_them() {
        for (backend, store, _dir) in crate::testing::stores().await {
            // More than two pages, all with one receive time: the id breaks the tie.
            let batch: Vec<ReportRecord> = (0..(PAGE as usize * 2 + 7))
                .map(|n| report(&format!("a:{n:05}"), "a", "alert", "noise"))
                .chain([report("a:zz-rare", "a", "alert", "rare")])
                .collect();
            store.insert_reports(&batch).await.expect("insert");
            let rare = store
                .alerts(&AlertFilter::default(), 10, |r| rule(r) == "rare")
                .await
                .expect("rare");
            assert_eq!(ids(&rare), ["a:zz-rare"], "{backend}");
            let all = store
                .alerts(&AlertFilter::default(), 10_000, |_| true)
                .await
                .expect("all");
            assert_eq!(all.len(), batch.len(), "{backend}: no row twice, none lost");
            assert_eq!(all.last().map(|r| r.id.as_str()), Some("a:00000"));
        }
    }

    #[tokio::test]
    async fn retention_deletes_old_and_excess_alerts_and_nothing_else() {
        for (backend, store, _dir) in crate::testing::stores().await {
            store_apart(
                &store,
                vec![
                    report("a:1", "a", "alert", "r"),
                    report("a:2", "a", "failure", "r"),
                    report("a:3", "a", "crash", "r"),
                    report("a:4", "a", "alert", "r"),
                ],
            )
            .await;
            let cut = now_ms();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            store_apart(
                &store,
                (5..9)
                    .map(|n| report(&format!("a:{n}"), "a", "alert", "r"))
                    .collect(),
            )
            .await;
            assert_eq!(
                store.prune_alerts(cut, 1_000).await.expect("age"),
                2,
                "{backend}"
            );
            assert_eq!(
                store.prune_alerts(cut, 1_000).await.expect("again"),
                0,
                "{backend}"
            );
            assert_eq!(store.prune_alerts(0, 2).await.expect("cap"), 2, "{backend}");
            let left = store
                .alerts(&AlertFilter::default(), 100, |_| true)
                .await
                .expect("left");
            assert_eq!(ids(&left), ["a:8", "a:7"], "{backend}");
            assert_eq!(store.prune_alerts(0, 0).await.expect("all"), 2, "{backend}");
            for kind in ["failure", "crash"] {
                assert_eq!(
                    store.reports_since(kind, 0).await.expect(kind).len(),
                    1,
                    "{backend}: {kind} reports are kept"
                );
            }
        }
    }
}
