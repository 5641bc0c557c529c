//! Starting rollouts and the operator's controls: pause, resume, halt, roll back.

use crate::auth::Operator;
use crate::error::{ApiResult, AppError};
use crate::fleet::{ActiveRollout, RolloutDoc};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ringfence_release::Version;
use ringfence_rollout::{GateSpec, Phase, RolloutSpec, RolloutState, Transition};
use ringfence_store::{PreflightStatus, RolloutRecord, now_ms};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    pub channel: String,
    pub version: String,
    /// Cumulative ring percentages, e.g. `1,10,50,100`; the first ring also takes `canary` tags.
    #[serde(default)]
    pub rings: Option<String>,
    /// Bake time per ring, seconds.
    #[serde(default)]
    pub bake_s: Option<f64>,
    #[serde(default)]
    pub gates: Option<GateSpec>,
    /// Roll out a version older than the one the channel's fleet runs (a deliberate
    /// downgrade); refused without it.
    #[serde(default)]
    pub force: bool,
}

/// Reads a start request, answering a body that is not one (a misspelt gate such as
/// `max_crash_per_agent`, a wrong type) with a 422 whose JSON says which field and why: a
/// misspelt gate silently taking its default is how a rollout runs with a gate nobody chose.
fn start_request(body: &[u8]) -> Result<StartRequest, AppError> {
    serde_json::from_slice(body).map_err(|e| {
        let status = if e.is_syntax() || e.is_eof() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        AppError::new(status, format!("not a rollout request: {e}"))
    })
}

/// Whether `wanted` is older than `running` (both semantic versions); versions that do not
/// parse are not compared.
fn older(wanted: &str, running: &str) -> bool {
    match (Version::parse(wanted), Version::parse(running)) {
        (Ok(wanted), Ok(running)) => wanted < running,
        _ => false,
    }
}

fn rollout_json(rollout: &ActiveRollout, revision: i64) -> serde_json::Value {
    let rings: Vec<_> = rollout
        .doc
        .spec
        .rings
        .iter()
        .enumerate()
        .map(|(i, ring)| {
            let status = match rollout.state.phase {
                Phase::Completed => "done",
                Phase::RolledBack if i <= rollout.state.ring => "rolled_back",
                Phase::Disabled if i <= rollout.state.ring => "disabled",
                _ if i < rollout.state.ring => "done",
                _ if i == rollout.state.ring => "baking",
                _ => "waiting",
            };
            serde_json::json!({
                "name": ring.name, "percent": ring.percent, "tags": ring.tags,
                "bake_ms": ring.bake_ms, "status": status,
            })
        })
        .collect();
    serde_json::json!({
        "id": rollout.id,
        "channel": rollout.channel,
        "version": rollout.version,
        "previous_version": rollout.doc.previous_version,
        "phase": rollout.state.phase,
        "ring": rollout.state.ring,
        "ring_name": rollout.doc.spec.rings.get(rollout.state.ring).map(|r| r.name.clone()),
        "rings": rings,
        "started_ms": rollout.state.started_ms,
        "ring_started_ms": rollout.state.ring_started_ms,
        "ended_ms": rollout.state.ended_ms,
        "reason": rollout.state.reason,
        "gates": rollout.state.gates,
        "ring_health": rollout.state.ring_health,
        "baseline": rollout.state.baseline,
        "history": rollout.state.history,
        "revision": revision,
    })
}

