//! The HTTP API between agents, operators and the server: request and response bodies.
//!
//! Both sides compile these types, so a field added here is added everywhere. Unknown fields are
//! ignored on read so that a newer server can talk to an older agent and back, with one
//! exception: the server reads report batches strictly ([`WireReportBatch`], [`WireReport`]),
//! whose shape is frozen (new data goes in a report's body, typed by its kind in
//! [`crate::report`]). The heartbeat stays lenient because its health figures grow with every
//! agent release and agents may be upgraded before their server: a heartbeat refused for a new
//! field would look like a dead host to the gates (`docs/threat-model.md`, "Hostile agents").
//!
//! What the server accepts from an agent is bounded by [`limits`] and checked by
//! [`Heartbeat::validated`], [`WireReportBatch::validate`] and [`WireReportBatch::typed`], pure
//! functions the handlers call and the fuzz target `agent_bodies` drives.

use crate::guard_link::Slot;
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
    /// Which of the two runs.
    pub running: Slot,
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
    /// Permission events a verdict would have denied but audit mode allowed, over the
    /// interval (counted in `permission_events`, never in `denies`).
    pub would_deny: u64,
    /// The mode the agent answers in now: `audit` when its flag says so or any channel is
    /// audited.
    pub mode: crate::Enforcement,
    /// Channels whose engines are audited now (an audit rollout or plan): their denies are
    /// reported as "would deny" and allowed. Every channel when the agent's flag says audit.
    pub audited: Vec<String>,
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
    /// Share of the interval in which some task on the host waited for a CPU (Linux PSI
    /// `some`), percent; 0 where the kernel does not report pressure. Verdict latency on a
    /// starved host is the host's, not the release's.
    pub cpu_pressure_pct: f64,
    pub rss_bytes: u64,
    pub uptime_s: u64,
    /// Spooled reports not yet uploaded.
    pub spool_pending: u64,
    /// Reports dropped because the spool was full (oldest telemetry first).
    pub spool_dropped: u64,
    /// Why the agent sees less than it was asked to (the BPF sensor refused, switched off by
    /// the guard after a boot loop, or built without BPF); absent at full visibility.
    pub reduced_visibility: Option<String>,
    /// BPF sensor records lost over the interval because its ring buffer was full.
    pub bpf_lost: u64,
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
    /// Bytes of a reason in words (reduced visibility).
    pub const MAX_REASON_BYTES: usize = 1024;
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
            would_deny: count(self.would_deny),
            mode: self.mode,
            audited: names(&self.audited),
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
            cpu_pressure_pct: real(self.cpu_pressure_pct, 100.0),
            rss_bytes: self.rss_bytes.min(MAX_RSS_BYTES),
            uptime_s: self.uptime_s.min(MAX_UPTIME_S),
            spool_pending: count(self.spool_pending),
            spool_dropped: count(self.spool_dropped),
            reduced_visibility: self
                .reduced_visibility
                .as_deref()
                .map(|why| truncate(why, MAX_REASON_BYTES)),
            bpf_lost: count(self.bpf_lost),
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
    /// How to run this release: `audit` (an audit rollout) reports what it would deny and
    /// blocks nothing. Absent (older servers) means `enforce`. An agent whose own flag says
    /// `audit` stays in audit whatever this says.
    #[serde(default)]
    pub mode: crate::Enforcement,
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

pub use crate::report::{Report, WireReport};

/// `POST /api/v1/agents/reports`, as an agent sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBatch {
    pub reports: Vec<Report>,
}

/// `POST /api/v1/agents/reports`, as the server reads it: bodies unread until the batch is
/// within [`limits`] ([`WireReportBatch::validate`]), then read by kind
/// ([`WireReportBatch::typed`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireReportBatch {
    pub reports: Vec<WireReport>,
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

/// How much one agent request may carry. The server refuses more before it stores or computes
/// anything: bytes over a limit are a `413`, counts and shapes outside these bounds a `422`.
/// Honest agents stay far below them (a heartbeat is a few KiB, the uplink uploads at most 500
/// reports a batch).
pub mod limits {
    /// A whole heartbeat body.
    pub const MAX_HEARTBEAT_BYTES: usize = 256 << 10;
    /// Release channels one heartbeat may describe.
    pub const MAX_RELEASES: usize = 256;
    /// Bytes of the agent version string.
    pub const MAX_AGENT_VERSION_BYTES: usize = 64;
    /// Bytes of a channel name or a version.
    pub const MAX_RELEASE_FIELD_BYTES: usize = 128;
    /// A whole report batch body.
    pub const MAX_REPORT_BATCH_BYTES: usize = 16 << 20;
    /// Reports in one batch.
    pub const MAX_REPORTS_PER_BATCH: usize = 1000;
    /// One report's `body`, as JSON.
    pub const MAX_REPORT_BODY_BYTES: usize = 256 << 10;
    /// Bytes of a report id (the agent's spool name for it).
    pub const MAX_REPORT_ID_BYTES: usize = 128;
    /// Bytes of a report kind.
    pub const MAX_REPORT_KIND_BYTES: usize = 32;
    /// Enrollment and certificate renewal bodies: a CSR is about a kilobyte, and one too long
    /// to be a CSR is still answered by the CSR check (400), which names the problem.
    pub const MAX_ENROLL_BYTES: usize = 64 << 10;
    /// How far back an agent may date a report: a spool can hold reports through a long outage,
    /// but not older than this.
    pub const MAX_REPORT_AGE_MS: i64 = 365 * 86_400_000;
}

