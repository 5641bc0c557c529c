//! The rollout controller loop. Every replica runs it; only the replica holding the
//! `controller` lease acts. Transitions are written with optimistic concurrency, so even two
//! replicas that both believe they lead cannot apply the same transition twice.

use crate::fleet::ActiveRollout;
use crate::state::AppState;
use ringfence_protocol::FailureRecord;
use ringfence_protocol::api::Heartbeat;
use ringfence_protocol::guard_link::Slot;
use ringfence_protocol::report::{InstallOutcome, InstallReport, ReportBody, ReportKind};
use ringfence_rollout::{AgentHealth, Phase, step};
use ringfence_store::{AgentRecord, StoreError};
use serde::Deserialize;
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

/// The agent's last heartbeat, typed. A status that does not parse (written by an older
/// agent, or damaged) reads as an empty heartbeat rather than failing the tick; figures are
/// clamped again here because the gates must never see a non-finite or absurd claim, whoever
/// stored it.
pub(crate) fn heartbeat_of(agent: &AgentRecord) -> Heartbeat {
    let mut heartbeat = agent
        .status
        .as_ref()
        .and_then(|status| Heartbeat::deserialize(status).ok())
        .unwrap_or_default();
    heartbeat.health = heartbeat.health.clamped();
    heartbeat
}

/// The version of `channel` an agent reports running.
pub(crate) fn running_version(heartbeat: &Heartbeat, channel: &str) -> Option<String> {
    let release = heartbeat.releases.iter().find(|r| r.channel == channel)?;
    if release.running == Slot::Lkg {
        release.lkg.clone()
    } else {
        release.current.clone()
    }
}

/// Whether an operator took the agent out of the fleet (`ringfence agent decommission`): no
/// gate counts it, so a stopped, decommissioned host never blocks a rollout.
fn decommissioned(agent: &AgentRecord) -> bool {
    agent.decommissioned_at.is_some()
}

/// Events answered by policy because of the engine, not the host. The responder answers at the
/// deadline by the wall clock, so a host starved of CPU gets deadline answers from a healthy
/// engine; only deadline failures the engine's own CPU time caused (`failures.deadline`) are
/// held against the release. Quarantine, failure and queue-full answers all count.
fn caused_policy_answers(
    answers: &ringfence_protocol::api::PolicyAnswers,
    failures: &ringfence_protocol::api::FailureCounts,
) -> u64 {
    answers
        .deadline
        .min(failures.deadline)
        .saturating_add(answers.quarantine)
        .saturating_add(answers.failure)
        .saturating_add(answers.queue_full)
}

/// What the gates know of one agent for a rollout of `channel` whose engine is `engine`.
fn agent_health(
    agent: &AgentRecord,
    channel: &str,
    engine: Option<&str>,
    reports_received_ms: Vec<i64>,
) -> AgentHealth {
    let heartbeat = heartbeat_of(agent);
    let health = &heartbeat.health;
    // Older agents fill only the top-level p99; newer ones the latency block.
    let p99_us = if health.latency.p99_us > 0.0 {
        health.latency.p99_us
    } else {
        health.p99_us
    };
    let engine_quarantined = health
        .quarantined
        .iter()
        .any(|name| name == channel || Some(name.as_str()) == engine);
    AgentHealth {
        agent_id: agent.id.clone(),
        tags: agent.tags.clone(),
        version: running_version(&heartbeat, channel),
        last_heartbeat_ms: agent.last_seen_at.unwrap_or(agent.enrolled_at),
        crashes_ms: reports_received_ms,
        p99_us,
        deny_rate: health.deny_rate,
        cpu_pct: health.cpu_pct,
        cpu_pressure_pct: health.cpu_pressure_pct,
        rss_bytes: health.rss_bytes as f64,
        permission_events: health.permission_events,
        failures: health.failures.total().max(health.engine_failures),
        policy_answers: caused_policy_answers(&health.policy_answers, &health.failures),
        // Would-denies are answers, so never more of them than answers: a bigger claim is
        // not a measurement.
        would_deny: health.would_deny.min(health.permission_events),
        quarantined: engine_quarantined,
        installing: health.installing.is_some(),
        decommissioned: decommissioned(agent),
    }
}

