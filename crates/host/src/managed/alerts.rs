//! Alerts leave the host through the spool: a follower reads the agent's alert file and spools
//! each alert, rate-limited together with the engine failures ([`super::budget`]), counting
//! what it leaves out. Engine failures take their own typed path (`super::failures`); the
//! alerts that mention them are shipped as they are, and nothing reads failures back out.
//!
//! Every alert is reported exactly once across agent restarts, rotations and truncations:
//! - the follower keeps its place (`inode`, `offset`) in a small state file next to the alert
//!   file (`alerts.offset`), written atomically after the lines before it are spooled;
//! - every alert gets an id from where it sits and what it says (inode, offset, a hash of the
//!   line), so the same line spooled twice — after a crash between spooling and saving the
//!   offset, or after a state file that could not be read — is stored once by the server, which
//!   keys reports by agent and id;
//! - a new inode at the path is a rotation: the old file is read to its end (through the handle
//!   still open, or as `alerts.jsonl.1` when the rotation happened while the agent was down),
//!   then the new one from 0; a file shorter than the offset, or whose bytes before the offset
//!   are not the ones read (truncated and written again), is read from 0.

use super::budget::ReportBudget;
use ringfence_protocol::api::Report;
use ringfence_protocol::report::ReportBody;
use ringfence_uplink::Spool;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where the follower stands, as saved on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    inode: u64,
    offset: u64,
    #[serde(default)]
    tail: Tail,
}

/// The end of the last line read (at most [`TAIL_BYTES`] before the offset), as a length and a
/// hash: a file truncated and rewritten to the same length or longer is told from the file we
/// read by these bytes no longer being there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Tail {
    len: u64,
    hash: u64,
}

const TAIL_BYTES: usize = 256;

impl Tail {
    fn of(line: &[u8]) -> Tail {
        let end = &line[line.len().saturating_sub(TAIL_BYTES)..];
        Tail {
            len: end.len() as u64,
            hash: fnv1a(end),
        }
    }
}

/// The state file for an alert file: `alerts.jsonl` → `alerts.offset`, in the same directory
/// (the data directory, the only one the uplink threads may write).
pub(super) fn state_path(alerts: &Path) -> PathBuf {
    alerts.with_extension("offset")
}

/// `Ok(None)` when there is no state yet. Errors are never fatal to the caller: a lost offset
/// costs a re-read whose reports the server deduplicates.
fn load_cursor(path: &Path) -> Result<Option<Cursor>, CursorError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CursorError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| CursorError::Malformed {
            path: path.to_owned(),
            source,
        })
}

/// Why the follower's offset could not be read or saved; logged, never fatal.
#[derive(Debug, thiserror::Error)]
enum CursorError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a follower state: {source}", path.display())]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Temporary file, fsync, rename, fsync of the directory: after a crash the file is the old
/// cursor or the new one, never a torn one.
fn save_cursor(path: &Path, cursor: Cursor) -> Result<(), CursorError> {
    let temporary = path.with_extension("offset.tmp");
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&temporary)?;
        file.write_all(&serde_json::to_vec(&cursor)?)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|source| CursorError::Io {
        path: path.to_owned(),
        source,
    })
}

/// FNV-1a: stable across builds and platforms (std's hasher is not), and enough to tell two
/// lines at the same place apart after a truncation.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One complete line of the alert file and its deterministic id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    pub id: String,
    pub text: String,
}

/// An open alert file and how far it has been read.
struct Open {
    file: File,
    inode: u64,
    offset: u64,
    tail: Tail,
}

impl Open {
    fn at(file: File, offset: u64, tail: Tail) -> std::io::Result<Self> {
        let inode = file.metadata()?.ino();
        Ok(Self {
            file,
            inode,
            offset,
            tail,
        })
    }

    /// The file still holds what we read before the offset: shorter means truncated, and
    /// other bytes at the end of the last line mean truncated and written again since.
    fn unchanged(&self) -> std::io::Result<bool> {
        if self.file.metadata()?.len() < self.offset {
            return Ok(false);
        }
        if self.tail.len == 0 {
            return Ok(true);
        }
        // A tail longer than we ever save comes from a damaged state file: start over.
        let Some(start) = self.offset.checked_sub(self.tail.len) else {
            return Ok(false);
        };
        if self.tail.len > TAIL_BYTES as u64 {
            return Ok(false);
        }
        let mut bytes = vec![0u8; TAIL_BYTES.min(self.tail.len as usize)];
        self.file.read_exact_at(&mut bytes, start)?;
        Ok(fnv1a(&bytes) == self.tail.hash)
    }

    /// Hands every complete line after the offset to `sink` until it refuses one (which is
    /// then read again next time); a partial last line waits for its newline. A file now
    /// shorter than the offset was truncated: it is read from 0. True when it reached the end.
    fn read(&mut self, sink: &mut dyn FnMut(&Line) -> bool) -> std::io::Result<bool> {
        if !self.unchanged()? {
            tracing::info!(
                offset = self.offset,
                "the alert file was truncated; reading it from the start"
            );
            self.offset = 0;
            self.tail = Tail::default();
        }
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut reader = BufReader::new(&self.file);
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            if reader.read_until(b'\n', &mut bytes)? == 0 || bytes.last() != Some(&b'\n') {
                return Ok(true);
            }
            let line = Line {
                id: format!(
                    "alert-{:x}-{:x}-{:016x}",
                    self.inode,
                    self.offset,
                    fnv1a(&bytes)
                ),
                text: String::from_utf8_lossy(&bytes).into_owned(),
            };
            if !sink(&line) {
                return Ok(false);
            }
            self.offset += bytes.len() as u64;
            self.tail = Tail::of(&bytes);
        }
    }
}

