//! Gate values over time: the controller keeps a bounded history of each rollout's gate
//! evaluations so the dashboard can draw how a figure moved against its threshold during the
//! bake. The rollout's own state holds only the latest evaluation; the history lives in the
//! store (not in one replica's memory) because every replica serves the dashboard and the
//! leader can change mid-rollout.

use crate::{Result, Store};
use sqlx::Row;

/// One gate's verdict at one controller tick.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GateSample {
    /// The server's clock when the controller evaluated the gate.
    pub at_ms: i64,
    /// The ring being baked then.
    pub ring: i64,
    pub gate: String,
    /// In the gate's own unit (bytes for RSS, µs for latency, a share for rates).
    pub value: f64,
    pub threshold: f64,
    pub passed: bool,
}

/// How many evaluations [`Store::record_gate_samples`] keeps per rollout when asked to keep
/// more than this: a ceiling on what one rollout can cost the database.
pub const MAX_KEPT_EVALUATIONS: i64 = 10_000;

impl Store {
    /// Records one evaluation (every gate at `at_ms`) of `rollout_id`, unless the newest one
    /// kept is less than `min_spacing_ms` old, then drops the evaluations beyond the newest
    /// `keep`. Returns whether it wrote. Non-finite figures are stored as 0 (a database column
    /// cannot round-trip NaN on every backend, and the gates never produce one).
    pub async fn record_gate_samples(
        &self,
        rollout_id: &str,
        samples: &[GateSample],
        min_spacing_ms: i64,
        keep: i64,
    ) -> Result<bool> {
        let Some(at_ms) = samples.iter().map(|s| s.at_ms).max() else {
            return Ok(false);
        };
        let mut tx = self.pool().begin().await?;
        let newest: Option<i64> =
            sqlx::query("SELECT MAX(at) AS at FROM gate_samples WHERE rollout_id = $1")
                .bind(rollout_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("at")?;
        if newest.is_some_and(|newest| at_ms - newest < min_spacing_ms) {
            tx.rollback().await?;
            return Ok(false);
        }
        for sample in samples {
            let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
            sqlx::query(
                "INSERT INTO gate_samples (rollout_id, at, ring, gate, value, threshold, passed) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(rollout_id)
            .bind(sample.at_ms)
            .bind(sample.ring)
            .bind(&sample.gate)
            .bind(finite(sample.value))
            .bind(finite(sample.threshold))
            .bind(i64::from(sample.passed))
            .execute(&mut *tx)
            .await?;
        }
        // The evaluation `keep` places back from the newest is the oldest one kept.
        let keep = keep.clamp(1, MAX_KEPT_EVALUATIONS);
        sqlx::query(
            "DELETE FROM gate_samples WHERE rollout_id = $1 AND at < COALESCE((\
             SELECT at FROM gate_samples WHERE rollout_id = $1 \
             GROUP BY at ORDER BY at DESC LIMIT 1 OFFSET $2), 0)",
        )
        .bind(rollout_id)
        .bind(keep - 1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every sample kept for `rollout_id`, oldest first.
    pub async fn gate_samples(&self, rollout_id: &str) -> Result<Vec<GateSample>> {
        let rows = sqlx::query(
            "SELECT at, ring, gate, value, threshold, passed FROM gate_samples \
             WHERE rollout_id = $1 ORDER BY at, gate",
        )
        .bind(rollout_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(GateSample {
                    at_ms: row.try_get("at")?,
                    ring: row.try_get("ring")?,
                    gate: row.try_get("gate")?,
                    value: row.try_get("value")?,
                    threshold: row.try_get("threshold")?,
                    passed: row.try_get::<i64, _>("passed")? != 0,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation(at_ms: i64, value: f64) -> Vec<GateSample> {
        ["crashes", "rss"]
            .into_iter()
            .map(|gate| GateSample {
                at_ms,
                ring: 0,
                gate: gate.to_owned(),
                value,
                threshold: 1.5,
                passed: value <= 1.5,
            })
            .collect()
    }

    #[tokio::test]
    async fn gate_history_is_spaced_bounded_and_kept_per_rollout() {
        for (backend, store, _dir) in crate::testing::stores().await {
            for (at, value) in [(1_000, 0.0), (1_500, 9.0), (2_000, 1.0), (3_000, 2.0)] {
                store
                    .record_gate_samples("r1", &evaluation(at, value), 1_000, 2)
                    .await
                    .expect("record");
            }
            store
                .record_gate_samples("r2", &evaluation(1_000, f64::NAN), 0, 2)
                .await
                .expect("record");
            let kept = store.gate_samples("r1").await.expect("read");
            // 1 500 came too soon after 1 000; 1 000 fell out when 3 000 came.
            let times: Vec<i64> = kept.iter().map(|s| s.at_ms).collect();
            assert_eq!(times, [2_000, 2_000, 3_000, 3_000], "{backend}");
            assert_eq!(kept[2].gate, "crashes", "{backend}");
            assert!(!kept[2].passed && kept[0].passed, "{backend}");
            assert_eq!(kept[3].value, 2.0, "{backend}");
            let other = store.gate_samples("r2").await.expect("read");
            assert_eq!(other.len(), 2, "{backend}");
            assert_eq!(other[0].value, 0.0, "NaN is stored as 0 on {backend}");
            assert!(store.gate_samples("none").await.expect("read").is_empty());
        }
    }
}
