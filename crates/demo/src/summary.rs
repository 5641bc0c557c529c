//! The demo's result: what the bad release cost, as a table for people and one JSON object for
//! scripts.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub hosts_total: usize,
    pub canary_hosts: usize,
    pub live_host: bool,
    pub hosts_reached_by_bad_release: usize,
    /// Hosts that were given the bad release, tried it on their own recent events before
    /// switching, and refused it: it never served there.
    pub hosts_refused_bad_release: usize,
    /// 0 = the first ring.
    pub bad_release_max_ring: u64,
    /// From the bad rollout's start to its automatic halt and rollback.
    pub time_to_halt_s: f64,
    /// From the halt until every host ran the good release again.
    pub time_to_recover_s: f64,
    /// Permission events that never got an answer.
    pub events_lost: u64,
    /// Permission events answered, over the whole demo.
    pub events_answered: u64,
    /// Denies: neither release denies anything, so every deny would be wrong.
    pub wrong_denies: u64,
    /// Engine failures contained in the sandbox (traps answered by policy).
    pub engine_failures_contained: u64,
    pub crash_groups: usize,
    /// From a trap in a canary's sandbox to its report stored on the server: median and worst.
    pub crash_report_latency_s: f64,
    pub crash_report_latency_max_s: f64,
    /// True when act two's preflight stopped the same content before any host.
    pub preflight_blocked: bool,
    pub preflight_reason: String,
    /// Hosts whose guard restored the last known good release after agent crashes.
    pub guard_restores: usize,
    /// Act three: hosts that ran the release that stalls without crashing.
    pub stall_hosts_reached: usize,
    /// Act three: the furthest ring the stalling release reached (0 = first).
    pub stall_max_ring: u64,
    /// Act three: the gates halted and rolled back the stalling release.
    pub stall_halted: bool,
    /// Act three: the gates that tripped, each with its numbers.
    pub stall_gates: Vec<String>,
    pub wall_time_s: f64,
}

impl Summary {
    pub fn table(&self) -> String {
        let rows = [
            ("hosts", self.hosts_total.to_string()),
            ("canary hosts (ring 0)", self.canary_hosts.to_string()),
            (
                "hosts reached by the bad release",
                self.hosts_reached_by_bad_release.to_string(),
            ),
            (
                "hosts that tried it first and refused it",
                self.hosts_refused_bad_release.to_string(),
            ),
            (
                "furthest ring it reached",
                format!("{} (0 = first)", self.bad_release_max_ring),
            ),
            ("time to halt", format!("{:.1} s", self.time_to_halt_s)),
            (
                "time to full recovery after the halt",
                format!("{:.1} s", self.time_to_recover_s),
            ),
            (
                "engine calls that failed, answered by policy",
                self.engine_failures_contained.to_string(),
            ),
            (
                "permission events answered",
                self.events_answered.to_string(),
            ),
            ("events lost", self.events_lost.to_string()),
            ("wrong denies", self.wrong_denies.to_string()),
            (
                "crash groups on the server (one per signature)",
                self.crash_groups.to_string(),
            ),
            (
                "trap → report on the server",
                format!(
                    "{:.2} s median, {:.2} s worst",
                    self.crash_report_latency_s, self.crash_report_latency_max_s
                ),
            ),
            ("guard restores needed", self.guard_restores.to_string()),
            (
                "act two: preflight blocked it",
                if self.preflight_blocked {
                    "yes".to_owned()
                } else {
                    "NO".to_owned()
                },
            ),
            (
                "act three: the stalling release",
                if self.stall_halted {
                    format!(
                        "halted in ring {} after reaching {} host(s)",
                        self.stall_max_ring, self.stall_hosts_reached
                    )
                } else {
                    format!("NOT halted: reached {} host(s)", self.stall_hosts_reached)
                },
            ),
            ("demo wall time", format!("{:.1} s", self.wall_time_s)),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in rows {
            out.push_str(&format!("  {key:<width$}  {value}\n"));
        }
        out
    }
}
