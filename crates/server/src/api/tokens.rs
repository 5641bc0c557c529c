//! Operator tokens over the API: create (with an optional lifetime), list, revoke. Every change
//! is audited. Tokens are looked up in the database on every request (never cached), so a
//! revoked token is refused on every replica from the next request on.

use crate::auth::Operator;
use crate::error::{ApiResult, AppError};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ringfence_store::{Revocation, TokenRecord};
use serde::Deserialize;
use std::time::Duration;

/// The longest lifetime a token may be given: ten years (beyond that, ask for none).
const MAX_TTL_S: u64 = 10 * 365 * 86_400;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub label: String,
    /// Seconds until it expires; none: never.
    #[serde(default)]
    pub ttl_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub reason: String,
}

/// A token as operators see it: never the hash beyond its id.
pub fn token_json(token: &TokenRecord) -> serde_json::Value {
    let now = ringfence_store::now_ms();
    let state = if token.revoked_at.is_some() {
        "revoked"
    } else if token.expires_at.is_some_and(|at| at <= now) {
        "expired"
    } else {
        "active"
    };
    serde_json::json!({
        "id": token.id(),
        "label": token.label,
        "state": state,
        "created_at_ms": token.created_at,
        "expires_at_ms": token.expires_at,
        "revoked_at_ms": token.revoked_at,
    })
}

fn valid_label(label: &str) -> bool {
    !label.trim().is_empty() && label.len() <= 128 && !label.chars().any(char::is_control)
}

pub async fn create(
    State(state): State<AppState>,
    operator: Operator,
    Json(request): Json<CreateRequest>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    if !valid_label(&request.label) {
        return Err(AppError::bad_request(
            "a label of 1–128 printable characters is required",
        ));
    }
    let ttl = match request.ttl_s {
        Some(0) => return Err(AppError::bad_request("ttl_s must be positive")),
        Some(s) if s > MAX_TTL_S => {
            return Err(AppError::bad_request(format!(
                "ttl_s is at most {MAX_TTL_S} (ten years); omit it for a token that does not expire"
            )));
        }
        other => other.map(Duration::from_secs),
    };
    let token =
        crate::create_operator_token_with(&state.store, &request.label, ttl, &operator.actor())
            .await
            .map_err(|error| match error {
                crate::ServerError::Store(error) => AppError::from(error),
                other => AppError::internal("create token", other),
            })?;
    let id = &crate::auth::hash_token(&token)[..ringfence_store::TOKEN_ID_LEN];
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": id, "label": request.label, "token": token })),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
) -> ApiResult<Json<serde_json::Value>> {
    let tokens: Vec<_> = state
        .store
        .operator_tokens()
        .await?
        .iter()
        .map(token_json)
        .collect();
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

pub async fn revoke(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    Json(request): Json<RevokeRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    if request.reason.trim().is_empty() || request.reason.len() > 1024 {
        return Err(AppError::bad_request(
            "a reason of 1–1024 bytes is required",
        ));
    }
    match state
        .store
        .revoke_operator_token(&id, &operator.actor(), &request.reason)
        .await?
    {
        Revocation::Done(token) => Ok(Json(token_json(&token))),
        Revocation::Already(token) => Err(AppError::conflict(format!(
            "token {} was already revoked",
            token.id()
        ))),
        Revocation::Unknown => Err(AppError::not_found(format!(
            "no operator token {id} (ids are the {} hex digits `token list` shows)",
            ringfence_store::TOKEN_ID_LEN
        ))),
    }
}
