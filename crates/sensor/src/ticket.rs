//! A pending permission decision that is answered exactly once.
//!
//! A ticket may be answered by a worker (the engines' verdict), by the deadline responder (the
//! policy verdict, when the worker is late), by the queue (policy, when it is full) or at
//! shutdown. Whoever comes first wins with one atomic compare-and-swap; the others learn they
//! were late. A ticket dropped unanswered answers "allow" itself: a process blocked forever in
//! `execve` is the one outcome worse than a missed detection.

use ringfence_sys as sys;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const PENDING: u8 = 0;
const ALLOWED: u8 = 1;
const DENIED: u8 = 2;

enum Target {
    /// A real fanotify permission event: the group and the event's descriptor, which must stay
    /// open until the answer is written.
    Kernel {
        group: Arc<OwnedFd>,
        fd: OwnedFd,
        audit: bool,
    },
    /// Replay and tests: the answer is only recorded.
    Detached,
}

/// One permission event waiting for its answer.
pub struct Ticket {
    target: Target,
    state: AtomicU8,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("answer", &self.answer())
            .finish_non_exhaustive()
    }
}

impl Ticket {
    pub(crate) fn kernel(group: Arc<OwnedFd>, fd: OwnedFd, audit: bool) -> Ticket {
        Ticket {
            target: Target::Kernel { group, fd, audit },
            state: AtomicU8::new(PENDING),
        }
    }

    /// A ticket with no kernel behind it (replayed events, tests).
    pub fn detached() -> Ticket {
        Ticket {
            target: Target::Detached,
            state: AtomicU8::new(PENDING),
        }
    }

    /// Answers allow (`true`) or deny; returns false when someone else answered first.
    pub fn respond(&self, allow: bool) -> bool {
        let new = if allow { ALLOWED } else { DENIED };
        if self
            .state
            .compare_exchange(PENDING, new, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        if let Target::Kernel { group, fd, audit } = &self.target {
            let mut response = if allow {
                libc::FAN_ALLOW
            } else {
                libc::FAN_DENY
            };
            // Audit only denials: an audit record per allowed exec would flood the log.
            if *audit && !allow {
                response |= libc::FAN_AUDIT;
            }
            if let Err(error) = sys::fanotify::respond(group, fd, response) {
                // ENOENT: the kernel no longer waits (the group is going away). Nothing else
                // can be done; the kernel allows on release.
                tracing::warn!(%error, "could not write fanotify response");
            }
        }
        true
    }

    /// `Some(true)` allowed, `Some(false)` denied, `None` still pending.
    pub fn answer(&self) -> Option<bool> {
        match self.state.load(Ordering::Acquire) {
            ALLOWED => Some(true),
            DENIED => Some(false),
            _ => None,
        }
    }

    /// The file of a kernel event (open read-only by the kernel for us), while the ticket lives.
    pub fn file(&self) -> Option<&OwnedFd> {
        match &self.target {
            Target::Kernel { fd, .. } => Some(fd),
            Target::Detached => None,
        }
    }

    /// True for tickets that a kernel waits on.
    pub fn is_kernel(&self) -> bool {
        matches!(self.target, Target::Kernel { .. })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.respond(true) && self.is_kernel() {
            tracing::warn!("permission event dropped unanswered; allowed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_answer_wins() {
        let ticket = Ticket::detached();
        assert_eq!(ticket.answer(), None);
        assert!(ticket.respond(false));
        assert!(!ticket.respond(true));
        assert_eq!(ticket.answer(), Some(false));
    }
}
