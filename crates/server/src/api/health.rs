//! Liveness, metrics, the OpenAPI document and the CA certificate: the unauthenticated
//! endpoints.

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

/// 200 while the process serves HTTP; touches nothing else (load balancers, benchmarks).
pub async fn livez() -> &'static str {
    "ok"
}

/// How long `/healthz` waits for the database before it calls it degraded: a writer queue
/// that long is itself a problem worth reporting.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// 200 when the database answers reads and accepts a write, 503 with the reason when it does
/// not. A read alone succeeds on a full disk; the write probe is what a client's write would
/// meet, so a load balancer or supervisor sees the real state.
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let probe = async {
        state
            .store
            .ping()
            .await
            .map_err(|e| format!("reads fail: {e}"))?;
        state
            .store
            .write_probe(&state.replica)
            .await
            .map_err(|e| format!("writes fail: {e}"))
    };
    let outcome = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    };
    match outcome {
        Ok(()) => (
            StatusCode::OK,
            Json(
                serde_json::json!({ "status": "ok", "database": "ok", "leader": state.metrics.is_leader() }),
            ),
        ),
        Err(reason) => {
            tracing::warn!("health check: database {reason}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    serde_json::json!({ "status": "degraded", "database": reason, "leader": state.metrics.is_leader() }),
                ),
            )
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let agents = state.store.agent_count().await.unwrap_or(-1);
    // A database error leaves the degraded gauges out rather than reporting zero.
    let degraded = state.store.agents().await.ok().map(|records| {
        let (any, by_reason) = crate::api::status::degraded_counts(&records);
        let audit_mode = crate::api::status::audit_mode_count(&records);
        crate::metrics::Degraded {
            any,
            by_reason,
            audit_mode,
        }
    });
    let mut text = state.metrics.render(agents, degraded.as_ref());
    // A database error leaves the sink figures out rather than reporting an empty outbox.
    if !state.config.sinks.sinks.is_empty()
        && let Ok(sinks) = state.store.sink_states().await
    {
        let configured = state.config.sinks.names();
        let sinks: Vec<_> = sinks
            .into_iter()
            .filter(|s| configured.contains(&s.sink))
            .collect();
        crate::metrics::render_sinks(&mut text, &sinks);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

pub async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}

/// The private CA, public by nature: a client that pinned its fingerprint fetches it over an
/// unverified connection, checks the hash, and verifies everything after against it.
pub async fn ca_pem(State(state): State<AppState>) -> axum::response::Response {
    match state.tls.as_ref().and_then(|tls| tls.ca_pem.clone()) {
        Some(pem) => ([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({
                "error": "this server has no CA of its own (plain HTTP, or an operator's certificate): get the CA file from its operator"
            })),
        )
            .into_response(),
    }
}

/// The dashboard: one self-contained page (no external assets), polling the API.
pub async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        include_str!("../../assets/dashboard.html"),
    )
}
