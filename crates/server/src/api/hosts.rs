//! Hosts as an operator looks for them: the list filtered by release, state, protection and
//! last contact (the dashboard's host list, over the whole fleet rather than the first
//! [`MAX_HOSTS`](super::status::MAX_HOSTS) the fleet summary lists), and one host as an operator
//! investigates it (the host page): what it reports running in each slot, its last heartbeat's
//! figures, the guard's restores of the last known good release, its recent failures and the
//! crash groups they fall in.
//!
//! Everything here is read from what the agent sent, so every figure is a claim: heartbeat
//! figures are shown clamped, as the gates read them.

use crate::auth::Operator;
use crate::error::{ApiResult, AppError};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use ringfence_protocol::api::{HealthFigures, Heartbeat, InstalledRelease};
use ringfence_protocol::guard_link::Slot;
use ringfence_protocol::report::ReportKind;
use ringfence_store::{ReportRecord, now_ms};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use super::status::{HostStatus, host_status};

/// Reports of each list on a host's page, newest first.
pub const HOST_REPORTS: i64 = 20;

/// How many of a host's failure and crash reports are read to find the groups it is in.
const SIGNATURE_REPORTS: i64 = 500;

/// A host's state, as the list filters by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Heartbeat within three intervals.
    Online,
    Offline,
    /// Its last heartbeat says it is installing a release.
    Installing,
    /// Some channel runs its last known good slot (the guard or a rollback put it there).
    Lkg,
}

/// `GET /api/v1/hosts` filters; every one given must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostQuery {
    /// `channel@version` a host runs (or `channel@disabled`).
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default)]
    pub state: Option<HostState>,
    /// True: protection off for some reason; false: fully on.
    #[serde(default)]
    pub degraded: Option<bool>,
    /// Heard from within this many seconds.
    #[serde(default)]
    pub seen_within_s: Option<u64>,
    /// Not heard from for more than this many seconds (or never).
    #[serde(default)]
    pub unseen_for_s: Option<u64>,
    /// Part of the host name, any case.
    #[serde(default)]
    pub name: Option<String>,
    /// At most this many hosts (default and ceiling [`MAX_LISTED`]).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The most hosts one answer lists.
pub const MAX_LISTED: usize = 1_000;

/// `GET /api/v1/hosts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostList {
    /// Every enrolled host.
    pub total: usize,
    /// Hosts the filters match.
    pub matched: usize,
    /// Degraded first, then by name; at most the limit.
    pub hosts: Vec<HostStatus>,
    /// More hosts matched than are listed.
    pub truncated: bool,
}

impl HostQuery {
    /// Whether `host` passes every filter, `now` by the server's clock.
    pub fn matches(&self, host: &HostStatus, now: i64) -> bool {
        let age_ms = host.last_seen_at_ms.map(|seen| now.saturating_sub(seen));
        let secs = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        if let Some(release) = &self.release
            && !host
                .releases
                .iter()
                .any(|r| release.split_once('@') == Some((r.channel.as_str(), r.running.as_str())))
        {
            return false;
        }
        let state = match self.state {
            None => true,
            Some(HostState::Online) => host.online,
            Some(HostState::Offline) => !host.online,
            Some(HostState::Installing) => host.installing.is_some(),
            Some(HostState::Lkg) => host.releases.iter().any(|r| r.slot == Slot::Lkg),
        };
        let degraded = self
            .degraded
            .is_none_or(|wanted| wanted != host.degraded.is_empty());
        let seen = self
            .seen_within_s
            .is_none_or(|s| age_ms.is_some_and(|age| age <= secs(s)));
        let unseen = self
            .unseen_for_s
            .is_none_or(|s| age_ms.is_none_or(|age| age > secs(s)));
        let name = self.name.as_deref().is_none_or(|name| {
            host.hostname
                .to_lowercase()
                .contains(&name.trim().to_lowercase())
        });
        state && degraded && seen && unseen && name
    }
}

pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
    Query(query): Query<HostQuery>,
) -> ApiResult<Json<HostList>> {
    state.heartbeats.flush(&state.store).await?;
    let agents = state.store.agents().await?;
    let now = now_ms();
    let stale_after = (state.config.heartbeat_interval.as_millis() as i64) * 3;
    let mut hosts: Vec<HostStatus> = agents
        .iter()
        .map(|agent| host_status(agent, now, stale_after))
        .filter(|host| query.matches(host, now))
        .collect();
    hosts.sort_by(|a, b| {
        (a.degraded.is_empty(), &a.hostname, &a.agent_id).cmp(&(
            b.degraded.is_empty(),
            &b.hostname,
            &b.agent_id,
        ))
    });
    let matched = hosts.len();
    let limit = query.limit.unwrap_or(MAX_LISTED).clamp(1, MAX_LISTED);
    hosts.truncate(limit);
    Ok(Json(HostList {
        total: agents.len(),
        matched,
        truncated: matched > hosts.len(),
        hosts,
    }))
}

/// A report on a host's page: when the server got it, and its body as the agent sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub id: String,
    pub kind: String,
    /// The server's clock.
    pub received_at_ms: i64,
    /// The agent's clock (a claim).
    pub at_ms: i64,
    pub body: serde_json::Value,
}

