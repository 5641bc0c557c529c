//! What an operator chooses when starting a rollout: rings, bake times and gate thresholds.

use serde::{Deserialize, Serialize};

/// One ring: agents whose position falls under `percent` (cumulative), plus agents carrying
/// any of `tags` (opt-in, e.g. `canary`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingSpec {
    pub name: String,
    /// Cumulative share of the fleet in this ring and all before it, 0–100.
    pub percent: f64,
    #[serde(default)]
    pub tags: Vec<String>,
    /// How long the ring must be healthy before the next ring starts, in milliseconds.
    pub bake_ms: i64,
}

/// Health gate thresholds. Relative gates compare the ring against the fleet's baseline taken
/// when the rollout started; where there is no baseline (a channel's first release) they use
/// the absolute budgets. Unknown fields are refused: a misspelt gate must not silently become
/// its default.
/// Why a rollout spec is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("ring {ring}: {text:?} is not a percentage")]
    NotAPercentage { ring: usize, text: String },
    #[error(
        "ring {ring}: {percent}% must be above the previous ring ({previous}%) and at most 100%"
    )]
    NotAbovePrevious {
        ring: usize,
        percent: f64,
        previous: f64,
    },
    #[error("the last ring must reach 100%, not {0}%")]
    FallsShort(f64),
    #[error("a rollout needs at least one ring")]
    NoRings,
    #[error("ring {0}: percentages must grow to 100 and bake times be positive")]
    BadRing(String),
    #[error("gate {name} must be a finite number of at least 0, not {value}")]
    BadThreshold { name: &'static str, value: f64 },
    #[error("min_adoption must be at most 1 and trim_share below 0.5")]
    ShareOutOfRange,
    #[error("heartbeat_timeout_ms must be positive, adoption_timeout_ms at least 0")]
    BadTimeout,
    #[error("max_reports_per_agent must be at least 1")]
    NoReportsCounted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateSpec {
    /// Crash and engine failure reports (every class) per agent in the touched rings since the
    /// rollout started.
    pub max_crashes_per_agent: f64,
    /// At most this many reports of one agent count: one crash loop's worth, so one noisy
    /// agent cannot outweigh a ring.
    pub max_reports_per_agent: usize,
    /// Ring hosts on the release with its engine quarantined (protection off) before the gate
    /// fails: 0, so one quarantine halts at once.
    pub max_quarantined_hosts: usize,
    /// Share of ring agents alive when their ring opened whose heartbeat is now older than
    /// `heartbeat_timeout_ms`.
    pub max_heartbeat_loss: f64,
    pub heartbeat_timeout_ms: i64,
    /// Verdict latency p99 may grow to baseline × ratio + slack.
    pub max_p99_ratio: f64,
    pub p99_slack_us: f64,
    /// Latency p99 budget when there is no baseline, µs.
    pub p99_budget_us: f64,
    /// A host whose CPU pressure (share of the interval some task waited for a CPU) reaches
    /// this percentage is starved: its latency is the host's. When most hosts on a release are
    /// starved, the latency gate shows its figure but cannot fail the ring.
    pub starved_cpu_pressure_pct: f64,
    /// Deny rate may grow by this much (absolute share of events).
    pub max_deny_rate_increase: f64,
    /// Would-deny answers (audit mode) per 1,000 permission events may exceed what the
    /// baseline denies or would deny per 1,000 by this much before an audit rollout halts.
    pub max_would_deny_per_1k_increase: f64,
    /// CPU (percent) may grow to baseline × ratio + slack.
    pub max_cpu_ratio: f64,
    pub cpu_slack_pct: f64,
    /// CPU budget when there is no baseline, percent.
    pub cpu_budget_pct: f64,
    /// RSS may grow to baseline × ratio + slack.
    pub max_rss_ratio: f64,
    pub rss_slack_bytes: f64,
    /// RSS budget when there is no baseline, bytes.
    pub rss_budget_bytes: f64,
    /// Engine failures (every class) per 1,000 permission events may grow by this much.
    pub max_failures_per_1k_events: f64,
    /// The share of permission events answered by policy may grow by this much.
    pub max_policy_share_increase: f64,
    /// Statistics gates cannot fail a ring before this many distinct agents run the release.
    pub min_agents_for_metrics: usize,
    /// Share of agents dropped from each end of a statistic (at least one from three agents).
    pub trim_share: f64,
    /// Share of the ring that must run the release before it can pass.
    pub min_adoption: f64,
    /// A ring that has not adopted by then fails (installs failing, agents refusing); an
    /// agent that says it is installing is not counted silent for this long.
    pub adoption_timeout_ms: i64,
}

impl Default for GateSpec {
    fn default() -> Self {
        GateSpec {
            max_crashes_per_agent: 0.05,
            max_reports_per_agent: 3,
            max_quarantined_hosts: 0,
            max_heartbeat_loss: 0.2,
            heartbeat_timeout_ms: 15_000,
            max_p99_ratio: 2.0,
            // Verdict latency includes the host's scheduling: a busy host adds milliseconds to
            // every p99 with no engine at fault. Engines past their deadline are caught by the
            // evidence gates (blamed deadline failures, quarantine), not by this one.
            p99_slack_us: 3_000.0,
            // Five default engine deadlines (5 ms): the responder answers by policy at the
            // deadline, so a p99 far past it is a host or agent in trouble.
            p99_budget_us: 25_000.0,
            // A quarter of the time with work waiting for a CPU: far beyond an idle host's few
            // percent, well below a host whose cores are all taken.
            starved_cpu_pressure_pct: 25.0,
            max_deny_rate_increase: 0.02,
            // Twenty more blocked execs or opens in every thousand than the fleet blocks today
            // (2 %, like the deny-rate gate): an audit release past that would break hosts.
            max_would_deny_per_1k_increase: 20.0,
            // Generous: a ring's first engine costs CPU the engine-less baseline never paid.
            max_cpu_ratio: 2.0,
            cpu_slack_pct: 20.0,
            cpu_budget_pct: 50.0,
            max_rss_ratio: 1.5,
            rss_slack_bytes: 32.0 * 1024.0 * 1024.0,
            // The agent itself plus a live and a spare instance at the engine host's default
            // 64 MiB memory limit, for two engines: what a healthy host may use.
            rss_budget_bytes: 320.0 * 1024.0 * 1024.0,
            max_failures_per_1k_events: 1.0,
            max_policy_share_increase: 0.01,
            min_agents_for_metrics: 3,
            trim_share: 0.01,
            min_adoption: 0.9,
            adoption_timeout_ms: 300_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    pub rings: Vec<RingSpec>,
    #[serde(default)]
    pub gates: GateSpec,
}

impl RolloutSpec {
    /// The default from the brief: canary-tagged hosts plus 1%, then 10%, 50%, 100%.
    pub fn default_rings(bake_ms: i64) -> RolloutSpec {
        let ring = |name: &str, percent: f64, tags: &[&str]| RingSpec {
            name: name.to_owned(),
            percent,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            bake_ms,
        };
        RolloutSpec {
            rings: vec![
                ring("canary", 1.0, &["canary"]),
                ring("early", 10.0, &[]),
                ring("half", 50.0, &[]),
                ring("fleet", 100.0, &[]),
            ],
            gates: GateSpec::default(),
        }
    }

    /// Parses `1,10,50,100` (cumulative percentages) into rings with one bake time.
    pub fn from_percentages(text: &str, bake_ms: i64) -> Result<RolloutSpec, SpecError> {
        let mut rings = Vec::new();
        let mut last = 0.0;
        for (index, part) in text.split(',').enumerate() {
            let percent: f64 = part.trim().trim_end_matches('%').parse().map_err(|_| {
                SpecError::NotAPercentage {
                    ring: index + 1,
                    text: part.to_owned(),
                }
            })?;
            if !(percent > last && percent <= 100.0) {
                return Err(SpecError::NotAbovePrevious {
                    ring: index + 1,
                    percent,
                    previous: last,
                });
            }
            last = percent;
            rings.push(RingSpec {
                name: format!("ring{index}"),
                percent,
                tags: if index == 0 {
                    vec!["canary".to_owned()]
                } else {
                    Vec::new()
                },
                bake_ms,
            });
        }
        if (last - 100.0).abs() > f64::EPSILON {
            return Err(SpecError::FallsShort(last));
        }
        Ok(RolloutSpec {
            rings,
            gates: GateSpec::default(),
        })
    }

    /// Checks the spec makes sense; the server refuses a rollout otherwise.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.rings.is_empty() {
            return Err(SpecError::NoRings);
        }
        let mut last = 0.0;
        for ring in &self.rings {
            if !(ring.percent >= last && ring.percent <= 100.0) || ring.bake_ms < 0 {
                return Err(SpecError::BadRing(ring.name.clone()));
            }
            last = ring.percent;
        }
        if (last - 100.0).abs() > f64::EPSILON {
            return Err(SpecError::FallsShort(last));
        }
        self.gates.validate()
    }
}

impl GateSpec {
    /// Every threshold finite and non-negative, shares within 0–1: a threshold of `inf` or
    /// NaN would make a gate meaningless and cannot be stored as JSON.
    pub fn validate(&self) -> Result<(), SpecError> {
        let numbers = [
            ("max_crashes_per_agent", self.max_crashes_per_agent),
            ("max_heartbeat_loss", self.max_heartbeat_loss),
            ("max_p99_ratio", self.max_p99_ratio),
            ("p99_slack_us", self.p99_slack_us),
            ("p99_budget_us", self.p99_budget_us),
            ("starved_cpu_pressure_pct", self.starved_cpu_pressure_pct),
            ("max_deny_rate_increase", self.max_deny_rate_increase),
            ("max_cpu_ratio", self.max_cpu_ratio),
            ("cpu_slack_pct", self.cpu_slack_pct),
            ("cpu_budget_pct", self.cpu_budget_pct),
            ("max_rss_ratio", self.max_rss_ratio),
            ("rss_slack_bytes", self.rss_slack_bytes),
            ("rss_budget_bytes", self.rss_budget_bytes),
            (
                "max_failures_per_1k_events",
                self.max_failures_per_1k_events,
            ),
            ("max_policy_share_increase", self.max_policy_share_increase),
            (
                "max_would_deny_per_1k_increase",
                self.max_would_deny_per_1k_increase,
            ),
            ("min_adoption", self.min_adoption),
            ("trim_share", self.trim_share),
        ];
        for (name, value) in numbers {
            if !value.is_finite() || value < 0.0 {
                return Err(SpecError::BadThreshold { name, value });
            }
        }
        if self.min_adoption > 1.0 || self.trim_share >= 0.5 {
            return Err(SpecError::ShareOutOfRange);
        }
        if self.heartbeat_timeout_ms <= 0 || self.adoption_timeout_ms < 0 {
            return Err(SpecError::BadTimeout);
        }
        if self.max_reports_per_agent == 0 {
            return Err(SpecError::NoReportsCounted);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_parse_and_validate() {
        let spec = RolloutSpec::from_percentages("1, 10,50%,100", 1000).expect("valid");
        assert_eq!(spec.rings.len(), 4);
        assert_eq!(spec.rings[0].tags, vec!["canary"]);
        assert!(spec.validate().is_ok());
        assert!(RolloutSpec::from_percentages("10,5,100", 1).is_err());
        assert!(RolloutSpec::from_percentages("10,50", 1).is_err());
        assert!(RolloutSpec::from_percentages("x", 1).is_err());
        assert!(RolloutSpec::default_rings(0).validate().is_ok());
    }

    #[test]
    fn misspelt_and_non_finite_gates_are_refused() {
        let misspelt = serde_json::from_str::<GateSpec>(r#"{"max_crash_per_agent": 0.1}"#);
        let error = misspelt.expect_err("unknown field").to_string();
        assert!(error.contains("max_crash_per_agent"), "{error}");
        let ok = serde_json::from_str::<GateSpec>(r#"{"max_crashes_per_agent": 0.1}"#);
        assert_eq!(ok.expect("known").max_crashes_per_agent, 0.1);
        assert!(
            serde_json::from_str::<RingSpec>(
                r#"{"name": "a", "percent": 100, "bake_ms": 1, "bake": 2}"#
            )
            .is_err()
        );
        for bad in [f64::INFINITY, f64::NAN, -1.0] {
            let mut spec = RolloutSpec::default_rings(0);
            spec.gates.max_p99_ratio = bad;
            let error = spec.validate().expect_err("refused");
            assert!(
                matches!(
                    error,
                    SpecError::BadThreshold {
                        name: "max_p99_ratio",
                        ..
                    }
                ),
                "{error}"
            );
        }
        let mut spec = RolloutSpec::default_rings(0);
        spec.gates.max_reports_per_agent = 0;
        assert_eq!(spec.validate(), Err(SpecError::NoReportsCounted));
        assert_eq!(
            RolloutSpec::from_percentages("1,10,50", 0),
            Err(SpecError::FallsShort(50.0))
        );
    }
}
