//! Remediation plans for operators: write one, list them, retire one.
//!
//! A plan overrides rollouts on its channel, so a pin obeys the rules a rollout does: the
//! release passed preflight, is signed by a key the agents trust, and is not older than the
//! channel's rollback floor (what a rollback of its newest rollout would go back to: each pin
//! below that ships a signed rollback directive, a downgrade licence). An operator may force a
//! pin past those rules (`force: true`): the plan is stored with every rule it broke, and the
//! audit row (`remediation_forced`) and a warning in the log say so.

use crate::auth::Operator;
use crate::error::{ApiResult, AppError};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ringfence_release::Version;
use ringfence_store::{PreflightStatus, RemediationRecord};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// `fleet`, `agent:<id>` or `tag:<tag>`.
    pub scope: String,
    pub channel: String,
    /// `pin`, `disable` or `audit` (follow rollouts, in audit mode).
    pub action: String,
    #[serde(default)]
    pub version: Option<String>,
    pub reason: String,
    /// Pin even a release that breaks the rules a rollout obeys; audited loudly.
    #[serde(default)]
    pub force: bool,
}

/// The oldest version a pin on `channel` may go to without force: the version a rollback of
/// the channel's newest rollout would restore (its first version when it had none before).
/// `None`: no rollout ever ran on it, so hosts run nothing from it the rules could protect.
fn rollback_floor(state: &AppState, channel: &str) -> Option<String> {
    let rollout = state
        .fleet
        .rollouts()
        .into_iter()
        .find(|r| r.channel == channel)?;
    Some(rollout.doc.previous_version.unwrap_or(rollout.version))
}

/// Every rule a pin to `release` breaks, in words; empty when it may go out.
async fn pin_violations(
    state: &AppState,
    release: &ringfence_store::ReleaseRecord,
) -> ApiResult<Vec<String>> {
    let mut broken = Vec::new();
    match release.preflight {
        PreflightStatus::Passed => {}
        PreflightStatus::Rejected => broken.push(format!(
            "preflight rejected it ({})",
            release
                .preflight_report
                .as_ref()
                .and_then(|r| r.get("reason"))
                .and_then(|r| r.as_str())
                .unwrap_or("no reason recorded")
        )),
        PreflightStatus::Skipped => broken.push("it was published without preflight".to_owned()),
    }
    // Verified again from the stored bundle: which keys signed it, and who trusts them.
    let bundle = state
        .store
        .blob(&release.bundle_sha256)
        .await?
        .ok_or_else(|| AppError::internal("pin", "the release's bundle is missing"))?;
    match state.authority.verify_bundle(&bundle) {
        Ok(bundle) => {
            let (refusing, agents) =
                crate::preflight::agents_refusing(state, &bundle.signed_by).await?;
            if refusing > 0 {
                broken.push(format!(
                    "{refusing} of {agents} agents do not trust the key that signed it"
                ));
            }
        }
        Err(reason) => broken.push(format!(
            "the server no longer trusts its signature ({reason})"
        )),
    }
    if let Some(floor) = rollback_floor(state, &release.channel) {
        let older = match (Version::parse(&release.version), Version::parse(&floor)) {
            (Ok(pin), Ok(floor)) => pin < floor,
            // Versions that do not parse cannot be ordered: treat as a downgrade.
            _ => true,
        };
        if older {
            broken.push(format!(
                "{} is older than the channel's rollback floor {floor}",
                release.version
            ));
        }
    }
    Ok(broken)
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
    let mut forced = Vec::new();
    match (request.action.as_str(), &request.version) {
        ("pin", Some(version)) => {
            let release = state
                .store
                .release(&request.channel, version)
                .await?
                .ok_or_else(|| {
                    AppError::not_found(format!("no release {}@{version}", request.channel))
                })?;
            let broken = pin_violations(&state, &release).await?;
            if !broken.is_empty() && !request.force {
                return Err(AppError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "refusing to pin {}@{version}: {}; force it (`force: true`, \
                         `--force`) only if you know why, it is audited",
                        request.channel,
                        broken.join("; ")
                    ),
                ));
            }
            forced = broken;
        }
        ("pin", None) => return Err(AppError::bad_request("`pin` needs a version")),
        // `audit` keeps the host on what rollouts assign, in audit mode: it decides and
        // reports "would deny" but blocks nothing on the channel's releases.
        ("disable" | "audit", None) => {
            let known = state
                .store
                .releases()
                .await?
                .iter()
                .any(|r| r.channel == request.channel);
            if !known {
                return Err(AppError::not_found(format!(
                    "no channel {:?}: no release was ever published on it",
                    request.channel
                )));
            }
        }
        ("disable" | "audit", Some(_)) => {
            return Err(AppError::bad_request(format!(
                "`{}` takes no version",
                request.action
            )));
        }
        (other, _) => {
            return Err(AppError::bad_request(format!(
                "unknown action {other:?}; use pin, disable or audit"
            )));
        }
    }
    let reason = if forced.is_empty() {
        request.reason
    } else {
        format!(
            "FORCED past the rollout rules ({}): {}",
            forced.join("; "),
            request.reason
        )
    };
    let plan = RemediationRecord {
        id: format!("rm-{}", &crate::auth::new_token("")[..12]),
        scope: request.scope,
        channel: request.channel,
        action: request.action,
        version: request.version,
        reason,
        created_by: operator.actor(),
        created_at: ringfence_protocol::clock::unix_ms(),
        active: true,
    };
    state.store.insert_remediation(&plan).await?;
    let action = if forced.is_empty() {
        "remediation"
    } else {
        tracing::warn!(plan = %plan.id, operator = %operator.actor(), "remediation forced past the rollout rules: {}", plan.reason);
        "remediation_forced"
    };
    state
        .store
        .audit(&operator.actor(), action, &plan.id, &plan.reason)
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
