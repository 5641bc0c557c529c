//! The fanotify sensor: marks mounts for exec authorisation and paths for open authorisation,
//! reads events, and turns each into a [`FanEvent`] with a [`Ticket`] to answer it.
//!
//! Reading does as little as possible (no /proc access beyond the event's own fd link) so the
//! reader thread can answer muted and cached events at once; process details are resolved by
//! whoever decides the event, with [`crate::resolve_exec`] / [`crate::resolve_open`].

use crate::decode::{self, RawFanEvent};
use crate::error::SensorError;
use crate::ticket::Ticket;
use crate::{mounts, procfs};
use ringfence_sys as sys;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Identity of a file for the decision cache: a rewritten binary gets a new change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub ctime_sec: i64,
    pub ctime_nsec: i64,
}

impl FileId {
    /// The identity of an open file.
    pub fn of(file: &std::fs::File) -> std::io::Result<FileId> {
        let meta = file.metadata()?;
        Ok(FileId::from_metadata(&meta))
    }

    pub fn from_metadata(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime_sec: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }
}

/// Where to mark.
#[derive(Debug, Clone, Default)]
pub struct FanotifyConfig {
    /// Mount points whose execs need authorisation (`FAN_MARK_MOUNT`).
    pub exec_mounts: Vec<PathBuf>,
    /// Filesystems (given by any path on them) whose execs need authorisation
    /// (`FAN_MARK_FILESYSTEM`: every mount of that filesystem, bind mounts included).
    pub exec_filesystems: Vec<PathBuf>,
    /// Files or directories (their direct children) whose opens need authorisation.
    pub watch_open: Vec<PathBuf>,
    /// Notification mode for the recorder: same marks, no permission events, nothing waits.
    pub notify_only: bool,
}

/// What kind of access an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Exec,
    Open,
    /// The kernel queue overflowed: events were lost (notifications only; permission events
    /// are never dropped by the kernel).
    Overflow,
    Other,
}

/// One event read from the group.
#[derive(Debug)]
pub struct FanEvent {
    pub access: Access,
    pub mask: u64,
    /// Process (thread group) that caused the event.
    pub pid: u32,
    /// Path of the file, from the event fd; may end in " (deleted)".
    pub path: String,
    pub file: Option<FileId>,
    /// Present for permission events: answer it, or dropping it allows.
    pub ticket: Option<Arc<Ticket>>,
}

/// An open fanotify group with its marks.
#[derive(Debug)]
pub struct Fanotify {
    group: Arc<OwnedFd>,
    audit: bool,
    notify_only: bool,
    marks: Vec<(u32, u64, PathBuf)>,
    /// Files whose exec events this group ignores for now (see [`Fanotify::ignore_exec_of`]).
    ignored: Vec<PathBuf>,
    /// Ends a [`Fanotify::read`] early (see [`Fanotify::wake_on`]).
    wake: Option<Arc<sys::fd::Wake>>,
}

/// The events an exec ignore mark suppresses: an exec opens the file for exec and, as a second
/// event, for reading.
const EXEC_IGNORE_MASK: u64 = libc::FAN_OPEN_EXEC_PERM | libc::FAN_OPEN_PERM;

fn init_error(error: std::io::Error) -> SensorError {
    match error.raw_os_error() {
        Some(libc::EPERM) => SensorError::NeedsCapSysAdmin,
        Some(libc::ENOSYS) => SensorError::Unsupported("fanotify"),
        _ => SensorError::io("fanotify_init", error),
    }
}

