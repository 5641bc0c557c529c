//! The rollout state machine: `step` decides the next transition from the state, the spec, the
//! clock and the fleet's health; `apply` records it. Operator actions are transitions too, and
//! `promote_now` is the one operator action that must first pass the same gates `step` reads.

use crate::gates::{GateResult, HealthSummary, Window, evaluate_gates, summarise};
use crate::membership::ring_of;
use crate::spec::{GateSpec, RolloutSpec};
use serde::{Deserialize, Serialize};

/// What the controller knows about one agent. Rates (`permission_events`, `failures`,
/// `policy_answers`, latency, deny rate) are the agent's last heartbeat interval: the gates
/// read the current rate, and reports (`crashes_ms`) are what accumulates over the bake.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentHealth {
    pub agent_id: String,
    pub tags: Vec<String>,
    /// The version of the rollout's channel the agent runs now.
    pub version: Option<String>,
    /// The server's clock when it last heard from the agent.
    pub last_heartbeat_ms: i64,
    /// When the server received the agent's crash, engine failure (every class) and
    /// refused-install reports: the server's clock, never the time the agent claims.
    pub crashes_ms: Vec<i64>,
    /// Verdict latency p99 per event over the last interval, µs.
    pub p99_us: f64,
    pub deny_rate: f64,
    pub cpu_pct: f64,
    /// Share of the last interval in which some task on the host waited for a CPU, percent.
    pub cpu_pressure_pct: f64,
    pub rss_bytes: f64,
    /// Permission events answered over the last interval.
    pub permission_events: u64,
    /// Engine failures of every class over the last interval.
    pub failures: u64,
    /// Permission events answered by policy over the last interval.
    pub policy_answers: u64,
    /// Permission events a verdict would have denied but audit mode allowed, over the last
    /// interval.
    pub would_deny: u64,
    /// The rollout's engine is quarantined on this host now: protection is off.
    pub quarantined: bool,
    /// The last heartbeat said a release is being downloaded, verified or compiled.
    pub installing: bool,
    /// Taken out of the fleet by an operator: no gate counts it.
    pub decommissioned: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Rings up to `ring` run the release; gates are watched.
    Running,
    /// An operator stopped promotion; rings keep what they have.
    Paused,
    /// Stopped where it is (operator); nothing rolls back until asked.
    Halted,
    /// Every ring runs the previous release again.
    RolledBack,
    /// A channel's first release stopped: there is no earlier release to roll back to, so the
    /// channel is disabled on the hosts it touched.
    Disabled,
    /// Every ring runs the release.
    Completed,
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(self, Phase::RolledBack | Phase::Disabled | Phase::Completed)
    }

    /// The phase in the words an operator reads ("rolled back", not `RolledBack`).
    pub fn word(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Halted => "halted",
            Phase::RolledBack => "rolled back",
            Phase::Disabled => "disabled",
            Phase::Completed => "completed",
        }
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// What a stop means, in the words every surface uses.
fn remedy(disable_channel: bool) -> &'static str {
    if disable_channel {
        "halted and disabled the channel on the touched hosts (no earlier release to roll back to)"
    } else {
        "rolled back every touched ring"
    }
}

/// One change of state, as recorded in the rollout's history and the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "transition", rename_all = "snake_case")]
pub enum Transition {
    Promote {
        from: usize,
        to: usize,
        at_ms: i64,
    },
    Complete {
        at_ms: i64,
    },
    /// Gates failed: stop and roll back every touched ring (or, for a channel's first
    /// release, disable the channel there), without a person.
    GateFailure {
        ring: usize,
        at_ms: i64,
        failed: Vec<GateResult>,
        #[serde(default, skip_serializing_if = "is_false")]
        disable_channel: bool,
    },
    Pause {
        at_ms: i64,
        reason: String,
    },
    Resume {
        at_ms: i64,
        reason: String,
    },
    Halt {
        at_ms: i64,
        reason: String,
    },
    Rollback {
        at_ms: i64,
        reason: String,
        #[serde(default, skip_serializing_if = "is_false")]
        disable_channel: bool,
    },
    /// An operator ended ring `from`'s bake early (argo's `promote`), made only by
    /// [`promote_now`] after the ring's gates passed on fresh health. `to` is the next ring, or
    /// none from the last ring: the rollout completes.
    OperatorPromote {
        from: usize,
        to: Option<usize>,
        at_ms: i64,
        reason: String,
    },
}

