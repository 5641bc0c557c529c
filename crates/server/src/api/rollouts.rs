//! Starting rollouts and the operator's controls: pause, resume, halt, roll back, promote (end
//! a ring's bake early, never its gates), retry (a new rollout of a stopped one's spec) and
//! enforce (a completed audit rollout's release, enforced through the same rings).

use crate::auth::Operator;
use crate::error::{ApiResult, AppError};
use crate::fleet::{ActiveRollout, RolloutDoc};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ringfence_protocol::Enforcement;
use ringfence_release::Version;
use ringfence_rollout::{
    GateSpec, Phase, PromoteRefused, RolloutSpec, RolloutState, Transition, promote_now,
};
use ringfence_store::{PreflightStatus, RolloutRecord, StoreError, now_ms};
use serde::Deserialize;

use super::progress::{Placements, RingAdoption, adoption, gate_series};

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
    /// `audit`: hosts given the release decide, log and report "would deny" but block
    /// nothing; `ringfence rollout enforce` enforces it once the rollout completes.
    #[serde(default)]
    pub mode: Enforcement,
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

/// Finished rollouts past the newest this many are listed without adoption: each costs a hash
/// per host, and a dashboard lists every rollout every second.
const ADOPTION_LISTED: usize = 10;

/// How long an operator's action is judged and written again before a rollout that keeps
/// changing under it is reported as a conflict. The controller writes a rollout about once a
/// second, so one more attempt nearly always wins; two seconds of losing means something else
/// writes it without pause.
const ACTION_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// A rollout as the API shows it; each ring carries `hosts` and `on_release` when `adoption`
/// was computed.
fn rollout_json(
    rollout: &ActiveRollout,
    revision: i64,
    adoption: Option<&[RingAdoption]>,
) -> serde_json::Value {
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
            let mut json = serde_json::json!({
                "name": ring.name, "percent": ring.percent, "tags": ring.tags,
                "bake_ms": ring.bake_ms, "status": status,
            });
            if let Some(adoption) = adoption.and_then(|a| a.get(i)) {
                json["hosts"] = adoption.hosts.into();
                json["on_release"] = adoption.on_release.into();
            }
            json
        })
        .collect();
    serde_json::json!({
        "id": rollout.id,
        "channel": rollout.channel,
        "version": rollout.version,
        "previous_version": rollout.doc.previous_version,
        "mode": rollout.doc.mode,
        "enforces": rollout.doc.enforces,
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
    let bake_ms = (request.bake_s.unwrap_or(60.0).max(0.0) * 1000.0) as i64;
    let mut spec = match &request.rings {
        Some(rings) => RolloutSpec::from_percentages(rings, bake_ms)
            .map_err(|e| AppError::bad_request(e.to_string()))?,
        None => RolloutSpec::default_rings(bake_ms),
    };
    if let Some(gates) = request.gates {
        spec.gates = gates;
    }
    spec.validate()
        .map_err(|e| AppError::bad_request(e.to_string()))?;
    let rollout = launch(
        &state,
        &operator.actor(),
        Launch {
            channel: request.channel,
            version: request.version,
            spec,
            force: request.force,
            retry_of: None,
            reason: None,
            mode: request.mode,
            enforces: None,
        },
    )
    .await?;
    let hosts = Placements::of(&state.store.agents().await?);
    Ok((
        StatusCode::CREATED,
        Json(rollout_json(&rollout, 0, Some(&adoption(&rollout, &hosts)))),
    ))
}

/// A rollout about to start: from a start request, or from a stopped rollout being retried.
struct Launch {
    channel: String,
    version: String,
    spec: RolloutSpec,
    /// A deliberate downgrade.
    force: bool,
    /// The stopped rollout this one retries, with the revision it was read at.
    retry_of: Option<(ActiveRollout, i64)>,
    /// The operator's reason, for the audit log.
    reason: Option<String>,
    mode: Enforcement,
    /// The completed audit rollout whose release this one enforces.
    enforces: Option<String>,
}

/// Starts a rollout under the same rules whatever asked for it: the release exists and passed
/// preflight, nothing else runs on the channel, the fleet does not run it already, and an older
/// version needs `force`. A retried rollout that is only halted is rolled back first (it holds
/// the channel), and only once every rule has passed.
async fn launch(state: &AppState, actor: &str, launch: Launch) -> ApiResult<ActiveRollout> {
    let Launch {
        channel,
        version,
        spec,
        force,
        retry_of,
        reason,
        mode,
        enforces,
    } = launch;
    let release = state
        .store
        .release(&channel, &version)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no release {channel}@{version}")))?;
    if release.preflight == PreflightStatus::Rejected {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{channel}@{version} was rejected by preflight and cannot be rolled out"),
        ));
    }
    let retried_id = retry_of.as_ref().map(|(old, _)| old.id.as_str());
    let existing = state.store.rollouts().await?;
    let mut previous_version = None;
    let mut previous_mode = Enforcement::Enforce;
    for record in existing
        .iter()
        .filter(|r| r.channel == channel && Some(r.id.as_str()) != retried_id)
    {
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
                "rollout {} of {channel} is still {:?}; finish, halt and roll back, or complete it first",
                rollout.id, rollout.state.phase
            )));
        }
        if previous_version.is_none() {
            // The newest finished rollout tells what the fleet runs now, and in which mode.
            let (version, mode) = match rollout.state.phase {
                Phase::Completed => (Some(rollout.version.clone()), rollout.doc.mode),
                _ => (
                    rollout.doc.previous_version.clone(),
                    rollout.doc.previous_mode,
                ),
            };
            previous_version = Some(version);
            previous_mode = mode;
        }
    }
    // A retried rollout was stopped, so the fleet runs what it found: the channel's state
    // before it, unless an older finished rollout says otherwise (read above).
    let previous_version = match previous_version {
        Some(previous) => previous,
        None => {
            if let Some((old, _)) = &retry_of {
                previous_mode = old.doc.previous_mode;
            }
            retry_of
                .as_ref()
                .and_then(|(old, _)| old.doc.previous_version.clone())
        }
    };
    // The one way to roll out what the fleet runs already: enforcing it after an audit.
    let enforcing_audited = previous_mode.is_audit() && !mode.is_audit();
    if previous_version.as_deref() == Some(version.as_str()) && !enforcing_audited {
        let how = if previous_mode.is_audit() {
            " in audit mode"
        } else {
            ""
        };
        return Err(AppError::conflict(format!(
            "the fleet already runs {channel}@{version}{how}"
        )));
    }
    if let Some(running) = &previous_version
        && older(&version, running)
        && !force
    {
        return Err(AppError::conflict(format!(
            "{channel}@{version} is older than {running}, which the channel's fleet runs; a \
             downgrade needs \"force\": true"
        )));
    }
    let id = format!("ro-{}", &crate::auth::new_token("")[..12]);
    // The halted rollout is rolled back before the new one is written: the other order would
    // put two unfinished rollouts on one channel. If the insert then fails, the old one stays
    // rolled back, which is what the operator asked for first.
    if let Some((old, revision)) = retry_of.as_ref()
        && old.state.phase == Phase::Halted
    {
        roll_back_for_retry(state, actor, old.clone(), *revision, &id, reason.as_deref()).await?;
    }
    let agents = state.store.agents().await?;
    let placeholder = ActiveRollout {
        id: id.clone(),
        channel: channel.clone(),
        version: version.clone(),
        doc: RolloutDoc {
            spec: spec.clone(),
            previous_version: previous_version.clone(),
            mode,
            previous_mode,
            enforces: enforces.clone(),
        },
        state: RolloutState::start_first_release(now_ms()),
    };
    let rollout_state = if previous_version.is_some() {
        let fleet = crate::controller::fleet_health(state, &placeholder, &agents).await?;
        RolloutState::start(now_ms(), &fleet, &spec.gates)
    } else {
        // Nothing ran on this channel before: no baseline to compare with (gates use their
        // absolute budgets), and a stop disables the channel instead of rolling back.
        RolloutState::start_first_release(now_ms())
    };
    let record = RolloutRecord {
        id: id.clone(),
        channel: channel.clone(),
        version: version.clone(),
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
    let retry_note = match (retried_id, &reason) {
        (Some(old), Some(reason)) => format!("; a retry of {old}: {reason}"),
        (Some(old), None) => format!("; a retry of {old}"),
        (None, _) => String::new(),
    };
    let mode_note = match (&enforces, mode) {
        (Some(audit), _) => format!("; enforces what audit rollout {audit} brought"),
        (None, Enforcement::Audit) => "; in audit mode (nothing is blocked)".to_owned(),
        (None, Enforcement::Enforce) => String::new(),
    };
    state
        .store
        .audit(
            actor,
            "start",
            &id,
            &format!(
                "{channel}@{version} from {} through rings {}{preflight_note}{retry_note}{mode_note}",
                previous_version.as_deref().unwrap_or("nothing"),
                spec.rings
                    .iter()
                    .map(|r| format!("{}%", r.percent))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
        )
        .await?;
    crate::controller::supersede_disable_plans(state, &channel, &id, actor).await?;
    state.fleet.refresh(&state.store).await?;
    Ok(ActiveRollout {
        state: rollout_state,
        ..placeholder
    })
}

/// Rolls a halted rollout back because `retry_id` replaces it: a halted rollout holds its
/// channel, and the retry starts over from the first ring. Audited like an operator's
/// rollback; a concurrent change of the old rollout makes the retry fail with a conflict.
async fn roll_back_for_retry(
    state: &AppState,
    actor: &str,
    mut old: ActiveRollout,
    revision: i64,
    retry_id: &str,
    reason: Option<&str>,
) -> ApiResult<()> {
    let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
    let transition = Transition::Rollback {
        at_ms: now_ms(),
        reason: format!("retried as {retry_id} by {actor}{why}"),
        disable_channel: old.state.first_release,
    };
    let audit_reason = transition.reason(&old.doc.spec);
    if !old.state.apply(transition, &old.doc.spec) {
        return Err(AppError::conflict(format!(
            "cannot roll back rollout {} for a retry: it is {:?}",
            old.id, old.state.phase
        )));
    }
    let state_json =
        serde_json::to_value(&old.state).map_err(|e| AppError::internal("rollout", e))?;
    state
        .store
        .update_rollout_state(&old.id, revision, &state_json)
        .await?;
    state
        .store
        .audit(actor, transition_action(&old), &old.id, &audit_reason)
        .await?;
    if old.state.phase == Phase::Disabled {
        crate::controller::remediate_first_release(state, &old, &audit_reason).await?;
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Needed when the retried version is now older than what the channel's fleet runs.
    #[serde(default)]
    pub force: bool,
    /// Why; recorded in the audit log.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/v1/rollouts/{id}/retry`: a new rollout of a halted, rolled-back or disabled
/// rollout's channel, version and spec (rings, bake, gates), from the first ring, under every
/// rule a start has. A running, paused or completed rollout is refused with a conflict.
pub async fn retry(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    body: Option<Json<RetryRequest>>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let RetryRequest { force, reason } = body.map(|Json(b)| b).unwrap_or_default();
    let record = state
        .store
        .rollout(&id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no rollout {id}")))?;
    let old = ActiveRollout::from_record(&record)?;
    match old.state.phase {
        Phase::Halted | Phase::RolledBack | Phase::Disabled => {}
        Phase::Running | Phase::Paused => {
            return Err(AppError::conflict(format!(
                "rollout {id} is still {:?}; only a halted or rolled-back rollout can be \
                 retried (halt or abort it first)",
                old.state.phase
            )));
        }
        Phase::Completed => {
            return Err(AppError::conflict(format!(
                "rollout {id} completed; there is nothing to retry"
            )));
        }
    }
    let rollout = launch(
        &state,
        &operator.actor(),
        Launch {
            channel: old.channel.clone(),
            version: old.version.clone(),
            spec: old.doc.spec.clone(),
            force,
            mode: old.doc.mode,
            enforces: old.doc.enforces.clone(),
            retry_of: Some((old, record.revision)),
            reason,
        },
    )
    .await?;
    let hosts = Placements::of(&state.store.agents().await?);
    Ok((
        StatusCode::CREATED,
        Json(rollout_json(&rollout, 0, Some(&adoption(&rollout, &hosts)))),
    ))
}

/// `POST /api/v1/rollouts/{id}/enforce`: a completed audit rollout's release, enforced — a
/// new rollout of the same channel, version and spec in `enforce` mode, from the first ring,
/// under every rule a start has; hosts not reached yet keep running the release in audit
/// mode. Refused with a conflict while the audit rollout has not completed, for a rollout
/// that enforces already, and once the channel has moved on (enforced, or another release).
pub async fn enforce(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    body: Option<Json<ActionRequest>>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let reason = body.and_then(|Json(b)| b.reason);
    let record = state
        .store
        .rollout(&id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no rollout {id}")))?;
    let audited = ActiveRollout::from_record(&record)?;
    if !audited.doc.mode.is_audit() {
        return Err(AppError::conflict(format!(
            "rollout {id} enforces {}@{} already; only an audit rollout can be enforced",
            audited.channel, audited.version
        )));
    }
    if audited.state.phase != Phase::Completed {
        return Err(AppError::conflict(format!(
            "audit rollout {id} is {:?}; it must complete (every ring decided in audit mode              with its gates passing) before its release is enforced",
            audited.state.phase
        )));
    }
    // The channel must still run what this audit rollout brought: the newest rollout of the
    // channel is this one. Otherwise it was enforced already or another release followed.
    let newest = state
        .store
        .rollouts()
        .await?
        .into_iter()
        .find(|r| r.channel == audited.channel);
    if let Some(newer) = newest.filter(|r| r.id != id) {
        let enforced_by = ActiveRollout::from_record(&newer)
            .ok()
            .filter(|r| r.doc.enforces.as_deref() == Some(id.as_str()));
        return Err(AppError::conflict(match enforced_by {
            Some(by) => format!(
                "audit rollout {id} is enforced already, by rollout {} ({:?})",
                by.id, by.state.phase
            ),
            None => format!(
                "the channel {} has moved on since audit rollout {id}: rollout {} ({}@{})",
                audited.channel, newer.id, newer.channel, newer.version
            ),
        }));
    }
    let rollout = launch(
        &state,
        &operator.actor(),
        Launch {
            channel: audited.channel.clone(),
            version: audited.version.clone(),
            spec: audited.doc.spec.clone(),
            force: false,
            retry_of: None,
            reason: reason.clone(),
            mode: Enforcement::Enforce,
            enforces: Some(id.clone()),
        },
    )
    .await?;
    let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
    state
        .store
        .audit(
            &operator.actor(),
            "enforce",
            &id,
            &format!(
                "{}@{} audited; enforced by rollout {}{why}",
                audited.channel, audited.version, rollout.id
            ),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(rollout_json(&rollout, 0, None))))
}

pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
) -> ApiResult<Json<serde_json::Value>> {
    state.heartbeats.flush(&state.store).await?;
    let hosts = Placements::of(&state.store.agents().await?);
    let mut rollouts = Vec::new();
    // Newest first.
    for (i, record) in state.store.rollouts().await?.into_iter().enumerate() {
        // One unreadable rollout is listed as such; the others are still shown.
        rollouts.push(match ActiveRollout::from_record(&record) {
            Ok(rollout) => {
                let adoption = (i < ADOPTION_LISTED || !rollout.state.phase.is_final())
                    .then(|| adoption(&rollout, &hosts));
                rollout_json(&rollout, record.revision, adoption.as_deref())
            }
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
    let rollout = ActiveRollout::from_record(&record)?;
    state.heartbeats.flush(&state.store).await?;
    let hosts = Placements::of(&state.store.agents().await?);
    let mut json = rollout_json(&rollout, record.revision, Some(&adoption(&rollout, &hosts)));
    // One rollout in detail carries its gates over time too (the list leaves them to
    // `/gates`: every rollout's history every second would be most of the database).
    let history = gate_series(state.store.gate_samples(&id).await?);
    json["gate_history"] =
        serde_json::to_value(history).map_err(|e| AppError::internal("rollout", e))?;
    Ok(Json(json))
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
    // The controller rewrites every running rollout each tick (gates, bake, ring). An action
    // that lost the race to one of those writes is judged again on what was written: a halt in
    // between refuses the promote, a tick that only sampled gates lets it through.
    let first_attempt = std::time::Instant::now();
    let (rollout, revision, audit_reason) = loop {
        let at_ms = now_ms();
        let record = state
            .store
            .rollout(&id)
            .await?
            .ok_or_else(|| AppError::not_found(format!("no rollout {id}")))?;
        let mut rollout = ActiveRollout::from_record(&record)?;
        let reason = reason.clone();
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
            "promote" => promote(&state, &rollout, at_ms, reason).await?,
            other => {
                return Err(AppError::not_found(format!(
                    "no action {other:?}; use pause, resume, halt, rollback or promote"
                )));
            }
        };
        let phase = rollout.state.phase;
        let audit_reason = transition.reason(&rollout.doc.spec);
        if !rollout.state.apply(transition, &rollout.doc.spec) {
            // In words an operator reads on the dashboard and in the CLI.
            let why = if phase.is_final() {
                format!("it has already finished ({})", phase.word())
            } else {
                format!("it is {}", phase.word())
            };
            return Err(AppError::conflict(format!(
                "cannot {action} rollout {id}: {why}"
            )));
        }
        let state_json =
            serde_json::to_value(&rollout.state).map_err(|e| AppError::internal("rollout", e))?;
        match state
            .store
            .update_rollout_state(&id, record.revision, &state_json)
            .await
        {
            Ok(revision) => break (rollout, revision, audit_reason),
            Err(StoreError::Conflict(_)) if first_attempt.elapsed() < ACTION_RETRY_FOR => {}
            Err(error) => return Err(error.into()),
        }
    };
    let audit_action = transition_action(&rollout);
    state
        .store
        .audit(&operator.actor(), audit_action, &id, &audit_reason)
        .await?;
    if rollout.state.phase == Phase::Disabled {
        crate::controller::remediate_first_release(&state, &rollout, &audit_reason).await?;
    }
    state.fleet.refresh(&state.store).await?;
    let hosts = Placements::of(&state.store.agents().await?);
    Ok(Json(rollout_json(
        &rollout,
        revision,
        Some(&adoption(&rollout, &hosts)),
    )))
}

/// An operator's promote, judged by the rollout's gates on the fleet's health now (heartbeats
/// buffered on this replica included): a refusal is a conflict that names each failing gate.
async fn promote(
    state: &AppState,
    rollout: &ActiveRollout,
    at_ms: i64,
    reason: String,
) -> ApiResult<Transition> {
    state.heartbeats.flush(&state.store).await?;
    let agents = state.store.agents().await?;
    let fleet = crate::controller::fleet_health(state, rollout, &agents).await?;
    promote_now(
        &rollout.doc.spec,
        &rollout.state,
        &rollout.id,
        &rollout.version,
        at_ms,
        &fleet,
        reason,
    )
    .map_err(|refused| {
        let advice = match refused {
            PromoteRefused::Phase(_) => "",
            PromoteRefused::Gates { .. } => "; the bake goes on and the controller decides",
        };
        AppError::conflict(format!(
            "cannot promote rollout {}: {refused}{advice}",
            rollout.id
        ))
    })
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