impl Fanotify {
    /// Opens a group and places every mark; fails before marking anything it cannot.
    pub fn open(config: &FanotifyConfig) -> Result<Fanotify, SensorError> {
        if !config.notify_only && !procfs::has_capability(procfs::CAP_SYS_ADMIN) {
            return Err(SensorError::NeedsCapSysAdmin);
        }
        let marks = planned_marks(config)?;
        let class = if config.notify_only {
            libc::FAN_CLASS_NOTIF
        } else {
            libc::FAN_CLASS_CONTENT
        };
        let base = class | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK;
        let event_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32;
        // FAN_ENABLE_AUDIT needs CONFIG_AUDITSYSCALL and CAP_AUDIT_WRITE; probe and fall back.
        let (group, audit) = match sys::fanotify::init(base | libc::FAN_ENABLE_AUDIT, event_flags) {
            Ok(group) => (group, !config.notify_only),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EPERM)) => (
                sys::fanotify::init(base, event_flags).map_err(init_error)?,
                false,
            ),
            Err(e) => return Err(init_error(e)),
        };
        for (flags, mask, path) in &marks {
            add_mark(&group, *flags, *mask, path)?;
        }
        Ok(Fanotify {
            group: Arc::new(group),
            audit,
            notify_only: config.notify_only,
            marks,
            ignored: Vec::new(),
            wake: None,
        })
    }

    /// Takes over a group a previous image of this agent handed across `execve` (see
    /// [`crate::handoff`]). Its marks are still in place in the kernel and so are the events
    /// queued while no one read; nothing is marked again, so no capability is needed.
    ///
    /// `ignored` are the exec ignore marks the previous image placed for its own exec; remove
    /// them with [`Fanotify::clear_ignores`] once a reader runs.
    pub fn adopt(
        group: OwnedFd,
        config: &FanotifyConfig,
        audit: bool,
        ignored: Vec<PathBuf>,
    ) -> Result<Fanotify, SensorError> {
        Ok(Fanotify {
            group: Arc::new(group),
            audit,
            notify_only: config.notify_only,
            marks: planned_marks(config)?,
            ignored,
            wake: None,
        })
    }

    /// Stops asking about execs of `paths` until [`Fanotify::clear_ignores`].
    ///
    /// A self-upgrading agent needs this for the new binary and its ELF interpreter: its own
    /// `execve` raises exec permission events on this group while no thread of it can read
    /// them any more, which would block the exec for ever.
    pub fn ignore_exec_of(&mut self, paths: &[PathBuf]) -> Result<(), SensorError> {
        for path in paths {
            if !path.exists() {
                return Err(SensorError::NoSuchPath(path.clone()));
            }
            // Marked through the path as given: `/proc/self/fd/N` names exactly the file
            // opened and verified, even if its name was replaced since.
            add_mark(
                &self.group,
                libc::FAN_MARK_IGNORED_MASK,
                EXEC_IGNORE_MASK,
                path,
            )?;
            self.ignored
                .push(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()));
        }
        Ok(())
    }

    /// The exec ignore marks in place (handed to the next image with the group).
    pub fn ignored(&self) -> &[PathBuf] {
        &self.ignored
    }

    /// Removes every exec ignore mark: execs of those files are asked about again.
    ///
    /// In the new image the binary's mark is also removed through `/proc/self/exe`, the file
    /// this image runs, in case its name was replaced between the mark and the exec.
    pub fn clear_ignores(&mut self) {
        if !self.ignored.is_empty() {
            self.ignored.push(PathBuf::from("/proc/self/exe"));
        }
        for path in self.ignored.drain(..) {
            if let Err(error) = sys::fanotify::mark(
                &self.group,
                libc::FAN_MARK_REMOVE | libc::FAN_MARK_IGNORED_MASK,
                EXEC_IGNORE_MASK,
                Some(&path),
            ) {
                // A file replaced since has no mark left to remove.
                tracing::debug!(%error, path = %path.display(), "exec ignore mark not removed");
            }
        }
    }

    /// A kernel exec cache on this group for files on the filesystems `devices`, with room for
    /// `capacity` files, accepting verdicts of engine generation `generation` (see
    /// [`crate::kcache`]).
    pub fn kernel_cache(
        &self,
        capacity: usize,
        generation: u64,
        devices: Vec<u64>,
    ) -> crate::KernelCache {
        crate::KernelCache::new(Arc::clone(&self.group), capacity, generation, devices)
    }

    /// A duplicate of the group descriptor that survives `execve`, for handing the group to a
    /// new image of the agent. Dropping it (when the exec failed) closes only the duplicate.
    pub fn inheritable_fd(&self) -> Result<OwnedFd, SensorError> {
        let dup = self
            .group
            .try_clone()
            .map_err(|e| SensorError::io("dup fanotify group", e))?;
        sys::fd::set_cloexec(&dup, false).map_err(|e| SensorError::io("clear FD_CLOEXEC", e))?;
        Ok(dup)
    }

    /// Adds open-permission marks on single files and directories (their direct children)
    /// after start, e.g. the agent's own binary and data: inode marks need no capability on a
    /// group the agent already owns, so this works after privileges are dropped and after a
    /// self-upgrade. Removed with the others on [`Fanotify::unmark`].
    pub fn watch_open(&mut self, paths: &[PathBuf]) -> Result<(), SensorError> {
        if self.notify_only {
            return Ok(());
        }
        for path in paths {
            let path = existing(path)?;
            let mask = open_mask(&path, libc::FAN_OPEN_PERM);
            add_mark(&self.group, 0, mask, &path)?;
            self.marks.push((0, mask, path));
        }
        Ok(())
    }

    /// True when denials are written to the audit log (`FAN_AUDIT`).
    pub fn audit_enabled(&self) -> bool {
        self.audit
    }

    /// Waits up to `timeout` and returns the events read (possibly none).
    /// Makes every later [`Fanotify::read`] return at once (with what is queued, possibly
    /// nothing) once `wake` is woken: a stop or handoff need not wait out a read's timeout.
    pub fn wake_on(&mut self, wake: Arc<sys::fd::Wake>) {
        self.wake = Some(wake);
    }

    pub fn read(&self, timeout: Duration) -> Result<Vec<FanEvent>, SensorError> {
        let mut read = read_group(&self.group, self.wake.as_deref(), timeout, "read fanotify")?;
        let (raw, error) = decode::fanotify_events(read.bytes());
        if let Some(error) = error {
            tracing::error!(%error, "garbled fanotify buffer; decoded events are still answered");
        }
        Ok(raw
            .into_iter()
            .map(|raw| self.event(raw, &mut read))
            .collect())
    }

    fn event(&self, raw: RawFanEvent, read: &mut sys::fanotify::EventRead) -> FanEvent {
        let pid = u32::try_from(raw.pid).unwrap_or(0);
        let access = if raw.mask & libc::FAN_Q_OVERFLOW != 0 {
            Access::Overflow
        } else if raw.mask & (libc::FAN_OPEN_EXEC_PERM | libc::FAN_OPEN_EXEC) != 0 {
            Access::Exec
        } else if raw.mask & (libc::FAN_OPEN_PERM | libc::FAN_OPEN) != 0 {
            Access::Open
        } else {
            Access::Other
        };
        let Some(fd) = read.take_fd(raw.fd) else {
            return FanEvent {
                access,
                mask: raw.mask,
                pid,
                path: String::new(),
                file: None,
                ticket: None,
            };
        };
        let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = std::fs::File::from(fd);
        let id = FileId::of(&file).ok();
        let fd = OwnedFd::from(file);
        let is_perm = raw.mask & (libc::FAN_OPEN_EXEC_PERM | libc::FAN_OPEN_PERM) != 0;
        let ticket = (is_perm && !self.notify_only)
            .then(|| Arc::new(Ticket::kernel(Arc::clone(&self.group), fd, self.audit)));
        FanEvent {
            access,
            mask: raw.mask,
            pid,
            path,
            file: id,
            ticket,
        }
    }

    /// Removes the open marks on `paths` placed by [`Fanotify::watch_open`].
    pub fn unwatch_open(&mut self, paths: &[PathBuf]) {
        let canonical: Vec<PathBuf> = paths.iter().filter_map(|p| existing(p).ok()).collect();
        self.marks.retain(|(flags, mask, path)| {
            if *flags != 0 || !canonical.contains(path) {
                return true;
            }
            if let Err(error) =
                sys::fanotify::mark(&self.group, libc::FAN_MARK_REMOVE, *mask, Some(path))
            {
                tracing::warn!(%error, path = %path.display(), "could not remove open mark");
            }
            false
        });
    }

    /// Removes every mark so no new permission events arrive; events already queued are still
    /// read and answered by the caller (and the kernel allows any left when the group closes).
    pub fn unmark(&self) {
        for (flags, mask, path) in &self.marks {
            if let Err(error) = sys::fanotify::mark(
                &self.group,
                libc::FAN_MARK_REMOVE | flags,
                *mask,
                Some(path),
            ) {
                // A hardened agent has no CAP_SYS_ADMIN left for mount marks; closing the
                // group removes them anyway.
                if error.raw_os_error() == Some(libc::EPERM) {
                    tracing::debug!(path = %path.display(), "mark stays until the group closes");
                } else {
                    tracing::warn!(%error, path = %path.display(), "could not remove fanotify mark");
                }
            }
        }
    }
}