impl Transition {
    /// The audit-log action name.
    pub fn action(&self) -> &'static str {
        match self {
            Transition::Promote { .. } | Transition::OperatorPromote { .. } => "promote",
            Transition::Complete { .. } => "complete",
            Transition::GateFailure {
                disable_channel: false,
                ..
            } => "gate_failure_rollback",
            Transition::GateFailure {
                disable_channel: true,
                ..
            } => "gate_failure_disable",
            Transition::Pause { .. } => "pause",
            Transition::Resume { .. } => "resume",
            Transition::Halt { .. } => "halt",
            Transition::Rollback {
                disable_channel: false,
                ..
            } => "rollback",
            Transition::Rollback {
                disable_channel: true,
                ..
            } => "halt_and_disable",
        }
    }

    /// The audit-log reason.
    pub fn reason(&self, spec: &RolloutSpec) -> String {
        // Ring names are usually `ring0`…: "ring ring0" says it twice.
        let ring = |i: usize| {
            let name = spec.rings.get(i).map_or("?", |r| r.name.as_str());
            if name.starts_with("ring") {
                name.to_owned()
            } else {
                format!("ring {name}")
            }
        };
        match self {
            Transition::Promote { from, to, .. } => {
                format!(
                    "{} healthy for its bake time; promoting to {}",
                    ring(*from),
                    ring(*to)
                )
            }
            Transition::Complete { .. } => "last ring healthy for its bake time".to_owned(),
            Transition::OperatorPromote {
                from, to, reason, ..
            } => {
                let next = match to {
                    Some(to) => format!("promoting to {}", ring(*to)),
                    None => "completing the rollout".to_owned(),
                };
                format!(
                    "{reason}: {}'s bake ended early with its gates passing; {next}",
                    ring(*from)
                )
            }
            Transition::GateFailure {
                ring: r,
                failed,
                disable_channel,
                ..
            } => {
                let why: Vec<&str> = failed.iter().map(|g| g.explanation.as_str()).collect();
                format!(
                    "health gates failed in {}: {}; {}",
                    ring(*r),
                    why.join("; "),
                    remedy(*disable_channel)
                )
            }
            Transition::Rollback {
                reason,
                disable_channel: true,
                ..
            } => format!("{reason}; {}", remedy(true)),
            Transition::Pause { reason, .. }
            | Transition::Resume { reason, .. }
            | Transition::Halt { reason, .. }
            | Transition::Rollback { reason, .. } => reason.clone(),
        }
    }
}

/// The controller's durable state for one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub phase: Phase,
    /// The deepest ring that has been given the release.
    pub ring: usize,
    pub started_ms: i64,
    pub ring_started_ms: i64,
    /// The fleet's health when the rollout started: what gates compare against. Empty for a
    /// channel's first release, whose gates use absolute budgets.
    #[serde(default)]
    pub baseline: HealthSummary,
    /// The channel had no release before this one: a stop disables the channel on the touched
    /// hosts instead of rolling back. Old stored state lacks it; the server fills it in from
    /// the rollout's document.
    #[serde(default)]
    pub first_release: bool,
    /// The most recent gate evaluation of the current ring.
    #[serde(default)]
    pub gates: Vec<GateResult>,
    #[serde(default)]
    pub ring_health: HealthSummary,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub ended_ms: Option<i64>,
    #[serde(default)]
    pub history: Vec<Transition>,
}

impl RolloutState {
    /// A rollout starting now, ring 0, with the baseline taken from `fleet`.
    pub fn start(now_ms: i64, fleet: &[AgentHealth], gates: &GateSpec) -> RolloutState {
        let window = Window::new(gates, None, now_ms, now_ms);
        RolloutState::start_with_baseline(
            now_ms,
            summarise(fleet.iter().map(|a| (a, now_ms)), &window),
        )
    }