/// Follows one alert file across restarts, rotations and truncations.
pub(super) struct Follower {
    path: PathBuf,
    state: PathBuf,
    open: Option<Open>,
    /// What the state file says (or will say once saved).
    saved: Option<Cursor>,
}

impl Follower {
    /// Starts where the state file says; an unreadable state file is logged and the follower
    /// starts from the beginning (the server drops what it already has).
    pub(super) fn new(path: PathBuf, state: PathBuf) -> Self {
        let saved = match load_cursor(&state) {
            Ok(cursor) => cursor,
            Err(error) => {
                tracing::warn!(%error, "alert follower starts over; the server drops duplicates");
                None
            }
        };
        Self {
            path,
            state,
            open: None,
            saved,
        }
    }

    /// Reads what is new and hands it to `sink`, then saves the place it reached. Errors are
    /// logged and retried at the next poll.
    pub(super) fn poll(&mut self, sink: &mut dyn FnMut(&Line) -> bool) {
        if let Err(error) = self.follow(sink) {
            tracing::warn!(%error, path = %self.path.display(), "cannot read the alert file");
        }
        self.save();
    }

    fn follow(&mut self, sink: &mut dyn FnMut(&Line) -> bool) -> std::io::Result<()> {
        if self.open.is_none() {
            self.open = self.reopen(sink)?;
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        open.read(sink)?;
        // A different file at the path is a rotation: the old one was read to its end above
        // (a writer still appending to it gets one more read), the new one starts at 0.
        let current = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.ino(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        // Until the old file is read to its end (the sink may refuse), stay on it.
        if current != open.inode && open.read(sink)? {
            tracing::info!("the alert file was rotated; following the new one");
            self.open = None;
            if let Ok(file) = File::open(&self.path) {
                let mut new = Open::at(file, 0, Tail::default())?;
                new.read(sink)?;
                self.open = Some(new);
            }
        }
        Ok(())
    }

    /// Opens the file at the path. Same inode as saved: continue at the saved offset. Another
    /// inode: the file rotated while we were not running, so first finish the saved one if it
    /// is still there as `<path>.1`, then start the new one at 0.
    fn reopen(&mut self, sink: &mut dyn FnMut(&Line) -> bool) -> std::io::Result<Option<Open>> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let inode = file.metadata()?.ino();
        match self.saved {
            Some(saved) if saved.inode == inode => {
                Ok(Some(Open::at(file, saved.offset, saved.tail)?))
            }
            Some(saved) => {
                let mut rotated = self.path.clone().into_os_string();
                rotated.push(".1");
                if let Ok(old) = File::open(&rotated)
                    && old.metadata()?.ino() == saved.inode
                    && !Open::at(old, saved.offset, saved.tail)?.read(sink)?
                {
                    // Refused half-way: try the whole step again next time (same ids).
                    return Ok(None);
                }
                Ok(Some(Open::at(file, 0, Tail::default())?))
            }
            None => Ok(Some(Open::at(file, 0, Tail::default())?)),
        }
    }

    fn save(&mut self) {
        let Some(open) = &self.open else { return };
        let cursor = Cursor {
            inode: open.inode,
            offset: open.offset,
            tail: open.tail,
        };
        if self.saved == Some(cursor) {
            return;
        }
        match save_cursor(&self.state, cursor) {
            Ok(()) => self.saved = Some(cursor),
            // The offset in memory is still right; after a restart the lines since the last
            // save are spooled again under the same ids and the server keeps one of each.
            Err(error) => tracing::warn!(%error, "cannot save the alert follower's offset"),
        }
    }
}

/// The report of one alert line, under the line's id. A line that is not JSON yields nothing.
fn report_of(line: &Line) -> Option<Report> {
    let alert = serde_json::from_str::<serde_json::Value>(&line.text).ok()?;
    let at_ms = alert["time"]
        .as_i64()
        .unwrap_or_else(ringfence_protocol::clock::unix_ms);
    Some(Report {
        id: line.id.clone(),
        at_ms,
        body: ReportBody::Alert(alert),
    })
}

/// Follows the alert file and spools alerts within `budget`, which counts what it leaves out.
/// A line the spool refuses (a full disk) is retried.
pub(super) fn ship_alerts(
    path: PathBuf,
    spool: Arc<Spool>,
    budget: Arc<ReportBudget>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut follower = Follower::new(path.clone(), state_path(&path));
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            follower.poll(&mut |line| {
                let Some(alert) = report_of(line) else {
                    return true;
                };
                if !budget.admit(&spool) {
                    return true;
                }
                if let Err(error) = spool.push(&alert) {
                    tracing::warn!(%error, "cannot spool an alert; retrying");
                    return false;
                }
                true
            });
        }
    })
}

#[cfg(test)]
mod tests;
