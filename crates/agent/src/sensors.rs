//! Sensor threads: read events and push them into the pipeline. The fanotify reader answers
//! muted and cached events itself, so a busy queue never delays them.

use crate::alerts::{Alert, Reason};
use crate::cache::CacheKey;
use crate::core::{Core, Pending};
use crate::stats::Stats;
use ringfence_protocol::{Action, Event};
use ringfence_sensor::{Access, FanEvent, Fanotify, ProcConnector, Ticket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a reader blocks before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Reads fanotify until stopped, then unmarks and answers everything still queued.
pub fn fanotify(core: &Core, fan: &Fanotify) {
    while !core.stopping() {
        match fan.read(POLL) {
            Ok(events) => events.into_iter().for_each(|e| fan_event(core, e)),
            Err(error) => {
                tracing::error!(%error, "fanotify read failed");
                std::thread::sleep(POLL);
            }
        }
    }
    fan.unmark();
    // Events the kernel queued before the marks went are still ours to answer.
    loop {
        match fan.read(Duration::ZERO) {
            Ok(events) if !events.is_empty() => {
                for event in events {
                    Stats::add(&core.stats.events);
                    if let Some(ticket) = event.ticket {
                        let pending = pending_of(&event.access, event.pid, event.path);
                        core.answer_by_policy(&ticket, &pending, Reason::Shutdown);
                    }
                }
            }
            _ => break,
        }
    }
}

fn pending_of(access: &Access, pid: u32, path: String) -> Pending {
    match access {
        Access::Open => Pending::Open { pid, path },
        _ => Pending::Exec { pid, path },
    }
}

fn fan_event(core: &Core, event: FanEvent) {
    Stats::add(&core.stats.events);
    if event.access == Access::Overflow {
        Stats::add(&core.stats.overflows);
        tracing::warn!("fanotify queue overflow");
    }
    let Some(ticket) = event.ticket else { return };
    if core.mute.pid(event.pid) || core.mute.path(&event.path) {
        Stats::add(&core.stats.muted);
        ticket.respond(true);
        return;
    }
    if !matches!(event.access, Access::Exec | Access::Open) {
        ticket.respond(true);
        return;
    }
    let key = match (&core.cache, event.file) {
        (Some(_), Some(file)) if event.access == Access::Exec => Some(CacheKey {
            file,
            path: event.path.clone(),
            generation: core.engines.current().generation,
        }),
        _ => None,
    };
    if let (Some(cache), Some(key)) = (&core.cache, &key)
        && let Some(hit) = cache.get(key)
    {
        ticket.respond(hit.allow);
        Stats::add(&core.stats.cache_hits);
        core.count_answer(hit.allow);
        if hit.verdict.action == Action::Deny {
            let event = ringfence_sensor::resolve_exec(event.pid, &event.path);
            core.alert(&Alert {
                event: &event,
                verdict: &hit.verdict,
                allowed: Some(hit.allow),
                reason: Reason::Cache,
                engines: &[],
                failures: &[],
            });
        }
        return;
    }
    let pending = pending_of(&event.access, event.pid, event.path);
    core.submit(ticket, pending, key);
}

/// Reads the process connector until stopped.
pub fn proc_connector(core: &Core, mut connector: ProcConnector) {
    let mut overflows = 0;
    while !core.stopping() {
        match connector.read(POLL) {
            Ok(events) => {
                for event in events {
                    Stats::add(&core.stats.events);
                    if !core.mute.pid(event.pid()) {
                        core.notify(event);
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "process connector read failed");
                std::thread::sleep(POLL);
            }
        }
        if connector.overflows > overflows {
            overflows = connector.overflows;
            Stats::add(&core.stats.overflows);
        }
    }
}

/// Replays a corpus once; returns when every event has been answered or processed (or the
/// agent stops).
pub fn replay(core: &Core, events: Vec<Event>, notified: &AtomicU64) {
    let mut tickets = Vec::new();
    let mut notifications = 0u64;
    for event in events {
        if core.stopping() {
            break;
        }
        Stats::add(&core.stats.events);
        if event.is_permission() {
            let ticket = Arc::new(Ticket::detached());
            core.submit_blocking(Arc::clone(&ticket), Pending::Ready(event));
            tickets.push(ticket);
        } else {
            notifications += 1;
            core.notify(event);
        }
    }
    // Wait for the answers; each is bounded by the permission deadline.
    let give_up = Instant::now() + Duration::from_secs(30);
    while Instant::now() < give_up && !core.stopping() {
        let answered = tickets.iter().all(|t| t.answer().is_some());
        let dropped = core.stats.notifications_dropped.load(Ordering::Relaxed);
        let processed = notified.load(Ordering::Acquire) + dropped >= notifications;
        if answered && processed {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
