//! Read-only views for operators: the fleet summary, the audit log, reports.
//!
//! The fleet summary says which hosts run with protection off (*degraded*: a quarantined
//! engine, a disabled channel, policy answering more than 1 % of permission events) and says
//! "disabled" for a channel that runs nothing rather than the version on disk. [`degradation`]
//! is the one definition of degraded.

use crate::auth::Operator;
use crate::error::{ApiResult, AppError};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use ringfence_protocol::api::Heartbeat;
use ringfence_protocol::guard_link::Slot;
use ringfence_protocol::report::ReportKind;
use ringfence_rollout::Phase;
use ringfence_store::{AgentRecord, now_ms};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a host's protection is partly or wholly off. The one definition the status API,
/// `/metrics`, the dashboard and `ringfence status` all use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DegradedReason {
    /// An engine is quarantined: its verdicts come from policy.
    Quarantine,
    /// A channel's engines are disabled (a remediation plan): nothing decides for it.
    Disabled,
    /// More than [`POLICY_ANSWER_SHARE`] of the last interval's permission events were
    /// answered by policy (deadline, quarantine, a full queue, an engine failure).
    PolicyAnswers,
}

impl DegradedReason {
    pub const ALL: [DegradedReason; 3] = [
        DegradedReason::Quarantine,
        DegradedReason::Disabled,
        DegradedReason::PolicyAnswers,
    ];

    /// The label value in `/metrics` and the word in `ringfence status`.
    pub fn as_str(self) -> &'static str {
        match self {
            DegradedReason::Quarantine => "quarantine",
            DegradedReason::Disabled => "disabled",
            DegradedReason::PolicyAnswers => "policy_answers",
        }
    }
}

/// One reason a host is degraded, with the evidence in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Degradation {
    pub reason: DegradedReason,
    pub detail: String,
}

/// Above this share of permission events answered by policy in one heartbeat, the engines are
/// not really deciding: the host is degraded.
pub const POLICY_ANSWER_SHARE: f64 = 0.01;

/// Whether (and why) the host that sent `heartbeat` runs with protection off, judged on the
/// clamped figures (a claim of the agent's, like every figure). Empty means healthy.
pub fn degradation(heartbeat: &Heartbeat) -> Vec<Degradation> {
    let health = heartbeat.health.clamped();
    let mut out = Vec::new();
    if !health.quarantined.is_empty() {
        out.push(Degradation {
            reason: DegradedReason::Quarantine,
            detail: format!("quarantined: {}", health.quarantined.join(", ")),
        });
    }
    if !health.disabled.is_empty() {
        out.push(Degradation {
            reason: DegradedReason::Disabled,
            detail: format!("disabled: {}", health.disabled.join(", ")),
        });
    }
    let answers = health.policy_answers.total();
    // With no permission events at all, any policy answer is more than the share.
    let share = answers as f64 / health.permission_events.max(1) as f64;
    if answers > 0 && share > POLICY_ANSWER_SHARE {
        let a = &health.policy_answers;
        out.push(Degradation {
            reason: DegradedReason::PolicyAnswers,
            detail: format!(
                "{answers} of {} permission events answered by policy ({:.1} %: deadline {}, quarantine {}, queue full {}, failure {})",
                health.permission_events,
                share * 100.0,
                a.deadline,
                a.quarantine,
                a.queue_full,
                a.failure
            ),
        });
    }
    out
}

/// The last heartbeat stored for an agent, typed; `None` before the first one (or for a
/// status a newer server wrote in a shape this one cannot read).
fn last_heartbeat(agent: &AgentRecord) -> Option<Heartbeat> {
    agent
        .status
        .as_ref()
        .and_then(|status| serde_json::from_value(status.clone()).ok())
}

/// What a channel on one host runs: a version, or `disabled` when a remediation plan turned
/// its engines off (then the version on disk is not what protects the host: nothing is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRelease {
    pub channel: String,
    /// The version running, `disabled`, or `none`.
    pub running: String,
    pub slot: Slot,
}

