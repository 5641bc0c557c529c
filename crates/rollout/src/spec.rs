//! What an operator chooses when starting a rollout: rings, bake times and gate thresholds.

use serde::{Deserialize, Serialize};

/// One ring: agents whose position falls under `percent` (cumulative), plus agents carrying
/// any of `tags` (opt-in, e.g. `canary`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
/// when the rollout started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GateSpec {
    /// Crash reports per agent in the ring since it started.
    pub max_crashes_per_agent: f64,
    /// Share of ring agents whose heartbeat is older than `heartbeat_timeout_ms`.
    pub max_heartbeat_loss: f64,
    pub heartbeat_timeout_ms: i64,
    /// Verdict latency p99 may grow to baseline × ratio + slack.
    pub max_p99_ratio: f64,
    pub p99_slack_us: f64,
    /// Deny rate may grow by this much (absolute share of events).
    pub max_deny_rate_increase: f64,
    /// CPU (percent) may grow to baseline × ratio + slack.
    pub max_cpu_ratio: f64,
    pub cpu_slack_pct: f64,
    /// RSS may grow to baseline × ratio + slack.
    pub max_rss_ratio: f64,
    pub rss_slack_bytes: f64,
    /// Share of the ring that must run the release before it can pass.
    pub min_adoption: f64,
    /// A ring that has not adopted by then fails (installs failing, agents refusing).
    pub adoption_timeout_ms: i64,
}

impl Default for GateSpec {
    fn default() -> Self {
        GateSpec {
            max_crashes_per_agent: 0.05,
            max_heartbeat_loss: 0.2,
            heartbeat_timeout_ms: 15_000,
            max_p99_ratio: 2.0,
            p99_slack_us: 1_000.0,
            max_deny_rate_increase: 0.02,
            // Generous: a ring's first engine costs CPU the engine-less baseline never paid.
            max_cpu_ratio: 2.0,
            cpu_slack_pct: 20.0,
            max_rss_ratio: 1.5,
            rss_slack_bytes: 32.0 * 1024.0 * 1024.0,
            min_adoption: 0.9,
            adoption_timeout_ms: 300_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub fn from_percentages(text: &str, bake_ms: i64) -> Result<RolloutSpec, String> {
        let mut rings = Vec::new();
        let mut last = 0.0;
        for (index, part) in text.split(',').enumerate() {
            let percent: f64 = part
                .trim()
                .trim_end_matches('%')
                .parse()
                .map_err(|_| format!("ring {}: {part:?} is not a percentage", index + 1))?;
            if !(percent > last && percent <= 100.0) {
                return Err(format!(
                    "ring {}: {percent}% must be above the previous ring ({last}%) and at most 100%",
                    index + 1
                ));
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
            return Err(format!("the last ring must reach 100%, not {last}%"));
        }
        Ok(RolloutSpec {
            rings,
            gates: GateSpec::default(),
        })
    }

    /// Checks the spec makes sense; the server refuses a rollout otherwise.
    pub fn validate(&self) -> Result<(), String> {
        if self.rings.is_empty() {
            return Err("a rollout needs at least one ring".into());
        }
        let mut last = 0.0;
        for ring in &self.rings {
            if !(ring.percent >= last && ring.percent <= 100.0) || ring.bake_ms < 0 {
                return Err(format!(
                    "ring {}: percentages must grow to 100 and bake times be positive",
                    ring.name
                ));
            }
            last = ring.percent;
        }
        if (last - 100.0).abs() > f64::EPSILON {
            return Err("the last ring must reach 100%".into());
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
}
