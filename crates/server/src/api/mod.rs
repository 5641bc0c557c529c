//! HTTP handlers, one module per resource. Every write checks the caller's kind; bodies are
//! size-limited by the router and parsed strictly.

pub mod agent_admin;
pub mod agents;
pub mod alerts;
pub mod health;
pub mod hosts;
pub mod progress;
pub mod releases;
pub mod remediations;
pub mod rollouts;
pub mod status;
pub mod tokens;

use crate::state::AppState;
use axum::Router;
use axum::routing::{get, post};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/livez", get(health::livez))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi))
        .route("/api/v1/tls/ca.pem", get(health::ca_pem))
        .route("/api/v1/enroll", post(agents::enroll))
        .route("/api/v1/enroll-tokens", post(agents::create_enroll_token))
        .route("/api/v1/agents", get(agents::list))
        .route("/api/v1/agents/{id}", get(agent_admin::show))
        .route("/api/v1/hosts", get(hosts::list))
        .route("/api/v1/hosts/{id}", get(hosts::show))
        .route(
            "/api/v1/agents/{id}/decommission",
            post(agent_admin::decommission),
        )
        .route("/api/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/api/v1/tokens/{id}/revoke", post(tokens::revoke))
        .route("/api/v1/agents/heartbeat", post(agents::heartbeat))
        .route("/api/v1/agents/reports", post(agents::reports))
        .route(
            "/api/v1/agents/certificate",
            post(agents::renew_certificate),
        )
        .route("/api/v1/blobs/{sha256}", get(releases::blob))
        .route(
            "/api/v1/releases",
            post(releases::publish).get(releases::list),
        )
        .route("/api/v1/releases/{channel}/{version}", get(releases::show))
        .route(
            "/api/v1/rollouts",
            post(rollouts::start).get(rollouts::list),
        )
        .route("/api/v1/rollouts/{id}", get(rollouts::show))
        .route("/api/v1/rollouts/{id}/retry", post(rollouts::retry))
        .route("/api/v1/rollouts/{id}/gates", get(progress::gates))
        .route("/api/v1/rollouts/{id}/enforce", post(rollouts::enforce))
        .route("/api/v1/rollouts/{id}/{action}", post(rollouts::act))
        .route(
            "/api/v1/remediations",
            post(remediations::create).get(remediations::list),
        )
        .route(
            "/api/v1/remediations/{id}/retire",
            post(remediations::retire),
        )
        .route("/api/v1/status", get(status::fleet))
        .route("/api/v1/audit", get(status::audit))
        .route("/api/v1/reports", get(status::reports))
        .route("/api/v1/crash-groups", get(status::crash_groups))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/sinks", get(alerts::sinks))
        .route("/", get(health::dashboard))
}
