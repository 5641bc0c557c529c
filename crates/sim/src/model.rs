//! The fault model and run settings: what the bad release does to a host, how fast agents and
//! the server react, and how big the fleet is.

use crate::SimError;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// What the bad release does on the hosts it hits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Crashes the agent: crash reports, a crash loop, the guard restores the last known good.
    #[default]
    Crash,
    /// Stalls: verdict latency p99 at 64 ms and a quarter of permission events answered by
    /// policy (deadline), with no crash at all.
    Slow,
    /// The engine fails until the agent quarantines it: protection off on that host.
    Quarantine,
    /// A logical failure: the release denies half of what it sees (a rule that denies `/bin/sh`).
    Deny,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Crash,
        FaultKind::Slow,
        FaultKind::Quarantine,
        FaultKind::Deny,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Slow => "slow",
            FaultKind::Quarantine => "quarantine",
            FaultKind::Deny => "deny",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = SimError;

    fn from_str(text: &str) -> Result<Self, SimError> {
        FaultKind::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| {
                SimError::Model(format!(
                    "{text:?} is not a fault kind (crash, slow, quarantine, deny)"
                ))
            })
    }
}

/// How a bad release behaves and how the fleet reacts. Times are milliseconds of virtual time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultModel {
    /// What the bad release does on the hosts it hits.
    pub kind: FaultKind,
    /// Share of hosts the bad release hits (the rest run it fine).
    pub fault_fraction: f64,
    /// Mean time from installing the bad release to the fault (exponential).
    pub time_to_fault_ms: u64,
    /// How often agents heartbeat; they learn the controller's target on a heartbeat.
    pub heartbeat_ms: u64,
    /// From a crash to its report being visible to the controller (spool, upload, ingest).
    pub report_delay_ms: u64,
    /// Mean time to download and install a release (uniform in ½–1½ of it).
    pub download_ms: u64,
    /// From the first crash to the guard running the last known good release.
    pub restore_ms: u64,
    /// Share of crashed hosts whose local restore fails: they go dark and need hands-on recovery.
    pub restore_failure_fraction: f64,
    /// Crash reports one crash loop files: the guard restarts the agent this many times before
    /// it switches to the last known good release (its crash-loop threshold).
    pub crash_reports_per_loop: u32,
    /// Spread heartbeat phases, install times and crash times randomly (the default). Off,
    /// every agent behaves identically, which makes small runs checkable by hand.
    pub jitter: bool,
}

impl Default for FaultModel {
    fn default() -> Self {
        FaultModel {
            kind: FaultKind::Crash,
            fault_fraction: 0.2,
            time_to_fault_ms: 30_000,
            heartbeat_ms: 30_000,
            report_delay_ms: 10_000,
            download_ms: 60_000,
            restore_ms: 10_000,
            restore_failure_fraction: 0.01,
            crash_reports_per_loop: 3,
            jitter: true,
        }
    }
}

/// One run: the fleet, the seed, the controller's pace and when to give up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimConfig {
    pub endpoints: u32,
    pub seed: u64,
    pub model: FaultModel,
    /// How often the controller evaluates the rollout (the server's controller tick).
    pub controller_tick_ms: u64,
    /// Virtual time after which a run stops even if the fleet has not settled.
    pub max_time_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            endpoints: 1_000_000,
            seed: 1,
            model: FaultModel::default(),
            controller_tick_ms: 1_000,
            max_time_ms: 48 * 3_600_000,
        }
    }
}

impl SimConfig {
    /// Refuses settings the simulator cannot honour, with a sentence saying which and why.
    pub fn validate(&self) -> Result<(), SimError> {
        let m = &self.model;
        let share = |name: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(SimError::Model(format!(
                    "{name} must be between 0 and 1, not {value}"
                )))
            }
        };
        share("the fault fraction", m.fault_fraction)?;
        share("the restore failure fraction", m.restore_failure_fraction)?;
        if self.endpoints == 0 || self.endpoints == u32::MAX {
            return Err(SimError::Model(
                "the fleet needs at least one endpoint".into(),
            ));
        }
        if m.heartbeat_ms == 0 || self.controller_tick_ms == 0 {
            return Err(SimError::Model(
                "the heartbeat interval and the controller tick must be positive".into(),
            ));
        }
        // Agent times are u32 milliseconds (49 days) to keep per-agent state small; events
        // past that saturate to "never", so the horizon must stay well below it.
        if self.max_time_ms >= u64::from(u32::MAX / 2) {
            return Err(SimError::Model(
                "the longest simulated run is 24 days (agent times are 32-bit milliseconds)".into(),
            ));
        }
        Ok(())
    }

    /// The gates' heartbeat timeout: three missed heartbeats, as the server uses (5 s / 15 s).
    pub fn heartbeat_timeout_ms(&self) -> i64 {
        (self.model.heartbeat_ms * 3) as i64
    }
}