/// Whether a failure is about this rollout's engine. Every failure counts when the release's
/// manifest names no engine (nothing to tell them apart by).
fn about(failure: &FailureRecord, channel: &str, engine: Option<&str>) -> bool {
    engine.is_none_or(|engine| failure.engine == channel || failure.engine == engine)
}

/// Whether an install report says a host refused this rollout's release.
fn refused_this_release(install: &InstallReport, rollout: &ActiveRollout) -> bool {
    install.outcome == InstallOutcome::Refused
        && install.channel == rollout.channel
        && install.version == rollout.version
}

/// The engine a release runs, from its signed manifest.
async fn engine_of(
    state: &AppState,
    channel: &str,
    version: &str,
) -> Result<Option<String>, StoreError> {
    Ok(state.store.release(channel, version).await?.and_then(|r| {
        r.manifest
            .get("engine_name")
            .and_then(|e| e.as_str())
            .map(str::to_owned)
    }))
}

/// The controller's view of every agent for one rollout. Crash reports and engine failure
/// reports of every class count, from the rollout's start by the server's receive time: an
/// agent's own `at_ms` is a claim (one dated 2100 would count against every later rollout).
/// Heartbeat figures are the agents' last interval (rates); the reports are what accumulates
/// over the bake.
pub async fn fleet_health(
    state: &AppState,
    rollout: &ActiveRollout,
    agents: &[AgentRecord],
) -> Result<Vec<AgentHealth>, StoreError> {
    let since = rollout.state.started_ms;
    let engine = engine_of(state, &rollout.channel, &rollout.version).await?;
    let mut reports: HashMap<String, Vec<i64>> = HashMap::new();
    for kind in [ReportKind::Failure, ReportKind::Crash, ReportKind::Install] {
        for report in state.store.reports_since(kind.as_str(), since).await? {
            let counts = match crate::stored_reports::body_of(&report) {
                Ok(ReportBody::Failure(failure)) => {
                    about(&failure.record, &rollout.channel, engine.as_deref())
                }
                // The whole agent died: that counts against every rollout on the host.
                Ok(ReportBody::Crash(_)) => true,
                // A host that refused this release (it failed the checked swap on the host's
                // own events, did not verify, or took too long to install) never runs it: the
                // rollout would wait for adoption in vain. Evidence, like a crash.
                Ok(ReportBody::Install(install)) => refused_this_release(&install, rollout),
                Ok(_) => false,
                // A failure or crash stored before bodies were typed still says something
                // went wrong on the host; an unreadable install says nothing about this release.
                Err(error) => {
                    tracing::debug!(%error, "a stored report does not read as its kind");
                    kind != ReportKind::Install
                }
            };
            if !counts {
                continue;
            }
            reports
                .entry(report.agent_id)
                .or_default()
                .push(report.received_at);
        }
    }
    Ok(agents
        .iter()
        .map(|agent| {
            let received = reports.remove(&agent.id).unwrap_or_default();
            agent_health(agent, &rollout.channel, engine.as_deref(), received)
        })
        .collect())
}

/// One pass over every unfinished rollout; returns how many transitions were applied. A
/// rollout that cannot be read or evaluated is logged and skipped: one broken rollout must not
/// stop every other channel's.
pub async fn tick(state: &AppState) -> Result<usize, StoreError> {
    // Heartbeats buffered on this replica are part of the picture.
    state.heartbeats.flush(&state.store).await?;
    let records = state.store.rollouts().await?;
    let mut agents = None;
    let mut applied = 0;
    for record in records {
        let rollout = match ActiveRollout::from_record(&record) {
            Ok(rollout) => rollout,
            Err(error) => {
                state.metrics.count_transition("unreadable_rollout");
                tracing::error!(rollout = %record.id, "skipping unreadable rollout: {error}");
                continue;
            }
        };
        if rollout.state.phase.is_final() {
            continue;
        }
        if agents.is_none() {
            agents = Some(state.store.agents().await?);
        }
        let agents = agents.as_deref().unwrap_or_default();
        match tick_one(state, rollout, record.revision, agents).await {
            Ok(true) => applied += 1,
            Ok(false) => {}
            Err(error) => {
                state.metrics.count_transition("failed_evaluation");
                tracing::error!(rollout = %record.id, "rollout skipped this tick: {error}");
            }
        }
    }
    if applied > 0 {
        state.fleet.refresh(&state.store).await?;
    }
    Ok(applied)
}

