//! The hand-over of queued permission events from the threads that queue them to the deadline
//! responder.
//!
//! A mutex and a condition variable, not a lock-free channel. The responder runs at real-time
//! priority, and a lock-free channel's receiver spins — yielding — while a sender it interrupted
//! finishes writing its slot. A real-time thread's yield never lets a normal thread run on its
//! core, so the responder spun until the scheduler moved the sender to another core: on a busy
//! two-core host that took hundreds of milliseconds, past the responder's real-time budget, and
//! the kernel stopped the agent (`SIGXCPU`, seen as `sched_yield` in a loop in a kernel trace of
//! `ringfence demo`). Here a responder that finds the lock taken sleeps on it, and the sender
//! it interrupted runs and lets go.

use crate::shared::Watch;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Watches queued for the responder; closed once the agent stops queueing.
#[derive(Debug, Default)]
pub struct WatchQueue {
    state: Mutex<State>,
    queued: Condvar,
}

#[derive(Debug, Default)]
struct State {
    watches: VecDeque<Watch>,
    closed: bool,
}

/// How a [`WatchQueue::take`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// At least one watch was taken.
    Watches,
    /// None came within the timeout.
    TimedOut,
    /// The queue is closed and empty: nothing will come.
    Closed,
}

impl WatchQueue {
    pub fn new() -> WatchQueue {
        WatchQueue::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A watch is plain data: a holder that panicked left nothing half-done.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a watch for the responder; false once the queue is closed (the agent is stopping
    /// and answers what is left by policy itself).
    pub fn push(&self, watch: Watch) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        state.watches.push_back(watch);
        drop(state);
        self.queued.notify_one();
        true
    }

    /// Ends the queue: watches already in it are still taken, then [`Taken::Closed`].
    pub fn close(&self) {
        self.state().closed = true;
        self.queued.notify_all();
    }

    /// Hands up to `max` queued watches to `each`, oldest first, waiting at most `timeout` for
    /// the first one.
    pub fn take(&self, timeout: Duration, max: usize, mut each: impl FnMut(Watch)) -> Taken {
        let until = Instant::now().checked_add(timeout);
        let mut state = self.state();
        loop {
            if !state.watches.is_empty() {
                let n = state.watches.len().min(max.max(1));
                for watch in state.watches.drain(..n) {
                    each(watch);
                }
                return Taken::Watches;
            }
            if state.closed {
                return Taken::Closed;
            }
            let left = match until {
                Some(until) => until.saturating_duration_since(Instant::now()),
                None => timeout,
            };
            if left.is_zero() {
                return Taken::TimedOut;
            }
            state = match self.queued.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::Pending;
    use ringfence_sensor::Ticket;
    use std::sync::Arc;

    fn watch(pid: u32) -> Watch {
        let now = Instant::now();
        Watch {
            ticket: Arc::new(Ticket::detached()),
            pending: Pending::Exec {
                pid,
                path: "/bin/true".into(),
            },
            arrived: now,
            deadline: now,
        }
    }

    fn pids(queue: &WatchQueue, timeout: Duration, max: usize) -> (Taken, Vec<u32>) {
        let mut pids = Vec::new();
        let taken = queue.take(timeout, max, |w| {
            if let Pending::Exec { pid, .. } = w.pending {
                pids.push(pid);
            }
        });
        (taken, pids)
    }

    #[test]
    fn takes_in_order_at_most_max_at_a_time() {
        let queue = WatchQueue::new();
        for pid in 1..=5 {
            assert!(queue.push(watch(pid)));
        }
        assert_eq!(
            pids(&queue, Duration::ZERO, 3),
            (Taken::Watches, vec![1, 2, 3])
        );
        assert_eq!(
            pids(&queue, Duration::ZERO, 3),
            (Taken::Watches, vec![4, 5])
        );
        assert_eq!(pids(&queue, Duration::ZERO, 3), (Taken::TimedOut, vec![]));
    }

    #[test]
    fn a_closed_queue_gives_what_it_holds_then_says_closed() {
        let queue = WatchQueue::new();
        assert!(queue.push(watch(7)));
        queue.close();
        assert!(!queue.push(watch(8)), "nothing is queued after the close");
        assert_eq!(pids(&queue, Duration::ZERO, 10), (Taken::Watches, vec![7]));
        assert_eq!(
            pids(&queue, Duration::from_secs(5), 10),
            (Taken::Closed, vec![])
        );
    }

    #[test]
    fn a_waiting_taker_wakes_for_a_push_and_for_a_close() {
        let queue = Arc::new(WatchQueue::new());
        let pusher = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                queue.push(watch(9));
                std::thread::sleep(Duration::from_millis(50));
                queue.close();
            })
        };
        assert_eq!(
            pids(&queue, Duration::from_secs(30), 10),
            (Taken::Watches, vec![9])
        );
        assert_eq!(
            pids(&queue, Duration::from_secs(30), 10),
            (Taken::Closed, vec![])
        );
        pusher.join().expect("pusher");
    }

    #[test]
    fn an_empty_open_queue_times_out() {
        let queue = WatchQueue::new();
        let started = Instant::now();
        assert_eq!(
            pids(&queue, Duration::from_millis(20), 10),
            (Taken::TimedOut, vec![])
        );
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