/// One host as the fleet view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub agent_id: String,
    pub hostname: String,
    pub online: bool,
    pub last_seen_at_ms: Option<i64>,
    pub agent_version: String,
    pub releases: Vec<HostRelease>,
    /// A release being installed now (`channel@version`).
    pub installing: Option<String>,
    /// Empty when protection is fully on.
    pub degraded: Vec<Degradation>,
    /// `audit` when the host only reports what it would deny (its flag or an audit rollout).
    #[serde(default)]
    pub mode: ringfence_protocol::Enforcement,
    /// Would-deny answers in the host's last heartbeat interval (audit mode).
    #[serde(default)]
    pub would_deny: u64,
}

/// A rollout in the fleet summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSummary {
    pub id: String,
    pub channel: String,
    pub version: String,
    pub phase: Phase,
    pub ring: usize,
    pub reason: Option<String>,
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    pub agents: usize,
    pub online: usize,
    pub on_lkg: usize,
    /// Channel → what hosts run (a version, or `disabled`) → hosts.
    pub versions: BTreeMap<String, BTreeMap<String, usize>>,
    pub rollouts: Vec<RolloutSummary>,
    pub leader: bool,
    /// Hosts degraded for any reason.
    pub degraded: usize,
    /// Hosts degraded for each reason (a host may count under several).
    pub degraded_by_reason: BTreeMap<DegradedReason, usize>,
    /// Degraded hosts first, then the others, at most [`MAX_HOSTS`].
    pub hosts: Vec<HostStatus>,
    /// More hosts than [`MAX_HOSTS`] exist; the rest are left out.
    pub hosts_truncated: bool,
    /// Hosts answering in audit mode: deciding and reporting "would deny", blocking nothing.
    #[serde(default)]
    pub audit_mode: usize,
}

/// Hosts listed in one fleet summary: enough for a dashboard, bounded for a large fleet.
pub const MAX_HOSTS: usize = 500;

/// One host from its record; `stale_after` decides whether it is online.
pub fn host_status(agent: &AgentRecord, now: i64, stale_after: i64) -> HostStatus {
    let heartbeat = last_heartbeat(agent);
    let (agent_version, releases, installing, degraded) = match &heartbeat {
        Some(heartbeat) => {
            let health = heartbeat.health.clamped();
            let releases = heartbeat
                .releases
                .iter()
                .map(|release| {
                    let slot = release.running;
                    let running = if health.disabled.contains(&release.channel) {
                        "disabled".to_owned()
                    } else if slot == Slot::Lkg {
                        release.lkg.clone().unwrap_or_else(|| "none".to_owned())
                    } else {
                        release.current.clone().unwrap_or_else(|| "none".to_owned())
                    };
                    HostRelease {
                        channel: release.channel.clone(),
                        running,
                        slot,
                    }
                })
                .collect();
            (
                heartbeat.agent_version.clone(),
                releases,
                health.installing.clone(),
                degradation(heartbeat),
            )
        }
        None => (String::new(), Vec::new(), None, Vec::new()),
    };
    HostStatus {
        agent_id: agent.id.clone(),
        hostname: agent.hostname.clone(),
        online: agent
            .last_seen_at
            .is_some_and(|seen| now - seen <= stale_after),
        last_seen_at_ms: agent.last_seen_at,
        agent_version,
        releases,
        installing,
        degraded,
        mode: heartbeat
            .as_ref()
            .map(|h| h.health.mode)
            .unwrap_or_default(),
        would_deny: heartbeat
            .as_ref()
            .map_or(0, |h| h.health.clamped().would_deny),
    }
}

/// Hosts whose last heartbeat says they answer in audit mode (for `/metrics`).
pub fn audit_mode_count(agents: &[AgentRecord]) -> usize {
    agents
        .iter()
        .filter_map(last_heartbeat)
        .filter(|heartbeat| heartbeat.health.mode.is_audit())
        .count()
}

/// Hosts degraded, for any reason and by reason, over every agent's last heartbeat (for
/// `/metrics`).
pub fn degraded_counts(agents: &[AgentRecord]) -> (usize, BTreeMap<DegradedReason, usize>) {
    let mut any = 0;
    let mut by_reason: BTreeMap<DegradedReason, usize> =
        DegradedReason::ALL.iter().map(|r| (*r, 0)).collect();
    for heartbeat in agents.iter().filter_map(last_heartbeat) {
        let reasons = degradation(&heartbeat);
        if !reasons.is_empty() {
            any += 1;
        }
        for d in reasons {
            *by_reason.entry(d.reason).or_insert(0) += 1;
        }
    }
    (any, by_reason)
}