    /// A channel's first release starting now: no baseline (its gates use absolute budgets)
    /// and a stop disables the channel on the touched hosts.
    pub fn start_first_release(now_ms: i64) -> RolloutState {
        RolloutState {
            first_release: true,
            ..RolloutState::start_with_baseline(now_ms, HealthSummary::default())
        }
    }

    /// When ring `ring` opened: the rollout's start for ring 0, else its promotion.
    pub fn ring_opened_ms(&self, ring: usize) -> i64 {
        self.history
            .iter()
            .find_map(|t| match t {
                Transition::Promote { to, at_ms, .. } if *to == ring => Some(*at_ms),
                Transition::OperatorPromote {
                    to: Some(to),
                    at_ms,
                    ..
                } if *to == ring => Some(*at_ms),
                _ => None,
            })
            .unwrap_or(self.started_ms)
    }

    /// A rollout starting now with a baseline the caller has already summarised (the simulator
    /// aggregates a million agents without materialising an [`AgentHealth`] for each).
    pub fn start_with_baseline(now_ms: i64, baseline: HealthSummary) -> RolloutState {
        RolloutState {
            phase: Phase::Running,
            ring: 0,
            started_ms: now_ms,
            ring_started_ms: now_ms,
            baseline,
            first_release: false,
            gates: Vec::new(),
            ring_health: HealthSummary::default(),
            reason: None,
            ended_ms: None,
            history: Vec::new(),
        }
    }

    /// Records a transition. Invalid transitions for the phase are ignored and return false.
    pub fn apply(&mut self, transition: Transition, spec: &RolloutSpec) -> bool {
        let valid = match (&transition, self.phase) {
            (
                Transition::Promote { .. }
                | Transition::Complete { .. }
                | Transition::GateFailure { .. },
                Phase::Running,
            ) => true,
            (Transition::Pause { .. }, Phase::Running) => true,
            // Promoting a paused rollout is how an operator says "go on now": it runs again.
            // A promote made for another ring than the current one is stale.
            (Transition::OperatorPromote { from, .. }, Phase::Running | Phase::Paused) => {
                *from == self.ring
            }
            (Transition::Resume { .. }, Phase::Paused | Phase::Halted) => true,
            (Transition::Halt { .. }, Phase::Running | Phase::Paused) => true,
            (Transition::Rollback { .. }, phase) => {
                !matches!(phase, Phase::RolledBack | Phase::Disabled)
            }
            _ => false,
        };
        if !valid {
            return false;
        }
        match &transition {
            Transition::Promote { to, at_ms, .. } => {
                self.ring = *to;
                self.ring_started_ms = *at_ms;
                self.gates.clear();
            }
            Transition::Complete { at_ms } => {
                self.phase = Phase::Completed;
                self.ended_ms = Some(*at_ms);
            }
            Transition::GateFailure {
                at_ms,
                failed,
                disable_channel,
                ..
            } => {
                self.phase = if *disable_channel {
                    Phase::Disabled
                } else {
                    Phase::RolledBack
                };
                self.ended_ms = Some(*at_ms);
                self.gates = failed.clone();
            }
            Transition::Pause { .. } => self.phase = Phase::Paused,
            Transition::Resume { at_ms, .. } => {
                self.phase = Phase::Running;
                // The bake starts over: time spent paused or halted does not count.
                self.ring_started_ms = *at_ms;
            }
            Transition::Halt { .. } => self.phase = Phase::Halted,
            Transition::OperatorPromote { to, at_ms, .. } => match to {
                Some(to) => {
                    self.phase = Phase::Running;
                    self.ring = *to;
                    self.ring_started_ms = *at_ms;
                    self.gates.clear();
                }
                None => {
                    self.phase = Phase::Completed;
                    self.ended_ms = Some(*at_ms);
                }
            },
            Transition::Rollback {
                at_ms,
                disable_channel,
                ..
            } => {
                self.phase = if *disable_channel {
                    Phase::Disabled
                } else {
                    Phase::RolledBack
                };
                self.ended_ms = Some(*at_ms);
            }
        }
        self.reason = Some(transition.reason(spec));
        self.history.push(transition);
        true
    }
}

