//! The HTTP API between agents, operators and the server: request and response bodies.
//!
//! Both sides compile these types, so a field added here is added everywhere; unknown fields are
//! ignored on read so that a newer server can talk to an older agent and back.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/enroll`: an agent trades a single-use enrollment token for its credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub token: String,
    pub hostname: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// A PKCS#10 certificate signing request (PEM) for a key the agent made and keeps; a server
    /// with its own CA answers with a client certificate for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub agent_id: String,
    /// Bearer credential for every later request; shown once.
    pub credential: String,
    /// Public keys (hex) that sign releases and rollback directives.
    pub release_keys: Vec<String>,
    /// The agent's client certificate (PEM), signed by the server's CA for the request's `csr`,
    /// to present on every later connection. Absent when no CSR was sent or the server has no
    /// CA of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
}

/// `POST /api/v1/agents/certificate`: an agent trades a signing request for a new key for a
/// fresh client certificate, before its current one expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRenewal {
    /// PKCS#10 certificate signing request (PEM) for the agent's new key.
    pub csr: String,
}

/// The answer to a [`CertificateRenewal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewedCertificate {
    /// The client certificate (PEM) for the new key.
    pub client_cert: String,
}

/// What one release channel looks like on an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledRelease {
    pub channel: String,
    pub current: Option<String>,
    pub lkg: Option<String>,
    /// `current` or `lkg`: which one is running.
    pub running: String,
}

/// Health figures since the previous heartbeat (rates) or now (gauges).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthFigures {
    pub events: u64,
    pub denies: u64,
    /// Denies per decided event over the interval.
    pub deny_rate: f64,
    /// Verdict latency p99 over the interval, µs.
    pub p99_us: f64,
    pub engine_failures: u64,
    pub cpu_pct: f64,
    pub rss_bytes: u64,
    pub uptime_s: u64,
    /// Spooled reports not yet uploaded.
    pub spool_pending: u64,
    /// Reports dropped because the spool was full (oldest telemetry first).
    pub spool_dropped: u64,
}

/// `POST /api/v1/agents/heartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Heartbeat {
    pub agent_version: String,
    pub releases: Vec<InstalledRelease>,
    pub health: HealthFigures,
}

/// What the server wants one channel on this agent to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub channel: String,
    pub version: String,
    /// Download with `GET /api/v1/blobs/{bundle_sha256}`.
    pub bundle_sha256: String,
    pub rollout_id: Option<String>,
    /// Present when the assignment goes back to an older version: the signed permission to
    /// downgrade (JSON document as the release crate defines it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_directive: Option<serde_json::Value>,
}

/// A remediation plan for this agent: it overrides rollout assignments on its channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remediation {
    pub id: String,
    pub channel: String,
    /// `pin`: run `version` (and ignore rollouts); `disable`: run no engine on the channel.
    pub action: String,
    #[serde(default)]
    pub version: Option<String>,
    /// Download with `GET /api/v1/blobs/{bundle_sha256}` (for `pin`).
    #[serde(default)]
    pub bundle_sha256: Option<String>,
    pub reason: String,
    /// Signed permission to go back, when `pin` is older than what the agent runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_directive: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeartbeatResponse {
    pub assignments: Vec<Assignment>,
    /// Plans that apply to this agent; on their channels they replace the assignments.
    pub remediations: Vec<Remediation>,
    /// Seconds until the next heartbeat is expected.
    pub interval_s: u64,
}

/// One spooled item. `id` is chosen by the agent and unique per agent, so retries are stored
/// once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    /// `alert`, `failure`, `crash`, `install`, `quarantine`, `telemetry`.
    pub kind: String,
    pub at_ms: i64,
    pub body: serde_json::Value,
}

/// `POST /api/v1/agents/reports`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportBatch {
    pub reports: Vec<Report>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAck {
    /// How many were new (the rest were duplicates of earlier uploads).
    pub stored: usize,
    pub received: usize,
}

/// Every error body the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}
