//! What operators do to one agent: look at it, and decommission it. Decommissioning keeps the
//! agent's row and history, takes its credential away (its client certificate proves nothing
//! without one, so both are dead), drops it from this replica's credential cache at once (other
//! replicas within a second, `revocation.rs`), and marks it so rollout gates leave it out.

use crate::auth::Operator;
use crate::error::{ApiResult, AppError};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use ringfence_store::{AgentRecord, Decommission};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecommissionRequest {
    pub reason: String,
}

pub fn agent_json(agent: &AgentRecord) -> serde_json::Value {
    serde_json::json!({
        "id": agent.id,
        "hostname": agent.hostname,
        "tags": agent.tags,
        "enrolled_at_ms": agent.enrolled_at,
        "last_seen_at_ms": agent.last_seen_at,
        "client_cert_issued_at_ms": agent.client_cert_issued_at,
        "decommissioned_at_ms": agent.decommissioned_at,
        "status": agent.status,
    })
}

pub async fn show(
    State(state): State<AppState>,
    _operator: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    state.heartbeats.flush(&state.store).await?;
    let agent = state
        .store
        .agent(&id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no agent {id}")))?;
    Ok(Json(agent_json(&agent)))
}

pub async fn decommission(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    Json(request): Json<DecommissionRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    if request.reason.trim().is_empty() || request.reason.len() > 1024 {
        return Err(AppError::bad_request(
            "a reason of 1–1024 bytes is required",
        ));
    }
    let outcome = state
        .store
        .decommission_agent(&id, &operator.actor(), &request.reason)
        .await?;
    // Dropped even when it was decommissioned before: a cache filled by a request that raced
    // the first decommission must not outlive this call either.
    crate::revocation::forget_agent(&state, &id);
    match outcome {
        Decommission::Done(agent) => {
            tracing::info!(agent = %id, reason = %request.reason, "agent decommissioned");
            Ok(Json(agent_json(&agent)))
        }
        Decommission::Already(agent) => Err(AppError::conflict(format!(
            "agent {} was already decommissioned (at {} ms)",
            agent.id,
            agent.decommissioned_at.unwrap_or_default()
        ))),
        Decommission::Unknown => Err(AppError::not_found(format!("no agent {id}"))),
    }
}
