//! The fleet as struct-of-arrays: a few bytes per agent (ring, state, next event, install
//! time), per-ring running totals for the gates, and agents grouped by ring so a promotion
//! touches only the ring it opens.

use crate::draw::{self, Salt};
use crate::model::SimConfig;
use ringfence_rollout::{RolloutSpec, ring_of};
use std::fmt::Write as _;

/// "No event pending" / "never".
pub const NEVER: u32 = u32::MAX;

/// Where one agent is. Versions are those the server sees: the agent reports its running
/// release right after each install or restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AgentState {
    /// Runs the previous release. A pending event is its next heartbeat, which brings news.
    Old,
    /// Runs the previous release and is downloading the new one.
    FetchNew,
    /// Runs the new release. A pending event is its fault or its next heartbeat.
    New,
    /// Runs the new release and the fault (slow, quarantine, deny) has begun; its next
    /// heartbeat, the pending event, will carry the figures that show it.
    Sick,
    /// As `Sick`, and the server has the figures. A pending event is a heartbeat after a
    /// rollback.
    SickSeen,
    /// Runs the new release and is downloading the previous one (rollback).
    FetchOld,
    /// Crashed; the guard is restoring the last known good release.
    Down,
    /// As `Down`, and the server has noticed it stopped heartbeating.
    DownSilent,
    /// Restored locally to the last known good release; it will not take the new one again.
    Lkg,
    /// The local restore failed: dark until someone recovers it by hand.
    Dead,
    /// As `Dead`, and the server has noticed it stopped heartbeating.
    DeadSilent,
}

impl AgentState {
    /// Whether the server sees the agent on the new release (its last report said so).
    pub fn reports_new(self) -> bool {
        matches!(
            self,
            AgentState::New
                | AgentState::Sick
                | AgentState::SickSeen
                | AgentState::FetchOld
                | AgentState::Down
                | AgentState::DownSilent
                | AgentState::Dead
                | AgentState::DeadSilent
        )
    }
}

/// Running totals for one ring, as the gates count them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingTotals {
    pub agents: usize,
    /// Agents the server sees on the new release.
    pub adopted: usize,
    /// Crash reports visible to the controller (at most the gate's count per agent).
    pub crashes: usize,
    /// Agents with visible crash reports.
    pub crashed_agents: usize,
    /// Agents on the new release whose last heartbeat showed the fault (slow, quarantine, deny).
    pub faulty: usize,
    /// Agents whose last heartbeat is older than the gate's timeout.
    pub silent: usize,
}

pub struct Fleet {
    pub ring: Vec<u8>,
    pub state: Vec<AgentState>,
    /// The time of the agent's pending event, or `NEVER`.
    pub due: Vec<u32>,
    /// When the agent installed the new release.
    pub installed_at: Vec<u32>,
    /// The server has seen this agent's faulty figures and not yet its return.
    pub seen_faulty: Vec<bool>,
    /// Agent indices grouped by ring; ring `r` is `by_ring[ring_start[r]..ring_start[r + 1]]`.
    by_ring: Vec<u32>,
    ring_start: Vec<usize>,
    pub totals: Vec<RingTotals>,
}

/// The agent id the server would know agent `index` by; only built once per agent per run.
pub fn agent_id(index: u32, buffer: &mut String) -> &str {
    buffer.clear();
    // Writing to a String cannot fail.
    let _ = write!(buffer, "agent-{index}");
    buffer
}