impl From<ReportRecord> for HostReport {
    fn from(report: ReportRecord) -> HostReport {
        HostReport {
            id: report.id,
            kind: report.kind,
            received_at_ms: report.received_at,
            at_ms: report.at,
            body: report.body,
        }
    }
}

/// `GET /api/v1/hosts/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostDetail {
    /// The same summary the fleet view lists (online, releases running, degraded reasons).
    pub host: HostStatus,
    pub tags: Vec<String>,
    pub enrolled_at_ms: i64,
    pub decommissioned_at_ms: Option<i64>,
    /// Each channel's slots as the agent last reported them.
    pub slots: Vec<InstalledRelease>,
    /// The last heartbeat's figures, clamped; `None` before the first heartbeat.
    pub health: Option<HealthFigures>,
    /// The guard's switches to the last known good slot, newest first.
    pub restores: Vec<HostReport>,
    /// Engine failures, crashes, minidumps and install reports, newest first.
    pub failures: Vec<HostReport>,
    /// The crash groups this host's failures and crashes fall in.
    pub crash_groups: Vec<crate::crash_groups::CrashGroup>,
}

pub async fn show(
    State(state): State<AppState>,
    _operator: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<HostDetail>> {
    state.heartbeats.flush(&state.store).await?;
    let agent = state
        .store
        .agent(&id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no host with agent id {id}")))?;
    let stale_after = (state.config.heartbeat_interval.as_millis() as i64) * 3;
    let host = host_status(&agent, now_ms(), stale_after);
    let heartbeat: Option<Heartbeat> = agent
        .status
        .as_ref()
        .and_then(|status| serde_json::from_value(status.clone()).ok());
    let restores = state
        .store
        .agent_reports(&id, &[ReportKind::Restore.as_str()], HOST_REPORTS)
        .await?;
    let failures = state
        .store
        .agent_reports(
            &id,
            &[
                ReportKind::Failure.as_str(),
                ReportKind::Crash.as_str(),
                ReportKind::Minidump.as_str(),
                ReportKind::Install.as_str(),
            ],
            HOST_REPORTS,
        )
        .await?;
    let signatures: BTreeSet<String> = state
        .store
        .agent_reports(
            &id,
            &[ReportKind::Failure.as_str(), ReportKind::Crash.as_str()],
            SIGNATURE_REPORTS,
        )
        .await?
        .iter()
        .map(crate::crash_groups::signature_of)
        .collect();
    let crash_groups = if signatures.is_empty() {
        Vec::new()
    } else {
        let mut reports = state
            .store
            .reports_since(ReportKind::Failure.as_str(), 0)
            .await?;
        reports.extend(
            state
                .store
                .reports_since(ReportKind::Crash.as_str(), 0)
                .await?,
        );
        let releases = state.store.releases().await?;
        let mut rollouts = Vec::new();
        for record in state.store.rollouts().await? {
            rollouts.push(crate::fleet::ActiveRollout::from_record(&record)?);
        }
        crate::crash_groups::group(&reports, &releases, &rollouts)
            .into_iter()
            .filter(|g| signatures.contains(&g.signature))
            .collect()
    };
    Ok(Json(HostDetail {
        host,
        tags: agent.tags.clone(),
        enrolled_at_ms: agent.enrolled_at,
        decommissioned_at_ms: agent.decommissioned_at,
        slots: heartbeat
            .as_ref()
            .map(|h| h.releases.clone())
            .unwrap_or_default(),
        health: heartbeat.map(|h| h.health.clamped()),
        restores: restores.into_iter().map(HostReport::from).collect(),
        failures: failures.into_iter().map(HostReport::from).collect(),
        crash_groups,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::status::HostRelease;

    fn host(name: &str, last_seen_at_ms: Option<i64>) -> HostStatus {
        HostStatus {
            agent_id: format!("agent-{name}"),
            hostname: name.to_owned(),
            online: false,
            last_seen_at_ms,
            agent_version: String::new(),
            releases: vec![HostRelease {
                channel: "detection".into(),
                running: "disabled".into(),
                slot: Slot::Current,
            }],
            installing: None,
            degraded: Vec::new(),
            mode: ringfence_protocol::Enforcement::default(),
            would_deny: 0,
        }
    }

    #[test]
    fn a_host_never_heard_from_is_unseen_for_any_time_and_seen_within_none() {
        let never = host("never", None);
        let now = 10_000_000;
        let recent = host("recent", Some(now - 5_000));
        let unseen = HostQuery {
            unseen_for_s: Some(86_400),
            ..HostQuery::default()
        };
        let seen = HostQuery {
            seen_within_s: Some(60),
            ..HostQuery::default()
        };
        assert!(unseen.matches(&never, now) && !seen.matches(&never, now));
        assert!(!unseen.matches(&recent, now) && seen.matches(&recent, now));
        // Huge figures saturate instead of overflowing.
        let forever = HostQuery {
            seen_within_s: Some(u64::MAX),
            ..HostQuery::default()
        };
        assert!(forever.matches(&recent, now));
    }

    #[test]
    fn release_filters_need_both_channel_and_version_and_read_disabled_as_a_version() {
        let h = host("h", None);
        let query = |release: &str| HostQuery {
            release: Some(release.to_owned()),
            ..HostQuery::default()
        };
        assert!(query("detection@disabled").matches(&h, 0));
        assert!(!query("detection").matches(&h, 0));
        assert!(!query("other@disabled").matches(&h, 0));
    }
}
