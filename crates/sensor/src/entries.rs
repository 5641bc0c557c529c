//! Watching the directory entries of the agent's own files: who creates, deletes or renames
//! the agent's binary, its configuration and the files of its data directory.
//!
//! Open permission marks ([`crate::Fanotify::watch_open`]) refuse writes into those files, but
//! no fanotify event can refuse a rename or an unlink: `mv evil /usr/bin/ringfence` swaps the
//! binary the next start runs without opening the old one. This is a second, notification-only
//! group reporting the directory and name of every entry change (`FAN_REPORT_DFID_NAME`), so
//! that such a change is never unseen. Nothing waits on it: a slow reader loses nothing but
//! time, as the queue is unlimited; events the kernel drops anyway are counted as overflows.

use crate::decode::{self, RawEntryEvent};
use crate::error::SensorError;
use crate::procfs;
use ringfence_sys as sys;
use std::collections::HashSet;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The entry changes reported. `FAN_ONDIR` includes directories (the data directory itself,
/// and subdirectories in it).
const ENTRY_MASK: u64 = libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_MOVED_FROM
    | libc::FAN_MOVED_TO
    | libc::FAN_ONDIR;

/// What happened to a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryChangeKind {
    Created,
    Deleted,
    /// Another entry was renamed to this name, replacing whatever had it.
    MovedIn,
    /// This entry was renamed away.
    MovedOut,
}

impl EntryChangeKind {
    /// Every change a mask reports, in the order they are most likely to have happened. The
    /// kernel merges events on the same name by the same process while they wait in the queue,
    /// so an unlink and a create read as one `DELETE|CREATE`: both must be reported.
    fn all_in(mask: u64) -> impl Iterator<Item = EntryChangeKind> {
        [
            (libc::FAN_MOVED_FROM, EntryChangeKind::MovedOut),
            (libc::FAN_DELETE, EntryChangeKind::Deleted),
            (libc::FAN_CREATE, EntryChangeKind::Created),
            (libc::FAN_MOVED_TO, EntryChangeKind::MovedIn),
        ]
        .into_iter()
        .filter(move |(bit, _)| mask & bit != 0)
        .map(|(_, kind)| kind)
    }

    /// What the process did, in words: "renamed another file over".
    pub fn verb(self) -> &'static str {
        match self {
            EntryChangeKind::Created => "created",
            EntryChangeKind::Deleted => "deleted",
            EntryChangeKind::MovedIn => "renamed another file over",
            EntryChangeKind::MovedOut => "renamed away",
        }
    }
}

/// One change to a watched entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryChange {
    pub kind: EntryChangeKind,
    /// The process that made it (0 if the kernel could not say).
    pub pid: u32,
    pub path: PathBuf,
}

/// A watched directory: which of its entries matter.
#[derive(Debug)]
struct WatchedDir {
    key: Vec<u8>,
    path: PathBuf,
    /// `None`: every entry.
    names: Option<HashSet<OsString>>,
}

/// A notification group reporting entry changes in a few directories.
#[derive(Debug)]
pub struct EntryWatch {
    group: OwnedFd,
    /// Ends a [`EntryWatch::read`] early (see [`EntryWatch::wake_on`]).
    wake: Option<std::sync::Arc<ringfence_sys::fd::Wake>>,
    dirs: Vec<WatchedDir>,
    /// Times the kernel queue overflowed and changes were lost.
    pub overflows: u64,
}

