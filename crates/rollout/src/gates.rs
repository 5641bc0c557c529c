//! Health gates: summarise a group of agents, compare a ring against the baseline, explain each
//! verdict in numbers.
//!
//! Gates come in two classes, because every figure an agent sends is a claim:
//!
//! - **Evidence** (crash, engine failure and refused-install reports, quarantine, silence): one host's worth is
//!   enough to halt, because a bad release in ring 0 of a small fleet must still stop there.
//!   Halting is the safe direction, and each agent's contribution is bounded (at most
//!   [`GateSpec::max_reports_per_agent`] reports count), so a noisy agent halts only rollouts
//!   whose ring it is in, and only where one host's worth would have halted them anyway.
//! - **Statistics** (latency, deny rate, CPU, memory, engine failures per 1,000 events, the
//!   share of events answered by policy): read as a trimmed mean over the agents running the
//!   release, and unable to fail a ring before [`GateSpec::min_agents_for_metrics`] distinct
//!   agents report. Trimming at least one agent from each end means no single agent moves the
//!   figure beyond the range of the others, whatever it claims.
//!
//! Every number is made finite before it is summed, compared or stored: a stored `inf`
//! serialises as JSON `null` and makes the rollout unreadable.

use crate::spec::GateSpec;
use crate::state::AgentHealth;
use serde::{Deserialize, Deserializer, Serialize};

/// The largest figure one agent's claim may contribute. Large enough for any honest value
/// (64 TiB of RSS is 7e13), small enough that ten million of them still sum to a finite f64.
const FIGURE_MAX: f64 = 1e15;

/// A deny-rate rise this large fails a ring however few agents show it.
pub const BLATANT_DENY_INCREASE: f64 = 0.5;

/// `value` as a finite, non-negative figure: NaN counts as 0, infinities as the bound.
pub fn finite(value: f64, max: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, max)
    }
}

/// Reads a float that an older server may have stored as `null` (a non-finite value
/// serialised by serde_json) as 0, so that an old rollout stays readable.
pub(crate) fn lenient_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.map_or(0.0, |v| finite(v, f64::MAX)))
}

/// The figures the statistics gates read, per agent or aggregated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// Verdict latency p99, µs, measured per permission event (policy answers included).
    #[serde(deserialize_with = "lenient_f64")]
    pub p99_us: f64,
    #[serde(deserialize_with = "lenient_f64")]
    pub deny_rate: f64,
    #[serde(deserialize_with = "lenient_f64")]
    pub cpu_pct: f64,
    #[serde(deserialize_with = "lenient_f64")]
    pub rss_bytes: f64,
    /// Engine failures of every class per 1,000 permission events.
    #[serde(deserialize_with = "lenient_f64")]
    pub failures_per_1k: f64,
    /// Share of permission events answered by policy (deadline, quarantine, queue, failure).
    #[serde(deserialize_with = "lenient_f64")]
    pub policy_share: f64,
    /// Answers a verdict would have denied but audit mode allowed, per 1,000 permission
    /// events.
    #[serde(deserialize_with = "lenient_f64")]
    pub would_deny_per_1k: f64,
}

/// How many figures [`Metrics`] has: the statistics summarised per agent.
const FIGURES: usize = 7;

impl Metrics {
    /// One agent's figures, every one finite and bounded.
    pub fn of(agent: &AgentHealth) -> Metrics {
        let events = agent.permission_events.max(1) as f64;
        Metrics {
            p99_us: finite(agent.p99_us, FIGURE_MAX),
            deny_rate: finite(agent.deny_rate, 1.0),
            cpu_pct: finite(agent.cpu_pct, FIGURE_MAX),
            rss_bytes: finite(agent.rss_bytes, FIGURE_MAX),
            failures_per_1k: finite(agent.failures as f64 * 1000.0 / events, FIGURE_MAX),
            policy_share: finite(agent.policy_answers as f64 / events, 1.0),
            would_deny_per_1k: finite(agent.would_deny as f64 * 1000.0 / events, 1000.0),
        }
    }