/// Waits up to `timeout` for a group to be readable and reads what it holds: empty when nothing
/// came (or the wait was interrupted). Shared by the permission group and the entry watch.
pub(crate) fn read_group(
    group: &OwnedFd,
    wake: Option<&sys::fd::Wake>,
    timeout: Duration,
    what: &'static str,
) -> Result<sys::fanotify::EventRead, SensorError> {
    if !sys::fd::poll_readable_or_woken(group, wake, timeout)
        .map_err(|e| SensorError::io("poll", e))?
    {
        return Ok(sys::fanotify::EventRead::default());
    }
    sys::fanotify::read_events(group, 16 * 1024).map_err(|e| SensorError::io(what, e))
}

/// Every mark a configuration asks for, checked (paths exist, mounts are mount points) before
/// anything is marked.
fn planned_marks(config: &FanotifyConfig) -> Result<Vec<(u32, u64, PathBuf)>, SensorError> {
    let mut marks = Vec::new();
    let (exec_mask, open_perm) = if config.notify_only {
        (libc::FAN_OPEN_EXEC, libc::FAN_OPEN)
    } else {
        (libc::FAN_OPEN_EXEC_PERM, libc::FAN_OPEN_PERM)
    };
    for mount in &config.exec_mounts {
        let path = existing(mount)?;
        if !mounts::is_mount_point(&path) {
            return Err(SensorError::NotAMountPoint(path));
        }
        marks.push((libc::FAN_MARK_MOUNT, exec_mask, path));
    }
    for fs in &config.exec_filesystems {
        marks.push((libc::FAN_MARK_FILESYSTEM, exec_mask, existing(fs)?));
    }
    for watched in &config.watch_open {
        let path = existing(watched)?;
        marks.push((0, open_mask(&path, open_perm), path));
    }
    Ok(marks)
}

