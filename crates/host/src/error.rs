//! What can stop the agent process from starting, confining itself or upgrading, worded for
//! the operator who must fix it.

use ringfence_agent::AgentError;
use ringfence_hardening::HardeningError;
use ringfence_sensor::SensorError;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A file or directory the agent needs could not be made or read.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A kernel channel could not be opened or handed over.
    #[error(transparent)]
    Sensor(#[from] SensorError),
    /// Confinement failed; `what` says which step.
    #[error("{what}: {source}")]
    Hardening {
        what: &'static str,
        #[source]
        source: HardeningError,
    },
    /// The agent itself did not start.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The next binary's signature is missing or does not verify.
    #[error("{binary} does not verify: {source}")]
    Unverified {
        binary: String,
        #[source]
        source: ringfence_release::ArtifactError,
    },
    /// The next binary does not run here, or is not a ringfence binary.
    #[error("{0}")]
    Probe(String),
    /// The wasm runtime did not start.
    #[error(transparent)]
    Runtime(ringfence_engine_host::RuntimeError),
    /// The caller's engines did not load.
    #[error(transparent)]
    Engines(crate::standalone::LoadEnginesError),
}

impl HostError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> HostError {
        HostError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn hardening(what: &'static str) -> impl FnOnce(HardeningError) -> HostError {
        move |source| HostError::Hardening { what, source }
    }
}