/// What an agent in a given ring should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The rollout's release.
    New,
    /// The release the channel had before.
    Previous,
}

pub fn target_for(state: &RolloutState, agent_ring: usize) -> Target {
    match state.phase {
        Phase::Completed => Target::New,
        Phase::RolledBack | Phase::Disabled => Target::Previous,
        Phase::Running | Phase::Paused | Phase::Halted => {
            if agent_ring <= state.ring {
                Target::New
            } else {
                Target::Previous
            }
        }
    }
}

/// The health of every ring the release has reached (`touched`) and of the current ring alone,
/// as [`step`] and [`promote_now`] judge them.
fn ring_health(
    spec: &RolloutSpec,
    state: &RolloutState,
    rollout_id: &str,
    version: &str,
    now_ms: i64,
    fleet: &[AgentHealth],
) -> (HealthSummary, HealthSummary) {
    let rings: Vec<(&AgentHealth, usize)> = fleet
        .iter()
        .map(|agent| {
            (
                agent,
                ring_of(&agent.agent_id, &agent.tags, rollout_id, spec),
            )
        })
        .filter(|&(_, ring)| ring <= state.ring)
        .collect();
    let opened: Vec<i64> = (0..=state.ring).map(|r| state.ring_opened_ms(r)).collect();
    // Gates watch every ring the release has reached: a late crash in ring 0 still counts.
    let touched = summarise(
        rings.iter().map(|&(agent, ring)| (agent, opened[ring])),
        &Window::new(&spec.gates, Some(version), now_ms, state.started_ms),
    );
    let current = summarise(
        rings
            .iter()
            .filter(|&&(_, ring)| ring == state.ring)
            .map(|&(agent, ring)| (agent, opened[ring])),
        &Window::new(&spec.gates, Some(version), now_ms, now_ms),
    );
    (touched, current)
}

/// Evaluates the current ring and returns the transition that should follow, if any. Also
/// refreshes `state.gates` and `state.ring_health` so operators see each gate's value.
pub fn step(
    spec: &RolloutSpec,
    state: &mut RolloutState,
    rollout_id: &str,
    version: &str,
    now_ms: i64,
    fleet: &[AgentHealth],
) -> Option<Transition> {
    if state.phase != Phase::Running {
        return None;
    }
    let (health, current) = ring_health(spec, state, rollout_id, version, now_ms, fleet);
    step_with_health(spec, state, now_ms, health, &current)
}

