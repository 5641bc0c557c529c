//! Native crash reports: when the agent dies (a signal, an error exit, a hang), the guard — the
//! process that outlived it — writes a report into the agent's spool, so the next agent uploads
//! it with everything else and the server's crash gate and crash groups see it. A run that
//! ended on request (see [`crate::policy::classify`]) gets no report: it is not a crash.
//!
//! The guard does not link the spool: it writes the spool's on-disk format (one JSON report per
//! file, `3-<sequence>.json`, priority 3 = crash, renamed into place) with a sequence far above
//! any the agent uses, so neither can overwrite the other's reports.

use crate::policy::Failure;
use ringfence_protocol::api::Report;
use ringfence_protocol::clock::unix_ms;
use ringfence_protocol::guard_link::Slot;
use ringfence_protocol::report::{CrashKind, CrashReport, ReportBody};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Writes one crash report for `failure` into `<data_dir>/spool`; returns its path.
pub fn write(
    data_dir: &Path,
    failure: &Failure,
    slot: Slot,
    ran_ms: u64,
) -> std::io::Result<PathBuf> {
    let now = unix_ms();
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let (signal, code) = match failure {
        Failure::Signaled(signal) => (Some(signal.clone()), None),
        Failure::Exited(code) => (None, Some(*code)),
        Failure::Hung => (Some("hang".to_owned()), None),
        Failure::SpawnFailed(_) => (Some("spawn".to_owned()), None),
        Failure::ExitedUnasked => (None, Some(0)),
    };
    let report = Report {
        id: format!("guard-{now}-{n}"),
        at_ms: now,
        body: ReportBody::Crash(CrashReport {
            engine: "agent".to_owned(),
            exit_code: code,
            kind: CrashKind::Native,
            message: format!("the agent {failure}"),
            ran_ms,
            signal,
            slot,
        }),
    };
    ringfence_protocol::spool::write_from_outside(&data_dir.join("spool"), &report, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lands_in_the_spool_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            &Failure::Signaled("SIGSEGV".into()),
            Slot::Current,
            42,
        )
        .expect("write");
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("3-") && name.ends_with(".json"), "{name}");
        let report: Report =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("a report");
        let ReportBody::Crash(crash) = report.body else {
            panic!("a crash report: {report:?}");
        };
        assert_eq!(crash.signal.as_deref(), Some("SIGSEGV"));
        assert_eq!(crash.slot, Slot::Current);
        assert_eq!(crash.message, "the agent killed by SIGSEGV");
        let second = write(dir.path(), &Failure::Exited(3), Slot::Lkg, 1).expect("write");
        assert_ne!(path, second);
    }
}
