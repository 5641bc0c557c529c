//! The alert outbox: alerts an agent uploaded wait here until every configured sink (Kafka,
//! syslog) has them. An upload is acknowledged only after its alerts are committed here, in the
//! same transaction as the reports, so a server that dies after the acknowledgement still sends
//! them.
//!
//! Each sink reads the outbox in `seq` order behind its own cursor (`sink_cursors.delivered`),
//! and moves the cursor only after the sink took a batch: delivery is at least once, and a resent
//! alert carries the same event id (`report_id`) so consumers can drop the copy. Rows every sink
//! has passed are pruned.
//!
//! Order: a reader must never see `seq` 11 committed while 10 is still to come, or its cursor
//! would skip 10 for good. SQLite has one writer, so commit order is `seq` order; on PostgreSQL
//! every transaction that adds to the outbox first takes one advisory lock, which makes it so
//! across replicas too.
//!
//! The outbox is bounded ([`OutboxPolicy::max_rows`]): when it is full the oldest alerts are
//! dropped, counted per sink that had not sent them (`dropped`), and the caller is told how many
//! so it can raise an alert about it. Dropping the oldest keeps the agents' uploads flowing and
//! their spools from overflowing instead, where the loss would be counted but not forwarded.

use crate::{Backend, Result, Store, now_ms};
use sqlx::Row;

/// How big the outbox may grow before the oldest alerts are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxPolicy {
    /// The most alerts waiting at once, measured as the span of their sequence numbers (exact on
    /// SQLite; on PostgreSQL a rolled-back insert leaves a gap, which only makes it drop early).
    pub max_rows: i64,
}

/// One alert waiting for a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// The outbox's order: a sink sends in this order, so each host's alerts stay in order.
    pub seq: i64,
    /// The event id: the report's id, scoped by the agent. Stable across resends.
    pub report_id: String,
    pub agent_id: String,
    /// The server's clock when the upload was stored.
    pub received_at: i64,
    pub body: serde_json::Value,
}

/// What one upload did to the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredReports {
    /// Reports not seen before.
    pub new: usize,
    /// Of those, alerts added to the outbox.
    pub queued: usize,
    /// Alerts dropped from a full outbox to make room, summed over the sinks that had not sent
    /// them.
    pub dropped: u64,
}

/// A sink's progress, for `/metrics`, the API and the dashboard.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SinkState {
    pub sink: String,
    /// The last outbox `seq` it took.
    pub delivered: i64,
    pub sent: i64,
    pub dropped: i64,
    pub failures: i64,
    pub last_error: Option<String>,
    pub last_sent_at: Option<i64>,
    /// Alerts waiting for it.
    pub depth: i64,
    /// How long the oldest alert waiting for it has waited (ms); 0 when none waits.
    pub lag_ms: i64,
}

/// One PostgreSQL advisory lock key for every outbox writer (see the module comment).
const OUTBOX_LOCK: i64 = 0x7269_6e67_0b0c;

/// Rows per multi-row INSERT. An upload is stored in a few statements rather than three per
/// report (a 200-alert upload was 600 round trips through the one SQLite writer); 500 rows of
/// six values stay far below both databases' limits on bound parameters (32,766 and 65,535).
const INSERT_ROWS: usize = 500;

/// `($1, $2, …), ($7, …)`: `rows` tuples of `columns` numbered placeholders.
fn placeholders(rows: usize, columns: usize) -> String {
    let tuples: Vec<String> = (0..rows)
        .map(|row| {
            let numbers: Vec<String> = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
                .collect();
            format!("({})", numbers.join(", "))
        })
        .collect();
    tuples.join(", ")
}

