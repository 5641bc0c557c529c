//! The rollout controller loop. Every replica runs it; only the replica holding the
//! `controller` lease acts. Transitions are written with optimistic concurrency, so even two
//! replicas that both believe they lead cannot apply the same transition twice.

use crate::fleet::ActiveRollout;
use crate::state::AppState;
use ringfence_rollout::{AgentHealth, step};
use ringfence_store::{AgentRecord, StoreError};
use std::collections::HashMap;

/// How long a leader's lease lasts without renewal.
const LEASE_MS: i64 = 3_000;

pub async fn run(state: AppState) {
    let mut ticker = tokio::time::interval(state.config.controller_tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match state
            .store
            .acquire_lease("controller", &state.replica, LEASE_MS)
            .await
        {
            Ok(true) => {
                state.metrics.set_leader(true);
                if let Err(error) = tick(&state).await {
                    tracing::warn!("rollout controller tick failed: {error}");
                }
            }
            Ok(false) => state.metrics.set_leader(false),
            Err(error) => {
                state.metrics.set_leader(false);
                tracing::warn!("cannot reach the database for the controller lease: {error}");
            }
        }
        if let Err(error) = state.fleet.refresh(&state.store).await {
            tracing::warn!("cannot refresh the fleet view: {error}");
        }
    }
}

/// The version of `channel` an agent reports running.
fn running_version(agent: &AgentRecord, channel: &str) -> Option<String> {
    let releases = agent.status.as_ref()?.get("releases")?.as_array()?;
    let release = releases
        .iter()
        .find(|r| r.get("channel").and_then(|c| c.as_str()) == Some(channel))?;
    let slot = release
        .get("running")
        .and_then(|s| s.as_str())
        .unwrap_or("current");
    let key = if slot == "lkg" { "lkg" } else { "current" };
    release.get(key)?.as_str().map(str::to_owned)
}

fn figure(agent: &AgentRecord, name: &str) -> f64 {
    agent
        .status
        .as_ref()
        .and_then(|s| s.get("health"))
        .and_then(|h| h.get(name))
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0)
}

/// The controller's view of every agent for one rollout.
pub async fn fleet_health(
    state: &AppState,
    rollout: &ActiveRollout,
    agents: &[AgentRecord],
) -> Result<Vec<AgentHealth>, StoreError> {
    let since = rollout.state.started_ms;
    let mut crashes: HashMap<String, Vec<i64>> = HashMap::new();
    for kind in ["failure", "crash"] {
        for report in state.store.reports_since(kind, since).await? {
            // A missed deadline on a busy host is latency, not a crash; traps, memory
            // exhaustion and native crashes are what the crash gate counts.
            let failure_kind = report.body.get("kind").and_then(|k| k.as_str());
            if kind == "failure" && !matches!(failure_kind, Some("trap" | "memory")) {
                continue;
            }
            crashes.entry(report.agent_id).or_default().push(report.at);
        }
    }
    Ok(agents
        .iter()
        .map(|agent| AgentHealth {
            agent_id: agent.id.clone(),
            tags: agent.tags.clone(),
            version: running_version(agent, &rollout.channel),
            last_heartbeat_ms: agent.last_seen_at.unwrap_or(agent.enrolled_at),
            crashes_ms: crashes.remove(&agent.id).unwrap_or_default(),
            p99_us: figure(agent, "p99_us"),
            deny_rate: figure(agent, "deny_rate"),
            cpu_pct: figure(agent, "cpu_pct"),
            rss_bytes: figure(agent, "rss_bytes"),
        })
        .collect())
}

/// One pass over every unfinished rollout; returns how many transitions were applied.
pub async fn tick(state: &AppState) -> Result<usize, StoreError> {
    // Heartbeats buffered on this replica are part of the picture.
    state.heartbeats.flush(&state.store).await?;
    let records = state.store.rollouts().await?;
    let mut agents = None;
    let mut applied = 0;
    for record in records {
        let mut rollout = ActiveRollout::from_record(&record)?;
        if rollout.state.phase.is_final() {
            continue;
        }
        if agents.is_none() {
            agents = Some(state.store.agents().await?);
        }
        let agents = agents.as_deref().unwrap_or_default();
        let fleet = fleet_health(state, &rollout, agents).await?;
        let now = ringfence_store::now_ms();
        let transition = step(
            &rollout.doc.spec,
            &mut rollout.state,
            &rollout.id,
            &rollout.version,
            now,
            &fleet,
        );
        let audit = transition
            .as_ref()
            .map(|t| (t.action(), t.reason(&rollout.doc.spec)));
        if let Some(transition) = transition {
            rollout.state.apply(transition, &rollout.doc.spec);
        }
        let state_json = serde_json::to_value(&rollout.state).map_err(|e| StoreError::Corrupt {
            what: "rollout state",
            reason: e.to_string(),
        })?;
        match state
            .store
            .update_rollout_state(&rollout.id, record.revision, &state_json)
            .await
        {
            Ok(_) => {
                if let Some((action, reason)) = audit {
                    applied += 1;
                    state.metrics.count_transition(action);
                    tracing::info!(rollout = %rollout.id, action, "{reason}");
                    state
                        .store
                        .audit("controller", action, &rollout.id, &reason)
                        .await?;
                    if rollout.state.phase == ringfence_rollout::Phase::RolledBack
                        && rollout.doc.previous_version.is_none()
                    {
                        // Nothing to roll back to: the channel's first release failed. Hosts
                        // that got it must stop running it; a plan disables the engine there.
                        remediate_first_release(state, &rollout, &reason).await?;
                    }
                }
            }
            // An operator or another replica changed it first; look again next tick.
            Err(StoreError::Conflict(_)) => continue,
            Err(error) => return Err(error),
        }
    }
    if applied > 0 {
        state.fleet.refresh(&state.store).await?;
    }
    Ok(applied)
}

/// Writes the plan that disables a channel whose first release failed its gates.
async fn remediate_first_release(
    state: &AppState,
    rollout: &ActiveRollout,
    reason: &str,
) -> Result<(), StoreError> {
    let plan = ringfence_store::RemediationRecord {
        id: format!("rm-{}", &crate::auth::new_token("")[..12]),
        scope: "fleet".to_owned(),
        channel: rollout.channel.clone(),
        action: "disable".to_owned(),
        version: None,
        reason: format!(
            "{}@{} has no earlier release to go back to: {reason}",
            rollout.channel, rollout.version
        ),
        created_by: "controller".to_owned(),
        created_at: 0,
        active: true,
    };
    state.store.insert_remediation(&plan).await?;
    state
        .store
        .audit("controller", "remediation", &plan.id, &plan.reason)
        .await
}
