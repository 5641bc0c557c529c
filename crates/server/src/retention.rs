//! Alert-body retention: every alert an agent uploads is kept as a report for
//! `GET /api/v1/alerts`, and a fleet raises them without end, so a periodic task deletes those
//! older than `--alert-retention` and the oldest beyond `--alert-retention-max`. The sinks are
//! where alerts are kept for long; the outbox holds its own copy until every sink has it, so
//! retention never costs a sink an alert.
//!
//! Only kind `alert` is ever deleted: failure and crash reports feed the rollout gates and the
//! crash groups. Every replica prunes; the deletes are idempotent, so two at once only repeat
//! work.

use crate::state::AppState;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How alerts are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertRetention {
    /// Alerts received longer ago than this are deleted.
    pub max_age: Duration,
    /// At most this many alerts are kept; the oldest go first.
    pub max_count: i64,
    /// How often the task looks.
    pub interval: Duration,
}

impl Default for AlertRetention {
    fn default() -> Self {
        AlertRetention {
            max_age: Duration::from_secs(7 * 86_400),
            max_count: 1_000_000,
            interval: Duration::from_secs(60),
        }
    }
}

/// One pass with the configured policy; returns how many alerts were deleted and counts them in
/// `/metrics`.
pub async fn prune(state: &AppState) -> Result<u64, ringfence_store::StoreError> {
    let policy = state.config.alert_retention;
    let age_ms = i64::try_from(policy.max_age.as_millis()).unwrap_or(i64::MAX);
    let before = ringfence_store::now_ms().saturating_sub(age_ms);
    let deleted = state.store.prune_alerts(before, policy.max_count).await?;
    state
        .metrics
        .alerts_pruned
        .fetch_add(deleted, Ordering::Relaxed);
    Ok(deleted)
}

/// Prunes every [`AlertRetention::interval`] until the task is aborted; the first pass runs at
/// start, so a server that was down for a week catches up at once.
pub async fn run(state: AppState) {
    let mut ticker = tokio::time::interval(state.config.alert_retention.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match prune(&state).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "alert retention deleted old alerts"),
            Err(error) => tracing::warn!("alert retention: {error}"),
        }
    }
}
