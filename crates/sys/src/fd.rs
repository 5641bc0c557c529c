//! Descriptors: turning a number into an owner (only where nobody else can own it), waiting on
//! several at once, reading, close-on-exec, and adopting the descriptors a previous image of this
//! process left open across `execve` (the self-upgrade handoff).

use crate::{check, check_size};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Makes `fd` an [`OwnedFd`].
///
/// # Safety
/// `fd` must be open, and nothing else in the process may own it or ever close it: it was just
/// returned by a system call that creates descriptors, or handed to this process in a way that
/// gives it to exactly one reader.
pub(crate) unsafe fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller upholds this function's contract, which is `from_raw_fd`'s.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A way to end the readers' waits at once: an eventfd in each reader's poll set. Stopping or
/// handing off then takes as long as the reader's current batch, not the rest of its poll
/// timeout (which an in-place upgrade spends with every exec waiting). Once woken it stays
/// readable: a reader that was woken is meant to stop.
#[derive(Debug)]
pub struct Wake(OwnedFd);

impl Wake {
    pub fn new() -> io::Result<Wake> {
        // SAFETY: eventfd takes no pointers and returns a new descriptor or -1.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` was just created by eventfd and is owned by nobody else.
        Ok(Wake(unsafe { own(fd) }))
    }

