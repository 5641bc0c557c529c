//! The event loop: agents act at their own event times (heartbeats that bring news, installs,
//! crashes, restores); the controller evaluates the rollout on its tick with the real
//! `step_with_health` and `target_for`; agents follow its target.
//!
//! Cost is proportional to what happens, not to fleet size × time: an agent only has an event
//! queued when something will change for it.
//!
//! A crash shows as crash reports and silence; a slow, quarantining or denying release shows in
//! the figures of the first heartbeat after the fault, read by the same gates as the server's
//! (trimmed means over the ring, quarantine on any host).

use crate::SimError;
use crate::draw::Salt;
use crate::fleet::{AgentState, Draws, Fleet, NEVER, RingTotals, agent_id};
use crate::model::{FaultKind, SimConfig};
use crate::report::{Outcome, SimReport, StrategyResult};
use crate::strategy::Strategy;
use ringfence_rollout::{
    AgentHealth, HealthSummary, Metrics, Phase, RolloutSpec, RolloutState, Target, Transition,
    step_with_health, target_for,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// The version names the controller compares; agents report one or the other.
const BAD: &str = "bad";
const GOOD: &str = "good";

/// Health figures every healthy agent reports per heartbeat interval. Powers of two and
/// integers, so a mean over any number of agents is exact and the cross-check can compare
/// figures bit for bit.
const P99_US: f64 = 50.0;
const DENY_RATE: f64 = 0.015_625;
const CPU_PCT: f64 = 1.0;
const RSS_BYTES: f64 = 20e6;
const EVENTS: u64 = 1_024;

/// The figures of an agent on `version`, healthy or showing `fault`.
fn figures(fault: Option<FaultKind>) -> AgentHealth {
    let mut agent = AgentHealth {
        p99_us: P99_US,
        deny_rate: DENY_RATE,
        cpu_pct: CPU_PCT,
        rss_bytes: RSS_BYTES,
        permission_events: EVENTS,
        ..AgentHealth::default()
    };
    match fault {
        None | Some(FaultKind::Crash) => {}
        Some(FaultKind::Slow) => {
            // Past the deadline: a quarter of the events are answered by policy.
            agent.p99_us = 65_536.0;
            agent.policy_answers = EVENTS / 4;
        }
        Some(FaultKind::Quarantine) => {
            agent.quarantined = true;
            agent.policy_answers = EVENTS;
        }
        Some(FaultKind::Deny) => agent.deny_rate = 0.5,
    }
    agent
}

/// Runs every strategy on the same fleet and fault model.
pub fn simulate(config: &SimConfig, strategies: &[Strategy]) -> Result<SimReport, SimError> {
    config.validate()?;
    let results = strategies
        .iter()
        .map(|s| run_strategy(config, s, false))
        .collect::<Result<_, _>>()?;
    Ok(SimReport {
        config: config.clone(),
        strategies: results,
    })
}

/// Runs one strategy. With `cross_check`, every controller tick also builds an `AgentHealth`
/// per agent and runs the server's `step` on it, and fails if the two disagree: slow, for tests.
pub fn run_strategy(
    config: &SimConfig,
    strategy: &Strategy,
    cross_check: bool,
) -> Result<StrategyResult, SimError> {
    config.validate()?;
    let mut spec = strategy.spec.clone();
    spec.validate().map_err(|reason| SimError::Strategy {
        text: strategy.name.clone(),
        reason: reason.to_string(),
    })?;
    spec.gates.heartbeat_timeout_ms = config.heartbeat_timeout_ms();
    let mut run = Run::new(config, spec, cross_check);
    run.run()?;
    Ok(run.result(strategy))
}

struct Run<'a> {
    config: &'a SimConfig,
    spec: RolloutSpec,
    rollout_id: String,
    draws: Draws,
    fleet: Fleet,
    state: RolloutState,
    /// Pending agent events as `time << 32 | agent`, earliest first. An entry is stale (and
    /// skipped) unless it matches the agent's `due`.
    events: BinaryHeap<Reverse<u64>>,
    /// Crash reports on their way to the server: (visible at, ring, count), in time order
    /// because every report takes the same delay.
    reports: VecDeque<(u64, u8, u32)>,
    /// When crashed agents' heartbeats will be overdue: `time << 32 | agent`.
    silences: BinaryHeap<Reverse<u64>>,
    reached: u64,
    crashed: u64,
    dead: u64,
    /// Agents on the bad release or down from it.
    affected: u64,
    peak_affected: u64,
    /// When the agents that can recover by themselves last all ran the good release.
    all_good_since: u64,
    halted_ms: Option<u64>,
    /// When the server first had a sign of the fault: a crash report, a silent host, or a
    /// heartbeat with faulty figures.
    first_signal_ms: Option<u64>,
    processed: u64,
    series: Vec<(u64, u64)>,
    /// When each opened ring was opened.
    ring_opened_ms: Vec<u64>,
    cross_check: bool,
}

