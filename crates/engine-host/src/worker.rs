//! What an agent worker thread calls: decide an event, whatever the engine does.
//!
//! A worker owns one live instance and one warm spare. When a call fails, the failed instance
//! is dropped, the spare becomes live at once (a move, not an instantiation), and the runtime's
//! builder thread starts on the next spare. The event that hit the failure is answered by the
//! engine's failure policy.

use crate::instance::Instance;
use crate::loaded::{LoadError, LoadedEngine};
use crate::quarantine::QuarantineReport;
use ringfence_protocol::{Event, FailureKind, FailureRecord, Verdict};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The answer for one event, with what it cost and what went wrong.
#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    /// Set when the engine failed on this event (or is quarantined).
    pub failure: Option<FailureRecord>,
    /// Set on the one event whose failure quarantined the engine.
    pub quarantined: Option<QuarantineReport>,
    /// Wall time from the call to the answer.
    pub elapsed: Duration,
}

/// Per-thread handle to one engine.
pub struct EngineWorker {
    engine: Arc<LoadedEngine>,
    active: Option<Instance>,
    spare: Option<Instance>,
    pending_spare: Option<Receiver<Instance>>,
    peak_memory: usize,
    respawns: u64,
}

impl std::fmt::Debug for EngineWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineWorker")
            .field("engine", &self.engine)
            .field("respawns", &self.respawns)
            .finish_non_exhaustive()
    }
}

impl EngineWorker {
    /// Builds the live instance now and asks for a spare in the background.
    pub fn new(engine: Arc<LoadedEngine>) -> Result<EngineWorker, LoadError> {
        let (active, _) = Instance::new(&engine)?;
        let pending_spare = Some(engine.runtime.request_spare(Arc::clone(&engine)));
        Ok(EngineWorker {
            engine,
            active: Some(active),
            spare: None,
            pending_spare,
            peak_memory: 0,
            respawns: 0,
        })
    }

    pub fn engine(&self) -> &Arc<LoadedEngine> {
        &self.engine
    }

    /// Instances replaced after a failure so far.
    pub fn respawns(&self) -> u64 {
        self.respawns
    }

    /// Largest linear memory of any instance this worker has run, in bytes.
    pub fn peak_memory(&self) -> usize {
        let live = [&self.active, &self.spare]
            .into_iter()
            .flatten()
            .map(Instance::peak_memory)
            .max()
            .unwrap_or(0);
        self.peak_memory.max(live)
    }

    /// Waits (up to `timeout`) until a warm spare is ready; useful before measuring or before
    /// exposing the worker to traffic.
    pub fn wait_for_spare(&mut self, timeout: Duration) -> bool {
        if self.spare.is_some() {
            return true;
        }
        if let Some(pending) = &self.pending_spare
            && let Ok(instance) = pending.recv_timeout(timeout)
        {
            self.spare = Some(instance);
            self.pending_spare = None;
        }
        self.spare.is_some()
    }

    /// Decides one permission event.
    pub fn decide(&mut self, event: &Event) -> Decision {
        let started = Instant::now();
        if let Some(decision) = self.quarantined_answer(event, started) {
            return decision;
        }
        let result = self
            .ensure_live()
            .and_then(|()| match self.active.as_mut() {
                Some(instance) => instance.on_event(&self.engine, event),
                None => Err(unreachable_record(&self.engine)),
            });
        match result {
            Ok(verdict) => Decision {
                verdict,
                failure: None,
                quarantined: None,
                elapsed: started.elapsed(),
            },
            Err(record) => self.fail(record, started),
        }
    }

