//! Rollout strategies to compare: all at once, the default rings, and ring specs from the
//! command line (`name=1,10,50,100`), each a real `RolloutSpec`.

use crate::SimError;
use ringfence_rollout::{GateSpec, RingSpec, RolloutSpec};

/// A named rollout spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    pub name: String,
    pub spec: RolloutSpec,
}

impl Strategy {
    /// One ring holding the whole fleet: what shipping content to everyone at once looks like,
    /// still watched by the same gates.
    pub fn all_at_once(bake_ms: u64) -> Strategy {
        Strategy {
            name: "all-at-once".to_owned(),
            spec: RolloutSpec {
                rings: vec![RingSpec {
                    name: "all".to_owned(),
                    percent: 100.0,
                    tags: Vec::new(),
                    bake_ms: bake_ms as i64,
                }],
                gates: GateSpec::default(),
            },
        }
    }

    /// The controller's default rings (canary 1%, 10%, 50%, 100%).
    pub fn default_rings(bake_ms: u64) -> Strategy {
        Strategy {
            name: "rings".to_owned(),
            spec: RolloutSpec::default_rings(bake_ms as i64),
        }
    }

    /// Exponential rings from a 0.1 % first ring (0.1 %, 1 %, 10 %, 50 %, 100 %): in a
    /// million-host fleet the first ring is a thousand hosts, enough for every statistics gate,
    /// and a bad release stops there.
    pub fn exponential(bake_ms: u64) -> Strategy {
        let mut spec = RolloutSpec::from_percentages("0.1,1,10,50,100", bake_ms as i64)
            .unwrap_or_else(|_| RolloutSpec::default_rings(bake_ms as i64));
        for (ring, name) in spec
            .rings
            .iter_mut()
            .zip(["canary", "first", "early", "half", "fleet"])
        {
            ring.name = name.to_owned();
        }
        Strategy {
            name: "exponential".to_owned(),
            spec,
        }
    }

    /// The strategies every run compares: all at once, the default rings, exponential rings.
    pub fn defaults(bake_ms: u64) -> Vec<Strategy> {
        vec![
            Strategy::all_at_once(bake_ms),
            Strategy::default_rings(bake_ms),
            Strategy::exponential(bake_ms),
        ]
    }

    /// Parses `NAME=PERCENT,PERCENT,...,100` with cumulative percentages.
    pub fn parse(text: &str, bake_ms: u64) -> Result<Strategy, SimError> {
        let fail = |reason: String| SimError::Strategy {
            text: text.to_owned(),
            reason,
        };
        let (name, rings) = text
            .split_once('=')
            .ok_or_else(|| fail("expected NAME=PERCENT,...,100, e.g. fast=5,100".into()))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(fail("the name is empty".into()));
        }
        let spec = RolloutSpec::from_percentages(rings, bake_ms as i64)
            .map_err(|e| fail(e.to_string()))?;
        if spec.rings.len() > usize::from(u8::MAX) {
            return Err(fail("at most 255 rings".into()));
        }
        Ok(Strategy {
            name: name.to_owned(),
            spec,
        })
    }
}
