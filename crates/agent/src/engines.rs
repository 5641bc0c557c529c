//! The set of engines the agent runs, swappable as a whole while events flow.
//!
//! Workers hold an `Arc<EngineSet>` for the event they are deciding and look for a newer one
//! before the next; a swap replaces the `Arc` under a short write lock and bumps the generation.
//! The generation is part of every decision-cache key, so a swap invalidates the cache without
//! touching it. (Hot patching builds on this: load and warm the new set off the hot path, then
//! [`EngineSlot::swap`].)

use ringfence_engine_host::LoadedEngine;
use ringfence_protocol::FailurePolicy;
use std::sync::{Arc, RwLock};

/// Engines that decide together: any deny wins; observe becomes an alert.
#[derive(Debug)]
pub struct EngineSet {
    pub generation: u64,
    pub engines: Vec<Arc<LoadedEngine>>,
}

impl EngineSet {
    /// What to answer when no engine could: deny when any engine is fail-closed.
    pub fn fallback_allows(&self) -> bool {
        !self
            .engines
            .iter()
            .any(|e| e.settings().policy == FailurePolicy::FailClosed)
    }

    /// The policy verdict standing in for every engine of the set.
    pub fn fallback_policy(&self) -> FailurePolicy {
        if self.fallback_allows() {
            FailurePolicy::FailOpen
        } else {
            FailurePolicy::FailClosed
        }
    }
}

/// The current engine set.
#[derive(Debug)]
pub struct EngineSlot {
    current: RwLock<Arc<EngineSet>>,
}

impl EngineSlot {
    pub fn new(engines: Vec<Arc<LoadedEngine>>) -> EngineSlot {
        EngineSlot {
            current: RwLock::new(Arc::new(EngineSet {
                generation: 1,
                engines,
            })),
        }
    }

    pub fn current(&self) -> Arc<EngineSet> {
        match self.current.read() {
            Ok(set) => Arc::clone(&set),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the set; returns the new generation.
    pub fn swap(&self, engines: Vec<Arc<LoadedEngine>>) -> u64 {
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let generation = guard.generation + 1;
        *guard = Arc::new(EngineSet {
            generation,
            engines,
        });
        generation
    }
}
