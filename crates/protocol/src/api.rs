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

/// Engine failures over a heartbeat interval, by class. Only failures the engine itself caused
/// count here: a deadline missed while the host starved the engine's thread is a policy answer
/// ([`PolicyAnswers::deadline`]), not an engine failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureCounts {
    pub trap: u64,
    pub memory: u64,
    pub deadline: u64,
    /// Calls refused because the engine+content was quarantined.
    pub quarantine: u64,
    /// Engines or content that failed to load (invalid component, content rejected).
    pub load: u64,
}

impl FailureCounts {
    pub fn total(&self) -> u64 {
        self.trap
            .saturating_add(self.memory)
            .saturating_add(self.deadline)
            .saturating_add(self.quarantine)
            .saturating_add(self.load)
    }
}

/// Permission events answered by the failure policy instead of by every engine, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyAnswers {
    /// The hard deadline passed before the engines answered.
    pub deadline: u64,
    /// An engine is quarantined, so its part of the verdict came from policy.
    pub quarantine: u64,
    /// The agent's queue was full.
    pub queue_full: u64,
    /// An engine call failed (trap, memory, deadline) and policy answered for it.
    pub failure: u64,
}

impl PolicyAnswers {
    pub fn total(&self) -> u64 {
        self.deadline
            .saturating_add(self.quarantine)
            .saturating_add(self.queue_full)
            .saturating_add(self.failure)
    }
}

/// Verdict latency over a heartbeat interval, measured per permission event from the kernel
/// event's arrival to its answer, policy and deadline answers included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyFigures {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// Health figures since the previous heartbeat (rates) or now (gauges).
///
/// Every figure is a claim of the agent's: the server clamps them with [`HealthFigures::clamped`]
/// before anything reads them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthFigures {
    pub events: u64,
    /// Permission events answered (by engines, cache or policy) over the interval.
    pub permission_events: u64,
    pub denies: u64,
    /// Denies per decided event over the interval.
    pub deny_rate: f64,
    /// Verdict latency p99 over the interval, µs (the same as `latency.p99_us`; kept for
    /// older servers).
    pub p99_us: f64,
    pub latency: LatencyFigures,
    /// All engine failures over the interval (the sum of `failures`).
    pub engine_failures: u64,
    pub failures: FailureCounts,
    pub policy_answers: PolicyAnswers,
    /// Engines quarantined on this host now (`engine` names). Protection is off for them.
    pub quarantined: Vec<String>,
    /// Channels whose engines are disabled on this host now (a remediation plan).
    pub disabled: Vec<String>,
    /// A release being downloaded, verified or compiled now (`channel@version`): the host is
    /// installing, not dead.
    pub installing: Option<String>,
    pub cpu_pct: f64,
    pub rss_bytes: u64,
    pub uptime_s: u64,
    /// Spooled reports not yet uploaded.
    pub spool_pending: u64,
    /// Reports dropped because the spool was full (oldest telemetry first).
    pub spool_dropped: u64,
}

/// Physical bounds of what one agent can honestly report per heartbeat.
pub mod bounds {
    /// No host answers more permission events than this per interval (10M/s for 10 minutes).
    pub const MAX_EVENTS: u64 = 6_000_000_000;
    /// A verdict latency beyond an hour is not a measurement.
    pub const MAX_LATENCY_US: f64 = 3_600_000_000.0;
    /// 1,024 cores at 100 %.
    pub const MAX_CPU_PCT: f64 = 102_400.0;
    /// 64 TiB.
    pub const MAX_RSS_BYTES: u64 = 64 << 40;
    /// A century.
    pub const MAX_UPTIME_S: u64 = 100 * 365 * 86_400;
    /// Engines or channels named in one heartbeat.
    pub const MAX_NAMES: usize = 64;
    /// Bytes of one engine or channel name.
    pub const MAX_NAME_BYTES: usize = 128;
}

