//! Exponential backoff with jitter, one piece for every retry in ringfence (after linkerd's
//! `exp-backoff`): the guard restarting a crashing agent, the uplink retrying a server that is
//! away, a certificate renewal that failed. Delays grow so nothing retries in a tight loop, and
//! jitter spreads a fleet that failed together so it does not retry together.
//!
//! No dependencies beyond `thiserror`: the guard, which must stay small, uses it too.
#![forbid(unsafe_code)]

use std::time::Duration;

/// Delays grow as `min * 2^attempt`, capped at `max`, then a random fraction (`jitter`) of the
/// delay is added so that hosts that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpBackoff {
    min: Duration,
    max: Duration,
    jitter: f64,
}

/// Why a backoff could not be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BackoffError {
    /// the minimum delay must not exceed the maximum
    #[error("backoff minimum {min:?} exceeds maximum {max:?}")]
    MinAboveMax { min: Duration, max: Duration },
    /// jitter is a fraction of the delay: finite and between 0 and 1
    #[error("backoff jitter {0} is not between 0 and 1")]
    Jitter(f64),
}

impl ExpBackoff {
    /// A backoff whose bounds are known when the program is written; they are checked when it
    /// is compiled.
    pub const fn fixed(min: Duration, max: Duration, jitter: f64) -> Self {
        assert!(
            min.as_nanos() <= max.as_nanos() && jitter >= 0.0 && jitter <= 1.0,
            "backoff bounds out of order or jitter outside 0..=1"
        );
        Self { min, max, jitter }
    }

    pub fn new(min: Duration, max: Duration, jitter: f64) -> Result<Self, BackoffError> {
        if min > max {
            return Err(BackoffError::MinAboveMax { min, max });
        }
        if !jitter.is_finite() || !(0.0..=1.0).contains(&jitter) {
            return Err(BackoffError::Jitter(jitter));
        }
        Ok(Self { min, max, jitter })
    }

    /// The delay before retry number `attempt` (0 = the first retry), never above `max`.
    /// `unit` is a uniform random number in `[0, 1)`; taking it as an argument keeps this pure.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self
            .min
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let extra = base.mul_f64(self.jitter * unit);
        (base + extra).min(self.max)
    }

    pub fn max(&self) -> Duration {
        self.max
    }
}

/// A tiny non-cryptographic generator (SplitMix64) for jitter: the guard must not pull in a
/// random-number crate for one float per retry.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Seeded from the clock and pid so guards on different hosts diverge.
    pub fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grows_exponentially_without_jitter() {
        let b = ExpBackoff::new(ms(100), ms(10_000), 0.0).expect("valid");
        let delays: Vec<_> = (0..5).map(|a| b.delay(a, 0.5)).collect();
        assert_eq!(delays, vec![ms(100), ms(200), ms(400), ms(800), ms(1600)]);
    }

    #[test]
    fn capped_at_max_even_for_huge_attempts() {
        let b = ExpBackoff::new(ms(100), ms(5_000), 1.0).expect("valid");
        assert_eq!(b.delay(10, 0.0), ms(5_000));
        assert_eq!(b.delay(u32::MAX, 0.99), ms(5_000));
    }

    #[test]
    fn jitter_adds_at_most_its_fraction() {
        let b = ExpBackoff::new(ms(1000), ms(60_000), 0.5).expect("valid");
        assert_eq!(b.delay(0, 0.0), ms(1000));
        assert_eq!(b.delay(0, 1.0), ms(1500));
        assert!(b.delay(0, 0.3) > ms(1000) && b.delay(0, 0.3) < ms(1500));
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(ExpBackoff::new(ms(2), ms(1), 0.1).is_err());
        assert!(ExpBackoff::new(ms(1), ms(2), 1.5).is_err());
        assert!(ExpBackoff::new(ms(1), ms(2), f64::NAN).is_err());
    }

    #[test]
    fn garbage_unit_does_not_panic() {
        let b = ExpBackoff::new(ms(10), ms(100), 1.0).expect("valid");
        assert_eq!(b.delay(0, f64::NAN), ms(10));
        assert_eq!(b.delay(0, f64::INFINITY), ms(10));
    }

    #[test]
    fn jitter_stays_in_unit_interval_and_varies() {
        let mut j = Jitter::new(7);
        let xs: Vec<f64> = (0..1000).map(|_| j.next_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }
}
