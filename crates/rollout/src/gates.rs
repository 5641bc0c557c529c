//! Health gates: summarise a group of agents, compare a ring against the baseline, explain each
//! verdict in numbers.

use crate::spec::GateSpec;
use crate::state::AgentHealth;
use serde::{Deserialize, Serialize};

/// Aggregate health of a group of agents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthSummary {
    pub agents: usize,
    /// Agents running the rollout's release.
    pub adopted: usize,
    pub crashes: usize,
    /// Agents whose heartbeat is older than the timeout.
    pub silent: usize,
    /// Median over agents of their verdict latency p99, µs.
    pub p99_us: f64,
    pub deny_rate: f64,
    pub cpu_pct: f64,
    pub rss_bytes: f64,
}

impl HealthSummary {
    pub fn crashes_per_agent(&self) -> f64 {
        self.crashes as f64 / self.agents.max(1) as f64
    }

    pub fn heartbeat_loss(&self) -> f64 {
        self.silent as f64 / self.agents.max(1) as f64
    }

    pub fn adoption(&self) -> f64 {
        self.adopted as f64 / self.agents.max(1) as f64
    }
}

/// Summarises `agents`. Crashes count from `since_ms`; metrics come from agents on
/// `version` (or from all agents when `version` is `None`, for a baseline).
pub fn summarise<'a>(
    agents: impl IntoIterator<Item = &'a AgentHealth>,
    version: Option<&str>,
    now_ms: i64,
    since_ms: i64,
    heartbeat_timeout_ms: i64,
) -> HealthSummary {
    let mut summary = HealthSummary::default();
    let mut p99s = Vec::new();
    let (mut deny, mut cpu, mut rss, mut measured) = (0.0, 0.0, 0.0, 0usize);
    for agent in agents {
        summary.agents += 1;
        summary.crashes += agent
            .crashes_ms
            .iter()
            .filter(|&&at| at >= since_ms)
            .count();
        if now_ms - agent.last_heartbeat_ms > heartbeat_timeout_ms {
            summary.silent += 1;
        }
        let on_version = match version {
            Some(version) => agent.version.as_deref() == Some(version),
            None => true,
        };
        if on_version {
            summary.adopted += 1;
            p99s.push(agent.p99_us);
            deny += agent.deny_rate;
            cpu += agent.cpu_pct;
            rss += agent.rss_bytes;
            measured += 1;
        }
    }
    if measured > 0 {
        let n = measured as f64;
        summary.deny_rate = deny / n;
        summary.cpu_pct = cpu / n;
        summary.rss_bytes = rss / n;
        p99s.sort_by(f64::total_cmp);
        summary.p99_us = p99s[p99s.len() / 2];
    }
    summary
}

/// One gate's verdict, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub gate: String,
    pub value: f64,
    pub threshold: f64,
    pub passed: bool,
    pub explanation: String,
}

fn gate(name: &str, value: f64, threshold: f64, what: String) -> GateResult {
    let passed = value <= threshold;
    GateResult {
        gate: name.to_owned(),
        value,
        threshold,
        passed,
        explanation: format!(
            "{what}: {value:.3} {} {threshold:.3}",
            if passed { "≤" } else { ">" }
        ),
    }
}

/// Compares a ring's health with the baseline. Metric gates only apply once someone in the
/// ring runs the release; crash and heartbeat gates apply from the start.
pub fn evaluate_gates(
    spec: &GateSpec,
    baseline: &HealthSummary,
    ring: &HealthSummary,
) -> Vec<GateResult> {
    let mut results = vec![
        gate(
            "crashes",
            ring.crashes_per_agent(),
            spec.max_crashes_per_agent,
            format!(
                "crash reports per agent ({} in {} agents)",
                ring.crashes, ring.agents
            ),
        ),
        gate(
            "heartbeat_loss",
            ring.heartbeat_loss(),
            spec.max_heartbeat_loss,
            format!(
                "share of agents silent ({} of {})",
                ring.silent, ring.agents
            ),
        ),
    ];
    if ring.adopted > 0 {
        results.push(gate(
            "latency_p99",
            ring.p99_us,
            baseline.p99_us * spec.max_p99_ratio + spec.p99_slack_us,
            format!("verdict latency p99 µs (baseline {:.0})", baseline.p99_us),
        ));
        results.push(gate(
            "deny_rate",
            ring.deny_rate,
            baseline.deny_rate + spec.max_deny_rate_increase,
            format!("deny rate (baseline {:.3})", baseline.deny_rate),
        ));
        results.push(gate(
            "cpu",
            ring.cpu_pct,
            baseline.cpu_pct * spec.max_cpu_ratio + spec.cpu_slack_pct,
            format!("agent CPU % (baseline {:.1})", baseline.cpu_pct),
        ));
        results.push(gate(
            "rss",
            ring.rss_bytes,
            baseline.rss_bytes * spec.max_rss_ratio + spec.rss_slack_bytes,
            format!("agent RSS bytes (baseline {:.0})", baseline.rss_bytes),
        ));
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(version: &str, crashes: &[i64], deny: f64) -> AgentHealth {
        AgentHealth {
            agent_id: "a".into(),
            tags: vec![],
            version: Some(version.into()),
            last_heartbeat_ms: 1_000,
            crashes_ms: crashes.to_vec(),
            p99_us: 100.0,
            deny_rate: deny,
            cpu_pct: 1.0,
            rss_bytes: 20e6,
        }
    }

    #[test]
    fn crash_gate_trips_and_explains() {
        let baseline = summarise(&[agent("1", &[], 0.0)], None, 1_000, 0, 15_000);
        let ring = summarise(
            &[agent("2", &[500], 0.0), agent("2", &[], 0.0)],
            Some("2"),
            1_000,
            0,
            15_000,
        );
        let results = evaluate_gates(&GateSpec::default(), &baseline, &ring);
        let crash = results
            .iter()
            .find(|g| g.gate == "crashes")
            .expect("crash gate");
        assert!(!crash.passed);
        assert!(
            crash.explanation.contains("1 in 2 agents"),
            "{}",
            crash.explanation
        );
        assert!(
            results
                .iter()
                .filter(|g| g.gate != "crashes")
                .all(|g| g.passed)
        );
    }

    #[test]
    fn deny_rate_jump_trips() {
        let baseline = summarise(&[agent("1", &[], 0.01)], None, 1_000, 0, 15_000);
        let ring = summarise(&[agent("2", &[], 0.30)], Some("2"), 1_000, 0, 15_000);
        let results = evaluate_gates(&GateSpec::default(), &baseline, &ring);
        assert!(
            !results
                .iter()
                .find(|g| g.gate == "deny_rate")
                .expect("gate")
                .passed
        );
    }

    #[test]
    fn old_crashes_and_silence_are_counted_right() {
        let mut silent = agent("2", &[10], 0.0);
        silent.last_heartbeat_ms = 0;
        let ring = summarise(&[silent], Some("2"), 100_000, 50, 15_000);
        assert_eq!(ring.crashes, 0, "crash before the ring started");
        assert_eq!(ring.silent, 1);
    }
}
