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
    /// Engine calls that failed in the sandbox (traps, deadlines), each answered by policy.
    pub engine_failures_contained: u64,
    /// Failure reports the server received: hosts send each failure once, rate-limited, so
    /// this is fewer than the calls that failed; the gates need only a few.
    pub failure_reports: usize,
    /// Crash groups on the server (one per signature).
    pub crash_groups: usize,
    /// Each crash group in plain words, as the server explains it.
    pub crash_group_summaries: Vec<String>,
    /// From a trap in a canary's sandbox to its report stored on the server: median and worst.
    pub crash_report_latency_s: f64,
    pub crash_report_latency_max_s: f64,
    /// True when act two's preflight stopped the same content before any host.
    pub preflight_blocked: bool,
    pub preflight_reason: String,
    /// Restore reports on the server: hosts whose guard restored the last known good release
    /// after their agent crashed in a loop (act four makes one).
    pub guard_restores: usize,
    /// Act four: the host whose agent was crashed three times.
    pub guard_restore_host: String,
    /// Act four: from the last crash to the agent serving on the last known good release.
    pub guard_restore_s: f64,
    /// Act four: the host's restore report reached the server.
    pub guard_restore_reported: bool,
    /// Act three: hosts that ran the release that stalls without crashing.
    pub stall_hosts_reached: usize,
    /// Act three: hosts that tried the stalling release on their own recent events first and
    /// refused it.
    pub stall_hosts_refused: usize,
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
                "engine calls that failed while serving",
                format!(
                    "{} (each answered by policy: nothing hung, nothing crashed)",
                    self.engine_failures_contained
                ),
            ),
            (
                "failure reports on the server",
                format!(
                    "{} (from canaries' checks before switching and from serving; hosts \
                     ship them rate-limited, the gates need only a few)",
                    self.failure_reports
                ),
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
            (
                "act four: guard restores",
                format!(
                    "{} ({} back on the last known good release {:.1} s after its third crash{})",
                    self.guard_restores,
                    self.guard_restore_host,
                    self.guard_restore_s,
                    if self.guard_restore_reported {
                        ", reported"
                    } else {
                        "; its report did NOT arrive"
                    }
                ),
            ),
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
                        "halted in ring {}: {} host(s) ran it, {} tried it first and refused it",
                        self.stall_max_ring, self.stall_hosts_reached, self.stall_hosts_refused
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
        for (n, group) in self.crash_group_summaries.iter().enumerate() {
            out.push_str(&format!("  crash group {}: {group}\n", n + 1));
        }
        out
    }
}