pub async fn start(
    State(state): State<AppState>,
    operator: Operator,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let request = start_request(&body)?;
    let release = state
        .store
        .release(&request.channel, &request.version)
        .await?
        .ok_or_else(|| {
            AppError::not_found(format!(
                "no release {}@{}",
                request.channel, request.version
            ))
        })?;
    if release.preflight == PreflightStatus::Rejected {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{}@{} was rejected by preflight and cannot be rolled out",
                request.channel, request.version
            ),
        ));
    }
    let bake_ms = (request.bake_s.unwrap_or(60.0).max(0.0) * 1000.0) as i64;
    let mut spec = match &request.rings {
        Some(rings) => {
            RolloutSpec::from_percentages(rings, bake_ms).map_err(AppError::bad_request)?
        }
        None => RolloutSpec::default_rings(bake_ms),
    };
    if let Some(gates) = request.gates {
        spec.gates = gates;
    }
    spec.validate().map_err(AppError::bad_request)?;

    let existing = state.store.rollouts().await?;
    let mut previous_version = None;
    for record in existing.iter().filter(|r| r.channel == request.channel) {
        let rollout = match ActiveRollout::from_record(record) {
            Ok(rollout) => rollout,
            Err(error) => {
                // An unreadable old rollout must not block the channel for good; the
                // controller skips it too.
                tracing::error!(rollout = %record.id, "skipping unreadable rollout: {error}");
                continue;
            }
        };
        if !rollout.state.phase.is_final() {
            return Err(AppError::conflict(format!(
                "rollout {} of {} is still {:?}; finish, halt and roll back, or complete it first",
                rollout.id, request.channel, rollout.state.phase
            )));
        }
        if previous_version.is_none() {
            // The newest finished rollout tells what the fleet runs now.
            previous_version = Some(match rollout.state.phase {
                Phase::Completed => Some(rollout.version.clone()),
                _ => rollout.doc.previous_version.clone(),
            });
        }
    }
    let previous_version = previous_version.flatten();
    if previous_version.as_deref() == Some(request.version.as_str()) {
        return Err(AppError::conflict(format!(
            "the fleet already runs {}@{}",
            request.channel, request.version
        )));
    }
    if let Some(running) = &previous_version
        && older(&request.version, running)
        && !request.force
    {
        return Err(AppError::conflict(format!(
            "{}@{} is older than {running}, which the channel's fleet runs; a downgrade needs \
             \"force\": true",
            request.channel, request.version
        )));
    }
    let agents = state.store.agents().await?;
    let id = format!("ro-{}", &crate::auth::new_token("")[..12]);
    let placeholder = ActiveRollout {
        id: id.clone(),
        channel: request.channel.clone(),
        version: request.version.clone(),
        doc: RolloutDoc {
            spec: spec.clone(),
            previous_version: previous_version.clone(),
        },
        state: RolloutState::start_first_release(now_ms()),
    };
    let rollout_state = if previous_version.is_some() {
        let fleet = crate::controller::fleet_health(&state, &placeholder, &agents).await?;
        RolloutState::start(now_ms(), &fleet, &spec.gates)
    } else {
        // Nothing ran on this channel before: no baseline to compare with (gates use their
        // absolute budgets), and a stop disables the channel instead of rolling back.
        RolloutState::start_first_release(now_ms())
    };
    let record = RolloutRecord {
        id: id.clone(),
        channel: request.channel.clone(),
        version: request.version.clone(),
        spec: serde_json::to_value(&placeholder.doc)
            .map_err(|e| AppError::internal("rollout", e))?,
        state: serde_json::to_value(&rollout_state)
            .map_err(|e| AppError::internal("rollout", e))?,
        revision: 0,
        created_at: 0,
        updated_at: 0,
    };
    state.store.insert_rollout(&record).await?;
    let preflight_note = match release.preflight {
        PreflightStatus::Skipped => " (preflight was skipped at publish)",
        _ => "",
    };
    state
        .store
        .audit(
            &operator.actor(),
            "start",
            &id,
            &format!(
                "{}@{} from {} through rings {}{preflight_note}",
                request.channel,
                request.version,
                previous_version.as_deref().unwrap_or("nothing"),
                spec.rings
                    .iter()
                    .map(|r| format!("{}%", r.percent))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
        )
        .await?;
    crate::controller::supersede_disable_plans(&state, &request.channel, &id, &operator.actor())
        .await?;
    state.fleet.refresh(&state.store).await?;
    let rollout = ActiveRollout {
        state: rollout_state,
        ..placeholder
    };
    Ok((StatusCode::CREATED, Json(rollout_json(&rollout, 0))))
}

pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
) -> ApiResult<Json<serde_json::Value>> {
    let mut rollouts = Vec::new();
    for record in state.store.rollouts().await? {
        // One unreadable rollout is listed as such; the others are still shown.
        rollouts.push(match ActiveRollout::from_record(&record) {
            Ok(rollout) => rollout_json(&rollout, record.revision),
            Err(error) => serde_json::json!({
                "id": record.id, "channel": record.channel, "version": record.version,
                "revision": record.revision, "error": error.to_string(),
            }),
        });
    }
    Ok(Json(serde_json::json!({ "rollouts": rollouts })))
}

pub async fn show(
    State(state): State<AppState>,
    _operator: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let record = state
        .store
        .rollout(&id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no rollout {id}")))?;
    Ok(Json(rollout_json(
        &ActiveRollout::from_record(&record)?,
        record.revision,
    )))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

pub async fn act(
    State(state): State<AppState>,
    operator: Operator,
    Path((id, action)): Path<(String, String)>,
    body: Option<Json<ActionRequest>>,
) -> ApiResult<Json<serde_json::Value>> {
    let reason = body
        .and_then(|Json(b)| b.reason)
        .unwrap_or_else(|| format!("{action} by {}", operator.actor()));
    let at_ms = now_ms();
    let record = state
        .store
        .rollout(&id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no rollout {id}")))?;
    let mut rollout = ActiveRollout::from_record(&record)?;
    let transition = match action.as_str() {
        "pause" => Transition::Pause { at_ms, reason },
        "resume" => Transition::Resume { at_ms, reason },
        "halt" => Transition::Halt { at_ms, reason },
        "rollback" => Transition::Rollback {
            at_ms,
            reason,
            // A first release has nothing to go back to: the channel is disabled instead.
            disable_channel: rollout.state.first_release,
        },
        other => {
            return Err(AppError::not_found(format!(
                "no action {other:?}; use pause, resume, halt or rollback"
            )));
        }
    };
    let phase = rollout.state.phase;
    let audit_reason = transition.reason(&rollout.doc.spec);
    if !rollout.state.apply(transition, &rollout.doc.spec) {
        return Err(AppError::conflict(format!(
            "cannot {action} a rollout that is {phase:?}"
        )));
    }
    let state_json =
        serde_json::to_value(&rollout.state).map_err(|e| AppError::internal("rollout", e))?;
    let revision = state
        .store
        .update_rollout_state(&id, record.revision, &state_json)
        .await?;
    let audit_action = transition_action(&rollout);
    state
        .store
        .audit(&operator.actor(), audit_action, &id, &audit_reason)
        .await?;
    if rollout.state.phase == Phase::Disabled {
        crate::controller::remediate_first_release(&state, &rollout, &audit_reason).await?;
    }
    state.fleet.refresh(&state.store).await?;
    Ok(Json(rollout_json(&rollout, revision)))
}

/// The audit action of the transition just applied (`halt_and_disable`, not `rollback`, for a
/// first release).
fn transition_action(rollout: &ActiveRollout) -> &'static str {
    rollout
        .state
        .history
        .last()
        .map_or("unknown", Transition::action)
}
