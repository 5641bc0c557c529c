//! What an agent reports through its spool, typed: one [`ReportBody`] variant per kind, so that
//! every producer (the agent's uplink, the guard, the crash monitor) writes a body the server can
//! read, and every reader matches on a variant instead of testing strings.
//!
//! The wire form is the one agents have always sent, `{"id", "kind", "at_ms", "body"}` with the
//! body's keys in sorted order (they were `serde_json::Value` maps), so a report spooled by an
//! older agent decodes, and one spooled by this build is read by an older server. Bodies ignore
//! fields they do not know, so an agent may add a field before its server learns it; an unknown
//! kind, or a body that lacks what its kind needs, is refused ([`ReportError`]).

use crate::FailureRecord;
use crate::guard_link::Slot;
use serde::{Deserialize, Serialize};

/// One spooled item. `id` is chosen by the agent and unique per agent, so retries are stored
/// once. `at_ms` is the agent's clock: a claim, which the server clamps and never orders or
/// filters by (it stamps its own receipt time).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub id: String,
    pub at_ms: i64,
    pub body: ReportBody,
}

/// A report's body, by kind. On the wire the variant is the report's `kind` and its content the
/// report's `body` (adjacently tagged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum ReportBody {
    /// An alert the agent wrote, in OCSF (`docs/alerts.md`): an external schema, kept as JSON.
    Alert(serde_json::Value),
    /// An engine failed on this host (a call, a load, or the checked swap of an install).
    Failure(FailureReport),
    /// The agent process died (written by the guard).
    Crash(CrashReport),
    /// How an assigned release's install ended.
    Install(InstallReport),
    /// The agent started on the last known good release at the guard's request.
    Restore(RestoreReport),
    /// How a remediation plan's application ended.
    Remediation(RemediationReport),
    /// The crash monitor's minidump of the agent.
    Minidump(MinidumpReport),
    /// Figures about the reporting itself.
    Telemetry(TelemetryReport),
}

/// The kinds of [`ReportBody`], for asking the store for reports of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReportKind {
    Alert,
    Failure,
    Crash,
    Install,
    Restore,
    Remediation,
    Minidump,
    Telemetry,
}

impl ReportKind {
    /// Every kind, in declaration order.
    pub const ALL: [ReportKind; 8] = [
        ReportKind::Alert,
        ReportKind::Failure,
        ReportKind::Crash,
        ReportKind::Install,
        ReportKind::Restore,
        ReportKind::Remediation,
        ReportKind::Minidump,
        ReportKind::Telemetry,
    ];

    /// The `kind` on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Alert => "alert",
            ReportKind::Failure => "failure",
            ReportKind::Crash => "crash",
            ReportKind::Install => "install",
            ReportKind::Restore => "restore",
            ReportKind::Remediation => "remediation",
            ReportKind::Minidump => "minidump",
            ReportKind::Telemetry => "telemetry",
        }
    }

    /// The kind named `name`, if this build knows it.
    pub fn parse(name: &str) -> Option<ReportKind> {
        ReportKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for ReportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An engine failure: the engine host's record, and when it happened outside serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    #[serde(flatten)]
    pub record: FailureRecord,
    /// Set when the failure happened outside serving (the checked swap of an install): the
    /// release never served, but the failure is crash data all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub during: Option<FailurePhase>,
}

/// When a failure happened, if not while serving events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePhase {
    /// Trying a release's engines on the host's recent events before switching to them.
    Install,
}

/// How the agent process died, as the guard saw it. Fields are in wire order (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashReport {
    /// The process that died: `agent`.
    pub engine: String,
    /// The exit status, when the agent exited rather than being killed by a signal.
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub kind: CrashKind,
    pub message: String,
    /// How long the agent ran before it died, in milliseconds.
    #[serde(default)]
    pub ran_ms: u64,
    /// The signal that killed it (`SIGSEGV`), or `hang` / `spawn` for a guard's verdict.
    #[serde(default)]
    pub signal: Option<String>,
    /// The slot the agent ran on.
    #[serde(default)]
    pub slot: Slot,
}

/// What kind of death a crash report describes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashKind {
    /// The process died natively (a signal, an exit, a hang), not an engine call.
    #[default]
    Native,
}

/// How an install of an assigned release ended. Fields are in wire order (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallReport {
    pub channel: String,
    pub outcome: InstallOutcome,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub version: String,
}

