//! Signals: the daemons' blocked set collected with `sigtimedwait`, SIGPIPE's default for the
//! command line, and dying by a chosen signal (the guard's crash-test agent).

use std::io;
use std::time::Duration;

/// The signal that asks a running agent to upgrade itself in place (re-exec its binary).
pub const UPGRADE_SIGNAL: libc::c_int = libc::SIGUSR2;

/// Signals a daemon collects instead of dying by them: the termination signals, which it turns
/// into a clean shutdown, and [`UPGRADE_SIGNAL`].
pub const DAEMON_SIGNALS: [libc::c_int; 4] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, UPGRADE_SIGNAL];

fn daemon_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut set) };
    for signal in DAEMON_SIGNALS {
        // SAFETY: as above; the signal numbers are valid constants.
        unsafe { libc::sigaddset(&mut set, signal) };
    }
    set
}

/// Blocks [`DAEMON_SIGNALS`] in the calling thread, and so in every thread it starts
/// afterwards; call it first thing in `main`, then collect them with [`wait_termination`].
pub fn block_termination_signals() -> io::Result<()> {
    let set = daemon_set();
    // SAFETY: `set` is initialised; the old mask is not wanted (null).
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Waits up to `timeout` for one of [`DAEMON_SIGNALS`]; returns its number.
pub fn wait_termination(timeout: Duration) -> Option<libc::c_int> {
    let set = daemon_set();
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos().min(999_999_999) as i32),
    };
    // SAFETY: `set` and `ts` are initialised and outlive the call; siginfo is not wanted.
    let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (signal > 0).then_some(signal)
}

/// Restores the default action for SIGPIPE, which Rust's runtime ignores: a command-line tool
/// whose output is piped into `head` should end quietly when the reader goes, not panic on
/// the failed write.
pub fn restore_default_sigpipe() {
    // SAFETY: installing the default disposition for SIGPIPE has no preconditions; it runs
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