/// The decision half of [`step`], for callers that aggregate health themselves (the simulator
/// keeps running per-ring totals instead of re-reading a million agents every tick).
///
/// `touched` is the health of every ring up to `state.ring`, as [`summarise`] gives it for the
/// rollout's version with crashes since `state.started_ms` and the gate's heartbeat timeout.
/// `current` is the current ring alone; only its `agents`, `adopted` and `installing` counts
/// are read.
pub fn step_with_health(
    spec: &RolloutSpec,
    state: &mut RolloutState,
    now_ms: i64,
    touched: HealthSummary,
    current: &HealthSummary,
) -> Option<Transition> {
    if state.phase != Phase::Running {
        return None;
    }
    let results = evaluate_gates(&spec.gates, &state.baseline, &touched);
    let failed: Vec<GateResult> = results.iter().filter(|g| !g.passed).cloned().collect();
    state.gates = results;
    state.ring_health = touched;
    if !failed.is_empty() {
        return Some(Transition::GateFailure {
            ring: state.ring,
            at_ms: now_ms,
            failed,
            disable_channel: state.first_release,
        });
    }
    let ring = &spec.rings[state.ring];
    let elapsed = now_ms - state.ring_started_ms;
    let adoption = current.adoption();
    // An empty ring (a small fleet and a 1% slice) passes on its bake time alone.
    let adopted = current.agents == 0 || adoption >= spec.gates.min_adoption;
    if !adopted {
        if elapsed > spec.gates.adoption_timeout_ms {
            // Hosts still installing are not dead: their install took too long, and that is
            // what the gate says.
            let installing = if current.installing > 0 {
                format!(
                    "; {} hosts still installing after {} s: install failure",
                    current.installing,
                    elapsed / 1000
                )
            } else {
                String::new()
            };
            let gate = GateResult {
                gate: "adoption".to_owned(),
                value: crate::gates::finite(adoption, 1.0),
                threshold: spec.gates.min_adoption,
                passed: false,
                explanation: format!(
                    "share of {} running the release after {} s: {adoption:.2} < {:.2}{installing}",
                    ring.name,
                    elapsed / 1000,
                    spec.gates.min_adoption
                ),
            };
            return Some(Transition::GateFailure {
                ring: state.ring,
                at_ms: now_ms,
                failed: vec![gate],
                disable_channel: state.first_release,
            });
        }
        return None;
    }
    if elapsed < ring.bake_ms {
        return None;
    }
    if state.ring + 1 < spec.rings.len() {
        Some(Transition::Promote {
            from: state.ring,
            to: state.ring + 1,
            at_ms: now_ms,
        })
    } else {
        Some(Transition::Complete { at_ms: now_ms })
    }
}

/// Why an operator's promote was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromoteRefused {
    /// Only a running or paused rollout has a bake to end.
    #[error("a rollout that is {0:?} cannot be promoted; only a running or paused one can")]
    Phase(Phase),
    /// A promote never skips a health gate: these fail on the fleet's health now.
    #[error("ring {ring}'s gates fail: {}", explain(.failed))]
    Gates {
        ring: String,
        failed: Vec<GateResult>,
    },
}

fn explain(failed: &[GateResult]) -> String {
    failed
        .iter()
        .map(|g| format!("{} ({})", g.gate, g.explanation))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An operator's promote (argo's `promote`): ends the current ring's bake now, to the next ring
/// or, from the last, to completion. Judged on the fleet's health now by the same gates as
/// [`step`], plus the ring's adoption: skipping the bake is the operator's call, skipping a
/// gate is nobody's. Does not change `state`; apply the transition it returns.
pub fn promote_now(
    spec: &RolloutSpec,
    state: &RolloutState,
    rollout_id: &str,
    version: &str,
    now_ms: i64,
    fleet: &[AgentHealth],
    reason: String,
) -> Result<Transition, PromoteRefused> {
    if !matches!(state.phase, Phase::Running | Phase::Paused) {
        return Err(PromoteRefused::Phase(state.phase));
    }
    let ring_name = spec
        .rings
        .get(state.ring)
        .map_or_else(|| state.ring.to_string(), |r| r.name.clone());
    let (touched, current) = ring_health(spec, state, rollout_id, version, now_ms, fleet);
    let mut failed: Vec<GateResult> = evaluate_gates(&spec.gates, &state.baseline, &touched)
        .into_iter()
        .filter(|g| !g.passed)
        .collect();
    let adoption = current.adoption();
    // An empty ring passes, as it does on bake time; a ring still installing has not shown
    // its health yet, so its bake cannot be cut short.
    if current.agents > 0 && adoption < spec.gates.min_adoption {
        failed.push(GateResult {
            gate: "adoption".to_owned(),
            value: crate::gates::finite(adoption, 1.0),
            threshold: spec.gates.min_adoption,
            passed: false,
            explanation: format!(
                "share of {ring_name} running the release: {adoption:.2} < {:.2}",
                spec.gates.min_adoption
            ),
        });
    }
    if !failed.is_empty() {
        return Err(PromoteRefused::Gates {
            ring: ring_name,
            failed,
        });
    }
    let next = state.ring + 1;
    Ok(Transition::OperatorPromote {
        from: state.ring,
        to: (next < spec.rings.len()).then_some(next),
        at_ms: now_ms,
        reason,
    })
}

#[cfg(test)]
mod tests;
