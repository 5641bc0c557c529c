//! The kernel exec cache: allowed execs of files the kernel answers itself, with no event to
//! user space, until anything could make that answer wrong.
//!
//! An entry is a fanotify inode ignore mark for `FAN_OPEN_EXEC_PERM` on the file, and a read
//! lease on it that the agent holds. The mark makes the kernel answer the file's execs itself;
//! the lease makes every later open of the file for writing (the only way to change its
//! content: `write`, `truncate`, a shared writable `mmap`, `fallocate`, a clone into it) wait
//! in the kernel until the agent has removed the mark. fanotify alone would leave a window: the
//! kernel clears an ignore mark itself on a `write` (`FS_MODIFY`), but a write through a shared
//! mapping raises no `FS_MODIFY`, and the `FAN_CLOSE_WRITE` that follows is only queued, so an
//! exec could run the new content before the agent read it. The lease closes it: no descriptor
//! open for writing can exist while the agent holds the lease (taking it fails while one does),
//! and a new one is only made after the agent has answered the break.
//!
//! What the mark cannot see is a new *name*: a rename, a hard link, a rename of a directory
//! above, a bind mount all give the inode another path with no permission event. So the agent
//! places entries only for engine sets whose every engine judges an exec by the file's content
//! alone (`ExecInputs::FileContent`); a path, argv, parent or user dependent verdict stays in
//! the user-space cache, whose key holds the path.
//!
//! Entries are bounded ([`KernelCache::new`]'s capacity; the oldest goes first), dropped when
//! the file loses its last name (the mark and the lease's descriptor would otherwise keep a
//! deleted binary's blocks), and all removed before an engine set of another generation
//! answers (`suspend`/`resume`), at stop, and before a handoff.

use crate::fanotify::FileId;
use ringfence_sys as sys;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The events an entry's mark suppresses: only the exec. An exec also raises `FAN_OPEN_PERM`,
/// but only on groups that watch opens of the file (the agent's self-protection marks), and
/// those must keep seeing every open.
pub const KERNEL_CACHE_MASK: u64 = libc::FAN_OPEN_EXEC_PERM;

/// Filesystems whose every content change goes through an open of this very inode (so through
/// the lease) and that support leases: not overlayfs (a write to a lower or upper file never
/// opens the overlay inode we would mark), not network or FUSE filesystems (changed behind the
/// kernel's back).
const LOCAL_FILESYSTEMS: [i64; 5] = [
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0x0102_1994, // tmpfs
    0xF2F5_2010, // f2fs
];

/// How often the lease thread looks for entries whose file lost its last name.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What came of asking for an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The kernel answers this file's execs from now on.
    Placed,
    /// There is one already (the kernel was asked anyway: an event raced the mark).
    Present,
    /// The verdict is of a generation that no longer (or not yet) answers.
    Stale,
    /// The file cannot be kernel-cached now, for the reason given.
    Refused(Refusal),
}

/// Why a file was not kernel-cached; the user-space cache still answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The lease thread is not running.
    NoOwner,
    /// Not a filesystem the agent was given, or not a local one whose changes all pass
    /// through the file (overlay, NFS, FUSE).
    Filesystem,
    /// Someone has the file open for writing (or the lease was refused otherwise).
    Lease,
    /// The file changed since the verdict's event was read.
    Changed,
    /// fanotify refused the mark.
    Mark,
}

#[derive(Debug)]
struct Entry {
    /// The file, read-only, holding the lease.
    file: File,
    id: FileId,
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// The generation whose verdicts may be placed; `None` while a swap removes the marks.
    accepting: Option<u64>,
    entries: HashMap<(u64, u64), Entry>,
    /// Placement order, oldest first, for eviction past the capacity.
    order: BTreeMap<u64, (u64, u64)>,
    next_seq: u64,
    last_sweep: Option<Instant>,
}

/// Counts from one pass over the entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Entries removed because their lease was being broken (a writer).
    pub broken: u64,
    /// Entries removed because their file has no name left.
    pub unlinked: u64,
}

/// The kernel exec cache of one fanotify group.
#[derive(Debug)]
pub struct KernelCache {
    group: Arc<OwnedFd>,
    capacity: usize,
    /// The filesystems (`st_dev`) whose files may be placed.
    devices: Vec<u64>,
    inner: Mutex<Inner>,
    /// Thread id the kernel reports lease breaks to; 0 while no lease thread runs.
    owner: AtomicI32,
}

