//! Revoked agent credentials leave every replica's credential cache within a tick.
//!
//! The replica that decommissions an agent drops it from its own cache at once
//! ([`forget_agent`]); the others learn it from the database here. Without this, an agent whose
//! cache entry says it has a certificate would be served from the cache forever (those entries
//! are never looked up again), so a decommissioned host would keep heartbeating on every replica
//! but one.

use crate::state::AppState;
use std::time::Duration;

/// How often replicas look for agents decommissioned elsewhere.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How far back each sweep looks, beyond the previous one: covers clock differences between
/// replicas (timestamps come from the writer's clock) and a sweep that failed.
const OVERLAP_MS: i64 = 60_000;

/// Drops every cached credential of `agent_id`: its next request goes to the database, which
/// no longer knows the credential.
pub fn forget_agent(state: &AppState, agent_id: &str) -> usize {
    match state.agent_ids.write() {
        Ok(mut cache) => {
            let before = cache.len();
            cache.retain(|_, known| known.id != agent_id);
            before - cache.len()
        }
        // A poisoned cache cannot be trusted at all: empty it, every agent is looked up again.
        Err(poisoned) => {
            let mut cache = poisoned.into_inner();
            let dropped = cache.len();
            cache.clear();
            dropped
        }
    }
}

/// Evicts agents decommissioned since the last sweep (with an overlap); returns how many
/// cache entries were dropped.
pub async fn sweep(state: &AppState, since_ms: i64) -> Result<usize, ringfence_store::StoreError> {
    let ids = state.store.decommissioned_since(since_ms).await?;
    Ok(ids.iter().map(|id| forget_agent(state, id)).sum())
}

/// Runs the sweep every [`SWEEP_INTERVAL`] until the task is aborted.
pub async fn run(state: AppState) {
    let mut since = ringfence_store::now_ms() - OVERLAP_MS;
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = ringfence_store::now_ms();
        match sweep(&state, since).await {
            Ok(dropped) => {
                if dropped > 0 {
                    tracing::info!(dropped, "dropped decommissioned agents' cached credentials");
                }
                since = started - OVERLAP_MS;
            }
            // Keep `since`: the next sweep covers this one's window too.
            Err(error) => tracing::warn!("revocation sweep: {error}"),
        }
    }
}
