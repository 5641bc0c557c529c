//! Processes: starting the supervised agent (parent-death signal, the one inherited
//! descriptor, a clean signal mask), watching it through a pidfd, real-time scheduling for the
//! deadline responder, and giving freed heap back to the kernel.

use crate::check;
use crate::fd::own;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the process `cmd` spawns (1) die with SIGKILL if the thread that spawned it dies, so a
/// vanished supervisor never leaves a second, unsupervised agent holding fanotify, and (2)
/// inherit `keep_fd` (the heartbeat pipe's write end) across exec, and nothing else of ours,
/// and (3) start with an empty signal mask: a supervisor that blocks SIGTERM for its signalfd
/// passes a blocked mask through exec, and without this the child could never be stopped
/// politely.
pub fn supervise_on_spawn(cmd: &mut Command, keep_fd: RawFd) {
    let parent = std::process::id() as libc::pid_t;
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
            // The parent may have died between fork and prctl; then nobody would kill us.
            if libc::getppid() != parent {
                return Err(io::Error::other(
                    "supervisor exited while starting the child",
                ));
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

/// A pidfd for `pid`: readable once the process has exited, so a supervisor can poll for exit,
/// heartbeat and shutdown together without SIGCHLD handlers.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { own(fd) })
}

/// Puts the calling thread under `SCHED_RR` at `priority` (1 is the lowest real-time
/// priority): it then runs before every normal thread of the host whenever it is runnable, so
/// a loaded machine cannot keep it from answering on time. Needs `CAP_SYS_NICE` or an
/// `RLIMIT_RTPRIO` of at least `priority`.
pub fn set_realtime_round_robin(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is initialised and outlives the call; pid 0 names the calling thread.
    check(unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) }).map(|_| ())
}

/// Gives the heap's free pages back to the kernel. Compiling an engine with Cranelift allocates
/// tens of MiB that glibc keeps for reuse once freed; an agent compiles only at start and on an
/// install, never reuses that memory in between, and on a fleet it is resident size paid on
/// every host (`ringfence bench memory`).
pub fn release_free_heap() {
    // SAFETY: malloc_trim walks glibc's own arenas under their own locks; it has no
    // preconditions and may be called from any thread at any time.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}
