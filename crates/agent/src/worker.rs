//! Worker threads: take a permission event from the queue, ask every engine, answer the ticket
//! (unless the deadline responder already did), cache clean verdicts, write alerts.
//!
//! Each worker owns one `EngineWorker` per engine of the set it last saw; when the set's
//! generation changes it takes the ones the swap pre-built for it (a move, no instantiation)
//! before deciding the next event. Only a set installed without pre-built workers makes it build its
//! own, on the event path, and that is counted.

use crate::alerts::{Alert, EngineVerdict, Reason};
use crate::cache::Cached;
use crate::engines::EngineSet;
use crate::shared::{Core, Job, combine};
use crate::stats::Stats;
use ringfence_engine_host::{EngineWorker, LoadError};
use ringfence_protocol::{Action, Event, FailureKind, FailureRecord};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// Engines a thread stopped using; dropping this tears their instances down.
pub struct Retired {
    _set: Arc<EngineSet>,
    _workers: Vec<EngineWorker>,
}

/// A worker's engines for one generation of the engine set.
pub struct Engines {
    pub set: Arc<EngineSet>,
    pub workers: Vec<EngineWorker>,
    /// This thread's index into the set's pre-built workers and its serving generations.
    pub index: usize,
}

impl Engines {
    pub fn build(set: Arc<EngineSet>, index: usize) -> Result<Engines, LoadError> {
        let workers = set
            .engines
            .iter()
            .map(|engine| EngineWorker::new(Arc::clone(engine)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Engines {
            set,
            workers,
            index,
        })
    }

    /// Follows the current set; on failure keeps the old engines and says so. Returns the
    /// engines it replaced so that the caller can drop them when it is idle (after answering).
    pub fn refresh(&mut self, core: &Core) -> Option<Retired> {
        let current = core.engines.current();
        if current.generation == self.set.generation {
            return None;
        }
        let generation = current.generation;
        let workers = match current.take_prebuilt(self.index) {
            Some(workers) => workers,
            None => {
                // No pre-built workers (a plain `ServingSet::swap`): instantiate here, on the
                // event path, and count it so a regression shows.
                Stats::add(&core.stats.lazy_engine_builds);
                match Engines::build(Arc::clone(&current), self.index) {
                    Ok(engines) => engines.workers,
                    Err(error) => {
                        core.stats.failure(error.kind());
                        tracing::error!(%error, "could not build workers for the new engine set");
                        return None;
                    }
                }
            }
        };
        let retired = Retired {
            _set: std::mem::replace(&mut self.set, current),
            _workers: std::mem::replace(&mut self.workers, workers),
        };
        core.engines.mark_serving(self.index, generation);
        Some(retired)
    }

    /// Asks every engine about one event.
    pub fn decide(
        &mut self,
        core: &Core,
        event: &Event,
    ) -> (Vec<EngineVerdict>, Vec<FailureRecord>) {
        let mut verdicts = Vec::with_capacity(self.workers.len());
        let mut failures = Vec::new();
        for worker in &mut self.workers {
            Stats::add(&core.stats.engine_calls);
            let decision = worker.decide(event);
            if let Some(report) = &decision.quarantined {
                core.quarantined(report, event);
            }
            if let Some(failure) = decision.failure {
                core.engine_failed(&failure);
                failures.push(failure);
            }
            verdicts.push(EngineVerdict {
                engine: worker.engine().name().to_owned(),
                verdict: decision.verdict,
            });
        }
        (verdicts, failures)
    }
}

/// Counts an answered event whose verdict policy made in part: quarantine first, since a
/// quarantined engine answers by policy on every event until new content arrives.
fn count_policy_parts(core: &Core, failures: &[FailureRecord]) {
    if failures.is_empty() {
        return;
    }
    if failures.iter().any(|f| f.kind == FailureKind::Quarantined) {
        Stats::add(&core.stats.quarantine_answers);
    } else {
        Stats::add(&core.stats.failure_answers);
    }
}

/// True unless an engine whose verdicts are enforced denied (verdicts in the set's order).
fn enforced_allow(set: &EngineSet, verdicts: &[EngineVerdict]) -> bool {
    !verdicts
        .iter()
        .enumerate()
        .any(|(index, v)| !set.is_audited(index) && v.verdict.action == Action::Deny)
}

/// The worker loop; returns when the queue is closed and empty.
pub fn run(core: &Core, mut engines: Engines) {
    loop {
        let job = {
            let Ok(jobs) = core.jobs.lock() else { return };
            jobs.recv_timeout(Duration::from_millis(100))
        };
        match job {
            Ok(job) => handle(core, &mut engines, job),
            Err(RecvTimeoutError::Timeout) => drop(engines.refresh(core)),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn handle(core: &Core, engines: &mut Engines, job: Job) {
    if job.ticket.answer().is_some() {
        // The responder answered while the job waited in the queue; the engines' verdict
        // could no longer change anything.
        Stats::add(&core.stats.late_verdicts);
        return;
    }
    if core.stopping() {
        core.answer_by_policy(&job.ticket, &job.pending, Reason::Shutdown, job.arrived);
        return;
    }
    // Kept until after the answer: tearing the old instances down must not delay it.
    let retired = engines.refresh(core);
    let event = job
        .pending
        .resolve(core.argv.as_ref(), &core.names, &core.stats, job.arrived);
    let (verdicts, failures) = engines.decide(core, &event);
    // `verdict` is every engine's; `allow` is the enforced engines' answer (an audited
    // engine's deny does not count); `carried` is what the kernel hears (audit mode allows a
    // deny). A deny the answer does not carry out is a would-deny.
    let verdict = combine(&verdicts);
    let allow = enforced_allow(&engines.set, &verdicts);
    let carried = core
        .mode
        .carry(allow)
        .or_audited(verdict.action == Action::Deny);
    if let (Some(cache), Some(key)) = (&core.cache, job.key)
        && failures.is_empty()
        && verdict.action != Action::Observe
        && key.generation == engines.set.generation
    {
        // Cached before the kernel hears the answer: the process it lets go may exec the same
        // file again at once, and that exec must find the verdict, not call the engines twice.
        // The verdict is cached, not the audit-mode answer: a cached deny read after a switch
        // back to enforce must deny, and read in audit mode is allowed and reported again.
        // (A change of the audited engines installs a new generation, so `allow` stays right.)
        cache.insert(
            key,
            Cached {
                allow,
                verdict: verdict.clone(),
            },
        );
    }
    let on_time = Instant::now() <= job.deadline;
    if !job.ticket.respond(carried.allow) {
        Stats::add(&core.stats.late_verdicts);
        return;
    }
    core.answered(carried.allow, job.arrived);
    if carried.would_deny {
        Stats::add(&core.stats.would_deny);
    }
    count_policy_parts(core, &failures);
    drop(retired);
    // After the answer: the sample for validated swaps costs the kernel nothing.
    core.recent.record(&event);
    if !on_time {
        tracing::debug!("verdict after the deadline, answered before the responder");
    }
    if verdict.action != Action::Allow || !failures.is_empty() {
        let reported: Vec<EngineVerdict> = verdicts
            .into_iter()
            .filter(|v| v.verdict.action != Action::Allow)
            .collect();
        core.alert(&Alert {
            event: &event,
            verdict: &verdict,
            allowed: Some(carried.allow),
            reason: Reason::Engine,
            engines: &reported,
            failures: &failures,
        });
    }
}