/// Evaluates one rollout and writes what follows; true when a transition was applied.
async fn tick_one(
    state: &AppState,
    mut rollout: ActiveRollout,
    revision: i64,
    agents: &[AgentRecord],
) -> Result<bool, StoreError> {
    let fleet = fleet_health(state, &rollout, agents).await?;
    let now = ringfence_store::now_ms();
    let evaluated = rollout.state.phase == Phase::Running;
    let ring = rollout.state.ring;
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
        .update_rollout_state(&rollout.id, revision, &state_json)
        .await
    {
        Ok(_) => {}
        // An operator or another replica changed it first; look again next tick.
        Err(StoreError::Conflict(_)) => return Ok(false),
        Err(error) => return Err(error),
    }
    if evaluated {
        record_gate_history(state, &rollout, ring, now).await;
    }
    let Some((action, reason)) = audit else {
        return Ok(false);
    };
    state.metrics.count_transition(action);
    tracing::info!(rollout = %rollout.id, action, "{reason}");
    state
        .store
        .audit("controller", action, &rollout.id, &reason)
        .await?;
    if rollout.state.phase == Phase::Disabled {
        // Nothing to roll back to: the channel's first release failed. Hosts that got it must
        // stop running it; a plan disables the engine there.
        remediate_first_release(state, &rollout, &reason).await?;
    }
    Ok(true)
}

/// Evaluations kept per rollout: [`SAMPLES_PER_BAKE`] for each of six rings.
const KEPT_EVALUATIONS: i64 = 720;

/// How many points a ring's bake gets on the dashboard's gate charts, at most.
const SAMPLES_PER_BAKE: i64 = 120;

/// Keeps the gate evaluation just made in the rollout's bounded history (the dashboard's
/// charts). Spaced so a ring's bake gets about [`SAMPLES_PER_BAKE`] points whatever the tick,
/// and at least one a minute. A failure to record costs a point on a chart, never a tick: it
/// is logged, not returned.
async fn record_gate_history(state: &AppState, rollout: &ActiveRollout, ring: usize, now: i64) {
    if rollout.state.gates.is_empty() {
        return;
    }
    let bake_ms = rollout.doc.spec.rings.get(ring).map_or(0, |r| r.bake_ms);
    let spacing = (bake_ms / SAMPLES_PER_BAKE).clamp(0, 60_000);
    let samples: Vec<ringfence_store::GateSample> = rollout
        .state
        .gates
        .iter()
        .map(|g| ringfence_store::GateSample {
            at_ms: now,
            ring: i64::try_from(ring).unwrap_or(i64::MAX),
            gate: g.gate.clone(),
            value: g.value,
            threshold: g.threshold,
            passed: g.passed,
        })
        .collect();
    if let Err(error) = state
        .store
        .record_gate_samples(&rollout.id, &samples, spacing, KEPT_EVALUATIONS)
        .await
    {
        tracing::warn!(rollout = %rollout.id, "cannot record the gate history: {error}");
    }
}

/// Retires the plans the controller wrote to disable `channel` after a failed first release: a
/// new rollout on the channel is the fix going forward and must not be blocked by them. Hosts
/// that applied a plan keep the engine off until the new release reaches their ring. Plans an
/// operator wrote stay: they were a person's decision. Each retirement is audited.
pub async fn supersede_disable_plans(
    state: &AppState,
    channel: &str,
    rollout_id: &str,
    actor: &str,
) -> Result<usize, StoreError> {
    let mut retired = 0;
    for plan in state.store.active_remediations().await? {
        if plan.channel != channel || plan.created_by != "controller" || plan.action != "disable" {
            continue;
        }
        if state.store.retire_remediation(&plan.id).await? {
            retired += 1;
            state
                .store
                .audit(
                    actor,
                    "supersede_remediation",
                    &plan.id,
                    &format!(
                        "rollout {rollout_id} fixes {channel} forward; the plan that disabled it \
                         after its first release failed is retired"
                    ),
                )
                .await?;
        }
    }
    Ok(retired)
}

