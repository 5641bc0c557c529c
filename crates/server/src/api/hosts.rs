//! One host as an operator investigates it (the dashboard's host page): what it reports
//! running in each slot, its last heartbeat's figures, the guard's restores of the last known
//! good release, its recent failures and the crash groups they fall in.
//!
//! Everything here is read from what the agent sent, so every figure is a claim: heartbeat
//! figures are shown clamped, as the gates read them.

use crate::auth::Operator;
use crate::error::{ApiResult, AppError};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use ringfence_protocol::api::{HealthFigures, Heartbeat, InstalledRelease};
use ringfence_store::{ReportRecord, now_ms};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use super::status::{HostStatus, host_status};

/// Reports of each list on a host's page, newest first.
pub const HOST_REPORTS: i64 = 20;

/// How many of a host's failure and crash reports are read to find the groups it is in.
const SIGNATURE_REPORTS: i64 = 500;

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
        .agent_reports(&id, &["restore"], HOST_REPORTS)
        .await?;
    let failures = state
        .store
        .agent_reports(
            &id,
            &["failure", "crash", "minidump", "install"],
            HOST_REPORTS,
        )
        .await?;
    let signatures: BTreeSet<String> = state
        .store
        .agent_reports(&id, &["failure", "crash"], SIGNATURE_REPORTS)
        .await?
        .iter()
        .map(crate::crash_groups::signature_of)
        .collect();
    let crash_groups = if signatures.is_empty() {
        Vec::new()
    } else {
        let mut reports = state.store.reports_since("failure", 0).await?;
        reports.extend(state.store.reports_since("crash", 0).await?);
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