pub async fn fleet(
    State(state): State<AppState>,
    _operator: Operator,
) -> ApiResult<Json<FleetStatus>> {
    state.heartbeats.flush(&state.store).await?;
    let agents = state.store.agents().await?;
    let now = now_ms();
    let stale_after = (state.config.heartbeat_interval.as_millis() as i64) * 3;
    let mut versions: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut degraded_by_reason: BTreeMap<DegradedReason, usize> =
        DegradedReason::ALL.iter().map(|r| (*r, 0)).collect();
    let (mut online, mut on_lkg, mut degraded, mut audit_mode) = (0, 0, 0, 0);
    let mut hosts = Vec::with_capacity(agents.len().min(MAX_HOSTS));
    let mut healthy_hosts = Vec::new();
    for agent in &agents {
        let host = host_status(agent, now, stale_after);
        online += usize::from(host.online);
        audit_mode += usize::from(host.mode.is_audit());
        for release in &host.releases {
            on_lkg += usize::from(release.slot == Slot::Lkg);
            *versions
                .entry(release.channel.clone())
                .or_default()
                .entry(release.running.clone())
                .or_insert(0) += 1;
        }
        if host.degraded.is_empty() {
            if healthy_hosts.len() < MAX_HOSTS {
                healthy_hosts.push(host);
            }
            continue;
        }
        degraded += 1;
        for d in &host.degraded {
            *degraded_by_reason.entry(d.reason).or_insert(0) += 1;
        }
        if hosts.len() < MAX_HOSTS {
            hosts.push(host);
        }
    }
    let room = MAX_HOSTS - hosts.len();
    hosts.extend(healthy_hosts.into_iter().take(room));
    let rollouts = state
        .fleet
        .rollouts()
        .into_iter()
        .map(|r| RolloutSummary {
            id: r.id,
            channel: r.channel,
            version: r.version,
            phase: r.state.phase,
            ring: r.state.ring,
            reason: r.state.reason,
        })
        .collect();
    Ok(Json(FleetStatus {
        agents: agents.len(),
        online,
        on_lkg,
        versions,
        rollouts,
        leader: state.metrics.is_leader(),
        degraded,
        degraded_by_reason,
        hosts_truncated: agents.len() > MAX_HOSTS,
        hosts,
        audit_mode,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    pub limit: Option<i64>,
}

pub async fn audit(
    State(state): State<AppState>,
    _operator: Operator,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let entries = state
        .store
        .audit_log(query.limit.unwrap_or(100).clamp(1, 10_000))
        .await?;
    Ok(Json(serde_json::json!({ "entries": entries })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsQuery {
    pub kind: String,
    #[serde(default)]
    pub since_ms: Option<i64>,
}

pub async fn reports(
    State(state): State<AppState>,
    _operator: Operator,
    Query(query): Query<ReportsQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    // A kind no agent sends would only ever list nothing: say so instead.
    let Some(kind) = ReportKind::parse(&query.kind) else {
        let known: Vec<&str> = ReportKind::ALL.iter().map(|k| k.as_str()).collect();
        return Err(AppError::bad_request(format!(
            "unknown report kind; known kinds: {}",
            known.join(", ")
        )));
    };
    let reports = state
        .store
        .reports_since(kind.as_str(), query.since_ms.unwrap_or(0))
        .await?;
    Ok(Json(serde_json::json!({ "reports": reports })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashQuery {
    #[serde(default)]
    pub since_ms: Option<i64>,
}

/// Failure and crash reports grouped by signature, with plain-language summaries.
pub async fn crash_groups(
    State(state): State<AppState>,
    _operator: Operator,
    Query(query): Query<CrashQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let since = query.since_ms.unwrap_or(0);
    let mut reports = state
        .store
        .reports_since(ReportKind::Failure.as_str(), since)
        .await?;
    reports.extend(
        state
            .store
            .reports_since(ReportKind::Crash.as_str(), since)
            .await?,
    );
    let releases = state.store.releases().await?;
    let mut rollouts = Vec::new();
    for record in state.store.rollouts().await? {
        rollouts.push(crate::fleet::ActiveRollout::from_record(&record)?);
    }
    let groups = crate::crash_groups::group(&reports, &releases, &rollouts);
    Ok(Json(serde_json::json!({ "groups": groups })))
}