impl HealthFigures {
    /// The figures with every number made finite and within physical bounds, every list and
    /// name bounded: what the server stores and gates read. NaN becomes 0.
    pub fn clamped(&self) -> HealthFigures {
        use bounds::*;
        let real = |value: f64, max: f64| {
            if value.is_finite() {
                value.clamp(0.0, max)
            } else if value == f64::INFINITY {
                max
            } else {
                0.0
            }
        };
        let count = |value: u64| value.min(MAX_EVENTS);
        let names = |list: &[String]| {
            list.iter()
                .take(MAX_NAMES)
                .map(|name| truncate(name, MAX_NAME_BYTES))
                .collect::<Vec<_>>()
        };
        let latency = LatencyFigures {
            p50_us: real(self.latency.p50_us, MAX_LATENCY_US),
            p99_us: real(self.latency.p99_us, MAX_LATENCY_US),
            max_us: real(self.latency.max_us, MAX_LATENCY_US),
        };
        let failures = FailureCounts {
            trap: count(self.failures.trap),
            memory: count(self.failures.memory),
            deadline: count(self.failures.deadline),
            quarantine: count(self.failures.quarantine),
            load: count(self.failures.load),
        };
        let policy_answers = PolicyAnswers {
            deadline: count(self.policy_answers.deadline),
            quarantine: count(self.policy_answers.quarantine),
            queue_full: count(self.policy_answers.queue_full),
            failure: count(self.policy_answers.failure),
        };
        HealthFigures {
            events: count(self.events),
            permission_events: count(self.permission_events),
            denies: count(self.denies),
            deny_rate: real(self.deny_rate, 1.0),
            p99_us: real(self.p99_us, MAX_LATENCY_US),
            latency,
            engine_failures: count(self.engine_failures),
            failures,
            policy_answers,
            quarantined: names(&self.quarantined),
            disabled: names(&self.disabled),
            installing: self
                .installing
                .as_deref()
                .map(|name| truncate(name, 2 * MAX_NAME_BYTES)),
            cpu_pct: real(self.cpu_pct, MAX_CPU_PCT),
            rss_bytes: self.rss_bytes.min(MAX_RSS_BYTES),
            uptime_s: self.uptime_s.min(MAX_UPTIME_S),
            spool_pending: count(self.spool_pending),
            spool_dropped: count(self.spool_dropped),
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
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
    /// `alert`, `failure`, `crash`, `install`, `restore`, `remediation`, `minidump`,
    /// `telemetry`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamped_figures_are_finite_and_bounded() {
        let hostile = HealthFigures {
            deny_rate: f64::NAN,
            p99_us: f64::INFINITY,
            cpu_pct: 1.7e308,
            latency: LatencyFigures {
                p50_us: -5.0,
                p99_us: f64::NEG_INFINITY,
                max_us: 1e300,
            },
            events: u64::MAX,
            quarantined: vec!["é".repeat(200); 1_000],
            ..HealthFigures::default()
        };
        let clamped = hostile.clamped();
        assert_eq!(clamped.deny_rate, 0.0);
        assert_eq!(clamped.p99_us, bounds::MAX_LATENCY_US);
        assert_eq!(clamped.cpu_pct, bounds::MAX_CPU_PCT);
        assert_eq!(clamped.latency.p50_us, 0.0);
        assert_eq!(clamped.latency.p99_us, 0.0);
        assert_eq!(clamped.latency.max_us, bounds::MAX_LATENCY_US);
        assert_eq!(clamped.events, bounds::MAX_EVENTS);
        assert_eq!(clamped.quarantined.len(), bounds::MAX_NAMES);
        assert!(
            clamped
                .quarantined
                .iter()
                .all(|n| n.len() <= bounds::MAX_NAME_BYTES)
        );
    }

    #[test]
    fn honest_figures_pass_unchanged() {
        let honest = HealthFigures {
            events: 1_000,
            permission_events: 900,
            denies: 9,
            deny_rate: 0.01,
            p99_us: 250.0,
            latency: LatencyFigures {
                p50_us: 40.0,
                p99_us: 250.0,
                max_us: 900.0,
            },
            cpu_pct: 3.5,
            rss_bytes: 30 << 20,
            uptime_s: 60,
            quarantined: vec!["faulty".into()],
            ..HealthFigures::default()
        };
        assert_eq!(honest.clamped(), honest);
    }
}
