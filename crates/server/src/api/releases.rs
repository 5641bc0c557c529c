//! Publishing releases (verify, preflight, store) and serving their bundles.

use crate::auth::{Caller, Operator};
use crate::error::{ApiResult, AppError};
use crate::preflight;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use ringfence_store::{PreflightStatus, ReleaseRecord};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishQuery {
    /// For demos and emergencies; recorded in the audit log.
    #[serde(default)]
    pub skip_preflight: bool,
}

fn release_json(release: &ReleaseRecord) -> serde_json::Value {
    serde_json::json!({
        "channel": release.channel,
        "version": release.version,
        "manifest": release.manifest,
        "bundle_sha256": release.bundle_sha256,
        "published_at_ms": release.published_at,
        "preflight": release.preflight,
        "preflight_report": release.preflight_report,
    })
}

pub async fn publish(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<PublishQuery>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let bundle = state.authority.verify_bundle(&body).map_err(|reason| {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("bundle refused: {reason}"),
        )
    })?;
    if state
        .store
        .release(&bundle.channel, &bundle.version)
        .await?
        .is_some()
    {
        return Err(AppError::conflict(format!(
            "release {}@{} already exists; versions are immutable",
            bundle.channel, bundle.version
        )));
    }
    let (status, report) = if query.skip_preflight {
        (PreflightStatus::Skipped, None)
    } else {
        let outcome = preflight::run(&state, &bundle).await?;
        (outcome.status, Some(outcome.evidence))
    };
    let bundle_sha256 = hex::encode(Sha256::digest(&body));
    state.store.put_blob(&bundle_sha256, &body).await?;
    let record = ReleaseRecord {
        channel: bundle.channel.clone(),
        version: bundle.version.clone(),
        manifest: bundle.manifest.clone(),
        bundle_sha256,
        published_at: 0,
        preflight: status,
        preflight_report: report,
    };
    state.store.insert_release(&record).await?;
    let subject = format!("{}@{}", record.channel, record.version);
    let (action, reason) = match status {
        PreflightStatus::Passed => ("publish", "preflight passed".to_owned()),
        PreflightStatus::Skipped => (
            "publish_skip_preflight",
            "published with --skip-preflight".to_owned(),
        ),
        PreflightStatus::Rejected => (
            "preflight_reject",
            record
                .preflight_report
                .as_ref()
                .and_then(|r| r.get("reason"))
                .and_then(|r| r.as_str())
                .unwrap_or("preflight failed")
                .to_owned(),
        ),
    };
    state
        .store
        .audit(&operator.actor(), action, &subject, &reason)
        .await?;
    state.fleet.refresh(&state.store).await?;
    let stored = state
        .store
        .release(&record.channel, &record.version)
        .await?
        .ok_or_else(|| AppError::internal("publish", "release vanished after insert"))?;
    if status == PreflightStatus::Rejected {
        state
            .metrics
            .preflight_rejections
            .fetch_add(1, Ordering::Relaxed);
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(release_json(&stored)),
        ));
    }
    state
        .metrics
        .releases_published
        .fetch_add(1, Ordering::Relaxed);
    Ok((StatusCode::CREATED, Json(release_json(&stored))))
}

pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
) -> ApiResult<Json<serde_json::Value>> {
    let releases: Vec<_> = state
        .store
        .releases()
        .await?
        .iter()
        .map(release_json)
        .collect();
    Ok(Json(serde_json::json!({ "releases": releases })))
}

pub async fn show(
    State(state): State<AppState>,
    _operator: Operator,
    Path((channel, version)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let release = state
        .store
        .release(&channel, &version)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no release {channel}@{version}")))?;
    Ok(Json(release_json(&release)))
}

pub async fn blob(
    State(state): State<AppState>,
    _caller: Caller,
    Path(sha256): Path<String>,
) -> ApiResult<impl IntoResponse> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::bad_request("blob names are 64 hex digits"));
    }
    let bytes = state
        .store
        .blob(&sha256)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no blob {sha256}")))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}