/// Why an agent body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// More bytes than the limit for this part of the body (`413`).
    #[error("{what} is {actual} bytes; at most {max} are accepted")]
    TooLarge {
        what: String,
        actual: usize,
        max: usize,
    },
    /// Parsed, but outside the protocol's bounds (`422`).
    #[error("{0}")]
    Invalid(String),
}

fn bounded(what: &str, text: &str, min: usize, max: usize) -> Result<(), BodyError> {
    if text.len() < min || text.len() > max {
        return Err(BodyError::Invalid(format!(
            "{what} must be {min}–{max} bytes, not {}",
            text.len()
        )));
    }
    Ok(())
}

impl Heartbeat {
    /// The heartbeat as the server keeps it: its shape checked against [`limits`] (too many
    /// releases or overlong strings are refused, not cut: they say the sender is not an honest
    /// agent) and its health figures [clamped](HealthFigures::clamped).
    pub fn validated(self) -> Result<Heartbeat, BodyError> {
        use limits::*;
        bounded(
            "agent_version",
            &self.agent_version,
            0,
            MAX_AGENT_VERSION_BYTES,
        )?;
        if self.releases.len() > MAX_RELEASES {
            return Err(BodyError::Invalid(format!(
                "at most {MAX_RELEASES} releases per heartbeat, not {}",
                self.releases.len()
            )));
        }
        for release in &self.releases {
            bounded(
                "a release channel",
                &release.channel,
                1,
                MAX_RELEASE_FIELD_BYTES,
            )?;
            for version in [&release.current, &release.lkg].into_iter().flatten() {
                bounded("a release version", version, 1, MAX_RELEASE_FIELD_BYTES)?;
            }
        }
        let health = self.health.clamped();
        Ok(Heartbeat { health, ..self })
    }
}

impl Report {
    /// The agent's `at_ms` made sane against the server's clock `now_ms`: never in the future
    /// and never older than [`limits::MAX_REPORT_AGE_MS`]. Only ever a claim.
    pub fn claimed_at(&self, now_ms: i64) -> i64 {
        self.at_ms
            .clamp(now_ms.saturating_sub(limits::MAX_REPORT_AGE_MS), now_ms)
    }
}

