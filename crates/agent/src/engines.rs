//! The set of engines the agent runs, swappable as a whole while events flow.
//!
//! Workers hold an `Arc<EngineSet>` for the event they are deciding and look for a newer one
//! before the next; a swap replaces the `Arc` under a short write lock and bumps the generation.
//! The generation is part of every decision-cache key, so a swap invalidates the cache without
//! touching it.
//!
//! Hot patching: [`ServingSet::install`] takes a set whose per-worker `EngineWorker`s were
//! already instantiated by the caller (off the hot path). Each worker thread takes the engine
//! workers pre-built for it when it first sees the new generation, so switching costs a thread a
//! mutex and a move, never an instantiation. Events a worker is already deciding finish on the old set; the old set and
//! its instances are dropped once the last worker lets go of it.

use ringfence_engine_host::{EngineWorker, ExecInputs, LoadError, LoadedEngine};
use ringfence_protocol::{Event, FailurePolicy, FailureRecord};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Engines that decide together: any deny wins; observe becomes an alert.
#[derive(Debug)]
pub struct EngineSet {
    pub generation: u64,
    pub engines: Vec<Arc<LoadedEngine>>,
    /// Per engine (same order): its verdicts are audited — a deny of its own is reported as
    /// "would deny" and allowed — while the other engines' verdicts are enforced. Set from the
    /// serving set's audited engine names when the set is installed.
    audited: Vec<bool>,
    /// One pre-built `EngineWorker` per engine for each agent thread (by thread index), taken
    /// by that thread when it switches to this set. Empty for sets installed without pre-built workers:
    /// threads then build their own (see [`ServingSet::swap`]).
    prebuilt: Vec<Mutex<Option<Vec<EngineWorker>>>>,
}

impl EngineSet {
    /// True when engine `index` of the set is audited, not enforced.
    pub fn is_audited(&self, index: usize) -> bool {
        self.audited.get(index).copied().unwrap_or(false)
    }

    /// True when every engine of the set (and there is one) declares that it judges an exec by
    /// the executed file's content alone: only such a set's allows may be kernel-cached.
    pub fn execs_by_content(&self) -> bool {
        !self.engines.is_empty()
            && self
                .engines
                .iter()
                .all(|e| e.settings().exec_inputs == ExecInputs::FileContent)
    }

    /// What to answer when no engine could: deny when any enforced engine is fail-closed.
    fn fallback_allows(&self) -> bool {
        !self.engines.iter().enumerate().any(|(index, e)| {
            !self.is_audited(index) && e.settings().policy == FailurePolicy::FailClosed
        })
    }

    /// True when an audited engine is fail-closed: a policy answer that allows would have
    /// denied for it, a would-deny.
    fn fallback_would_deny(&self) -> bool {
        self.engines.iter().enumerate().any(|(index, e)| {
            self.is_audited(index) && e.settings().policy == FailurePolicy::FailClosed
        })
    }

