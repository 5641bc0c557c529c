//! The notification path: fork/exec/exit events, batched to each engine's batched call, with
//! alerts for what engines flag. Nothing waits on these, so this thread may lag; its queue is
//! bounded and overflow is counted.

use crate::alerts::{Alert, EngineVerdict, Reason};
use crate::shared::Core;
use crate::stats::Stats;
use crate::worker::Engines;
use ringfence_protocol::{Action, Event};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Largest batch handed to an engine at once.
pub const BATCH: usize = 256;

/// Runs until the channel closes; `done` counts events fully processed (replay waits on it).
pub fn run(core: &Core, mut engines: Engines, events: &Receiver<Event>, done: &AtomicU64) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(event) => batch.push(event),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let until = Instant::now() + Duration::from_millis(5);
        while batch.len() < BATCH {
            match events.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        drop(engines.refresh(core));
        decide(core, &mut engines, &batch);
        done.fetch_add(batch.len() as u64, Ordering::Release);
        batch.clear();
    }
}

fn decide(core: &Core, engines: &mut Engines, batch: &[Event]) {
    let mut per_event: Vec<Vec<EngineVerdict>> = vec![Vec::new(); batch.len()];
    let mut failures = Vec::new();
    for worker in &mut engines.workers {
        Stats::add(&core.stats.engine_calls);
        let decisions = worker.decide_batch(batch);
        for ((slot, decision), event) in per_event.iter_mut().zip(decisions).zip(batch) {
            if let Some(report) = &decision.quarantined {
                core.quarantined(report, event);
            }
            if let Some(failure) = decision.failure {
                core.engine_failed(&failure);
                failures.push(failure);
            }
            if decision.verdict.action != Action::Allow {
                slot.push(EngineVerdict {
                    engine: worker.engine().name().to_owned(),
                    verdict: decision.verdict,
                });
            }
        }
    }
    for (event, verdicts) in batch.iter().zip(per_event) {
        if verdicts.is_empty() {
            continue;
        }
        let verdict = crate::shared::combine(&verdicts);
        core.alert(&Alert {
            event,
            verdict: &verdict,
            allowed: None,
            reason: Reason::Notification,
            engines: &verdicts,
            failures: &failures,
        });
    }
}
