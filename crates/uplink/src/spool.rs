//! A bounded on-disk spool of reports awaiting upload.
//!
//! One file per report, written to a temporary name and renamed, so a crash mid-write leaves
//! either the whole report or nothing. When the spool is full, the oldest report of the lowest
//! priority goes first (telemetry before alerts before failures); crash reports are kept as long
//! as anything else can make room. Every eviction is counted and reported, never silent.

use ringfence_protocol::report::{Report, ReportKind};
pub use ringfence_protocol::spool::Priority;
use ringfence_protocol::spool::{self as format, SpoolName, TEMPORARY_SUFFIX};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Nothing lower-priority could be evicted to make room.
    #[error("spool is full of reports at least as important as this {kind} report")]
    Full { kind: ReportKind },
}

/// Sequence numbers at or above this are not ours (2^63: centuries of reports per second).
const MAX_SEQUENCE: u64 = 1 << 63;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpoolStats {
    pub pending: u64,
    pub bytes: u64,
    /// Reports evicted or refused for lack of space since start.
    pub dropped: u64,
    /// Reports set aside since start because no server would ever accept them.
    pub set_aside: u64,
}

/// Set-aside reports kept for a person to look at; older ones are removed.
const MAX_SET_ASIDE_FILES: usize = 32;

/// Key of one spooled file: (priority, sequence). Sequence orders by age.
type Key = (Priority, u64);