    /// Takes the pre-built engine workers for thread `index`, if there are any left.
    pub fn take_prebuilt(&self, index: usize) -> Option<Vec<EngineWorker>> {
        let prebuilt = self.prebuilt.get(index)?;
        match prebuilt.lock() {
            Ok(mut prebuilt) => prebuilt.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

/// How a set answers in place of its engines (a deadline, a full queue, a shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    /// No enforced engine is fail-closed.
    pub allows: bool,
    /// An audited engine is fail-closed: an allow is a would-deny.
    pub would_deny: bool,
}

impl Fallback {
    /// The policy verdict standing in for every engine of the set.
    pub fn policy(self) -> FailurePolicy {
        if self.allows {
            FailurePolicy::FailOpen
        } else {
            FailurePolicy::FailClosed
        }
    }
}

/// The current engine set, and which generation each agent thread is serving.
#[derive(Debug)]
pub struct ServingSet {
    current: RwLock<Arc<EngineSet>>,
    /// Generation each thread last switched to, by thread index (workers first, then the
    /// notification thread). Lets a swap tell when every worker serves the new set.
    serving: Vec<AtomicU64>,
    /// Names of the engines whose verdicts are audited in every set installed from now on.
    audited: Mutex<BTreeSet<String>>,
}

impl ServingSet {
    /// A serving set for no pre-built workers, starting at generation 1.
    pub fn new(engines: Vec<Arc<LoadedEngine>>) -> ServingSet {
        ServingSet::with_threads(engines, 0)
    }

    /// A serving set whose swaps can hand pre-built workers to `threads` threads.
    pub fn with_threads(engines: Vec<Arc<LoadedEngine>>, threads: usize) -> ServingSet {
        ServingSet::audited(engines, threads, BTreeSet::new())
    }

    /// Like [`ServingSet::with_threads`], auditing the engines named in `audited` from the
    /// first event on.
    pub fn audited(
        engines: Vec<Arc<LoadedEngine>>,
        threads: usize,
        audited: BTreeSet<String>,
    ) -> ServingSet {
        ServingSet {
            current: RwLock::new(Arc::new(EngineSet {
                generation: 1,
                audited: engines.iter().map(|e| audited.contains(e.name())).collect(),
                engines,
                prebuilt: Vec::new(),
            })),
            serving: (0..threads).map(|_| AtomicU64::new(1)).collect(),
            audited: Mutex::new(audited),
        }
    }

    /// Audits the engines named `names` in every set installed from now on (and no others);
    /// true when the serving set's flags differ from what they would be now, so that it must
    /// be installed again for the change to apply.
    pub fn set_audited(&self, names: BTreeSet<String>) -> bool {
        let current = self.current();
        let stale = current
            .engines
            .iter()
            .enumerate()
            .any(|(index, e)| current.is_audited(index) != names.contains(e.name()));
        match self.audited.lock() {
            Ok(mut audited) => *audited = names,
            Err(poisoned) => *poisoned.into_inner() = names,
        }
        stale
    }

    /// What the serving set answers when no engine does, read under the lock.
    ///
    /// The caller never holds the set, so it can never be the one to drop it: the last
    /// reference to a retired set frees its compiled engines and unused pre-built workers, work
    /// with no bound that must not land on the real-time deadline responder (it would run past
    /// its real-time budget without blocking, and the kernel stops the agent).
    pub fn fallback(&self) -> Fallback {
        let of = |set: &EngineSet| Fallback {
            allows: set.fallback_allows(),
            would_deny: set.fallback_would_deny(),
        };
        match self.current.read() {
            Ok(set) => of(&set),
            Err(poisoned) => of(&poisoned.into_inner()),
        }
    }

    /// How many threads a swap should pre-build workers for.
    pub fn threads(&self) -> usize {
        self.serving.len()
    }

    pub fn current(&self) -> Arc<EngineSet> {
        match self.current.read() {
            Ok(set) => Arc::clone(&set),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the set without pre-built workers (threads build their own workers at their next
    /// event); returns the new generation. Prefer [`ServingSet::install`].
    pub fn swap(&self, engines: Vec<Arc<LoadedEngine>>) -> u64 {
        self.install(engines, Vec::new())
    }

    /// Replaces the set, handing `prebuilt[i]` to thread `i`; returns the new generation.
    /// Only the pointer swap happens under the write lock: everything costly was done by the
    /// caller before.
    pub fn install(
        &self,
        engines: Vec<Arc<LoadedEngine>>,
        prebuilt: Vec<Vec<EngineWorker>>,
    ) -> u64 {
        let prebuilt = prebuilt
            .into_iter()
            .map(|workers| Mutex::new(Some(workers)))
            .collect();
        let audited = {
            let names = match self.audited.lock() {
                Ok(names) => names,
                Err(poisoned) => poisoned.into_inner(),
            };
            engines.iter().map(|e| names.contains(e.name())).collect()
        };
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let generation = guard.generation + 1;
        let old = std::mem::replace(
            &mut *guard,
            Arc::new(EngineSet {
                generation,
                engines,
                audited,
                prebuilt,
            }),
        );
        drop(guard);
        // The old set (and its unused pre-built workers) may be the last reference: drop it after the
        // lock so workers reading the serving set never wait for instances being torn down.
        drop(old);
        generation
    }

    /// Records that thread `index` now decides with `generation`.
    pub fn mark_serving(&self, index: usize, generation: u64) {
        if let Some(serving) = self.serving.get(index) {
            serving.store(generation, Ordering::Release);
        }
    }

    /// True when each of the first `threads` threads serves `generation` or newer.
    pub fn all_serving(&self, threads: usize, generation: u64) -> bool {
        self.serving
            .iter()
            .take(threads)
            .all(|g| g.load(Ordering::Acquire) >= generation)
    }
}

/// Why a swap was refused; the previous engine set keeps serving.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SwapError {
    /// An engine could not be instantiated for a worker.
    #[error("engine swap refused: could not instantiate: {0}")]
    Instantiate(#[from] LoadError),
    /// An engine failed on one of the sample events (trap, deadline, memory, quarantine).
    #[error(
        "engine swap refused: engine {} failed on sample event {index} ({}): {}: {}",
        .record.engine,
        .record.event_kind.as_deref().unwrap_or("?"),
        .record.kind,
        .record.message
    )]
    Validation {
        /// Position of the failing event in the sample.
        index: usize,
        record: Box<FailureRecord>,
    },
}

impl SwapError {
    /// The failure behind the refusal.
    pub fn record(&self) -> &FailureRecord {
        match self {
            SwapError::Instantiate(error) => &error.record,
            SwapError::Validation { record, .. } => record,
        }
    }
}

/// Runs every engine over `sample` in a throwaway worker; the first failing call refuses.
///
/// Runs on the caller's thread, never a worker's: the live set keeps answering meanwhile.
pub fn validate(engines: &[Arc<LoadedEngine>], sample: &[Event]) -> Result<(), SwapError> {
    if sample.is_empty() {
        return Ok(());
    }
    for engine in engines {
        let mut worker = EngineWorker::new(Arc::clone(engine))?;
        for (index, event) in sample.iter().enumerate() {
            if let Some(record) = worker.decide(event).failure {
                return Err(SwapError::Validation {
                    index,
                    record: Box::new(record),
                });
            }
        }
    }
    Ok(())
}

/// Instantiates one `EngineWorker` per engine for each of `threads` threads.
pub fn prebuild(
    engines: &[Arc<LoadedEngine>],
    threads: usize,
) -> Result<Vec<Vec<EngineWorker>>, SwapError> {
    let mut prebuilt = Vec::with_capacity(threads);
    for _ in 0..threads {
        let workers = engines
            .iter()
            .map(|engine| EngineWorker::new(Arc::clone(engine)))
            .collect::<Result<Vec<_>, _>>()?;
        prebuilt.push(workers);
    }
    Ok(prebuilt)
}