impl EntryWatch {
    /// Opens the group. It needs `CAP_SYS_ADMIN` here, at start, even though an unprivileged
    /// group could watch these directories: only a privileged group is told which process
    /// made each change, and a change by nobody in particular is useless as evidence.
    pub fn open() -> Result<EntryWatch, SensorError> {
        if !procfs::has_capability(procfs::CAP_SYS_ADMIN) {
            return Err(SensorError::NeedsCapSysAdmin);
        }
        // Unlimited queue: the watched directories include busy ones (the binary's, /etc),
        // and a full queue would let a rename hide in the noise.
        let flags = libc::FAN_CLASS_NOTIF
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK
            | libc::FAN_UNLIMITED_QUEUE
            | libc::FAN_REPORT_DFID_NAME;
        let group =
            sys::fanotify::init(flags, (libc::O_RDONLY | libc::O_CLOEXEC) as u32).map_err(|e| {
                match e.raw_os_error() {
                    Some(libc::EINVAL) => {
                        SensorError::Unsupported("FAN_REPORT_DFID_NAME (Linux 5.9)")
                    }
                    Some(libc::EPERM) => SensorError::NeedsCapSysAdmin,
                    _ => SensorError::io("fanotify_init (entry watch)", e),
                }
            })?;
        Ok(EntryWatch::adopt(group))
    }

    /// Takes over a group a previous image handed across `execve` (see [`crate::handoff`]).
    /// Its marks and queued changes are still there; call [`EntryWatch::watch_entry`] and
    /// [`EntryWatch::watch_children`] again to say which changes matter (re-marking a
    /// directory is harmless).
    pub fn adopt(group: OwnedFd) -> EntryWatch {
        EntryWatch {
            group,
            dirs: Vec::new(),
            wake: None,
            overflows: 0,
        }
    }

    /// Reports changes to `path`'s own entry in its parent directory: it being deleted,
    /// renamed away, or replaced by a rename. A path whose file was already replaced reads
    /// " (deleted)" in /proc; that suffix is dropped.
    pub fn watch_entry(&mut self, path: &Path) -> Result<(), SensorError> {
        let path = live_name(path);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(SensorError::NoSuchPath(path));
        };
        let name = name.to_owned();
        self.watch(parent, Some(name))
    }

    /// Reports changes to every entry directly in `dir`, and to `dir`'s own entry.
    pub fn watch_children(&mut self, dir: &Path) -> Result<(), SensorError> {
        self.watch(dir, None)?;
        self.watch_entry(dir)
    }

    fn watch(&mut self, dir: &Path, name: Option<OsString>) -> Result<(), SensorError> {
        let dir = std::fs::canonicalize(dir).map_err(|_| SensorError::NoSuchPath(dir.into()))?;
        if let Some(watched) = self.dirs.iter_mut().find(|d| d.path == dir) {
            match (&mut watched.names, name) {
                (Some(names), Some(name)) => {
                    names.insert(name);
                }
                (names, None) => *names = None,
                (None, Some(_)) => {}
            }
            return Ok(());
        }
        let key = sys::fanotify::dir_key(&dir)
            .map_err(|e| SensorError::io(format!("file handle of {}", dir.display()), e))?;
        sys::fanotify::mark(&self.group, libc::FAN_MARK_ADD, ENTRY_MASK, Some(&dir))
            .map_err(|e| SensorError::io(format!("fanotify_mark {}", dir.display()), e))?;
        tracing::info!(dir = %dir.display(), "entry watch mark added");
        self.dirs.push(WatchedDir {
            key,
            path: dir,
            names: name.map(|n| HashSet::from([n])),
        });
        Ok(())
    }

    /// Makes every later read return at once once `wake` is woken.
    pub fn wake_on(&mut self, wake: std::sync::Arc<ringfence_sys::fd::Wake>) {
        self.wake = Some(wake);
    }

    /// Waits up to `timeout` and returns the changes to watched entries read (possibly none).
    pub fn read(&mut self, timeout: Duration) -> Result<Vec<EntryChange>, SensorError> {
        // This reporting mode carries no descriptors; one that came anyway closes with `read`.
        let read = crate::fanotify::read_group(
            &self.group,
            self.wake.as_deref(),
            timeout,
            "read entry watch",
        )?;
        let (raw, error) = decode::fanotify_entry_events(read.bytes());
        if let Some(error) = error {
            tracing::error!(%error, "garbled entry watch buffer; decoded changes still count");
        }
        Ok(raw
            .into_iter()
            .flat_map(|event| self.changes(event))
            .collect())
    }

    fn changes(&mut self, event: RawEntryEvent) -> Vec<EntryChange> {
        if event.mask & libc::FAN_Q_OVERFLOW != 0 {
            self.overflows += 1;
            tracing::warn!("entry watch queue overflow: changes to the agent's files were lost");
            return Vec::new();
        }
        let Some(dir) = self.dirs.iter().find(|d| d.key == event.dir) else {
            return Vec::new();
        };
        let name = OsString::from_vec(event.name);
        if dir
            .names
            .as_ref()
            .is_some_and(|names| !names.contains(&name))
        {
            return Vec::new();
        }
        let pid = u32::try_from(event.pid).unwrap_or(0);
        let path = dir.path.join(name);
        EntryChangeKind::all_in(event.mask)
            .map(|kind| EntryChange {
                kind,
                pid,
                path: path.clone(),
            })
            .collect()
    }

    /// A duplicate of the group descriptor that survives `execve` (see [`crate::handoff`]).
    pub fn inheritable_fd(&self) -> Result<OwnedFd, SensorError> {
        let dup = self
            .group
            .try_clone()
            .map_err(|e| SensorError::io("dup entry watch group", e))?;
        sys::fd::set_cloexec(&dup, false).map_err(|e| SensorError::io("clear FD_CLOEXEC", e))?;
        Ok(dup)
    }
}

