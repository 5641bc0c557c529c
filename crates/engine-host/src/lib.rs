//! The engine host: runs detection engines — untrusted WebAssembly components — so that a
//! bad engine or bad content can fail one verdict and nothing more.
//!
//! - A [`Runtime`] owns the wasmtime engine, the epoch ticker that enforces deadlines, and a
//!   builder thread that prepares spare instances off the hot path.
//! - A [`LoadedEngine`] is one component compiled once, linked, and proven to accept its
//!   content; it is shared by every worker.
//! - An [`EngineCache`] keeps compiled engines on disk between processes, verified before
//!   they are loaded, so a start or an upgrade does not compile again.
//! - An [`EngineWorker`] is what an agent worker thread calls: it owns a live instance and a
//!   warm spare, turns every failure into a policy verdict plus a [`FailureRecord`], swaps in the
//!   spare, and stops calling an engine that keeps failing (quarantine).
//!
//! Architecture invariant: nothing a guest does can unwind into the caller. Every guest call
//! returns `Result`, every error is classified, and an instance that failed is never called again.
//!
//! [`FailureRecord`]: ringfence_protocol::FailureRecord

mod bindings;
mod cache;
mod classify;
mod corpus_run;
mod instance;
mod limits;
mod loaded;
mod quarantine;
mod runtime;
mod state;
mod worker;

pub use bindings::InterfaceVersion;
pub use cache::{CacheError, CacheStats, CompileSource, DEFAULT_CACHE_BYTES, EngineCache};
pub use corpus_run::{CorpusReport, LatencySummary, run_corpus};
pub use limits::{EngineSettings, ExecInputs, QuarantineRule};
pub use loaded::{ContentSummary, LoadError, LoadedEngine};
pub use quarantine::QuarantineReport;
pub use runtime::{EPOCH_TICK, Runtime, RuntimeConfig, RuntimeError};
pub use worker::{Decision, EngineWorker};

/// Largest component we will compile. A detection engine is a few MiB at most; anything far
/// bigger is a mistake or an attempt to exhaust the compiler.
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// Largest content blob we hand to an engine.
pub const MAX_CONTENT_BYTES: usize = 64 << 20;