/// Writes the plan that disables a channel whose first release stopped (its gates failed, or
/// an operator rolled it back): the hosts it touched run no engine on the channel.
pub async fn remediate_first_release(
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
            "{}@{} has no earlier release to go back to; the channel is disabled: {reason}",
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(status: Option<serde_json::Value>) -> AgentRecord {
        AgentRecord {
            id: "a1".into(),
            hostname: "h".into(),
            tags: Vec::new(),
            enrolled_at: 5,
            last_seen_at: Some(10),
            status,
            client_cert_issued_at: None,
            decommissioned_at: None,
        }
    }

    #[test]
    fn heartbeat_figures_are_read_typed_and_clamped() {
        let agent = record(Some(json!({
            "releases": [{"channel": "detection", "current": "2.0.0", "lkg": "1.0.0", "running": "lkg"}],
            "health": {"cpu_pct": 1.7e308, "latency": {"p99_us": 250.0}, "p99_us": 0.0,
                       "permission_events": 1000, "failures": {"trap": 1, "deadline": 2, "load": 1},
                       "policy_answers": {"deadline": 3, "queue_full": 1},
                       "quarantined": ["sigma"], "installing": "detection@3.0.0"}
        })));
        let health = agent_health(&agent, "detection", Some("sigma"), vec![7]);
        assert_eq!(health.version.as_deref(), Some("1.0.0"), "runs its LKG");
        assert_eq!(health.cpu_pct, ringfence_protocol::api::bounds::MAX_CPU_PCT);
        assert_eq!(health.p99_us, 250.0);
        assert_eq!(health.failures, 4, "every class");
        // Three deadline answers, two of them the engine's doing, and one queue-full answer.
        assert_eq!(health.policy_answers, 3);
        assert!(health.quarantined && health.installing);
        assert_eq!(health.crashes_ms, vec![7]);
        assert_eq!(health.last_heartbeat_ms, 10);
        // Another channel's engine being quarantined is not this rollout's doing.
        assert!(!agent_health(&agent, "other", Some("allowlist"), Vec::new()).quarantined);
    }

    #[test]
    fn deadline_answers_of_a_starved_host_are_not_the_releases() {
        let starved = record(Some(json!({
            "health": {"permission_events": 1000, "policy_answers": {"deadline": 50}}
        })));
        assert_eq!(
            agent_health(&starved, "detection", None, Vec::new()).policy_answers,
            0
        );
        let slow = record(Some(json!({
            "health": {"permission_events": 1000, "failures": {"deadline": 40},
                       "policy_answers": {"deadline": 50, "quarantine": 5}}
        })));
        assert_eq!(
            agent_health(&slow, "detection", None, Vec::new()).policy_answers,
            45
        );
    }

    #[test]
    fn a_status_that_does_not_parse_reads_as_an_empty_heartbeat() {
        for status in [
            None,
            Some(json!("garbage")),
            Some(json!({"health": {"cpu_pct": "x"}})),
        ] {
            let health = agent_health(&record(status), "detection", None, Vec::new());
            assert_eq!(health.version, None);
            assert_eq!(health.cpu_pct, 0.0);
        }
    }

    #[test]
    fn failures_count_for_the_rollouts_engine_or_when_it_is_unknown() {
        let sigma = FailureRecord {
            engine: "sigma".into(),
            content_sha256: String::new(),
            kind: ringfence_protocol::FailureKind::Trap,
            trap_code: None,
            message: String::new(),
            event_kind: None,
            backtrace: Vec::new(),
            at_unix_ns: 0,
            elapsed_us: 0,
        };
        assert!(about(&sigma, "detection", Some("sigma")));
        assert!(!about(&sigma, "allow", Some("exec-allowlist")));
        assert!(about(&sigma, "allow", None));
    }
}
