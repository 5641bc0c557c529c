//! File leases (`fcntl(F_SETLEASE)`) and the signal that reports their breaking: the agent's
//! kernel exec cache holds a read lease on every file it lets the kernel answer for, so that
//! any later open of the file for writing waits in the kernel until the agent has withdrawn
//! that answer.

use crate::check;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

/// The signal the kernel sends the lease owner when a lease is being broken. A real-time
/// signal, so breaks queue instead of merging; when its queue is full the kernel sends SIGIO
/// instead, which [`wait_break`] collects too. 40 is glibc's `SIGRTMIN + 6` (it reserves 32 and 33);
/// nothing else in ringfence or wasmtime uses a real-time signal.
pub const LEASE_SIGNAL: libc::c_int = 40;

/// `<fcntl.h>` values libc does not export: `F_SETSIG`, `F_SETOWN_EX`, `F_OWNER_TID`.
const F_SETSIG: libc::c_int = 10;
const F_SETOWN_EX: libc::c_int = 15;
const F_OWNER_TID: libc::c_int = 0;

/// `struct f_owner_ex` of `<fcntl.h>`.
#[repr(C)]
struct OwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// What kind of lease a descriptor holds, as `F_GETLEASE` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// A read lease, not being broken.
    Read,
    /// A write lease.
    Write,
    /// No lease, or one whose break is pending (the kernel reports the type it is breaking to).
    None,
}

/// Takes a read lease on `file`, which must be open read-only. Fails with `EAGAIN` while any
/// descriptor has the file open for writing, and with `EACCES` when the caller neither owns the
/// file nor has `CAP_LEASE`.
pub fn take_read_lease(file: &impl AsFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own with integer arguments only.
    check(unsafe { libc::fcntl(file.as_fd().as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) })?;
    Ok(())
}

/// Gives up the lease on `file` (a writer waiting for its break may go on at once).
pub fn release_lease(file: &impl AsFd) -> io::Result<()> {
    // SAFETY: as in `take_read_lease`.
    check(unsafe { libc::fcntl(file.as_fd().as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) })?;
    Ok(())
}

/// The lease `file` holds.
pub fn lease(file: &impl AsFd) -> io::Result<Lease> {
    // SAFETY: as in `take_read_lease`.
    let kind = check(unsafe { libc::fcntl(file.as_fd().as_raw_fd(), libc::F_GETLEASE) })?;
    Ok(match kind {
        libc::F_RDLCK => Lease::Read,
        libc::F_WRLCK => Lease::Write,
        _ => Lease::None,
    })
}

/// Makes the kernel report a break of `file`'s lease with [`LEASE_SIGNAL`] to the thread
/// `tid` alone (`F_SETOWN_EX` with `F_OWNER_TID`), which must keep that signal and SIGIO
/// blocked ([`block_break_signals`]).
pub fn report_breaks_to(file: &impl AsFd, tid: libc::pid_t) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own with integer arguments only.
    check(unsafe { libc::fcntl(file.as_fd().as_raw_fd(), F_SETSIG, LEASE_SIGNAL) })?;
    let owner = OwnerEx {
        kind: F_OWNER_TID,
        pid: tid,
    };
    // SAFETY: `owner` is a plain C struct that lives for the call; the kernel only reads it.
    check(unsafe { libc::fcntl(file.as_fd().as_raw_fd(), F_SETOWN_EX, &raw const owner) })?;
    Ok(())
}

/// Ends a [`wait_break`] of the thread `tid` of this process at once (`tgkill` with
/// [`LEASE_SIGNAL`], which that thread keeps blocked, so nothing else happens to it).
pub fn wake(tid: libc::pid_t) -> io::Result<()> {
    // SAFETY: tgkill takes integers only; the signal goes to a thread of our own process that
    // blocks it (a thread that has exited makes the call fail with ESRCH).
    let ret = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, LEASE_SIGNAL) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's id (`gettid`).
pub fn thread_id() -> libc::pid_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

fn break_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, LEASE_SIGNAL);
        libc::sigaddset(&mut set, libc::SIGIO);
    }
    set
}

/// Blocks [`LEASE_SIGNAL`] and SIGIO in the calling thread, so that a break reported to it
/// waits for [`wait_break`] instead of killing the process (their default action).
pub fn block_break_signals() -> io::Result<()> {
    let set = break_set();
    // SAFETY: `set` is initialised; the old mask is not wanted (null).
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Waits up to `timeout` for a lease break reported to this thread; true when one (or more)
/// came. Which lease is breaking is read with [`lease`]: a breaking read lease reads as
/// [`Lease::None`].
pub fn wait_break(timeout: Duration) -> bool {
    let set = break_set();
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos().min(999_999_999) as i32),
    };
    // SAFETY: `set` and `ts` are initialised and outlive the call; siginfo is not wanted.
    let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    signal > 0
}

/// The filesystem type (`f_type` of `fstatfs`) of the filesystem `file` is on.
pub fn filesystem_type(file: &impl AsFd) -> io::Result<i64> {
    // SAFETY: `struct statfs` is plain old data; all zeroes is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes one `struct statfs` into the value we own.
    check(unsafe { libc::fstatfs(file.as_fd().as_raw_fd(), &mut stat) })?;
    Ok(stat.f_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_lease_is_refused_while_a_writer_has_the_file_open() {
        let dir = std::env::temp_dir().join(format!("rf-lease-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("f");
        std::fs::write(&path, b"x").expect("write");
        let writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open for write");
        let reader = std::fs::File::open(&path).expect("open");
        let refused = take_read_lease(&reader).expect_err("a writer is there");
        // EACCES when the test runs as a user that does not own /tmp's file system objects.
        assert!(
            matches!(refused.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)),
            "{refused}"
        );
        drop(writer);
        if take_read_lease(&reader).is_ok() {
            assert_eq!(lease(&reader).expect("getlease"), Lease::Read);
            release_lease(&reader).expect("release");
            assert_eq!(lease(&reader).expect("getlease"), Lease::None);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