#[derive(Debug)]
struct Index {
    files: BTreeMap<Key, (PathBuf, u64)>,
    bytes: u64,
    next: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    dropped: AtomicU64,
    set_aside: AtomicU64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

fn is_no_space(error: &SpoolError) -> bool {
    matches!(error, SpoolError::Io { source, .. } if source.raw_os_error() == Some(28))
}

impl Spool {
    /// Opens (and creates) the spool at `dir`, holding at most `max_bytes` of reports. Reports
    /// left by an earlier run are picked up; half-written temporary files are removed.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut index = Index {
            files: BTreeMap::new(),
            bytes: 0,
            next: 0,
        };
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TEMPORARY_SUFFIX) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(SpoolName { priority, sequence }) = SpoolName::parse(&name) else {
                continue;
            };
            // No spool of ours gets anywhere near this; a planted or corrupt name must not
            // make the next sequence overflow. The file stays for an operator to look at.
            if sequence >= MAX_SEQUENCE {
                tracing::warn!(path = %path.display(), "spool file with an impossible sequence number; left alone");
                continue;
            }
            let size = entry.metadata().map_err(io(&path))?.len();
            index.bytes += size;
            index.next = index.next.max(sequence + 1);
            index.files.insert((priority, sequence), (path, size));
        }
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            index: Mutex::new(index),
            dropped: AtomicU64::new(0),
            set_aside: AtomicU64::new(0),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        match self.index.lock() {
            Ok(index) => index,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Evicts the oldest report below `priority`; false when there is none.
    fn evict_below(&self, index: &mut Index, priority: Priority) -> bool {
        let Some((&key, _)) = index.files.iter().find(|((p, _), _)| *p < priority) else {
            return false;
        };
        if let Some((path, size)) = index.files.remove(&key) {
            let _ = std::fs::remove_file(&path);
            index.bytes = index.bytes.saturating_sub(size);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(kind = ?key.0, "spool full: dropped the oldest lower-priority report");
        }
        true
    }

    /// Appends a report. Makes room by evicting lower-priority reports; refuses (and counts) the
    /// report only when nothing less important is left, or the disk is full and nothing can go.
    pub fn push(&self, report: &Report) -> Result<(), SpoolError> {
        let priority = Priority::of_kind(report.kind());
        let bytes = serde_json::to_vec(report).unwrap_or_default();
        let size = bytes.len() as u64;
        let mut index = self.index();
        while index.bytes + size > self.max_bytes {
            if !self.evict_below(&mut index, priority) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(SpoolError::Full {
                    kind: report.kind(),
                });
            }
        }
        loop {
            let sequence = index.next;
            index.next += 1;
            match self.write(priority, sequence, &bytes) {
                Ok(path) => {
                    index.bytes += size;
                    index.files.insert((priority, sequence), (path, size));
                    return Ok(());
                }
                // The disk is full even though we are under our own limit: make room from
                // less important reports, and give up only when there is none.
                Err(error) if is_no_space(&error) => {
                    if !self.evict_below(&mut index, priority) {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        return Err(error);
                    }
                }
                Err(error) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return Err(error);
                }
            }
        }
    }

    fn write(
        &self,
        priority: Priority,
        sequence: u64,
        bytes: &[u8],
    ) -> Result<PathBuf, SpoolError> {
        let name = SpoolName { priority, sequence };
        format::write_bytes(&self.dir, name, bytes).map_err(|source| SpoolError::Io {
            path: self.dir.join(name.file_name()),
            source,
        })
    }

    /// Up to `limit` reports to upload, most important and oldest first, with their handles.
    pub fn peek(&self, limit: usize) -> Vec<(PathBuf, Report)> {
        let held: Vec<PathBuf> = self
            .index()
            .files
            .values()
            .rev()
            .take(limit)
            .map(|(path, _)| path.clone())
            .collect();
        let mut out = Vec::new();
        for path in held {
            match std::fs::read(&path) {
                Ok(bytes) => match serde_json::from_slice::<Report>(&bytes) {
                    Ok(report) => out.push((path, report)),
                    // A file this build cannot read (a kind or body it does not know, written
                    // by another version of the guard or the crash monitor) would hold its
                    // place at the head of the queue forever: it is set aside and counted.
                    Err(error) => {
                        self.set_aside(&path, &format!("not a report this agent reads: {error}"))
                    }
                },
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot read a spool file; trying again later")
                }
            }
        }
        out
    }

    /// Removes reports the server acknowledged.
    pub fn ack(&self, paths: &[PathBuf]) {
        let mut index = self.index();
        index.files.retain(|_, (path, _)| {
            let acknowledged = paths.contains(path);
            if acknowledged {
                let _ = std::fs::remove_file(&*path);
            }
            !acknowledged
        });
        index.bytes = index.files.values().map(|(_, size)| size).sum();
    }

    /// Takes a report the server can never accept (too large, malformed) out of the queue, so it
    /// does not hold back every report behind it. The file moves to `rejected/` beside the
    /// spool, where the newest few stay for a person to look at; each one is counted.
    pub fn set_aside(&self, path: &Path, reason: &str) {
        let mut index = self.index();
        let before = index.files.len();
        index.files.retain(|_, (held, _)| held != path);
        if index.files.len() == before {
            return;
        }
        index.bytes = index.files.values().map(|(_, size)| size).sum();
        drop(index);
        self.set_aside.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = %path.display(), "report set aside, no server will accept it: {reason}");
        let rejected = self.dir.join("rejected");
        let kept = std::fs::create_dir_all(&rejected)
            .and_then(|()| match path.file_name() {
                Some(name) => std::fs::rename(path, rejected.join(name)),
                None => Err(std::io::Error::other("no file name")),
            })
            .is_ok();
        if !kept {
            let _ = std::fs::remove_file(path);
            return;
        }
        let mut held: Vec<PathBuf> = std::fs::read_dir(&rejected)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        if held.len() > MAX_SET_ASIDE_FILES {
            // Spool names sort by priority then age; the oldest of each go first.
            held.sort();
            for old in &held[..held.len() - MAX_SET_ASIDE_FILES] {
                let _ = std::fs::remove_file(old);
            }
        }
    }

    /// Reports that should not wait for the next heartbeat: failures and crashes.
    pub fn urgent(&self) -> usize {
        self.index()
            .files
            .keys()
            .filter(|(priority, _)| *priority >= Priority::Failure)
            .count()
    }

    pub fn stats(&self) -> SpoolStats {
        let index = self.index();
        SpoolStats {
            pending: index.files.len() as u64,
            bytes: index.bytes,
            dropped: self.dropped.load(Ordering::Relaxed),
            set_aside: self.set_aside.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_protocol::guard_link::Slot;
    use ringfence_protocol::report::{CrashKind, CrashReport, ReportBody, TelemetryReport};

    /// A report of `kind` about `padding` bytes larger than the smallest.
    fn report(id: u32, kind: ReportKind, padding: usize) -> Report {
        let pad = "x".repeat(padding);
        let body = match kind {
            ReportKind::Crash => ReportBody::Crash(CrashReport {
                engine: "agent".into(),
                exit_code: None,
                kind: CrashKind::Native,
                message: pad,
                ran_ms: 0,
                signal: Some("SIGSEGV".into()),
                slot: Slot::Current,
            }),
            ReportKind::Telemetry => ReportBody::Telemetry(TelemetryReport {
                suppressed_reports: 0,
            }),
            _ => ReportBody::Alert(serde_json::json!({ "pad": pad })),
        };
        Report {
            // Telemetry has no free text: its size comes from the id.
            id: match kind {
                ReportKind::Telemetry => format!("{id}-{pad}", pad = "x".repeat(padding)),
                _ => id.to_string(),
            },
            at_ms: i64::from(id),
            body,
        }
    }

    #[test]
    fn a_spool_file_of_an_unknown_kind_is_set_aside_not_stuck() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("2-00000000000000000001.json"),
            br#"{"id":"1","kind":"from_the_future","at_ms":1,"body":{}}"#,
        )
        .expect("plant");
        let spool = Spool::open(dir.path(), 1 << 20).expect("open");
        spool.push(&report(2, ReportKind::Alert, 10)).expect("push");
        let batch = spool.peek(10);
        assert_eq!(batch.len(), 1, "{batch:?}");
        assert_eq!(spool.stats().set_aside, 1);
        assert_eq!(spool.stats().pending, 1);
        assert!(
            dir.path()
                .join("rejected/2-00000000000000000001.json")
                .exists()
        );
    }

    #[test]
    fn survives_a_restart_and_acks_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let spool = Spool::open(dir.path(), 1 << 20).expect("open");
            for i in 0..5 {
                spool.push(&report(i, ReportKind::Alert, 10)).expect("push");
            }
        }
        let spool = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(spool.stats().pending, 5);
        let batch = spool.peek(3);
        assert_eq!(batch.len(), 3);
        spool.ack(&batch.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>());
        assert_eq!(spool.stats().pending, 2);
        spool
            .push(&report(9, ReportKind::Alert, 10))
            .expect("sequence continues after reopen");
        assert_eq!(spool.stats().pending, 3);
    }

    #[test]
    fn a_file_with_an_impossible_sequence_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(format!("1-{}.json", u64::MAX)), b"{}").expect("plant");
        let spool = Spool::open(dir.path(), 1 << 20).expect("open does not overflow");
        assert_eq!(spool.stats().pending, 0);
        spool.push(&report(1, ReportKind::Alert, 10)).expect("push");
        assert_eq!(spool.stats().pending, 1);
    }

    #[test]
    fn full_spool_drops_oldest_telemetry_first_and_keeps_crashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Room for every crash report and some telemetry, not for all of both.
        let spool = Spool::open(dir.path(), 4_000).expect("open");
        for i in 0..10 {
            spool
                .push(&report(i, ReportKind::Telemetry, 100))
                .expect("telemetry");
        }
        for i in 10..20 {
            spool
                .push(&report(i, ReportKind::Crash, 100))
                .expect("crash reports make room");
        }
        let kept = spool.peek(100);
        let crashes = kept
            .iter()
            .filter(|(_, r)| r.kind() == ReportKind::Crash)
            .count();
        assert_eq!(crashes, 10, "every crash report kept");
        assert!(spool.stats().dropped > 0, "evictions are counted");
        // Telemetry cannot evict crash reports.
        let mut refused = 0;
        for i in 20..40 {
            if spool.push(&report(i, ReportKind::Telemetry, 100)).is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0);
        assert_eq!(
            spool
                .peek(100)
                .iter()
                .filter(|(_, r)| r.kind() == ReportKind::Crash)
                .count(),
            10
        );
    }

    #[test]
    fn half_written_files_are_cleaned_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("2-00000000000000000001.json.tmp"),
            b"{\"half",
        )
        .expect("write");
        let spool = Spool::open(dir.path(), 1 << 20).expect("open");
        assert_eq!(spool.stats().pending, 0);
        assert!(!dir.path().join("2-00000000000000000001.json.tmp").exists());
    }

    /// A really full filesystem: a 64 KiB tmpfs (needs root to mount).
    struct TinyFs(tempfile::TempDir);

    impl TinyFs {
        fn mount() -> Option<TinyFs> {
            let dir = tempfile::tempdir().expect("tempdir");
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            mounted.then_some(TinyFs(dir))
        }
    }

    impl Drop for TinyFs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }

    #[test]
    fn a_full_disk_evicts_telemetry_for_crash_reports() {
        let Some(fs) = TinyFs::mount() else {
            ringfence_testkit::skip(
                "a_full_disk_evicts_telemetry_for_crash_reports",
                "mounting a tmpfs needs root (CAP_SYS_ADMIN)",
            );
            return;
        };
        // Our own limit is far above the disk's size: the disk fills first.
        let spool = Spool::open(fs.0.path(), 1 << 30).expect("open");
        let mut refused = 0;
        for i in 0..200 {
            if spool
                .push(&report(i, ReportKind::Telemetry, 1_000))
                .is_err()
            {
                refused += 1;
            }
        }
        assert!(refused > 0, "the disk filled up");
        let dropped = spool.stats().dropped;
        assert!(dropped >= refused, "refusals are counted");
        for i in 1000..1005 {
            spool
                .push(&report(i, ReportKind::Crash, 1_000))
                .expect("crash reports evict telemetry on a full disk");
        }
        assert_eq!(
            spool
                .peek(1000)
                .iter()
                .filter(|(_, r)| r.kind() == ReportKind::Crash)
                .count(),
            5
        );
        assert!(spool.stats().dropped > dropped);
    }
}
