//! Worker threads: take a permission event from the queue, ask every engine, answer the ticket
//! (unless the deadline responder already did), cache clean verdicts, write alerts.
//!
//! Each worker owns one `EngineWorker` per engine of the set it last saw; when the set's
//! generation changes it builds new ones before deciding the next event.

use crate::alerts::{Alert, EngineVerdict, Reason};
use crate::cache::Cached;
use crate::core::{Core, Job, combine};
use crate::engines::EngineSet;
use crate::stats::Stats;
use ringfence_engine_host::{EngineWorker, LoadError};
use ringfence_protocol::{Action, Event, FailureRecord};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// A worker's engines for one generation of the engine set.
pub struct Engines {
    pub set: Arc<EngineSet>,
    pub workers: Vec<EngineWorker>,
}

impl Engines {
    pub fn build(set: Arc<EngineSet>) -> Result<Engines, LoadError> {
        let workers = set
            .engines
            .iter()
            .map(|engine| EngineWorker::new(Arc::clone(engine)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Engines { set, workers })
    }

    /// Follows the current set; on failure keeps the old engines and says so.
    pub fn refresh(&mut self, core: &Core) {
        let current = core.engines.current();
        if current.generation == self.set.generation {
            return;
        }
        match Engines::build(current) {
            Ok(engines) => *self = engines,
            Err(error) => tracing::error!(%error, "could not build workers for the new engine set"),
        }
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
            if let Some(failure) = decision.failure {
                Stats::add(&core.stats.engine_failures);
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

/// The worker loop; returns when the queue is closed and empty.
pub fn run(core: &Core, mut engines: Engines) {
    loop {
        let job = {
            let Ok(jobs) = core.jobs.lock() else { return };
            jobs.recv_timeout(Duration::from_millis(100))
        };
        match job {
            Ok(job) => handle(core, &mut engines, job),
            Err(RecvTimeoutError::Timeout) => engines.refresh(core),
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
        core.answer_by_policy(&job.ticket, &job.pending, Reason::Shutdown);
        return;
    }
    engines.refresh(core);
    let event = job.pending.resolve();
    let (verdicts, failures) = engines.decide(core, &event);
    let verdict = combine(&verdicts);
    let allow = verdict.action != Action::Deny;
    let on_time = Instant::now() <= job.deadline;
    if !job.ticket.respond(allow) {
        Stats::add(&core.stats.late_verdicts);
        return;
    }
    core.count_answer(allow);
    if !on_time {
        tracing::debug!("verdict after the deadline, answered before the responder");
    }
    if let (Some(cache), Some(key)) = (&core.cache, job.key)
        && failures.is_empty()
        && verdict.action != Action::Observe
        && key.generation == engines.set.generation
    {
        cache.insert(
            key,
            Cached {
                allow,
                verdict: verdict.clone(),
            },
        );
    }
    if verdict.action != Action::Allow || !failures.is_empty() {
        let reported: Vec<EngineVerdict> = verdicts
            .into_iter()
            .filter(|v| v.verdict.action != Action::Allow)
            .collect();
        core.alert(&Alert {
            event: &event,
            verdict: &verdict,
            allowed: Some(allow),
            reason: Reason::Engine,
            engines: &reported,
            failures: &failures,
        });
    }
}
