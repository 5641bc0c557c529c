//! Remediation plans for operators: write one, list them, retire one.

use crate::auth::Operator;
use crate::error::{ApiResult, AppError};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ringfence_store::RemediationRecord;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// `fleet`, `agent:<id>` or `tag:<tag>`.
    pub scope: String,
    pub channel: String,
    /// `pin` or `disable`.
    pub action: String,
    #[serde(default)]
    pub version: Option<String>,
    pub reason: String,
}

fn valid_scope(scope: &str) -> bool {
    scope == "fleet"
        || scope
            .strip_prefix("agent:")
            .is_some_and(|id| !id.is_empty() && id.len() <= 64)
        || scope
            .strip_prefix("tag:")
            .is_some_and(|tag| !tag.is_empty() && tag.len() <= 64)
}

pub async fn create(
    State(state): State<AppState>,
    operator: Operator,
    Json(request): Json<PlanRequest>,
) -> ApiResult<(StatusCode, Json<RemediationRecord>)> {
    if !valid_scope(&request.scope) {
        return Err(AppError::bad_request(
            "scope is `fleet`, `agent:<id>` or `tag:<tag>`",
        ));
    }
    if request.reason.trim().is_empty() || request.reason.len() > 1024 {
        return Err(AppError::bad_request(
            "a reason of 1–1024 bytes is required",
        ));
    }
    match (request.action.as_str(), &request.version) {
        ("pin", Some(version)) => {
            if state
                .store
                .release(&request.channel, version)
                .await?
                .is_none()
            {
                return Err(AppError::not_found(format!(
                    "no release {}@{version}",
                    request.channel
                )));
            }
        }
        ("pin", None) => return Err(AppError::bad_request("`pin` needs a version")),
        ("disable", None) => {}
        ("disable", Some(_)) => return Err(AppError::bad_request("`disable` takes no version")),
        (other, _) => {
            return Err(AppError::bad_request(format!(
                "unknown action {other:?}; use pin or disable"
            )));
        }
    }
    let plan = RemediationRecord {
        id: format!("rm-{}", &crate::auth::new_token("")[..12]),
        scope: request.scope,
        channel: request.channel,
        action: request.action,
        version: request.version,
        reason: request.reason,
        created_by: operator.actor(),
        created_at: 0,
        active: true,
    };
    state.store.insert_remediation(&plan).await?;
    state
        .store
        .audit(&operator.actor(), "remediation", &plan.id, &plan.reason)
        .await?;
    state.fleet.refresh(&state.store).await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
) -> ApiResult<Json<serde_json::Value>> {
    let plans = state.store.active_remediations().await?;
    Ok(Json(serde_json::json!({ "remediations": plans })))
}

pub async fn retire(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    if !state.store.retire_remediation(&id).await? {
        return Err(AppError::not_found(format!("no active remediation {id}")));
    }
    state
        .store
        .audit(
            &operator.actor(),
            "retire_remediation",
            &id,
            "retired by an operator",
        )
        .await?;
    state.fleet.refresh(&state.store).await?;
    Ok(Json(serde_json::json!({ "retired": id })))
}
