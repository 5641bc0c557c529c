//! Ring membership: a deterministic hash of agent id and rollout id, so each rollout samples a
//! different slice of the fleet and every replica computes the same answer.

use crate::spec::RolloutSpec;
use sha2::{Digest, Sha256};

/// Where the agent falls in [0, 100) for this rollout.
pub fn ring_position(agent_id: &str, rollout_id: &str) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(rollout_id.as_bytes());
    hasher.update([0]);
    hasher.update(agent_id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64 * 100.0
}

/// The first ring the agent belongs to: by tag, else by position.
pub fn ring_of(agent_id: &str, tags: &[String], rollout_id: &str, spec: &RolloutSpec) -> usize {
    if let Some(index) = spec
        .rings
        .iter()
        .position(|ring| ring.tags.iter().any(|tag| tags.contains(tag)))
    {
        return index;
    }
    let position = ring_position(agent_id, rollout_id);
    spec.rings
        .iter()
        .position(|ring| position < ring.percent)
        .unwrap_or(spec.rings.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tags_opt_in_to_the_first_matching_ring() {
        let spec = RolloutSpec::default_rings(0);
        assert_eq!(ring_of("a", &["canary".to_owned()], "r", &spec), 0);
    }

    #[test]
    fn shares_are_close_to_the_percentages() {
        let spec = RolloutSpec::default_rings(0);
        let mut counts = [0usize; 4];
        for i in 0..100_000 {
            counts[ring_of(&format!("agent-{i}"), &[], "rollout-1", &spec)] += 1;
        }
        // 1%, 9%, 40%, 50% of 100k, within 10% relative.
        for (count, expected) in counts.iter().zip([1_000.0, 9_000.0, 40_000.0, 50_000.0]) {
            assert!(
                (*count as f64 - expected).abs() < expected * 0.1,
                "{counts:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn deterministic_and_in_range(agent in ".{0,20}", rollout in ".{0,20}") {
            let p = ring_position(&agent, &rollout);
            prop_assert!((0.0..100.0).contains(&p));
            prop_assert_eq!(p, ring_position(&agent, &rollout));
        }
    }
}
