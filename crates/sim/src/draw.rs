//! Per-agent random draws without per-agent RNG state: each draw is a hash of the seed, the
//! agent's index and a salt naming what is drawn, so a million agents cost no memory and the
//! same seed always gives the same fleet.

/// The salts: one per kind of draw, so draws are independent of each other.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub enum Salt {
    HeartbeatPhase = 1,
    Crashes = 2,
    TimeToCrash = 3,
    DownloadNew = 4,
    DownloadOld = 5,
    RestoreFails = 6,
}

/// splitmix64's finaliser: a fast, well-mixed 64-bit hash (Steele, Lea and Flood).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform draw in [0, 1) for `agent`.
pub fn uniform(seed: u64, agent: u32, salt: Salt) -> f64 {
    let hash = mix(mix(seed ^ mix(salt as u64)) ^ u64::from(agent));
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// A draw from an exponential distribution with the given mean, at least 1 ms so that every
/// event the simulator schedules lies strictly in the future.
pub fn exponential_ms(seed: u64, agent: u32, salt: Salt, mean_ms: u64) -> u64 {
    let u = uniform(seed, agent, salt);
    ((-(1.0 - u).ln() * mean_ms as f64) as u64).max(1)
}

/// A draw uniform in [mean/2, 3·mean/2], at least 1 ms: installs take roughly the mean, with
/// spread, and never longer than half again.
pub fn around_ms(seed: u64, agent: u32, salt: Salt, mean_ms: u64) -> u64 {
    let u = uniform(seed, agent, salt);
    ((mean_ms as f64 * (0.5 + u)) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_deterministic_independent_and_in_range() {
        let a = uniform(7, 42, Salt::Crashes);
        assert_eq!(a, uniform(7, 42, Salt::Crashes));
        assert_ne!(a, uniform(7, 42, Salt::TimeToCrash));
        assert_ne!(a, uniform(8, 42, Salt::Crashes));
        let mean = (0..100_000)
            .map(|i| uniform(1, i, Salt::Crashes))
            .inspect(|u| assert!((0.0..1.0).contains(u)))
            .sum::<f64>()
            / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let exp_mean = (0..100_000)
            .map(|i| exponential_ms(1, i, Salt::TimeToCrash, 30_000) as f64)
            .sum::<f64>()
            / 100_000.0;
        assert!((exp_mean - 30_000.0).abs() < 600.0, "{exp_mean}");
    }
}
