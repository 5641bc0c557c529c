//! What can stop a managed agent from starting, worded for the operator who must fix it.

use crate::HostError;

#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    /// Starting, confining or upgrading the process failed, as for any agent.
    #[error(transparent)]
    Host(#[from] HostError),
    /// No identity on disk and no token to enroll with.
    #[error(
        "this agent has not enrolled yet: pass --enroll-token (ringfence server enroll-token create)"
    )]
    NotEnrolled,
    /// The server's CA could not be settled at enrollment.
    #[error("cannot verify the server (--server-ca FILE or --server-ca-fingerprint sha256:…): {0}")]
    ServerUnverified(#[source] ringfence_uplink::TrustError),
    /// The key for mutual TLS could not be made.
    #[error("make the agent's key: {0}")]
    Key(#[source] ringfence_uplink::TrustError),
    /// The server's enrollment answer does not fit the key or CA it was made for.
    #[error("enrollment: {0}")]
    Enrollment(#[source] ringfence_uplink::TrustError),
    #[error(transparent)]
    Identity(#[from] ringfence_uplink::identity::IdentityError),
    #[error(transparent)]
    Server(#[from] ringfence_uplink::ClientError),
    #[error(transparent)]
    Spool(#[from] ringfence_uplink::SpoolError),
    #[error(transparent)]
    Slots(#[from] ringfence_release::SlotError),
    #[error(transparent)]
    Link(#[from] ringfence_uplink::LinkError),
    #[error(transparent)]
    Runtime(#[from] ringfence_engine_host::RuntimeError),
    #[error(transparent)]
    Agent(#[from] ringfence_agent::AgentError),
    /// The `--traffic` corpus does not read.
    #[error(transparent)]
    Traffic(#[from] ringfence_protocol::corpus::CorpusError),
    /// A thread still holds the agent at an upgrade, so its channels cannot be handed over.
    #[error("the agent is still shared; cannot hand it off")]
    StillShared,
    /// The in-place upgrade failed after the agent was handed over.
    #[error("self-upgrade failed; exiting for the guard to restart the agent: {0}")]
    Upgrade(#[source] HostError),
}
