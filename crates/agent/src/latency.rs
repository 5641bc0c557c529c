//! Verdict latency per permission event, from the moment the agent read the kernel event to
//! the moment it was answered — by an engine, the cache, or policy (deadline, queue full,
//! shutdown) — so a rollout's latency gate sees what the kernel saw, not what engines took.
//!
//! Every thread that answers records; a lock per histogram would make the workers queue
//! behind each other, so each thread picks one of a few shards once and records there (an
//! uncontended lock and a counter increment). The heartbeat merges and resets the shards.

use hdrhistogram::Histogram;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Enough that the agent's threads (workers, responder, readers) rarely share one.
const SHARDS: usize = 8;
/// An hour: the largest latency the health figures accept as a measurement.
const HIGHEST_US: u64 = 3_600_000_000;
/// 1 % resolution: ample for a p99 gate, and each shard stays near 27 KiB.
const SIGNIFICANT_DIGITS: u8 = 2;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// Latency over one interval, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    /// Answers recorded.
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// The agent's verdict latency histogram, sharded by thread.
#[derive(Debug)]
pub struct LatencyRecorder {
    shards: Vec<Mutex<Histogram<u64>>>,
}

fn histogram() -> Histogram<u64> {
    // Constant bounds, checked by every test that builds a recorder: not input that can fail.
    Histogram::new_with_bounds(1, HIGHEST_US, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder {
            shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        }
    }
}

impl LatencyRecorder {
    /// Records one answer's latency; beyond an hour it counts as an hour.
    pub fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let shard = SHARD.with(|shard| *shard);
        let Some(slot) = self.shards.get(shard) else {
            return;
        };
        let mut histogram = match slot.lock() {
            Ok(histogram) => histogram,
            Err(poisoned) => poisoned.into_inner(),
        };
        histogram.saturating_record(us);
    }

    /// The latency since the previous call, and a fresh interval from now.
    pub fn take(&self) -> LatencySummary {
        let mut total = histogram();
        for slot in &self.shards {
            let mut histogram = match slot.lock() {
                Ok(histogram) => histogram,
                Err(poisoned) => poisoned.into_inner(),
            };
            if total.add(&*histogram).is_err() {
                tracing::warn!("latency shard could not be merged; its interval is lost");
            }
            histogram.reset();
        }
        if total.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: total.len(),
            p50_us: total.value_at_quantile(0.5) as f64,
            p99_us: total.value_at_quantile(0.99) as f64,
            max_us: total.max() as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_one_interval_then_a_fresh_one() {
        let recorder = LatencyRecorder::default();
        for us in 1..=1000 {
            recorder.record(Duration::from_micros(us));
        }
        let summary = recorder.take();
        assert_eq!(summary.count, 1000);
        assert!((495.0..=505.0).contains(&summary.p50_us), "{summary:?}");
        assert!((985.0..=995.0).contains(&summary.p99_us), "{summary:?}");
        assert!((995.0..=1005.0).contains(&summary.max_us), "{summary:?}");
        assert_eq!(recorder.take(), LatencySummary::default(), "reset");
    }

    #[test]
    fn answers_from_many_threads_all_count() {
        let recorder = std::sync::Arc::new(LatencyRecorder::default());
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let recorder = std::sync::Arc::clone(&recorder);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        recorder.record(Duration::from_micros(50));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("recording thread");
        }
        let summary = recorder.take();
        assert_eq!(summary.count, 12_000);
        assert!((49.0..=51.0).contains(&summary.max_us), "{summary:?}");
    }

    #[test]
    fn a_latency_beyond_an_hour_counts_as_an_hour() {
        let recorder = LatencyRecorder::default();
        recorder.record(Duration::from_secs(10 * 3600));
        let summary = recorder.take();
        assert_eq!(summary.count, 1);
        assert!(summary.max_us <= HIGHEST_US as f64 * 1.01, "{summary:?}");
        assert!(summary.max_us >= HIGHEST_US as f64 * 0.99, "{summary:?}");
    }
}
