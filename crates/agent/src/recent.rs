//! The last permission events the workers decided, kept so that a validated engine swap can
//! try the new engines on real traffic before they go live.
//!
//! Recording happens after the ticket is answered and only when the lock is free: a busy ring
//! loses a sample rather than delaying a worker.

use ringfence_protocol::Event;
use std::collections::VecDeque;
use std::sync::Mutex;

/// How many recent permission events are kept.
pub const RECENT_EVENTS: usize = 64;

/// A bounded ring of recent permission events.
#[derive(Debug, Default)]
pub struct RecentEvents {
    ring: Mutex<VecDeque<Event>>,
}

impl RecentEvents {
    /// Keeps `event`, forgetting the oldest past [`RECENT_EVENTS`]; skips it when another
    /// worker holds the lock.
    pub fn record(&self, event: &Event) {
        if let Ok(mut ring) = self.ring.try_lock() {
            if ring.len() == RECENT_EVENTS {
                ring.pop_front();
            }
            ring.push_back(event.clone());
        }
    }

    /// The kept events, oldest first.
    pub fn snapshot(&self) -> Vec<Event> {
        match self.ring.lock() {
            Ok(ring) => ring.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }
}