impl<'a> Run<'a> {
    fn new(config: &'a SimConfig, spec: RolloutSpec, cross_check: bool) -> Run<'a> {
        let rollout_id = format!("sim-{}", config.seed);
        let fleet = Fleet::new(config, &spec, &rollout_id);
        // What `summarise` gives for a healthy fleet that all runs the good release.
        let n = config.endpoints as usize;
        let mut baseline = HealthSummary {
            agents: n,
            adopted: n,
            watched: n,
            ..HealthSummary::default()
        };
        baseline.set_metrics_from(&[(Metrics::of(&figures(None)), n)], spec.gates.trim_share);
        Run {
            config,
            rollout_id,
            draws: Draws::new(config),
            fleet,
            state: RolloutState::start_with_baseline(0, baseline),
            spec,
            events: BinaryHeap::new(),
            reports: VecDeque::new(),
            silences: BinaryHeap::new(),
            reached: 0,
            crashed: 0,
            dead: 0,
            affected: 0,
            peak_affected: 0,
            all_good_since: 0,
            halted_ms: None,
            first_signal_ms: None,
            processed: 0,
            series: vec![(0, 0)],
            ring_opened_ms: Vec::new(),
            cross_check,
        }
    }

    fn run(&mut self) -> Result<(), SimError> {
        self.open_ring(0, 0);
        let tick = self.config.controller_tick_ms;
        let mut now = 0;
        while now < self.config.max_time_ms {
            now += tick;
            self.advance_to(now);
            if self.series.last().map(|&(_, n)| n) != Some(self.affected) {
                self.series.push((now, self.affected));
            }
            if self.state.phase == Phase::Running {
                self.controller_tick(now)?;
            }
            if self.state.phase.is_final() && self.events.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// Everything agents do up to `now`, then what the server learns by then.
    fn advance_to(&mut self, now: u64) {
        while let Some(&Reverse(entry)) = self.events.peek() {
            let (t, agent) = (entry >> 32, (entry & 0xffff_ffff) as u32);
            if t > now {
                break;
            }
            self.events.pop();
            if u64::from(self.fleet.due[agent as usize]) == t {
                self.fleet.due[agent as usize] = NEVER;
                self.processed += 1;
                self.handle(agent, t);
            }
        }
        while let Some(&(at, ring, count)) = self.reports.front() {
            if at > now {
                break;
            }
            self.reports.pop_front();
            let totals = &mut self.fleet.totals[usize::from(ring)];
            totals.crashes += (count as usize).min(self.spec.gates.max_reports_per_agent);
            totals.crashed_agents += usize::from(count > 0);
            self.first_signal_ms.get_or_insert(at);
        }
        while let Some(&Reverse(entry)) = self.silences.peek() {
            if entry >> 32 > now {
                break;
            }
            self.silences.pop();
            let agent = (entry & 0xffff_ffff) as usize;
            let silent = match self.fleet.state[agent] {
                AgentState::Down => AgentState::DownSilent,
                AgentState::Dead => AgentState::DeadSilent,
                // Restored before anyone noticed.
                _ => continue,
            };
            self.fleet.state[agent] = silent;
            self.fleet.totals[usize::from(self.fleet.ring[agent])].silent += 1;
            self.first_signal_ms.get_or_insert(entry >> 32);
        }
    }

    /// One agent event at time `t`.
    fn handle(&mut self, agent: u32, t: u64) {
        let i = agent as usize;
        match self.fleet.state[i] {
            // A heartbeat: the server answers with what the agent's ring should run.
            AgentState::Old => {
                if self.target(agent) == Target::New {
                    self.fleet.state[i] = AgentState::FetchNew;
                    let done = t + self.draws.download(agent, Salt::DownloadNew);
                    self.schedule(agent, done);
                }
            }
            AgentState::FetchNew => self.install_new(agent, t),
            AgentState::New => {
                if self.crash_at(agent) == t {
                    if self.kind() == FaultKind::Crash {
                        self.crash(agent, t);
                    } else {
                        // The fault begins; the next heartbeat carries it.
                        self.fleet.state[i] = AgentState::Sick;
                        let heartbeat = self.draws.next_heartbeat(agent, t);
                        self.schedule(agent, heartbeat);
                    }
                } else if self.target(agent) == Target::Previous {
                    self.fetch_old(agent, t);
                } else {
                    let crash = self.crash_at(agent);
                    self.schedule(agent, crash);
                }
            }
            // A heartbeat with the faulty figures: the server sees them, and its answer may
            // already say go back.
            AgentState::Sick => {
                self.fleet.state[i] = AgentState::SickSeen;
                self.fleet.seen_faulty[i] = true;
                self.fleet.totals[usize::from(self.fleet.ring[i])].faulty += 1;
                self.first_signal_ms.get_or_insert(t);
                if self.target(agent) == Target::Previous {
                    self.fetch_old(agent, t);
                }
            }
            AgentState::SickSeen => {
                if self.target(agent) == Target::Previous {
                    self.fetch_old(agent, t);
                }
            }
            AgentState::FetchOld => {
                if self.crash_at(agent) == t && self.kind() == FaultKind::Crash {
                    self.crash(agent, t);
                } else {
                    self.fleet.state[i] = AgentState::Old;
                    self.leave_bad(agent, t);
                }
            }
            AgentState::Down | AgentState::DownSilent => {
                if self.fleet.state[i] == AgentState::DownSilent {
                    self.fleet.totals[usize::from(self.fleet.ring[i])].silent -= 1;
                }
                self.fleet.state[i] = AgentState::Lkg;
                self.leave_bad(agent, t);
            }
            AgentState::Lkg | AgentState::Dead | AgentState::DeadSilent => {}
        }
    }

    fn install_new(&mut self, agent: u32, t: u64) {
        let i = agent as usize;
        self.fleet.state[i] = AgentState::New;
        // Times past u32 saturate to NEVER, far beyond any horizon `validate` allows.
        self.fleet.installed_at[i] = u32::try_from(t).unwrap_or(NEVER);
        self.fleet.totals[usize::from(self.fleet.ring[i])].adopted += 1;
        self.reached += 1;
        self.affected += 1;
        self.peak_affected = self.peak_affected.max(self.affected);
        // The report after the install is a heartbeat: its answer may already say go back.
        if self.target(agent) == Target::Previous {
            self.fetch_old(agent, t);
        } else {
            let crash = self.crash_at(agent);
            self.schedule(agent, crash);
        }
    }

    fn fetch_old(&mut self, agent: u32, t: u64) {
        self.fleet.state[agent as usize] = AgentState::FetchOld;
        let done = t + self.draws.download(agent, Salt::DownloadOld);
        // Only a crash interrupts a download; the other faults leave the agent running.
        let crash = match self.kind() {
            FaultKind::Crash => self.crash_at(agent),
            _ => u64::from(NEVER),
        };
        self.schedule(agent, done.min(crash));
    }

    /// The agent reports the good release again (installed or restored).
    fn leave_bad(&mut self, agent: u32, t: u64) {
        let i = agent as usize;
        let ring = usize::from(self.fleet.ring[i]);
        if std::mem::take(&mut self.fleet.seen_faulty[i]) {
            self.fleet.totals[ring].faulty -= 1;
        }
        self.fleet.totals[ring].adopted -= 1;
        self.affected -= 1;
        if self.affected == self.dead {
            self.all_good_since = t;
        }
    }

    fn crash(&mut self, agent: u32, t: u64) {
        let i = agent as usize;
        let ring = self.fleet.ring[i];
        self.crashed += 1;
        let m = &self.config.model;
        if self.draws.restore_fails(agent) {
            // The host is dark: no heartbeats and no crash reports leave it.
            self.fleet.state[i] = AgentState::Dead;
            self.dead += 1;
            if self.affected == self.dead {
                self.all_good_since = t;
            }
        } else {
            self.fleet.state[i] = AgentState::Down;
            self.schedule(agent, t + m.restore_ms.max(1));
            if m.crash_reports_per_loop > 0 {
                self.reports
                    .push_back((t + m.report_delay_ms, ring, m.crash_reports_per_loop));
            }
        }
        let overdue = self.last_heartbeat(agent, t) + self.config.heartbeat_timeout_ms() as u64 + 1;
        self.silences
            .push(Reverse(overdue << 32 | u64::from(agent)));
    }

    /// The agent's last heartbeat before a crash at `t`: its last periodic one, or the report
    /// it sent after installing.
    fn last_heartbeat(&self, agent: u32, t: u64) -> u64 {
        let installed = u64::from(self.fleet.installed_at[agent as usize]);
        self.draws
            .last_heartbeat(agent, t)
            .map_or(installed, |hb| hb.max(installed))
    }

    fn kind(&self) -> FaultKind {
        self.config.model.kind
    }

    /// When the bad release hits this agent (crashes it, or begins its fault), or NEVER.
    fn crash_at(&self, agent: u32) -> u64 {
        if !self.draws.faults(agent) {
            return u64::from(NEVER);
        }
        let installed = u64::from(self.fleet.installed_at[agent as usize]);
        (installed + self.draws.time_to_fault(agent)).min(u64::from(NEVER))
    }

    fn target(&self, agent: u32) -> Target {
        target_for(&self.state, usize::from(self.fleet.ring[agent as usize]))
    }

    /// Sets the agent's next event. Every event is scheduled strictly after the one being
    /// handled, so once an entry is handled any duplicate of it in the heap is stale.
    fn schedule(&mut self, agent: u32, at: u64) {
        let i = agent as usize;
        let at = u32::try_from(at).unwrap_or(NEVER);
        if at == NEVER {
            self.fleet.due[i] = NEVER;
        } else if self.fleet.due[i] != at {
            self.fleet.due[i] = at;
            self.events
                .push(Reverse(u64::from(at) << 32 | u64::from(agent)));
        }
    }

    /// A ring opens: its agents hear about it on their next heartbeat.
    fn open_ring(&mut self, ring: usize, t: u64) {
        self.ring_opened_ms.push(t);
        for k in 0..self.fleet.ring_members(ring).len() {
            let agent = self.fleet.ring_members(ring)[k];
            if self.fleet.state[agent as usize] == AgentState::Old
                && self.fleet.due[agent as usize] == NEVER
            {
                let at = self.draws.next_heartbeat(agent, t);
                self.schedule(agent, at);
            }
        }
    }

    /// Rolled back: agents running the bad release hear it on their next heartbeat. Agents
    /// still downloading it hear it when they report the install.
    fn roll_back(&mut self, t: u64) {
        for k in 0..self.fleet.members_up_to(self.state.ring).len() {
            let agent = self.fleet.members_up_to(self.state.ring)[k];
            if matches!(
                self.fleet.state[agent as usize],
                AgentState::New | AgentState::SickSeen
            ) {
                let heartbeat = self.draws.next_heartbeat(agent, t);
                let due = u64::from(self.fleet.due[agent as usize]);
                self.schedule(agent, heartbeat.min(due));
            }
        }
    }

    fn controller_tick(&mut self, now: u64) -> Result<(), SimError> {
        let (touched, current) = self.summaries();
        let expected = if self.cross_check {
            Some(self.step_on_materialised_fleet(now))
        } else {
            None
        };
        let transition =
            step_with_health(&self.spec, &mut self.state, now as i64, touched, &current);
        if let Some((expected_transition, expected_state)) = expected
            && (expected_transition != transition || expected_state != self.state)
        {
            return Err(SimError::Model(format!(
                "the simulator's totals disagree with the controller's own step at {now} ms: \
                 {transition:?} vs {expected_transition:?}; ring health {:?} vs {:?}",
                self.state.ring_health, expected_state.ring_health
            )));
        }
        let Some(transition) = transition else {
            return Ok(());
        };
        self.state.apply(transition.clone(), &self.spec);
        match transition {
            Transition::Promote { to, .. } => self.open_ring(to, now),
            Transition::GateFailure { .. } | Transition::Rollback { .. } => {
                self.halted_ms = Some(now);
                self.all_good_since = self.all_good_since.max(now);
                self.roll_back(now);
            }
            _ => {}
        }
        Ok(())
    }

    /// The health of the touched rings and of the current ring, as `summarise` would give.
    fn summaries(&self) -> (HealthSummary, HealthSummary) {
        let mut sum = RingTotals::default();
        for t in &self.fleet.totals[..=self.state.ring] {
            sum.agents += t.agents;
            sum.adopted += t.adopted;
            sum.crashes += t.crashes;
            sum.crashed_agents += t.crashed_agents;
            sum.silent += t.silent;
            sum.faulty += t.faulty;
        }
        let mut touched = HealthSummary {
            agents: sum.agents,
            adopted: sum.adopted,
            crashes: sum.crashes,
            crashed_agents: sum.crashed_agents,
            silent: sum.silent,
            // Every agent is alive when its ring opens.
            watched: sum.agents,
            quarantined: if self.kind() == FaultKind::Quarantine {
                sum.faulty
            } else {
                0
            },
            ..HealthSummary::default()
        };
        touched.set_metrics_from(
            &[
                (Metrics::of(&figures(None)), sum.adopted - sum.faulty),
                (Metrics::of(&figures(Some(self.kind()))), sum.faulty),
            ],
            self.spec.gates.trim_share,
        );
        let ring = self.fleet.totals[self.state.ring];
        let current = HealthSummary {
            agents: ring.agents,
            adopted: ring.adopted,
            ..HealthSummary::default()
        };
        (touched, current)
    }

    /// What the server's controller would decide from a full fleet view: one `AgentHealth`
    /// per agent, fed to the unmodified `step`.
    fn step_on_materialised_fleet(&self, now: u64) -> (Option<Transition>, RolloutState) {
        let m = &self.config.model;
        let mut buffer = String::new();
        let fleet: Vec<AgentHealth> = (0..self.config.endpoints)
            .map(|agent| {
                let state = self.fleet.state[agent as usize];
                let crashed = matches!(
                    state,
                    AgentState::Down | AgentState::DownSilent | AgentState::Lkg
                );
                let dark = matches!(
                    state,
                    AgentState::Down
                        | AgentState::DownSilent
                        | AgentState::Dead
                        | AgentState::DeadSilent
                );
                let crash = self.crash_at(agent);
                // The server stamps a report with the time it receives it.
                let received = crash + m.report_delay_ms;
                let reports = if crashed && received <= now {
                    vec![received as i64; m.crash_reports_per_loop as usize]
                } else {
                    Vec::new()
                };
                let fault = self.fleet.seen_faulty[agent as usize].then_some(self.kind());
                AgentHealth {
                    agent_id: agent_id(agent, &mut buffer).to_owned(),
                    version: Some(if state.reports_new() { BAD } else { GOOD }.to_owned()),
                    last_heartbeat_ms: if dark {
                        self.last_heartbeat(agent, crash) as i64
                    } else {
                        now as i64
                    },
                    crashes_ms: reports,
                    ..figures(fault)
                }
            })
            .collect();
        let mut state = self.state.clone();
        let transition = ringfence_rollout::step(
            &self.spec,
            &mut state,
            &self.rollout_id,
            BAD,
            now as i64,
            &fleet,
        );
        (transition, state)
    }

    fn result(&self, strategy: &Strategy) -> StrategyResult {
        let minutes = |ms: u64| ms as f64 / 60_000.0;
        let outcome = match self.state.phase {
            Phase::RolledBack => Outcome::RolledBack,
            Phase::Completed => Outcome::Completed,
            _ => Outcome::Unfinished,
        };
        // Recovered: rolled back, and every host that can recover by itself runs the good release.
        let recovered = (outcome == Outcome::RolledBack && self.affected == self.dead)
            .then_some(self.all_good_since);
        let endpoints = u64::from(self.config.endpoints);
        let signal_to_halt = self
            .first_signal_ms
            .zip(self.halted_ms)
            .map(|(signal, halt)| minutes(halt.saturating_sub(signal)));
        StrategyResult {
            name: strategy.name.clone(),
            fault: self.kind(),
            first_signal_min: self.first_signal_ms.map(minutes),
            halt_after_signal_min: signal_to_halt,
            rings: self.spec.rings.iter().map(|r| r.percent).collect(),
            ring_names: self.spec.rings.iter().map(|r| r.name.clone()).collect(),
            ring_opened_min: self.ring_opened_ms.iter().map(|&t| minutes(t)).collect(),
            bake_min: self
                .spec
                .rings
                .first()
                .map_or(0.0, |r| r.bake_ms as f64 / 60_000.0),
            hosts_reached: self.reached,
            blast_radius_pct: self.reached as f64 * 100.0 / endpoints as f64,
            hosts_crashed: self.crashed,
            hands_on_hosts: self.dead,
            peak_affected: self.peak_affected,
            outcome,
            max_ring: self.state.ring,
            max_ring_name: self
                .spec
                .rings
                .get(self.state.ring)
                .map_or_else(|| self.state.ring.to_string(), |r| r.name.clone()),
            time_to_halt_min: self.halted_ms.map(minutes),
            time_to_recover_min: recovered.map(minutes),
            recover_after_halt_min: recovered
                .zip(self.halted_ms)
                .map(|(r, h)| minutes(r.saturating_sub(h))),
            reason: self.state.reason.clone(),
            events: self.processed,
            series: self.series.iter().map(|&(t, n)| (minutes(t), n)).collect(),
        }
    }
}