/// The end of an install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallOutcome {
    /// The release runs.
    Running,
    /// The host refused it (did not verify, failed the checked swap, took too long).
    Refused,
}

/// The agent started a channel on its last known good release. Fields are in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub channel: String,
    pub reason: String,
}

/// How a remediation plan's application ended. Fields are in wire order (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemediationReport {
    /// The plan's action as the server sent it (`pin`, `disable`, `audit`, or one this agent
    /// does not know, which it refuses).
    pub action: String,
    pub channel: String,
    pub outcome: RemediationOutcome,
    /// The plan's id.
    pub plan: String,
    /// Why it was refused; `null` when applied.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The end of a remediation plan on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemediationOutcome {
    Applied,
    Refused,
}

/// The crash monitor's minidump: written (and embedded when small enough), or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MinidumpReport {
    Written(MinidumpWritten),
    Failed(MinidumpFailed),
}

/// A minidump on the host's disk. Fields are in wire order (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinidumpWritten {
    pub bytes: u64,
    /// The dump in hex, when it fits in a report; `null` when it stays on the host only.
    pub embedded: Option<String>,
    /// The process that crashed: `agent`.
    pub engine: String,
    pub path: String,
}

/// A minidump that could not be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinidumpFailed {
    pub engine: String,
    pub error: String,
}

/// Figures about the reporting itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelemetryReport {
    /// Alerts and failures left out by the rate limit (or a full queue) since the last such
    /// report.
    pub suppressed_reports: u64,
}

/// Why a report cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("report {id:?}: unknown kind {kind:?} (known: {known})", known = known_kinds())]
    UnknownKind { id: String, kind: String },
    #[error("report {id:?}: not a {kind} body: {reason}")]
    Body {
        id: String,
        kind: ReportKind,
        reason: String,
    },
}

fn known_kinds() -> String {
    ReportKind::ALL.map(ReportKind::as_str).join(", ")
}

impl ReportBody {
    pub fn kind(&self) -> ReportKind {
        match self {
            ReportBody::Alert(_) => ReportKind::Alert,
            ReportBody::Failure(_) => ReportKind::Failure,
            ReportBody::Crash(_) => ReportKind::Crash,
            ReportBody::Install(_) => ReportKind::Install,
            ReportBody::Restore(_) => ReportKind::Restore,
            ReportBody::Remediation(_) => ReportKind::Remediation,
            ReportBody::Minidump(_) => ReportKind::Minidump,
            ReportBody::Telemetry(_) => ReportKind::Telemetry,
        }
    }

    /// The body as JSON, keys sorted: what is sent and stored.
    pub fn to_json(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut tagged)) => {
                tagged.remove("body").unwrap_or(serde_json::Value::Null)
            }
            // Every body serialises (no maps with non-string keys, no failing serialisers).
            _ => serde_json::Value::Null,
        }
    }

    /// Reads a body of `kind` (as sent or stored) for the report `id`.
    pub fn decode(
        id: &str,
        kind: &str,
        body: serde_json::Value,
    ) -> Result<ReportBody, ReportError> {
        let Some(known) = ReportKind::parse(kind) else {
            return Err(ReportError::UnknownKind {
                id: id.to_owned(),
                kind: kind.to_owned(),
            });
        };
        let tagged = serde_json::json!({ "kind": kind, "body": body });
        serde_json::from_value(tagged).map_err(|error| ReportError::Body {
            id: id.to_owned(),
            kind: known,
            reason: error.to_string(),
        })
    }
}

/// The wire form of a report, body unread: what the server checks against the limits before it
/// reads any body, and what a reader of an unknown kind still has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireReport {
    pub id: String,
    pub kind: String,
    pub at_ms: i64,
    pub body: serde_json::Value,
}

impl WireReport {
    /// The typed report, or why this one cannot be read.
    pub fn typed(self) -> Result<Report, ReportError> {
        let body = ReportBody::decode(&self.id, &self.kind, self.body)?;
        Ok(Report {
            id: self.id,
            at_ms: self.at_ms,
            body,
        })
    }
}

impl From<&Report> for WireReport {
    fn from(report: &Report) -> WireReport {
        WireReport {
            id: report.id.clone(),
            kind: report.body.kind().as_str().to_owned(),
            at_ms: report.at_ms,
            body: report.body.to_json(),
        }
    }
}

impl Report {
    pub fn kind(&self) -> ReportKind {
        self.body.kind()
    }
}

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireReport::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Report {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Report, D::Error> {
        WireReport::deserialize(deserializer)?
            .typed()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
