//! The spool's file format, shared by every process that queues reports for upload: the agent's
//! uplink, the guard (agent deaths) and the crash monitor (minidumps). Three writers, one format:
//! a report per file, named `<priority>-<sequence>.json`, written under a temporary name and
//! renamed, so a reader sees the whole report or nothing. Names sort by priority, then by age.

use crate::report::{Report, ReportKind};
use std::io;
use std::path::{Path, PathBuf};

/// Which reports survive when space runs out: higher survives longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Telemetry = 0,
    Alert = 1,
    Failure = 2,
    Crash = 3,
}

impl Priority {
    /// A report's priority follows from its kind; evidence (minidumps, installs, restores,
    /// remediations) ranks with failures.
    pub fn of_kind(kind: ReportKind) -> Priority {
        match kind {
            ReportKind::Telemetry => Priority::Telemetry,
            ReportKind::Alert => Priority::Alert,
            ReportKind::Crash => Priority::Crash,
            ReportKind::Failure
            | ReportKind::Install
            | ReportKind::Restore
            | ReportKind::Remediation
            | ReportKind::Minidump => Priority::Failure,
        }
    }

    fn from_digit(digit: u8) -> Priority {
        match digit {
            0 => Priority::Telemetry,
            1 => Priority::Alert,
            2 => Priority::Failure,
            _ => Priority::Crash,
        }
    }

    fn digit(self) -> u8 {
        self as u8
    }
}

/// What a spool file's name says: its priority and its place in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolName {
    pub priority: Priority,
    pub sequence: u64,
}

/// The suffix of a file still being written; a reader removes what a crash left behind.
pub const TEMPORARY_SUFFIX: &str = ".tmp";

impl SpoolName {
    /// Reads `<priority>-<sequence>.json`; anything else is not a spooled report.
    pub fn parse(file_name: &str) -> Option<SpoolName> {
        let (priority, sequence) = file_name.strip_suffix(".json")?.split_once('-')?;
        Some(SpoolName {
            priority: Priority::from_digit(priority.parse().ok()?),
            sequence: sequence.parse().ok()?,
        })
    }

    /// The name for a report written by a process other than the agent (the guard, the crash
    /// monitor), which does not share the agent's counter: milliseconds since the epoch times a
    /// thousand plus `n`, which sorts after the agent's own small sequence numbers.
    pub fn from_outside(priority: Priority, now_ms: i64, n: u64) -> SpoolName {
        let now = u64::try_from(now_ms).unwrap_or(0);
        SpoolName {
            priority,
            sequence: now.saturating_mul(1000).saturating_add(n % 1000),
        }
    }

    pub fn file_name(&self) -> String {
        format!("{}-{:020}.json", self.priority.digit(), self.sequence)
    }
}

/// Writes already serialised report bytes under `name` in `dir`, atomically; a failed write
/// leaves nothing behind.
pub fn write_bytes(dir: &Path, name: SpoolName, bytes: &[u8]) -> io::Result<PathBuf> {
    let file_name = name.file_name();
    let path = dir.join(&file_name);
    let temporary = dir.join(format!("{file_name}{TEMPORARY_SUFFIX}"));
    let result =
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(error) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    Ok(path)
}

/// Writes `report` into the spool at `dir` (created if missing) under a name of its kind's
/// priority, for writers outside the agent; returns the file's path.
pub fn write_from_outside(dir: &Path, report: &Report, n: u64) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = SpoolName::from_outside(Priority::of_kind(report.kind()), report.at_ms, n);
    write_bytes(dir, name, &serde_json::to_vec(report)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CrashKind, CrashReport, ReportBody};

    #[test]
    fn names_round_trip_and_sort_by_priority_then_age() {
        let names = [
            SpoolName {
                priority: Priority::Crash,
                sequence: 7,
            },
            SpoolName::from_outside(Priority::Alert, 1_700_000_000_000, 1001),
            SpoolName {
                priority: Priority::Alert,
                sequence: 3,
            },
        ];
        for name in names {
            assert_eq!(SpoolName::parse(&name.file_name()), Some(name));
        }
        let mut files: Vec<String> = names.iter().map(SpoolName::file_name).collect();
        files.sort();
        assert_eq!(files[0], names[2].file_name());
        assert_eq!(files[2], names[0].file_name());
        assert_eq!(names[1].sequence, 1_700_000_000_000_001);
    }

    #[test]
    fn foreign_names_are_not_reports() {
        for name in [
            "x.json",
            "1-abc.json",
            "1-5.json.tmp",
            "-5.json",
            "notes.txt",
        ] {
            assert_eq!(SpoolName::parse(name), None, "{name}");
        }
    }

    #[test]
    fn a_report_from_outside_lands_whole_under_its_kinds_priority() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().join("spool");
        let report = Report {
            id: "guard-1".into(),
            at_ms: 5,
            body: ReportBody::Crash(CrashReport {
                engine: "agent".into(),
                exit_code: None,
                kind: CrashKind::Native,
                message: "the agent killed by SIGSEGV".into(),
                ran_ms: 1,
                signal: Some("SIGSEGV".into()),
                slot: crate::guard_link::Slot::Current,
            }),
        };
        let path = write_from_outside(&spool, &report, 2).expect("written");
        let name = path.file_name().and_then(|n| n.to_str()).expect("a name");
        let parsed = SpoolName::parse(name).expect("a spool name");
        assert_eq!(parsed.priority, Priority::Crash);
        assert_eq!(parsed.sequence, 5_002);
        let back: Report =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("the same report");
        assert_eq!(back, report);
        let leftovers: Vec<_> = std::fs::read_dir(&spool)
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(TEMPORARY_SUFFIX))
            .collect();
        assert!(leftovers.is_empty());
    }
}
