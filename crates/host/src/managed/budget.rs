//! The one rate limit on what a managed agent spools about what it sees (alerts and engine
//! failures, which reach the spool by two paths): at most so many reports a second together,
//! and what it leaves out is counted and spooled as a telemetry report when the next second
//! starts, never dropped silently.

use ringfence_protocol::report::{ReportBody, TelemetryReport};
use ringfence_uplink::Spool;
use ringfence_uplink::link::report;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Reports a second, alerts and failures together.
pub(super) const REPORTS_PER_SECOND: u32 = 20;

pub(super) struct ReportBudget {
    per_second: u32,
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    sent: u32,
    /// Left out since the last telemetry report.
    suppressed: u64,
}

impl ReportBudget {
    pub(super) fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window: Mutex::new(Window {
                started: Instant::now(),
                sent: 0,
                suppressed: 0,
            }),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        // The counts stay meaningful whatever a panicking holder left half done.
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts `n` reports left out before they reached the budget (a full failure channel).
    pub(super) fn left_out(&self, n: u64) {
        if n > 0 {
            self.window().suppressed += n;
        }
    }

    /// Whether one more report may be spooled now; if not, it is counted. When a new second
    /// starts, the count of what the last ones left out is spooled first.
    pub(super) fn admit(&self, spool: &Spool) -> bool {
        let mut window = self.window();
        if window.started.elapsed() >= Duration::from_secs(1) {
            flush(&mut window, spool);
            window.started = Instant::now();
            window.sent = 0;
        }
        if window.sent >= self.per_second {
            window.suppressed += 1;
            return false;
        }
        window.sent += 1;
        true
    }

    /// Spools the count of what was left out, if anything was (on the way out).
    pub(super) fn flush(&self, spool: &Spool) {
        flush(&mut self.window(), spool);
    }
}

fn flush(window: &mut Window, spool: &Spool) {
    if window.suppressed == 0 {
        return;
    }
    let telemetry = ReportBody::Telemetry(TelemetryReport {
        suppressed_reports: window.suppressed,
    });
    match spool.push(&report(telemetry)) {
        Ok(()) => window.suppressed = 0,
        Err(error) => {
            tracing::warn!(%error, suppressed = window.suppressed, "cannot spool the count of reports left out; trying again")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_budget_leaves_out_is_counted_and_spooled_as_telemetry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), 1 << 20).expect("spool");
        let budget = ReportBudget::new(2);
        let admitted = (0..5).filter(|_| budget.admit(&spool)).count();
        assert_eq!(admitted, 2);
        budget.left_out(4);
        budget.flush(&spool);
        let spooled = spool.peek(10);
        assert_eq!(spooled.len(), 1);
        assert_eq!(
            spooled[0].1.body,
            ReportBody::Telemetry(TelemetryReport {
                suppressed_reports: 7
            })
        );
        budget.flush(&spool);
        assert_eq!(spool.peek(10).len(), 1, "counted once");
    }
}
