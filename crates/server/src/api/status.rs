//! Read-only views for operators: the fleet summary, the audit log, reports.

use crate::auth::Operator;
use crate::error::{ApiResult, AppError};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use ringfence_store::now_ms;
use serde::Deserialize;
use std::collections::BTreeMap;

pub async fn fleet(
    State(state): State<AppState>,
    _operator: Operator,
) -> ApiResult<Json<serde_json::Value>> {
    state.heartbeats.flush(&state.store).await?;
    let agents = state.store.agents().await?;
    let now = now_ms();
    let stale_after = (state.config.heartbeat_interval.as_millis() as i64) * 3;
    let mut versions: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut online = 0;
    let mut on_lkg = 0;
    for agent in &agents {
        if agent
            .last_seen_at
            .is_some_and(|seen| now - seen <= stale_after)
        {
            online += 1;
        }
        let releases = agent
            .status
            .as_ref()
            .and_then(|s| s.get("releases"))
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default();
        for release in releases {
            let channel = release
                .get("channel")
                .and_then(|c| c.as_str())
                .unwrap_or("?")
                .to_owned();
            let running = release
                .get("running")
                .and_then(|c| c.as_str())
                .unwrap_or("current");
            if running == "lkg" {
                on_lkg += 1;
            }
            let version = release
                .get(if running == "lkg" { "lkg" } else { "current" })
                .and_then(|v| v.as_str())
                .unwrap_or("none")
                .to_owned();
            *versions
                .entry(channel)
                .or_default()
                .entry(version)
                .or_insert(0) += 1;
        }
    }
    let rollouts: Vec<_> = state
        .fleet
        .rollouts()
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id, "channel": r.channel, "version": r.version,
                "phase": r.state.phase, "ring": r.state.ring, "reason": r.state.reason,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "agents": agents.len(),
        "online": online,
        "on_lkg": on_lkg,
        "versions": versions,
        "rollouts": rollouts,
        "leader": state.metrics.is_leader(),
    })))
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
    if query.kind.is_empty() || query.kind.len() > 32 {
        return Err(AppError::bad_request("kind must be 1–32 bytes"));
    }
    let reports = state
        .store
        .reports_since(&query.kind, query.since_ms.unwrap_or(0))
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
    let mut reports = state.store.reports_since("failure", since).await?;
    reports.extend(state.store.reports_since("crash", since).await?);
    let releases = state.store.releases().await?;
    let mut rollouts = Vec::new();
    for record in state.store.rollouts().await? {
        rollouts.push(crate::fleet::ActiveRollout::from_record(&record)?);
    }
    let groups = crate::crash_groups::group(&reports, &releases, &rollouts);
    Ok(Json(serde_json::json!({ "groups": groups })))
}
