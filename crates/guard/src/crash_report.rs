//! Native crash reports: when the agent dies (a signal, an error exit, a hang), the guard — the
//! process that outlived it — writes a report into the agent's spool, so the next agent uploads
//! it with everything else and the server's crash gate and crash groups see it. A run that
//! ended on request (see [`crate::policy::classify`]) gets no report: it is not a crash.
//!
//! The guard does not link the spool: it writes the spool's on-disk format (one JSON report per
//! file, `3-<sequence>.json`, priority 3 = crash, renamed into place) with a sequence far above
//! any the agent uses, so neither can overwrite the other's reports.

use crate::policy::Failure;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Writes one crash report for `failure` into `<data_dir>/spool`; returns its path.
pub fn write(
    data_dir: &Path,
    failure: &Failure,
    slot: &str,
    ran_ms: u64,
) -> std::io::Result<PathBuf> {
    let spool = data_dir.join("spool");
    std::fs::create_dir_all(&spool)?;
    let now = unix_ms();
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let (signal, code) = match failure {
        Failure::Signaled(signal) => (Some(signal.clone()), None),
        Failure::Exited(code) => (None, Some(*code)),
        Failure::Hung => (Some("hang".to_owned()), None),
        Failure::SpawnFailed(_) => (Some("spawn".to_owned()), None),
        Failure::ExitedUnasked => (None, Some(0)),
    };
    let report = serde_json::json!({
        "id": format!("guard-{now}-{n}"),
        "kind": "crash",
        "at_ms": now,
        "body": {
            "engine": "agent",
            "kind": "native",
            "signal": signal,
            "exit_code": code,
            "slot": slot,
            "ran_ms": ran_ms,
            "message": format!("the agent {failure}"),
        },
    });
    // Sequences in the spool order reports by age; ours sort after the agent's.
    let name = format!(
        "3-{:020}.json",
        now.saturating_mul(1000).saturating_add(n % 1000)
    );
    let path = spool.join(&name);
    let temporary = spool.join(format!("{name}.tmp"));
    std::fs::write(&temporary, report.to_string())?;
    std::fs::rename(&temporary, &path)?;
    Ok(path)
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
            "current",
            42,
        )
        .expect("write");
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("3-") && name.ends_with(".json"), "{name}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(report["kind"], "crash");
        assert_eq!(report["body"]["signal"], "SIGSEGV");
        assert_eq!(report["body"]["message"], "the agent killed by SIGSEGV");
        let second = write(dir.path(), &Failure::Exited(3), "lkg", 1).expect("write");
        assert_ne!(path, second);
    }
}