    fn fields(&self) -> [f64; FIGURES] {
        [
            self.p99_us,
            self.deny_rate,
            self.cpu_pct,
            self.rss_bytes,
            self.failures_per_1k,
            self.policy_share,
            self.would_deny_per_1k,
        ]
    }

    fn from_fields(f: [f64; FIGURES]) -> Metrics {
        Metrics {
            p99_us: f[0],
            deny_rate: f[1],
            cpu_pct: f[2],
            rss_bytes: f[3],
            failures_per_1k: f[4],
            policy_share: f[5],
            would_deny_per_1k: f[6],
        }
    }

    /// What hosts block or would block per 1,000 permission events: denies in enforce mode
    /// plus would-denies in audit mode. The would-deny gate's baseline, so that an audit
    /// release is compared with what the fleet denies today.
    pub fn blocked_per_1k(&self) -> f64 {
        self.deny_rate * 1000.0 + self.would_deny_per_1k
    }
}

/// How many agents a trimmed mean drops from each end: none below three agents, else `share`
/// of them but at least one, so no single agent is ever in the figure alone at an extreme.
pub fn trim_count(agents: usize, share: f64) -> usize {
    if agents < 3 {
        return 0;
    }
    let by_share = (agents as f64 * finite(share, 0.49)) as usize;
    by_share.max(1).min((agents - 1) / 2)
}

/// Mean and trimmed mean of values given as (value, how many agents report it). Groups are
/// summed in value order, so any caller holding the same groups gets bit-identical figures
/// (the simulator passes two groups for a million agents; `summarise` one per distinct value).
pub fn mean_and_trimmed(groups: &mut [(f64, usize)], trim_share: f64) -> (f64, f64) {
    groups.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n: usize = groups.iter().map(|g| g.1).sum();
    if n == 0 {
        return (0.0, 0.0);
    }
    let k = trim_count(n, trim_share);
    let (mut sum, mut kept_sum) = (0.0, 0.0);
    let mut index = 0;
    for &(value, count) in groups.iter() {
        if count == 0 {
            continue;
        }
        sum += value * count as f64;
        // Agents index..index+count hold this value; keep those in [k, n - k).
        let kept = (index + count).min(n - k).saturating_sub(index.max(k));
        kept_sum += value * kept as f64;
        index += count;
    }
    (sum / n as f64, kept_sum / (n - 2 * k) as f64)
}

/// Aggregate health of a group of agents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthSummary {
    pub agents: usize,
    /// Agents running the rollout's release.
    pub adopted: usize,
    /// Crash and engine failure reports counted (at most `max_reports_per_agent` per agent).
    pub crashes: usize,
    /// Agents with at least one counted report.
    pub crashed_agents: usize,
    /// Watched agents whose heartbeat is older than the timeout.
    pub silent: usize,
    /// Agents the heartbeat gate watches: those alive when their ring opened.
    pub watched: usize,
    /// Agents whose last heartbeat says they are installing a release.
    pub installing: usize,
    /// Agents on the release with the rollout's engine quarantined: protection off.
    pub quarantined: usize,
    /// Agents on the release whose host was starved of CPU over their last interval.
    pub starved: usize,
    /// Trimmed means over the agents on the release (what the statistics gates read); on the
    /// wire the figures sit beside the counts, as they always have.
    #[serde(flatten)]
    pub trimmed: Metrics,
    /// Plain means of the same figures, beside the trimmed ones, for operators.
    pub mean: Metrics,
}

impl HealthSummary {
    pub fn crashes_per_agent(&self) -> f64 {
        self.crashes as f64 / self.agents.max(1) as f64
    }

    pub fn heartbeat_loss(&self) -> f64 {
        self.silent as f64 / self.watched.max(1) as f64
    }

    pub fn adoption(&self) -> f64 {
        self.adopted as f64 / self.agents.max(1) as f64
    }

