//! Shutdown requests as a pollable fd (signalfd), so the guard's single loop waits on agent exit,
//! heartbeat and SIGTERM together with no signal handlers and no threads.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

/// SIGTERM, SIGINT and SIGHUP, blocked and delivered through a signalfd.
#[derive(Debug)]
pub struct ShutdownSignals {
    fd: SignalFd,
}

impl ShutdownSignals {
    /// Blocks the signals on the calling thread; call before any other thread exists so that
    /// none can take them by default action. std resets the mask in the agent at spawn.
    pub fn install() -> io::Result<Self> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGHUP);
        mask.thread_block()?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Self { fd })
    }

    /// The signal that arrived, if any.
    pub fn take(&self) -> Option<Signal> {
        let info = self.fd.read_signal().ok()??;
        Signal::try_from(info.ssi_signo as i32).ok()
    }
}

impl AsFd for ShutdownSignals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
