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
        let spec = RolloutSpec::from_percentages(rings, bake_ms as i64).map_err(fail)?;
        if spec.rings.len() > usize::from(u8::MAX) {
            return Err(fail("at most 255 rings".into()));
        }
        Ok(Strategy {
            name: name.to_owned(),
            spec,
        })
    }
}