    /// Sets the trimmed and plain figures from groups of agents that report the same figures
    /// (the simulator's healthy and faulty hosts).
    pub fn set_metrics_from(&mut self, groups: &[(Metrics, usize)], trim_share: f64) {
        let mut split: [Vec<(f64, usize)>; FIGURES] = Default::default();
        for &(metrics, count) in groups {
            for (list, value) in split.iter_mut().zip(metrics.fields()) {
                list.push((value, count));
            }
        }
        self.set_metrics(&mut split, trim_share);
    }

    /// Sets the trimmed and plain figures from per-metric groups of (value, agents).
    pub fn set_metrics(&mut self, groups: &mut [Vec<(f64, usize)>; FIGURES], trim_share: f64) {
        let mut means = [0.0; FIGURES];
        let mut trimmed = [0.0; FIGURES];
        for (i, metric) in groups.iter_mut().enumerate() {
            (means[i], trimmed[i]) = mean_and_trimmed(metric, trim_share);
        }
        self.mean = Metrics::from_fields(means);
        self.trimmed = Metrics::from_fields(trimmed);
    }
}

/// What a summary counts and over which time: built from the gate spec by [`Window::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window<'a> {
    /// Metrics come from agents on this version (all agents for a baseline).
    pub version: Option<&'a str>,
    pub now_ms: i64,
    /// Reports count from here to `now_ms` (a report claiming a later time never counts).
    pub since_ms: i64,
    pub heartbeat_timeout_ms: i64,
    /// An agent that said it is installing is not silent for this long.
    pub install_timeout_ms: i64,
    pub max_reports_per_agent: usize,
    pub trim_share: f64,
    /// CPU pressure (percent) from which a host counts as starved.
    pub starved_cpu_pressure_pct: f64,
}

impl<'a> Window<'a> {
    pub fn new(spec: &GateSpec, version: Option<&'a str>, now_ms: i64, since_ms: i64) -> Self {
        Window {
            version,
            now_ms,
            since_ms,
            heartbeat_timeout_ms: spec.heartbeat_timeout_ms,
            install_timeout_ms: spec.adoption_timeout_ms,
            max_reports_per_agent: spec.max_reports_per_agent,
            trim_share: spec.trim_share,
            starved_cpu_pressure_pct: spec.starved_cpu_pressure_pct,
        }
    }
}

/// Summarises `agents`, each with the time its ring opened (the heartbeat gate watches only
/// agents alive then: a host stopped before the rollout reached it is not the release's doing).
/// Decommissioned agents are left out entirely.
pub fn summarise<'a>(
    agents: impl IntoIterator<Item = (&'a AgentHealth, i64)>,
    window: &Window<'_>,
) -> HealthSummary {
    let mut summary = HealthSummary::default();
    let mut values: [Vec<f64>; FIGURES] = Default::default();
    for (agent, opened_ms) in agents {
        if agent.decommissioned {
            continue;
        }
        summary.agents += 1;
        let reports = agent
            .crashes_ms
            .iter()
            .filter(|&&at| at >= window.since_ms && at <= window.now_ms)
            .count()
            .min(window.max_reports_per_agent);
        summary.crashes += reports;
        summary.crashed_agents += usize::from(reports > 0);
        let age = window.now_ms.saturating_sub(agent.last_heartbeat_ms);
        let watched =
            agent.last_heartbeat_ms >= opened_ms.saturating_sub(window.heartbeat_timeout_ms);
        let installing = agent.installing && age <= window.install_timeout_ms;
        summary.watched += usize::from(watched);
        summary.installing += usize::from(installing);
        if watched && !installing && age > window.heartbeat_timeout_ms {
            summary.silent += 1;
        }
        let on_version = match window.version {
            Some(version) => agent.version.as_deref() == Some(version),
            None => true,
        };
        if on_version {
            summary.adopted += 1;
            summary.quarantined += usize::from(agent.quarantined);
            summary.starved += usize::from(
                finite(agent.cpu_pressure_pct, 100.0) >= window.starved_cpu_pressure_pct,
            );
            for (list, value) in values.iter_mut().zip(Metrics::of(agent).fields()) {
                list.push(value);
            }
        }
    }
    let mut groups: [Vec<(f64, usize)>; FIGURES] = Default::default();
    for (group, list) in groups.iter_mut().zip(values.iter_mut()) {
        list.sort_by(f64::total_cmp);
        for &value in list.iter() {
            match group.last_mut() {
                Some((last, count)) if last.total_cmp(&value).is_eq() => *count += 1,
                _ => group.push((value, 1)),
            }
        }
    }
    summary.set_metrics(&mut groups, window.trim_share);
    summary
}

