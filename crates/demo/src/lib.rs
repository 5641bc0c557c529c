//! `ringfence demo`: the July 2024 story replayed on this machine, with ringfence in the way.
//!
//! A real server (SQLite in a temporary directory) and a fleet of real agents, each under its
//! own guard, all as child processes of this one. Act one publishes a good release, rolls it
//! out, then publishes a poisoned content update modelled on Channel File 291 with preflight
//! skipped, as a vendor in a hurry would: the canaries trap, the traps are contained, the crash
//! gate trips, the rollout halts and rolls back. Act two publishes the same content with
//! preflight on: it never reaches a host. Act three publishes content that never crashes but
//! stalls every call past its deadline, preflight skipped: no trap, no crash report, and still
//! the latency and failure gates halt it in the first ring. Act four crashes one agent process
//! three times (a native bug the sandbox cannot contain): its guard restores the last known good
//! release by itself. The summary says what it cost.
//!
//! Everything here drives the product through its public interfaces (the CLI and the HTTP
//! API); nothing is simulated.
#![forbid(unsafe_code)]

pub mod control;
mod crash_loop;
pub mod faults;
pub mod fleet;
mod releases;
mod scenario;
mod summary;
mod timeline;

pub use scenario::{DemoOptions, run};
pub use summary::Summary;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the server: {0}")]
    Server(#[from] ringfence_uplink::ClientError),
    #[error("{0}")]
    Failed(String),
    #[error("interrupted; every process and file the demo made was removed")]
    Interrupted,
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}