/// `path` without the " (deleted)" /proc appends to a file whose name now belongs to another.
fn live_name(path: &Path) -> PathBuf {
    let text = path.as_os_str().as_encoded_bytes();
    match text.strip_suffix(b" (deleted)") {
        Some(live) => PathBuf::from(OsString::from_vec(live.to_vec())),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_suffix_is_dropped() {
        assert_eq!(
            live_name(Path::new("/usr/bin/ringfence (deleted)")),
            Path::new("/usr/bin/ringfence")
        );
        assert_eq!(live_name(Path::new("/a/b")), Path::new("/a/b"));
    }

    #[test]
    fn every_change_in_a_merged_mask_is_reported() {
        let kinds = |mask| EntryChangeKind::all_in(mask).collect::<Vec<_>>();
        assert_eq!(
            kinds(libc::FAN_MOVED_TO | libc::FAN_ONDIR),
            [EntryChangeKind::MovedIn]
        );
        // unlink, then create of the same name by the same process: one merged event.
        assert_eq!(
            kinds(libc::FAN_DELETE | libc::FAN_CREATE),
            [EntryChangeKind::Deleted, EntryChangeKind::Created]
        );
        assert!(kinds(libc::FAN_ATTRIB).is_empty());
    }

    #[test]
    fn only_watched_names_of_a_watched_directory_are_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = sys::fanotify::dir_key(dir.path()).expect("key");
        let mut watch = EntryWatch::adopt(std::fs::File::open("/dev/null").expect("null").into());
        watch.dirs.push(WatchedDir {
            key: key.clone(),
            path: dir.path().to_owned(),
            names: Some(HashSet::from([OsString::from("ringfence")])),
        });
        let event = |name: &str, dir: &[u8]| RawEntryEvent {
            mask: libc::FAN_MOVED_TO,
            fd: -1,
            pid: 7,
            dir: dir.to_vec(),
            name: name.as_bytes().to_vec(),
        };
        let changes = watch.changes(event("ringfence", &key));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, EntryChangeKind::MovedIn);
        assert_eq!(changes[0].pid, 7);
        assert_eq!(changes[0].path, dir.path().join("ringfence"));
        assert!(watch.changes(event("other", &key)).is_empty());
        assert!(watch.changes(event("ringfence", b"elsewhere")).is_empty());
        let overflow = RawEntryEvent {
            mask: libc::FAN_Q_OVERFLOW,
            fd: -1,
            pid: 0,
            dir: Vec::new(),
            name: Vec::new(),
        };
        assert!(watch.changes(overflow).is_empty());
        assert_eq!(watch.overflows, 1);
    }
}