/// A directory's mark covers its direct children.
fn open_mask(path: &Path, open: u64) -> u64 {
    if path.is_dir() {
        open | libc::FAN_EVENT_ON_CHILD
    } else {
        open
    }
}

fn add_mark(group: &OwnedFd, flags: u32, mask: u64, path: &Path) -> Result<(), SensorError> {
    sys::fanotify::mark(group, libc::FAN_MARK_ADD | flags, mask, Some(path)).map_err(
        |e| match e.raw_os_error() {
            Some(libc::ENOENT) => SensorError::NoSuchPath(path.to_owned()),
            Some(libc::EINVAL) if mask & libc::FAN_OPEN_EXEC_PERM != 0 => {
                SensorError::Unsupported("FAN_OPEN_EXEC_PERM (Linux 5.0 or later)")
            }
            Some(libc::EPERM) => SensorError::NeedsCapSysAdmin,
            _ => SensorError::io(format!("fanotify_mark {}", path.display()), e),
        },
    )?;
    tracing::info!(path = %path.display(), mask, flags, "fanotify mark added");
    Ok(())
}

fn existing(path: &Path) -> Result<PathBuf, SensorError> {
    std::fs::canonicalize(path).map_err(|_| SensorError::NoSuchPath(path.to_owned()))
}