impl KernelCache {
    /// A cache that places marks on `group` for files on the filesystems `devices` (`st_dev`)
    /// and keeps at most `capacity` entries, accepting verdicts of `generation`.
    ///
    /// Each entry holds the file open, which keeps the mount it was executed through busy: an
    /// `umount` of it fails with `EBUSY`. So the agent names only filesystems nobody unmounts
    /// while it runs (by default the root filesystem).
    pub fn new(
        group: Arc<OwnedFd>,
        capacity: usize,
        generation: u64,
        devices: Vec<u64>,
    ) -> KernelCache {
        KernelCache {
            group,
            capacity: capacity.max(1),
            devices,
            inner: Mutex::new(Inner {
                accepting: Some(generation),
                ..Inner::default()
            }),
            owner: AtomicI32::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Entries in place.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lets the kernel answer execs of `event_file` (an exec event's descriptor whose verdict,
    /// of engine generation `generation`, allowed it by its content alone) from now on, if
    /// nothing changed it since it was `id`. Also says whether the oldest entry was evicted to
    /// make room.
    pub fn place(&self, event_file: &OwnedFd, id: FileId, generation: u64) -> (Placement, bool) {
        let owner = self.owner.load(Ordering::Acquire);
        if owner == 0 {
            return (Placement::Refused(Refusal::NoOwner), false);
        }
        if !self.devices.contains(&id.dev) {
            return (Placement::Refused(Refusal::Filesystem), false);
        }
        // Held throughout: a break reported while the mark goes in waits for this lock, and
        // then finds the entry to remove.
        let mut inner = self.lock();
        if inner.accepting != Some(generation) {
            return (Placement::Stale, false);
        }
        if let Some(entry) = inner.entries.get(&(id.dev, id.ino)) {
            let leased = matches!(sys::lease::lease(&entry.file), Ok(sys::lease::Lease::Read));
            if entry.id == id && leased {
                // The kernel asked although the entry is there: its mark went some other way
                // (an upgrade's clearing of its own ignore marks). The lease is still held, so
                // no writer came (one waiting now finds the entry when this lock is free, and
                // the mark goes again before it may write): the mark goes back.
                let _ = sys::fanotify::mark_file(
                    &self.group,
                    libc::FAN_MARK_ADD | libc::FAN_MARK_IGNORED_MASK,
                    KERNEL_CACHE_MASK,
                    &entry.file,
                );
                return (Placement::Present, false);
            }
            // The same inode changed since its entry went in, or its lease was taken from us
            // (the kernel cleared the mark on the write; the break is still on its way).
            let key = (id.dev, id.ino);
            self.remove(&mut inner, key);
        }
        let file = match event_file.try_clone() {
            Ok(fd) => File::from(fd),
            Err(_) => return (Placement::Refused(Refusal::Lease), false),
        };
        match sys::lease::filesystem_type(&file) {
            Ok(kind) if LOCAL_FILESYSTEMS.contains(&kind) => {}
            _ => return (Placement::Refused(Refusal::Filesystem), false),
        }
        // The owner first: a break of a lease without one would be reported to nobody, and
        // the writer would wait out the kernel's lease-break-time.
        if sys::lease::report_breaks_to(&file, owner).is_err()
            || sys::lease::take_read_lease(&file).is_err()
        {
            return (Placement::Refused(Refusal::Lease), false);
        }
        // From here no one can open the file for writing without us hearing first; what the
        // engines judged is what is there if its change time is still the one read with the
        // event (every content change moves it, and a writer that came and went in between
        // moved it too).
        let unchanged = file
            .metadata()
            .is_ok_and(|meta| FileId::from_metadata(&meta) == id);
        if !unchanged {
            let _ = sys::lease::release_lease(&file);
            return (Placement::Refused(Refusal::Changed), false);
        }
        if sys::fanotify::mark_file(
            &self.group,
            libc::FAN_MARK_ADD | libc::FAN_MARK_IGNORED_MASK,
            KERNEL_CACHE_MASK,
            &file,
        )
        .is_err()
        {
            let _ = sys::lease::release_lease(&file);
            return (Placement::Refused(Refusal::Mark), false);
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.order.insert(seq, (id.dev, id.ino));
        inner
            .entries
            .insert((id.dev, id.ino), Entry { file, id, seq });
        let mut evicted = false;
        while inner.entries.len() > self.capacity {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            self.remove(&mut inner, oldest);
            evicted = true;
        }
        (Placement::Placed, evicted)
    }

    /// Removes one entry: the mark first, then the lease, so a writer waiting on the lease
    /// goes on only once the kernel asks about the file again.
    fn remove(&self, inner: &mut Inner, key: (u64, u64)) {
        let Some(entry) = inner.entries.remove(&key) else {
            return;
        };
        inner.order.remove(&entry.seq);
        if let Err(error) = sys::fanotify::mark_file(
            &self.group,
            libc::FAN_MARK_REMOVE | libc::FAN_MARK_IGNORED_MASK,
            KERNEL_CACHE_MASK,
            &entry.file,
        ) {
            // ENOENT: the kernel cleared it on a write already.
            if error.raw_os_error() != Some(libc::ENOENT) {
                tracing::warn!(%error, "could not remove a kernel exec cache mark");
            }
        }
        let _ = sys::lease::release_lease(&entry.file);
    }

    fn remove_all(&self, inner: &mut Inner) -> usize {
        let keys: Vec<(u64, u64)> = inner.entries.keys().copied().collect();
        for key in &keys {
            self.remove(inner, *key);
        }
        keys.len()
    }

    /// Removes every entry and places none until [`KernelCache::resume`]: call before another
    /// engine set answers. Returns how many were removed.
    pub fn suspend(&self) -> usize {
        let mut inner = self.lock();
        inner.accepting = None;
        self.remove_all(&mut inner)
    }

    /// Accepts verdicts of `generation` from now on.
    pub fn resume(&self, generation: u64) {
        self.lock().accepting = Some(generation);
    }

    /// Ends the lease thread's current wait, so that a stop or handoff (during which every
    /// exec waits) need not wait out its sweep interval.
    pub fn wake(&self) {
        let owner = self.owner.load(Ordering::Acquire);
        if owner != 0 {
            let _ = sys::lease::wake(owner);
        }
    }

    /// Removes the entries whose lease is being broken (and, at most every second, those whose
    /// file has no name left).
    pub fn check(&self) -> Removed {
        let mut inner = self.lock();
        let sweep = inner
            .last_sweep
            .is_none_or(|last| last.elapsed() >= SWEEP_EVERY);
        if sweep {
            inner.last_sweep = Some(Instant::now());
        }
        let mut removed = Removed::default();
        let keys: Vec<(u64, u64)> = inner.entries.keys().copied().collect();
        for key in keys {
            let Some(entry) = inner.entries.get(&key) else {
                continue;
            };
            // Anything but a read lease we still hold (an error too) ends the entry.
            if !matches!(sys::lease::lease(&entry.file), Ok(sys::lease::Lease::Read)) {
                self.remove(&mut inner, key);
                removed.broken += 1;
            } else if sweep && entry.file.metadata().is_ok_and(|meta| meta.nlink() == 0) {
                self.remove(&mut inner, key);
                removed.unlinked += 1;
            }
        }
        removed
    }

    /// Serves lease breaks on the calling thread until `running` says stop, then removes every
    /// entry and returns how many that were. `ready` is called once entries can be placed (or
    /// never will be); `removed` is told what each pass removed.
    pub fn serve_breaks(
        &self,
        running: impl Fn() -> bool,
        ready: impl FnOnce(),
        mut removed: impl FnMut(Removed),
    ) -> usize {
        if let Err(error) = sys::lease::block_break_signals() {
            tracing::error!(%error, "lease signals cannot be blocked; no kernel exec cache");
            ready();
            return 0;
        }
        self.owner.store(sys::lease::thread_id(), Ordering::Release);
        ready();
        while running() {
            // Every lease is looked at when a break is reported, and at each periodic sweep
            // (for files that lost their name); an idle agent does nothing in between.
            sys::lease::wait_break(SWEEP_EVERY);
            let pass = self.check();
            if pass != Removed::default() {
                removed(pass);
            }
        }
        // No thread hears breaks after this one: nothing may stay placed.
        self.owner.store(0, Ordering::Release);
        self.suspend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_placed_without_a_thread_to_hear_breaks() {
        let (read, _write) = std::io::pipe().expect("pipe");
        let group = Arc::new(OwnedFd::from(read));
        let cache = KernelCache::new(Arc::clone(&group), 4, 1, vec![1]);
        let id = FileId {
            dev: 1,
            ino: 2,
            ctime_sec: 3,
            ctime_nsec: 4,
        };
        assert_eq!(
            cache.place(&group, id, 1).0,
            Placement::Refused(Refusal::NoOwner)
        );
        assert!(cache.is_empty());
    }
}