/// One gate's verdict, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub gate: String,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub value: f64,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub threshold: f64,
    pub passed: bool,
    #[serde(default)]
    pub explanation: String,
}

/// A gate's verdict; value and threshold are made finite first, so what is stored can always
/// be read back.
pub(crate) fn gate(name: &str, value: f64, threshold: f64, what: String) -> GateResult {
    gate_shown(name, value, threshold, what, |x| format!("{x:.3}"))
}

/// [`gate`] with the figures shown by `show` in the explanation (MiB rather than bytes); the
/// result's `value` and `threshold` stay in the gate's own unit.
fn gate_shown(
    name: &str,
    value: f64,
    threshold: f64,
    what: String,
    show: fn(f64) -> String,
) -> GateResult {
    let (value, threshold) = (finite(value, f64::MAX), finite(threshold, f64::MAX));
    let passed = value <= threshold;
    GateResult {
        gate: name.to_owned(),
        value,
        threshold,
        passed,
        explanation: format!(
            "{what}: {} {} {}",
            show(value),
            if passed { "≤" } else { ">" },
            show(threshold)
        ),
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// A relative threshold when the baseline measured this figure, else the absolute budget: a
/// first release has nothing to compare with, and `0 × ratio` would fail any engine at all.
fn relative_or_budget(
    known: bool,
    base: f64,
    ratio: f64,
    slack: f64,
    budget: f64,
    show: fn(f64) -> String,
) -> (f64, String) {
    if known && base > 0.0 {
        (base * ratio + slack, format!("baseline {}", show(base)))
    } else {
        (budget, "no baseline: absolute budget".to_owned())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Compares a ring's health with the baseline. Evidence gates apply from the start; statistics
/// gates once someone in the ring runs the release, and can fail only with enough agents.
pub fn evaluate_gates(
    spec: &GateSpec,
    baseline: &HealthSummary,
    ring: &HealthSummary,
) -> Vec<GateResult> {
    let evidence = match (ring.agents, ring.crashes) {
        (0, _) => "no agents in this ring yet".to_owned(),
        (agents, 0) => format!("none from {agents} agent{}", plural(agents)),
        (agents, crashes) => format!(
            "{crashes} report{} from {} of {agents} agent{}",
            plural(crashes),
            ring.crashed_agents,
            plural(agents)
        ),
    };
    let mut results = vec![
        gate(
            "crashes",
            ring.crashes_per_agent(),
            spec.max_crashes_per_agent,
            format!("crash, refused-install and engine failure reports per agent ({evidence})"),
        ),
        gate(
            "quarantine",
            ring.quarantined as f64,
            spec.max_quarantined_hosts as f64,
            format!(
                "hosts with the release's engine quarantined, protection off ({} of {})",
                ring.quarantined, ring.adopted
            ),
        ),
        gate(
            "heartbeat_loss",
            ring.heartbeat_loss(),
            spec.max_heartbeat_loss,
            format!(
                "share of agents alive at ring open now silent ({} of {})",
                ring.silent, ring.watched
            ),
        ),
    ];
    if ring.adopted == 0 {
        return results;
    }
    let known = baseline.adopted >= spec.min_agents_for_metrics;
    let base = if known {
        baseline.trimmed
    } else {
        Metrics::default()
    };
    let (p99, p99_why) = relative_or_budget(
        known,
        base.p99_us,
        spec.max_p99_ratio,
        spec.p99_slack_us,
        spec.p99_budget_us,
        |x| format!("{x:.1}"),
    );
    let (cpu, cpu_why) = relative_or_budget(
        known,
        base.cpu_pct,
        spec.max_cpu_ratio,
        spec.cpu_slack_pct,
        spec.cpu_budget_pct,
        |x| format!("{x:.1}"),
    );
    let (rss, rss_why) = relative_or_budget(
        known,
        base.rss_bytes,
        spec.max_rss_ratio,
        spec.rss_slack_bytes,
        spec.rss_budget_bytes,
        mib,
    );
    // What the fleet blocks today as a share of decisions: its denies, and what it would deny
    // where it audits. Enforcing a release a fleet audited compares with what it would have
    // denied, not with the nothing audit mode denied.
    let base_blocked = base.blocked_per_1k() / 1000.0;
    let statistics = [
        gate(
            "latency_p99",
            ring.trimmed.p99_us,
            p99,
            format!("verdict latency p99 µs ({p99_why})"),
        ),
        gate(
            "deny_rate",
            ring.trimmed.deny_rate,
            base_blocked + spec.max_deny_rate_increase,
            format!("deny rate (baseline {base_blocked:.3})"),
        ),
        gate(
            "engine_failures",
            ring.trimmed.failures_per_1k,
            base.failures_per_1k + spec.max_failures_per_1k_events,
            format!(
                "engine failures of every class per 1,000 events (baseline {:.2})",
                base.failures_per_1k
            ),
        ),
        gate(
            "policy_answers",
            ring.trimmed.policy_share,
            base.policy_share + spec.max_policy_share_increase,
            format!(
                "share of permission events answered by policy (baseline {:.3})",
                base.policy_share
            ),
        ),
        gate(
            "would_deny_rate",
            ring.trimmed.would_deny_per_1k,
            base.blocked_per_1k() + spec.max_would_deny_per_1k_increase,
            format!(
                "answers audit mode allowed that the release would deny, per 1,000 events \
                 (baseline: the fleet denies or would deny {:.2})",
                base.blocked_per_1k()
            ),
        ),
        gate(
            "cpu",
            ring.trimmed.cpu_pct,
            cpu,
            format!("agent CPU % ({cpu_why})"),
        ),
        gate_shown(
            "rss",
            ring.trimmed.rss_bytes,
            rss,
            format!("agent RSS ({rss_why})"),
            mib,
        ),
    ];
    let enough = ring.adopted >= spec.min_agents_for_metrics;
    // Most hosts on the release waited for a CPU a good part of the time: their verdicts
    // queued behind other work, whatever the engine does. A majority, so one host's claim
    // cannot excuse a ring; a release that itself eats the CPU is caught by the CPU and
    // deadline gates, which starvation does not excuse.
    let starved = ring.starved > 0 && ring.starved * 2 > ring.adopted;
    for mut result in statistics {
        // A release that newly denies at least half of what the fleet allowed is a logical
        // failure as fatal as a crash (a rule that denies /bin/sh): evidence, like quarantine,
        // that one or two canaries may show, not a statistic waiting for three agents.
        // The same for what an audit release would deny: it blocks nothing yet, but it would
        // break the hosts the moment it were enforced.
        let blatant_denial = match result.gate.as_str() {
            "deny_rate" => result.value - base_blocked >= BLATANT_DENY_INCREASE,
            "would_deny_rate" => {
                result.value - base.blocked_per_1k() >= BLATANT_DENY_INCREASE * 1000.0
            }
            _ => false,
        };
        if starved && result.gate == "latency_p99" && !result.passed {
            result.passed = true;
            result.explanation = format!(
                "{} (not held against the release: {} of {} hosts on it were starved of CPU, \
                 pressure ≥ {:.0} %)",
                result.explanation, ring.starved, ring.adopted, spec.starved_cpu_pressure_pct
            );
            results.push(result);
            continue;
        }
        if !enough && !result.passed && !blatant_denial {
            // One or two agents' figures are claims nobody corroborates: shown, not acted on.
            result.passed = true;
            result.explanation = format!(
                "{} (only {} agents on the release; {} needed before this gate can fail)",
                result.explanation, ring.adopted, spec.min_agents_for_metrics
            );
        }
        results.push(result);
    }
    results
}

#[cfg(test)]
mod tests;
