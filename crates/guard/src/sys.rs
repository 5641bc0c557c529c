//! The guard's only kernel calls that need `unsafe`: the pre-exec hook for the agent (parent
//! death signal, heartbeat fd inheritance), `pidfd_open`, and dying by a chosen signal for the
//! test agent. Everything else goes through nix's safe wrappers.
#![allow(
    unsafe_code,
    reason = "pre_exec, pidfd_open and signal dispositions have no safe API"
)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the spawned agent (1) die with SIGKILL if the guard thread that spawned it dies, so a
/// vanished guard never leaves a second, unsupervised agent holding fanotify, and (2) inherit
/// `keep_fd` (the heartbeat pipe's write end) across exec, and nothing else of ours, and (3)
/// start with an empty signal mask: the guard blocks SIGTERM for its signalfd, and a blocked mask
/// survives exec, so without this the agent could never be stopped politely.
pub fn prepare_child(cmd: &mut Command, keep_fd: RawFd) {
    let guard_pid = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (prctl, getppid, fcntl, sigemptyset, sigprocmask) on plain integers and a local
    // sigset; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The guard may have died between fork and prctl; then nobody would kill us.
            if libc::getppid() != guard_pid {
                return Err(io::Error::other("guard exited while starting the agent"));
            }
            if libc::fcntl(keep_fd, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A pidfd for `pid`: readable once the process has exited, so the guard can poll for exit,
/// heartbeat and shutdown together without SIGCHLD handlers.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Dies by `signal` with its default action (a core-dumping SIGSEGV, say). std installs its own
/// SIGSEGV handler for stack overflows, which would swallow a raised SIGSEGV, so the default
/// disposition is restored first.
pub fn die_by_signal(signal: libc::c_int) -> ! {
    // SAFETY: setting a default disposition and raising a signal touch no Rust-managed memory.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
    std::process::abort()
}
