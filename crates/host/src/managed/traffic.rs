//! Replayed permission traffic for demos and load tests, with exact accounting of what was
//! sent and what was never answered.

use ringfence_agent::Agent;
use ringfence_protocol::Event;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Replays `events` in a loop at `rate` per second as permission traffic; counts what was
/// sent and what was answered.
pub(super) fn traffic(
    agent: Arc<Agent>,
    events: Vec<Event>,
    rate: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    unanswered: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        let mut pending: Vec<(Instant, Arc<ringfence_sensor::Ticket>)> = Vec::new();
        let mut next = Instant::now();
        for event in events.iter().filter(|e| e.is_permission()).cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let ticket = Arc::new(ringfence_sensor::Ticket::detached());
            agent.submit(event.clone(), Arc::clone(&ticket));
            sent.fetch_add(1, Ordering::Relaxed);
            pending.push((Instant::now(), ticket));
            // An answer is due within the permission deadline; one missing after 5 s is lost.
            pending.retain(|(at, ticket)| {
                if ticket.answer().is_some() {
                    return false;
                }
                if at.elapsed() > Duration::from_secs(5) {
                    unanswered.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                true
            });
            next += interval;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            } else if next + Duration::from_secs(1) < Instant::now() {
                next = Instant::now();
            }
        }
        // Every answer is due within the permission deadline; a second is plenty.
        let give_up = Instant::now() + Duration::from_secs(1);
        while !pending.is_empty() && Instant::now() < give_up {
            pending.retain(|(_, ticket)| ticket.answer().is_none());
            std::thread::sleep(Duration::from_millis(5));
        }
        unanswered.fetch_add(pending.len() as u64, Ordering::Relaxed);
    })
}
