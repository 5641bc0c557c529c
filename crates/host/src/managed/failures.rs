//! Engine failures leave a managed host through the spool as typed `failure` reports, straight
//! from the agent's failure channel: each failure once, rate-limited together with the alerts
//! ([`ReportBudget`]), what is left out counted. They no longer travel through the alert file
//! (the alerts still mention them, but nothing reads them back out), so a failure is never
//! reported twice.
//!
//! Across a restart: the shipper drains the channel after the agent stopped or handed off, so a
//! clean stop or an in-place upgrade loses nothing; what a native crash catches in the channel
//! (the few microseconds between a failure and its spool file) is lost, as an alert line not yet
//! written was before.

use super::budget::ReportBudget;
use ringfence_agent::FailureReceiver;
use ringfence_protocol::api::Report;
use ringfence_protocol::report::{FailureReport, ReportBody};
use ringfence_uplink::Spool;
use ringfence_uplink::link::report;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

/// How long the shipper waits for a failure before it looks at `stop`.
const WAIT: Duration = Duration::from_millis(100);

/// Spools every failure the agent sends until `stop` is set and the channel is empty, or the
/// agent is gone and the channel drained. A failure the spool refuses (a full disk) is tried
/// again until then.
pub(super) fn ship_failures(
    failures: FailureReceiver,
    spool: Arc<Spool>,
    budget: Arc<ReportBudget>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut waiting: Option<Report> = None;
        loop {
            budget.left_out(failures.take_dropped());
            if let Some(report) = waiting.take()
                && let Err(error) = spool.push(&report)
            {
                if stop.load(Ordering::Relaxed) {
                    tracing::warn!(%error, "an engine failure could not be spooled before the agent stopped");
                    budget.left_out(1);
                } else {
                    waiting = Some(report);
                    std::thread::sleep(WAIT);
                    continue;
                }
            }
            match failures.recv_timeout(WAIT) {
                Ok(record) => {
                    if !budget.admit(&spool) {
                        continue;
                    }
                    let report = report(ReportBody::Failure(FailureReport {
                        record,
                        during: None,
                    }));
                    if let Err(error) = spool.push(&report) {
                        tracing::warn!(%error, "cannot spool an engine failure; retrying");
                        waiting = Some(report);
                    }
                }
                Err(RecvTimeoutError::Timeout) if stop.load(Ordering::Relaxed) => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        budget.left_out(failures.take_dropped());
        budget.flush(&spool);
    })
}

#[cfg(test)]
mod tests {
    use super::super::budget::REPORTS_PER_SECOND;
    use super::*;
    use ringfence_protocol::report::TelemetryReport;
    use ringfence_protocol::{FailureKind, FailureRecord};

    fn record(n: u64) -> FailureRecord {
        FailureRecord {
            engine: "faulty".into(),
            content_sha256: String::new(),
            kind: FailureKind::Trap,
            trap_code: Some("unreachable".into()),
            message: format!("failure {n}"),
            event_kind: Some("exec".into()),
            backtrace: Vec::new(),
            at_unix_ns: n,
            elapsed_us: 0,
        }
    }

    #[test]
    fn every_failure_is_spooled_once_as_a_typed_report_and_the_rest_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Arc::new(Spool::open(dir.path(), 1 << 20).expect("spool"));
        let budget = Arc::new(ReportBudget::new(REPORTS_PER_SECOND));
        let (tx, rx) = ringfence_agent::failure_channel(4);
        let stop = Arc::new(AtomicBool::new(false));
        // More than the channel holds before the shipper runs: the rest are counted.
        for n in 0..6 {
            tx.send(&record(n));
        }
        let thread = ship_failures(rx, Arc::clone(&spool), budget, Arc::clone(&stop));
        // The agent is gone (every sender dropped): the shipper drains and ends by itself.
        drop(tx);
        thread.join().expect("shipper");
        let reports = spool.peek(100);
        let failures: Vec<&FailureRecord> = reports
            .iter()
            .filter_map(|(_, report)| match &report.body {
                ReportBody::Failure(failure) => Some(&failure.record),
                _ => None,
            })
            .collect();
        assert_eq!(
            failures.iter().map(|r| r.at_unix_ns).collect::<Vec<_>>(),
            [3, 2, 1, 0],
            "each failure the channel held, once (newest first from the spool)"
        );
        assert!(
            reports.iter().any(|(_, report)| report.body
                == ReportBody::Telemetry(TelemetryReport {
                    suppressed_reports: 2
                })),
            "the two the full channel dropped are counted: {reports:?}"
        );
    }
}