/// Counts what is written to it and fails once more than `max` bytes were.
struct ByteCounter {
    bytes: usize,
    max: usize,
}

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes = self.bytes.saturating_add(buf.len());
        if self.bytes > self.max {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl WireReportBatch {
    /// Checks the batch against [`limits`]: count, id and kind lengths, and each body's size.
    pub fn validate(&self) -> Result<(), BodyError> {
        use limits::*;
        if self.reports.len() > MAX_REPORTS_PER_BATCH {
            return Err(BodyError::Invalid(format!(
                "at most {MAX_REPORTS_PER_BATCH} reports per batch, not {}",
                self.reports.len()
            )));
        }
        self.reports.iter().try_for_each(WireReport::validate)
    }

    /// Every report read by its kind; the first that cannot be read refuses the batch (`422`,
    /// naming the report and the problem): the agent then sends its reports one at a time and
    /// sets aside the one refused, so nothing is dropped without a trace.
    pub fn typed(self) -> Result<Vec<Report>, BodyError> {
        self.reports
            .into_iter()
            .map(|report| {
                report
                    .typed()
                    .map_err(|error| BodyError::Invalid(error.to_string()))
            })
            .collect()
    }
}

impl Report {
    /// Checks one report against [`limits`] as it will be sent. Agents check before they send,
    /// so one bad report is set aside rather than holding back every report spooled after it.
    pub fn validate(&self) -> Result<(), BodyError> {
        WireReport::from(self).validate()
    }
}

impl WireReport {
    /// Checks one report against [`limits`]: id and kind lengths, the kind's alphabet and the
    /// body's size.
    pub fn validate(&self) -> Result<(), BodyError> {
        use limits::*;
        bounded("a report id", &self.id, 1, MAX_REPORT_ID_BYTES)?;
        bounded("a report kind", &self.kind, 1, MAX_REPORT_KIND_BYTES)?;
        if !self
            .kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(BodyError::Invalid(
                "a report kind is lowercase letters, digits, '_' and '-'".to_owned(),
            ));
        }
        // The size we would store, counted while serialising and given up on once past the
        // limit, so a hostile body costs no more than the limit to measure.
        let mut counter = ByteCounter {
            bytes: 0,
            max: MAX_REPORT_BODY_BYTES,
        };
        if serde_json::to_writer(&mut counter, &self.body).is_err() {
            return Err(BodyError::TooLarge {
                what: format!("the body of report {:?}", self.id),
                actual: counter.bytes,
                max: MAX_REPORT_BODY_BYTES,
            });
        }
        Ok(())
    }
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

    fn release(channel: &str) -> InstalledRelease {
        InstalledRelease {
            channel: channel.to_owned(),
            current: Some("1.0.0".into()),
            lkg: None,
            running: Slot::Current,
        }
    }

    #[test]
    fn a_validated_heartbeat_has_clamped_figures() {
        let heartbeat = Heartbeat {
            agent_version: "1.2.3".into(),
            releases: vec![release("rules")],
            health: HealthFigures {
                cpu_pct: 1.7e308,
                deny_rate: f64::NAN,
                ..HealthFigures::default()
            },
        };
        let kept = heartbeat.clone().validated().expect("valid");
        assert_eq!(kept.health, heartbeat.health.clamped());
        assert_eq!(kept.releases, heartbeat.releases);
        assert_eq!(kept.health.cpu_pct, bounds::MAX_CPU_PCT);
    }

    #[test]
    fn heartbeats_beyond_the_limits_are_refused() {
        let many = Heartbeat {
            releases: vec![release("rules"); limits::MAX_RELEASES + 1],
            ..Heartbeat::default()
        };
        assert!(matches!(many.validated(), Err(BodyError::Invalid(_))));
        let long_channel = Heartbeat {
            releases: vec![release(&"c".repeat(limits::MAX_RELEASE_FIELD_BYTES + 1))],
            ..Heartbeat::default()
        };
        assert!(long_channel.validated().is_err());
        let empty_channel = Heartbeat {
            releases: vec![release("")],
            ..Heartbeat::default()
        };
        assert!(empty_channel.validated().is_err());
        let long_version = Heartbeat {
            agent_version: "9".repeat(limits::MAX_AGENT_VERSION_BYTES + 1),
            ..Heartbeat::default()
        };
        assert!(long_version.validated().is_err());
        let at_the_limit = Heartbeat {
            releases: vec![release("rules"); limits::MAX_RELEASES],
            ..Heartbeat::default()
        };
        assert!(at_the_limit.validated().is_ok());
    }

    #[test]
    fn heartbeats_ignore_unknown_fields_but_report_batches_refuse_them() {
        let heartbeat: Heartbeat = serde_json::from_str(
            r#"{"agent_version":"1","health":{"cpu_pct":1.0,"from_the_future":3},"extra":true}"#,
        )
        .expect("a newer agent's heartbeat parses");
        assert_eq!(heartbeat.health.cpu_pct, 1.0);
        assert!(serde_json::from_str::<WireReportBatch>(r#"{"reports":[],"extra":1}"#).is_err());
        assert!(
            serde_json::from_str::<WireReportBatch>(
                r#"{"reports":[{"id":"1","kind":"alert","at_ms":1,"body":{},"agent_id":"x"}]}"#
            )
            .is_err()
        );
    }

    fn report(id: &str, kind: &str, body: serde_json::Value) -> WireReport {
        WireReport {
            id: id.to_owned(),
            kind: kind.to_owned(),
            at_ms: 0,
            body,
        }
    }

    #[test]
    fn report_batches_beyond_the_limits_are_refused() {
        let ok = WireReportBatch {
            reports: vec![report("1", "crash", serde_json::json!({"kind": "native"}))],
        };
        assert_eq!(ok.validate(), Ok(()));
        let too_many = WireReportBatch {
            reports: vec![report("1", "alert", serde_json::json!({})); 1001],
        };
        assert!(matches!(too_many.validate(), Err(BodyError::Invalid(_))));
        let big = "x".repeat(limits::MAX_REPORT_BODY_BYTES);
        let too_big = WireReportBatch {
            reports: vec![report("1", "alert", serde_json::json!({ "m": big }))],
        };
        assert!(matches!(
            too_big.validate(),
            Err(BodyError::TooLarge { max, .. }) if max == limits::MAX_REPORT_BODY_BYTES
        ));
        for (id, kind) in [("", "alert"), ("1", ""), ("1", "Alert"), ("1", "a b")] {
            let bad = WireReportBatch {
                reports: vec![report(id, kind, serde_json::json!({}))],
            };
            assert!(bad.validate().is_err(), "{id:?} {kind:?}");
        }
        let long_id = WireReportBatch {
            reports: vec![report(
                &"i".repeat(limits::MAX_REPORT_ID_BYTES + 1),
                "alert",
                serde_json::json!({}),
            )],
        };
        assert!(long_id.validate().is_err());
    }

    #[test]
    fn a_reports_time_is_a_claim_clamped_to_the_servers_clock() {
        let now = 1_700_000_000_000;
        let mut future = Report {
            id: "1".into(),
            at_ms: 0,
            body: crate::report::ReportBody::Alert(serde_json::json!({})),
        };
        future.at_ms = 4_102_444_800_000;
        assert_eq!(future.claimed_at(now), now);
        let mut ancient = future.clone();
        ancient.at_ms = i64::MIN;
        assert_eq!(ancient.claimed_at(now), now - limits::MAX_REPORT_AGE_MS);
        let mut honest = future;
        honest.at_ms = now - 5_000;
        assert_eq!(honest.claimed_at(now), now - 5_000);
    }
}
