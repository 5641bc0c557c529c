//! What a run found, per strategy: reach, blast radius, time to halt and to recover, hosts
//! needing hands-on recovery, and the affected-hosts curve the chart draws.

use crate::model::{FaultKind, SimConfig};
use serde::Serialize;

/// How a strategy's rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Gates tripped; the controller halted and rolled every touched ring back.
    RolledBack,
    /// The bad release passed every gate and reached the whole fleet.
    Completed,
    /// Still running when the simulated time ran out.
    Unfinished,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyResult {
    pub name: String,
    /// What the bad release did (the run's fault model).
    pub fault: FaultKind,
    /// From the start to the server's first sign of the fault: a visible crash report, a
    /// silent host, or a heartbeat with faulty figures.
    pub first_signal_min: Option<f64>,
    /// From that first sign to the halt.
    pub halt_after_signal_min: Option<f64>,
    /// Cumulative ring percentages.
    pub rings: Vec<f64>,
    /// The rings' names, as the server names them in its gates and reasons.
    pub ring_names: Vec<String>,
    /// When each ring the controller opened was opened, minutes since the start.
    pub ring_opened_min: Vec<f64>,
    pub bake_min: f64,
    /// Hosts that installed the bad release.
    pub hosts_reached: u64,
    /// `hosts_reached` as a share of the fleet, in percent.
    pub blast_radius_pct: f64,
    /// Hosts on which the bad release crashed the agent (0 for the other faults).
    pub hosts_crashed: u64,
    /// Crashed hosts whose local restore failed.
    pub hands_on_hosts: u64,
    /// Most hosts on the bad release (running it or down from it) at one time.
    pub peak_affected: u64,
    pub outcome: Outcome,
    /// The deepest ring the controller opened (0 = the first ring).
    pub max_ring: usize,
    /// That ring's name.
    pub max_ring_name: String,
    /// From the start of the rollout to the controller halting it.
    pub time_to_halt_min: Option<f64>,
    /// From the start of the rollout until every host not needing hands-on recovery runs the
    /// previous release again.
    pub time_to_recover_min: Option<f64>,
    /// The same, counted from the halt.
    pub recover_after_halt_min: Option<f64>,
    /// The controller's reason for its last transition, with the numbers behind each gate.
    pub reason: Option<String>,
    /// Agent events the run processed (a measure of its cost).
    pub events: u64,
    /// Affected hosts over time: (minutes since start, hosts), at each change.
    #[serde(skip)]
    pub series: Vec<(f64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    pub config: SimConfig,
    pub strategies: Vec<StrategyResult>,
}