    /// Ends every current and later wait on this wake.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: an 8-byte write from a valid u64 to our own eventfd; a full counter (after
        // 2^64-2 wakes) fails with EAGAIN, and the eventfd is readable then anyway.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

/// Waits until `fd` is readable or `timeout` passes; true when readable.
pub fn poll_readable(fd: &impl AsRawFd, timeout: Duration) -> io::Result<bool> {
    poll_readable_or_woken(fd, None, timeout)
}

/// [`poll_readable`] that also returns (false, unless `fd` is readable too) when `wake` is
/// woken.
pub fn poll_readable_or_woken(
    fd: &impl AsRawFd,
    wake: Option<&Wake>,
    timeout: Duration,
) -> io::Result<bool> {
    let watch = |fd: RawFd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut fds = [
        watch(fd.as_raw_fd()),
        watch(wake.map_or(-1, |w| w.0.as_raw_fd())),
    ];
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: two valid pollfds (a negative fd is ignored by the kernel), count 2; the kernel
    // writes only their `revents`.
    match check(unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) }) {
        Ok(_) => Ok(fds[0].revents != 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// `read(2)` into `buf`; returns how many bytes the kernel wrote.
pub fn read(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable slice of `buf.len()` bytes for the whole call.
    check_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// Sets or clears `FD_CLOEXEC`: a descriptor handed to a re-executed agent must survive
/// `execve`, and every other one must not.
pub fn set_cloexec(fd: &impl AsRawFd, cloexec: bool) -> io::Result<()> {
    // SAFETY: F_GETFD only reads the descriptor flags of a descriptor the caller holds.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })?;
    let flags = if cloexec {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: F_SETFD only writes the descriptor flags of a descriptor the caller holds.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags) })?;
    Ok(())
}

/// Set once a process has claimed its inherited descriptors.
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// The descriptors a previous image of this process left open for it across `execve`. There is
/// one claim per process ([`Inherited::claim`]), made at start; each number is adopted at most
/// once, and only if it is still without `FD_CLOEXEC`.
///
/// Why that is enough for the [`OwnedFd`]s it returns to be sound: every descriptor Rust code
/// opens in this process (std, this crate, the crates we use) is opened close-on-exec, so an open
/// descriptor *without* `FD_CLOEXEC` was inherited across `execve`, and nothing in this image
/// has wrapped it (wrapping a bare number takes `unsafe`, which only this crate has). Adopting
/// sets `FD_CLOEXEC`, so the same number can never be adopted twice.
#[derive(Debug)]
pub struct Inherited(());

impl Inherited {
    /// The process's one claim on its inherited descriptors: `Some` the first time, `None` after.
    pub fn claim() -> Option<Inherited> {
        (!CLAIMED.swap(true, Ordering::AcqRel)).then_some(Inherited(()))
    }

    /// Takes ownership of inherited descriptor `fd` after checking that it is open, was
    /// inherited (no `FD_CLOEXEC`), and that `/proc/self/fd/<fd>` names the kind of object
    /// expected (e.g. `anon_inode:[fanotify]`). The returned descriptor is close-on-exec again.
    pub fn adopt(&mut self, fd: RawFd, expected_link_prefix: &str) -> io::Result<OwnedFd> {
        if fd < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "negative descriptor",
            ));
        }
        // SAFETY: F_GETFD only inspects the descriptor table; any integer is a valid argument.
        let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
        if flags & libc::FD_CLOEXEC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {fd} is close-on-exec: it was not inherited, or is taken"),
            ));
        }
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))?;
        if !link.to_string_lossy().starts_with(expected_link_prefix) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "descriptor {fd} is {}, not {expected_link_prefix}",
                    link.display()
                ),
            ));
        }
        // SAFETY: `fd` is open and was inherited across execve (see the type's documentation):
        // nothing else in this image owns it. Setting FD_CLOEXEC next marks it taken.
        let owned = unsafe { own(fd) };
        set_cloexec(&owned, true)?;
        Ok(owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A descriptor that never becomes readable: the read end of a pipe nobody writes to.
    fn quiet() -> (OwnedFd, std::io::PipeWriter) {
        let (read, write) = std::io::pipe().expect("pipe");
        (OwnedFd::from(read), write)
    }

    #[test]
    fn a_woken_wait_returns_without_the_descriptor_being_readable() {
        let (read, _write) = quiet();
        let wake = Wake::new().expect("eventfd");
        assert!(!poll_readable_or_woken(&read, Some(&wake), Duration::ZERO).expect("poll"));
        wake.wake();
        // An hour's timeout: the call returns only because it was woken.
        assert!(
            !poll_readable_or_woken(&read, Some(&wake), Duration::from_secs(3600)).expect("poll")
        );
    }

    #[test]
    fn a_readable_descriptor_is_reported_even_when_woken() {
        let (read, mut write) = quiet();
        std::io::Write::write_all(&mut write, b"x").expect("write");
        let wake = Wake::new().expect("eventfd");
        wake.wake();
        assert!(
            poll_readable_or_woken(&read, Some(&wake), Duration::from_secs(3600)).expect("poll")
        );
    }

    /// Only descriptors without close-on-exec, of the expected kind, once each; the one claim
    /// per process is made here (no other test in this crate claims).
    #[test]
    fn only_an_inherited_descriptor_of_the_right_kind_is_adopted_once() {
        let mut inherited = Inherited::claim().expect("first claim");
        assert!(Inherited::claim().is_none(), "one claim per process");
        let (read, _write) = quiet();
        let refused = inherited
            .adopt(read.as_raw_fd(), "pipe:")
            .expect_err("close-on-exec");
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput, "{refused}");

        // As a previous image would leave it: close-on-exec cleared, then "forgotten".
        let leaked = std::mem::ManuallyDrop::new(read);
        let fd = leaked.as_raw_fd();
        set_cloexec(&*leaked, false).expect("clear");
        let wrong = inherited
            .adopt(fd, "socket:[")
            .expect_err("a pipe is no socket");
        assert_eq!(wrong.kind(), io::ErrorKind::InvalidData, "{wrong}");
        let owned = inherited.adopt(fd, "pipe:").expect("adopted");
        assert_eq!(owned.as_raw_fd(), fd);
        inherited
            .adopt(fd, "pipe:")
            .expect_err("adopted numbers are close-on-exec again");
        drop(owned);
        assert!(inherited.adopt(-1, "pipe:").is_err());
    }
}