    /// Decides a batch of notification events: one decision per event, in order. A failure
    /// fails the whole batch (each event gets the policy verdict) and counts once.
    pub fn decide_batch(&mut self, events: &[Event]) -> Vec<Decision> {
        let started = Instant::now();
        if events.is_empty() {
            return Vec::new();
        }
        if self.engine.is_quarantined() {
            return events
                .iter()
                .filter_map(|event| self.quarantined_answer(event, started))
                .collect();
        }
        let result = self
            .ensure_live()
            .and_then(|()| match self.active.as_mut() {
                Some(instance) => instance.on_events(&self.engine, events),
                None => Err(unreachable_record(&self.engine)),
            });
        match result {
            Ok(verdicts) => {
                let elapsed = started.elapsed();
                verdicts
                    .into_iter()
                    .map(|verdict| Decision {
                        verdict,
                        failure: None,
                        quarantined: None,
                        elapsed,
                    })
                    .collect()
            }
            Err(record) => {
                let first = self.fail(record, started);
                let mut decisions = Vec::with_capacity(events.len());
                let rest = Decision {
                    failure: None,
                    quarantined: None,
                    ..first.clone()
                };
                decisions.push(first);
                decisions.resize(events.len(), rest);
                decisions
            }
        }
    }

    fn quarantined_answer(&self, event: &Event, started: Instant) -> Option<Decision> {
        let report = self.engine.quarantine_report()?;
        let record = FailureRecord {
            kind: FailureKind::Quarantined,
            trap_code: None,
            message: report.message.clone(),
            event_kind: Some(event.kind().to_owned()),
            backtrace: Vec::new(),
            elapsed_us: 0,
            ..report.last_failure.clone()
        };
        Some(Decision {
            verdict: self.policy_verdict("quarantined"),
            failure: Some(record),
            quarantined: None,
            elapsed: started.elapsed(),
        })
    }

    fn policy_verdict(&self, why: &str) -> Verdict {
        let settings = self.engine.settings();
        settings.policy.verdict(&settings.name, why)
    }

    /// Retires the live instance, counts the failure, answers by policy.
    fn fail(&mut self, record: FailureRecord, started: Instant) -> Decision {
        if let Some(dead) = self.active.take() {
            self.peak_memory = self.peak_memory.max(dead.peak_memory());
        }
        self.respawns += 1;
        self.active = self.take_spare();
        let quarantined = self.engine.note_failure(&record);
        // Debug, not warn: failures are reported as records; a log line per failure would let a
        // crashing engine flood the journal.
        tracing::debug!(
            engine = %record.engine,
            kind = %record.kind,
            function = record.top_function().unwrap_or("?"),
            "engine call failed: {}",
            record.message
        );
        Decision {
            verdict: self.policy_verdict(record.kind.as_str()),
            failure: Some(record),
            quarantined,
            elapsed: started.elapsed(),
        }
    }

    /// The spare if it is ready, and a request for the next one either way.
    fn take_spare(&mut self) -> Option<Instance> {
        let ready = self.spare.take().or_else(|| {
            let pending = self.pending_spare.as_ref()?;
            pending.try_recv().ok()
        });
        if ready.is_some() || self.pending_spare.is_none() {
            self.pending_spare = Some(self.engine.runtime.request_spare(Arc::clone(&self.engine)));
        }
        ready
    }

    /// Makes sure there is a live instance: waits for the spare being built, or builds
    /// synchronously if the builder cannot help.
    fn ensure_live(&mut self) -> Result<(), FailureRecord> {
        if self.active.is_none() {
            let from_builder = self.pending_spare.take().and_then(|pending| {
                pending
                    .recv_timeout(self.engine.settings.load_deadline)
                    .ok()
            });
            let instance = match from_builder {
                Some(instance) => instance,
                None => self.engine.instantiate()?,
            };
            self.active = Some(instance);
            self.pending_spare = Some(self.engine.runtime.request_spare(Arc::clone(&self.engine)));
        }
        Ok(())
    }
}

/// Only reachable if the code above is wrong; answered like any other failure.
fn unreachable_record(engine: &LoadedEngine) -> FailureRecord {
    crate::classify::load_failure(
        engine.name(),
        engine.content_sha256(),
        FailureKind::Trap,
        "internal error: no live instance".to_owned(),
    )
}
