//! The hard deadline responder: fanotify has no timeout of its own, so this thread answers
//! every permission event whose deadline passes before a worker's verdict, by policy.
//!
//! It does nothing else: no /proc reads, no engine calls, no blocking I/O except the alert
//! line. Its heap holds every watched ticket until answered, so at shutdown it can answer all of
//! them at once.

use crate::alerts::Reason;
use crate::core::{Core, Watch};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

struct Entry(Watch);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.deadline == other.0.deadline
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.deadline.cmp(&other.0.deadline)
    }
}

/// Runs until the watch channel is closed; then answers whatever is left.
pub fn run(core: &Core, watches: &Receiver<Watch>) {
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
    loop {
        let now = Instant::now();
        while let Some(Reverse(entry)) = heap.peek() {
            if entry.0.ticket.answer().is_some() {
                heap.pop();
            } else if entry.0.deadline <= now {
                if let Some(Reverse(Entry(watch))) = heap.pop() {
                    core.answer_by_policy(&watch.ticket, &watch.pending, Reason::Deadline);
                }
            } else {
                break;
            }
        }
        let wait = heap
            .peek()
            .map(|Reverse(e)| e.0.deadline.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100));
        match watches.recv_timeout(wait) {
            Ok(watch) => {
                heap.push(Reverse(Entry(watch)));
                // Drain the burst without sleeping in between.
                while let Ok(watch) = watches.try_recv() {
                    heap.push(Reverse(Entry(watch)));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if core.stopping() {
            answer_all(core, &mut heap);
        }
    }
    answer_all(core, &mut heap);
}

fn answer_all(core: &Core, heap: &mut BinaryHeap<Reverse<Entry>>) {
    for Reverse(Entry(watch)) in heap.drain() {
        core.answer_by_policy(&watch.ticket, &watch.pending, Reason::Shutdown);
    }
}
