//! Shutdown and upgrade requests as a pollable fd (signalfd), so the guard's single loop waits on
//! agent exit, heartbeat and signals together with no signal handlers and no threads.
//!
//! SIGUSR2 (`systemctl reload ringfence-guard`) is not a shutdown: the guard passes it to the
//! agent, which upgrades itself in place (same pid, so the guard keeps supervising it).

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

/// SIGTERM, SIGINT, SIGHUP and SIGUSR2, blocked and delivered through a signalfd.
#[derive(Debug)]
pub struct ShutdownSignals {
    fd: SignalFd,
    /// A SIGUSR2 read from the fd and not yet passed on.
    upgrade: Cell<bool>,
}

impl ShutdownSignals {
    /// Blocks the signals on the calling thread; call before any other thread exists so that
    /// none can take them by default action. std resets the mask in the agent at spawn.
    pub fn install() -> io::Result<Self> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGHUP);
        mask.add(Signal::SIGUSR2);
        mask.thread_block()?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Self {
            fd,
            upgrade: Cell::new(false),
        })
    }

    /// Records an upgrade request read by [`ShutdownSignals::take`].
    pub(crate) fn request_upgrade(&self) {
        self.upgrade.set(true);
    }

    /// True once per SIGUSR2 received.
    pub(crate) fn take_upgrade(&self) -> bool {
        self.upgrade.replace(false)
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