impl Store {
    /// Stores reports not seen before (as [`Store::insert_reports`]) and, when `outbox` is
    /// given, adds the new alerts among them to the outbox in the same transaction.
    pub async fn insert_reports_queued(
        &self,
        reports: &[crate::ReportRecord],
        outbox: Option<OutboxPolicy>,
    ) -> Result<StoredReports> {
        // A report listed twice in one upload is stored (and queued) once, as its first copy.
        let mut listed = std::collections::HashSet::with_capacity(reports.len());
        let unique: Vec<(&crate::ReportRecord, String)> = reports
            .iter()
            .filter(|report| listed.insert(report.id.as_str()))
            .map(|report| (report, report.body.to_string()))
            .collect();
        let mut tx = self.pool().begin().await?;
        if outbox.is_some() && self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(OUTBOX_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let received = now_ms();
        let mut new = std::collections::HashSet::with_capacity(unique.len());
        for chunk in unique.chunks(INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO reports (id, agent_id, kind, at, received_at, body) VALUES {} \
                 ON CONFLICT (id) DO NOTHING RETURNING id",
                placeholders(chunk.len(), 6)
            );
            // Only placeholders are spliced in; every value is bound.
            let mut insert = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
            for (report, body) in chunk {
                insert = insert
                    .bind(&report.id)
                    .bind(&report.agent_id)
                    .bind(&report.kind)
                    .bind(report.at)
                    .bind(received)
                    .bind(body);
            }
            new.extend(insert.fetch_all(&mut *tx).await?);
        }
        let mut stored = StoredReports {
            new: new.len(),
            ..StoredReports::default()
        };
        if let Some(policy) = outbox {
            // In upload order: a multi-row insert numbers its rows in the order given, so one
            // host's alerts keep their order in the outbox.
            let alerts: Vec<&(&crate::ReportRecord, String)> = unique
                .iter()
                .filter(|(report, _)| report.kind == "alert" && new.contains(&report.id))
                .collect();
            for chunk in alerts.chunks(INSERT_ROWS) {
                let sql = format!(
                    "INSERT INTO outbox (report_id, agent_id, received_at, body) VALUES {}",
                    placeholders(chunk.len(), 4)
                );
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (report, body) in chunk {
                    insert = insert
                        .bind(&report.id)
                        .bind(&report.agent_id)
                        .bind(received)
                        .bind(body);
                }
                insert.execute(&mut *tx).await?;
            }
            stored.queued = alerts.len();
            if stored.queued > 0 {
                stored.dropped = drop_overflow(&mut tx, policy).await?;
            }
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// Makes sure every sink in `names` has a cursor. A new sink starts at the beginning of
    /// what the outbox still holds.
    pub async fn register_sinks(&self, names: &[String]) -> Result<()> {
        for name in names {
            let inserted = sqlx::query(
                "INSERT INTO sink_cursors (sink, delivered, sent, dropped, failures) \
                 VALUES ($1, 0, 0, 0, 0)",
            )
            .bind(name)
            .execute(self.pool())
            .await;
            match inserted {
                Ok(_) => {}
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The next `limit` alerts `sink` has not taken yet, in order. A read: on SQLite it never
    /// queues behind uploads for the one writer connection.
    pub async fn outbox_batch(&self, sink: &str, limit: i64) -> Result<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "SELECT seq, report_id, agent_id, received_at, body FROM outbox \
             WHERE seq > (SELECT delivered FROM sink_cursors WHERE sink = $1) \
             ORDER BY seq LIMIT $2",
        )
        .bind(sink)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(outbox_item).collect()
    }

    /// The next `limit` alerts after `seq`, in order: for a sender that knows how far it has
    /// sent before its cursor says so. A read, like [`Store::outbox_batch`].
    pub async fn outbox_after(&self, seq: i64, limit: i64) -> Result<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "SELECT seq, report_id, agent_id, received_at, body FROM outbox \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(outbox_item).collect()
    }

    /// Records that `sink` took everything up to `seq` (`count` alerts). A cursor never moves
    /// back: a replica whose lease lapsed mid-batch may report late, after another resent it.
    pub async fn sink_delivered(&self, sink: &str, seq: i64, count: i64) -> Result<()> {
        sqlx::query(
            "UPDATE sink_cursors SET delivered = $1, sent = sent + $2, last_sent_at = $3, \
             last_error = NULL WHERE sink = $4 AND delivered < $1",
        )
        .bind(seq)
        .bind(count)
        .bind(now_ms())
        .bind(sink)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a failed attempt to send to `sink`; the alerts stay where they are.
    pub async fn sink_failed(&self, sink: &str, error: &str) -> Result<()> {
        let error: String = error.chars().take(500).collect();
        sqlx::query(
            "UPDATE sink_cursors SET failures = failures + 1, last_error = $1 WHERE sink = $2",
        )
        .bind(error)
        .bind(sink)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every sink's progress, by name.
    pub async fn sink_states(&self) -> Result<Vec<SinkState>> {
        let now = now_ms();
        let rows = sqlx::query(
            "SELECT sink, delivered, sent, dropped, failures, last_error, last_sent_at, \
             (SELECT COUNT(*) FROM outbox WHERE seq > sink_cursors.delivered) AS depth, \
             (SELECT MIN(received_at) FROM outbox WHERE seq > sink_cursors.delivered) AS oldest \
             FROM sink_cursors ORDER BY sink",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                let oldest: Option<i64> = row.try_get("oldest")?;
                Ok(SinkState {
                    sink: row.try_get("sink")?,
                    delivered: row.try_get("delivered")?,
                    sent: row.try_get("sent")?,
                    dropped: row.try_get("dropped")?,
                    failures: row.try_get("failures")?,
                    last_error: row.try_get("last_error")?,
                    last_sent_at: row.try_get("last_sent_at")?,
                    depth: row.try_get("depth")?,
                    lag_ms: oldest.map_or(0, |at| (now - at).max(0)),
                })
            })
            .collect()
    }

    /// Deletes the alerts every sink in `sinks` has taken; returns how many. Cursors of sinks
    /// no longer configured do not hold the outbox back.
    pub async fn prune_outbox(&self, sinks: &[String]) -> Result<u64> {
        let mut floor: Option<i64> = None;
        for sink in sinks {
            let row: Option<(i64,)> =
                sqlx::query_as("SELECT delivered FROM sink_cursors WHERE sink = $1")
                    .bind(sink)
                    .fetch_optional(self.pool())
                    .await?;
            let delivered = row.map_or(0, |(d,)| d);
            floor = Some(floor.map_or(delivered, |f| f.min(delivered)));
        }
        let Some(floor) = floor else {
            return Ok(0);
        };
        let done = sqlx::query("DELETE FROM outbox WHERE seq <= $1")
            .bind(floor)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

fn outbox_item(row: &sqlx::any::AnyRow) -> Result<OutboxItem> {
    let body: String = row.try_get("body")?;
    Ok(OutboxItem {
        seq: row.try_get("seq")?,
        report_id: row.try_get("report_id")?,
        agent_id: row.try_get("agent_id")?,
        received_at: row.try_get("received_at")?,
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    })
}

/// Drops the oldest alerts past `policy.max_rows`, moving every cursor past them and counting
/// what each sink lost; returns the sum.
async fn drop_overflow(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    policy: OutboxPolicy,
) -> Result<u64> {
    let (first, last): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM outbox")
            .fetch_one(&mut **tx)
            .await?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(0);
    };
    let span = last - first + 1;
    if span <= policy.max_rows.max(1) {
        return Ok(0);
    }
    let cut = last - policy.max_rows.max(1);
    let lost: Option<i64> = sqlx::query_scalar(
        // SUM of BIGINT is NUMERIC on PostgreSQL, which the `Any` driver cannot read.
        "SELECT CAST(SUM((SELECT COUNT(*) FROM outbox \
         WHERE seq > sink_cursors.delivered AND seq <= $1)) AS BIGINT) FROM sink_cursors",
    )
    .bind(cut)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE sink_cursors SET dropped = dropped + \
         (SELECT COUNT(*) FROM outbox WHERE seq > sink_cursors.delivered AND seq <= $1), \
         delivered = $1 WHERE delivered < $1",
    )
    .bind(cut)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM outbox WHERE seq <= $1")
        .bind(cut)
        .execute(&mut **tx)
        .await?;
    Ok(u64::try_from(lost.unwrap_or(0)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReportRecord;

    fn alert(agent: &str, n: usize) -> ReportRecord {
        ReportRecord {
            id: format!("{agent}:{n}"),
            agent_id: agent.into(),
            kind: "alert".into(),
            at: 0,
            received_at: 0,
            body: serde_json::json!({"n": n}),
        }
    }

    #[tokio::test]
    async fn each_sink_reads_new_alerts_once_in_order_and_retries_keep_their_place() {
        for (backend, store, _dir) in crate::testing::stores().await {
            let sinks = vec!["kafka".to_owned(), "syslog".to_owned()];
            store.register_sinks(&sinks).await.expect("register");
            let policy = Some(OutboxPolicy { max_rows: 1_000 });
            let mut batch: Vec<ReportRecord> = (0..5).map(|n| alert("a", n)).collect();
            // Not an alert: stored for the gates, never forwarded.
            batch.push(ReportRecord {
                kind: "failure".into(),
                ..alert("a", 99)
            });
            let stored = store
                .insert_reports_queued(&batch, policy)
                .await
                .expect("insert");
            assert_eq!((stored.new, stored.queued), (6, 5), "{backend}");
            // A retried upload queues nothing again.
            let again = store
                .insert_reports_queued(&batch, policy)
                .await
                .expect("retry");
            assert_eq!(again, StoredReports::default(), "{backend}");

            let first = store.outbox_batch("kafka", 3).await.expect("batch");
            let ids: Vec<&str> = first.iter().map(|i| i.report_id.as_str()).collect();
            assert_eq!(ids, ["a:0", "a:1", "a:2"], "{backend}");
            // A failed send leaves the cursor: the same alerts come again, same ids.
            store
                .sink_failed("kafka", "broker away")
                .await
                .expect("fail");
            assert_eq!(
                store.outbox_batch("kafka", 3).await.expect("again"),
                first,
                "{backend}"
            );
            let last = first.last().expect("some").seq;
            store.sink_delivered("kafka", last, 3).await.expect("ok");
            // A late report from a replica whose lease lapsed never moves a cursor back.
            store
                .sink_delivered("kafka", first[0].seq, 1)
                .await
                .expect("late");
            let rest = store.outbox_batch("kafka", 10).await.expect("rest");
            let ids: Vec<&str> = rest.iter().map(|i| i.report_id.as_str()).collect();
            assert_eq!(ids, ["a:3", "a:4"], "{backend}");
            // A sender ahead of its cursor reads on from where it sent.
            assert_eq!(
                store.outbox_after(last, 10).await.expect("after"),
                rest,
                "{backend}"
            );

            // Syslog has taken nothing, so nothing is pruned yet.
            assert_eq!(store.prune_outbox(&sinks).await.expect("prune"), 0);
            let states = store.sink_states().await.expect("states");
            assert_eq!(states[0].sink, "kafka");
            assert_eq!((states[0].depth, states[0].sent), (2, 3), "{backend}");
            assert_eq!(states[0].last_error, None, "{backend}");
            assert_eq!((states[1].depth, states[1].failures), (5, 0), "{backend}");
            let all = store.outbox_batch("syslog", 10).await.expect("syslog");
            store
                .sink_delivered("syslog", all.last().expect("some").seq, 5)
                .await
                .expect("ok");
            assert_eq!(store.prune_outbox(&sinks).await.expect("prune"), 3);
        }
    }

    #[test]
    fn placeholders_number_every_value_once_row_by_row() {
        assert_eq!(placeholders(1, 2), "($1, $2)");
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }

    #[tokio::test]
    async fn a_large_upload_with_repeats_is_stored_once_each_and_queued_in_order() {
        for (backend, store, _dir) in crate::testing::stores().await {
            store
                .register_sinks(&["lake".to_owned()])
                .await
                .expect("register");
            let policy = Some(OutboxPolicy { max_rows: 100_000 });
            // Already stored before this upload: not new, not queued again.
            store
                .insert_reports_queued(&[alert("a", 7)], policy)
                .await
                .expect("first");
            // More rows than one statement takes, with a report listed twice.
            let count = INSERT_ROWS * 2 + 17;
            let mut batch: Vec<ReportRecord> = (0..count).map(|n| alert("a", n)).collect();
            batch.insert(3, alert("a", 900));
            let stored = store
                .insert_reports_queued(&batch, policy)
                .await
                .expect("insert");
            assert_eq!(
                (stored.new, stored.queued),
                (count - 1, count - 1),
                "{backend}"
            );
            let queued = store.outbox_batch("lake", 10_000).await.expect("batch");
            let ids: Vec<&str> = queued.iter().map(|i| i.report_id.as_str()).collect();
            let mut want = vec!["a:7".to_owned()];
            want.extend(
                batch
                    .iter()
                    .map(|r| r.id.clone())
                    .filter(|id| id != "a:7")
                    .enumerate()
                    .filter(|(n, id)| !(id == "a:900" && *n > 3))
                    .map(|(_, id)| id),
            );
            assert_eq!(ids, want, "{backend}: upload order, each once");
            assert_eq!(queued[4].body, serde_json::json!({"n": 900}), "{backend}");
        }
    }

    #[tokio::test]
    async fn a_full_outbox_drops_the_oldest_and_counts_them_per_sink() {
        for (backend, store, _dir) in crate::testing::stores().await {
            store
                .register_sinks(&["slow".to_owned()])
                .await
                .expect("register");
            let policy = Some(OutboxPolicy { max_rows: 4 });
            let batch: Vec<ReportRecord> = (0..6).map(|n| alert("a", n)).collect();
            let stored = store
                .insert_reports_queued(&batch, policy)
                .await
                .expect("insert");
            assert_eq!((stored.queued, stored.dropped), (6, 2), "{backend}");
            let left = store.outbox_batch("slow", 10).await.expect("batch");
            let ids: Vec<&str> = left.iter().map(|i| i.report_id.as_str()).collect();
            assert_eq!(ids, ["a:2", "a:3", "a:4", "a:5"], "{backend}");
            let states = store.sink_states().await.expect("states");
            assert_eq!((states[0].dropped, states[0].depth), (2, 4), "{backend}");
            // The reports themselves are all kept for the control plane.
            assert_eq!(store.reports_since("alert", 0).await.expect("all").len(), 6);
        }
    }
}