impl Fleet {
    /// Places every agent in its ring with the controller's own `ring_of`.
    pub fn new(config: &SimConfig, spec: &RolloutSpec, rollout_id: &str) -> Fleet {
        let n = config.endpoints as usize;
        let rings = spec.rings.len();
        let mut ring = Vec::with_capacity(n);
        let mut buffer = String::new();
        let mut totals = vec![RingTotals::default(); rings];
        for index in 0..config.endpoints {
            let r = ring_of(agent_id(index, &mut buffer), &[], rollout_id, spec);
            // Strategies have at most 255 rings (checked when parsed).
            let r = u8::try_from(r).unwrap_or(u8::MAX);
            totals[usize::from(r)].agents += 1;
            ring.push(r);
        }
        // A counting sort: agents grouped by ring, in index order within a ring.
        let mut ring_start = vec![0usize; rings + 1];
        for (r, t) in totals.iter().enumerate() {
            ring_start[r + 1] = ring_start[r] + t.agents;
        }
        let mut next = ring_start.clone();
        let mut by_ring = vec![0u32; n];
        for (index, &r) in ring.iter().enumerate() {
            by_ring[next[usize::from(r)]] = index as u32;
            next[usize::from(r)] += 1;
        }
        Fleet {
            ring,
            state: vec![AgentState::Old; n],
            due: vec![NEVER; n],
            installed_at: vec![NEVER; n],
            seen_faulty: vec![false; n],
            by_ring,
            ring_start,
            totals,
        }
    }

    /// The agents in ring `r`.
    pub fn ring_members(&self, r: usize) -> &[u32] {
        &self.by_ring[self.ring_start[r]..self.ring_start[r + 1]]
    }

    /// The agents in rings `0..=r`: contiguous, since agents are grouped by ring.
    pub fn members_up_to(&self, r: usize) -> &[u32] {
        &self.by_ring[..self.ring_start[r + 1]]
    }
}

/// Per-agent draws for one run: when it heartbeats, whether and when the bad release hits it,
/// how long its downloads take, whether its local restore works.
pub struct Draws {
    seed: u64,
    jitter: bool,
    heartbeat_ms: u64,
    fault_fraction: f64,
    time_to_fault_ms: u64,
    download_ms: u64,
    restore_failure_fraction: f64,
}

impl Draws {
    pub fn new(config: &SimConfig) -> Draws {
        let m = &config.model;
        Draws {
            seed: config.seed,
            jitter: m.jitter,
            heartbeat_ms: m.heartbeat_ms,
            fault_fraction: m.fault_fraction,
            time_to_fault_ms: m.time_to_fault_ms,
            download_ms: m.download_ms,
            restore_failure_fraction: m.restore_failure_fraction,
        }
    }

    /// The agent's heartbeat phase in [0, interval).
    fn phase(&self, agent: u32) -> u64 {
        if self.jitter {
            (draw::uniform(self.seed, agent, Salt::HeartbeatPhase) * self.heartbeat_ms as f64)
                as u64
        } else {
            0
        }
    }

    /// The agent's first heartbeat strictly after `t`.
    pub fn next_heartbeat(&self, agent: u32, t: u64) -> u64 {
        let phase = self.phase(agent);
        if t < phase {
            phase
        } else {
            phase + ((t - phase) / self.heartbeat_ms + 1) * self.heartbeat_ms
        }
    }

    /// The agent's last periodic heartbeat at or before `t`, if any since time zero.
    pub fn last_heartbeat(&self, agent: u32, t: u64) -> Option<u64> {
        let phase = self.phase(agent);
        (t >= phase).then(|| phase + (t - phase) / self.heartbeat_ms * self.heartbeat_ms)
    }

    /// Whether the bad release hits this agent.
    pub fn faults(&self, agent: u32) -> bool {
        draw::uniform(self.seed, agent, Salt::Crashes) < self.fault_fraction
    }

    /// From installing the bad release to the fault, at least 1 ms.
    pub fn time_to_fault(&self, agent: u32) -> u64 {
        if self.jitter {
            draw::exponential_ms(self.seed, agent, Salt::TimeToCrash, self.time_to_fault_ms)
        } else {
            self.time_to_fault_ms.max(1)
        }
    }

    /// How long a download and install takes, at least 1 ms.
    pub fn download(&self, agent: u32, salt: Salt) -> u64 {
        if self.jitter {
            draw::around_ms(self.seed, agent, salt, self.download_ms)
        } else {
            self.download_ms.max(1)
        }
    }

    pub fn restore_fails(&self, agent: u32) -> bool {
        draw::uniform(self.seed, agent, Salt::RestoreFails) < self.restore_failure_fraction
    }
}
