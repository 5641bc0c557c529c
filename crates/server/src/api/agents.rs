//! Enrollment, heartbeats and report uploads: the agent-facing half of the API.

use crate::auth::{AGENT_PREFIX, Agent, ENROLL_PREFIX, Operator, hash_token, new_token};
use crate::error::{ApiResult, AppError};
use crate::state::AppState;
use crate::tls::{AgentIssuer, VerifiedCsr};
use axum::Json;
use axum::extract::State;
use ringfence_protocol::api::{
    CertificateRenewal, EnrollRequest, EnrollResponse, Heartbeat, HeartbeatResponse,
    RenewedCertificate, ReportAck, WireReportBatch,
};
use ringfence_store::{AgentStatusUpdate, NewAgent, ReportRecord, TokenKind, now_ms};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

const MAX_TAGS: usize = 16;

pub async fn enroll(
    State(state): State<AppState>,
    Json(request): Json<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    if request.hostname.is_empty() || request.hostname.len() > 255 {
        return Err(AppError::bad_request("hostname must be 1–255 bytes"));
    }
    if request.tags.len() > MAX_TAGS || request.tags.iter().any(|t| t.is_empty() || t.len() > 64) {
        return Err(AppError::bad_request(format!(
            "at most {MAX_TAGS} tags of 1–64 bytes"
        )));
    }
    let csr = enrollment_csr(&state, request.csr.as_deref())?;
    let token_hash = hash_token(&request.token);
    // Verifying and signing cost CPU: only a request with a token that would be accepted gets
    // that far. The check does not spend the token, so a bad CSR (400) costs the agent
    // nothing but a retry.
    if !request.token.starts_with(ENROLL_PREFIX)
        || !state.store.enroll_token_usable(&token_hash).await?
    {
        return Err(unusable_token(&state));
    }
    let agent_id = format!("agent-{}", &new_token("")[..16]);
    let client_cert = match csr {
        Some((issuer, csr)) => Some(sign(&state, issuer, &agent_id, &verify_csr(csr)?)?),
        None => None,
    };
    let credential = new_token(AGENT_PREFIX);
    let credential_hash = hash_token(&credential);
    let agent = NewAgent {
        id: &agent_id,
        credential_hash: &credential_hash,
        hostname: &request.hostname,
        tags: &request.tags,
        client_cert_issued: client_cert.is_some(),
    };
    // Token, agent and audit row in one transaction: a failure (or a concurrent use of the
    // same token) leaves no spent token, agent or audit row behind.
    if !state.store.enroll_agent(&token_hash, &agent).await? {
        return Err(unusable_token(&state));
    }
    state.metrics.enrollments.fetch_add(1, Ordering::Relaxed);
    if client_cert.is_some() {
        // Counted only now: a certificate signed for an enrollment that then lost the race for
        // its token, or failed to commit, was thrown away and was issued to no one.
        count_issued_certificate(&state);
    }
    Ok(Json(EnrollResponse {
        agent_id,
        credential,
        release_keys: state.authority.public_keys(),
        client_cert,
    }))
}

fn unusable_token(state: &AppState) -> AppError {
    state.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
    AppError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "enrollment token is unknown, expired or already used",
    )
}

/// The CSR of an enrolling agent, with the CA that will sign it, when the server has its own CA
/// and the agent sent one. Without a CA the CSR is not read (mutual TLS is unavailable there),
/// and without a CSR a server that requires certificates refuses the enrollment.
fn enrollment_csr<'a, 'r>(
    state: &'a AppState,
    csr: Option<&'r str>,
) -> ApiResult<Option<(&'a AgentIssuer, &'r str)>> {
    match (issuer(state), csr) {
        (Some(issuer), Some(csr)) => Ok(Some((issuer, csr))),
        (_, None) if state.config.require_agent_certs => Err(AppError::bad_request(
            "this server requires agent client certificates: the enrollment must carry a CSR (upgrade the agent)",
        )),
        _ => Ok(None),
    }
}

fn issuer(state: &AppState) -> Option<&AgentIssuer> {
    state
        .tls
        .as_deref()
        .and_then(|tls| tls.agent_issuer.as_ref())
}

/// A CSR that does not verify is the caller's mistake (400).
fn verify_csr(csr: &str) -> ApiResult<VerifiedCsr> {
    VerifiedCsr::from_pem(csr).map_err(|e| AppError::bad_request(e.to_string()))
}

/// A certificate for `agent_id` over the CSR's key.
fn sign(
    state: &AppState,
    issuer: &AgentIssuer,
    agent_id: &str,
    csr: &VerifiedCsr,
) -> ApiResult<String> {
    let certificate = issuer
        .issue(agent_id, csr, state.config.agent_cert_validity)
        .map_err(|e| AppError::internal("client certificate", e))?;
    Ok(certificate)
}

/// Counts a certificate that reached its agent's record: only after the enrollment or renewal
/// committed, so the metric tells how many certificates are out there.
fn count_issued_certificate(state: &AppState) {
    state
        .metrics
        .client_certs_issued
        .fetch_add(1, Ordering::Relaxed);
}

/// A fresh certificate for a new key of an enrolled agent, so that it never has to present an
/// expired one (which fails the handshake). Only the holder of the agent's current certificate
/// may have one: with the credential alone, whoever copied it could get a certificate for a key
/// of their own and pass for the agent from then on.
pub async fn renew_certificate(
    State(state): State<AppState>,
    agent: Agent,
    Json(request): Json<CertificateRenewal>,
) -> ApiResult<Json<RenewedCertificate>> {
    let issuer = issuer(&state).ok_or_else(|| {
        AppError::not_found("this server has no CA of its own and signs no agent certificates")
    })?;
    if !agent.with_certificate {
        state.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        return Err(AppError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "renewal needs the agent's current client certificate; re-enroll the agent",
        ));
    }
    let csr = verify_csr(&request.csr)?;
    let client_cert = sign(&state, issuer, &agent.id, &csr)?;
    // Agents enrolled before the server remembered certificates are bound from here on. The
    // audit row is written in the same transaction.
    state.store.record_certificate_renewal(&agent.id).await?;
    crate::auth::certificate_issued(&state, &agent.id);
    count_issued_certificate(&state);
    Ok(Json(RenewedCertificate { client_cert }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollTokenRequest {
    #[serde(default)]
    pub label: String,
    /// Lifetime in seconds (default one day).
    #[serde(default)]
    pub ttl_s: Option<i64>,
    /// How many tokens (default 1).
    #[serde(default)]
    pub count: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct EnrollTokens {
    pub tokens: Vec<String>,
    pub expires_at_ms: i64,
}

pub async fn create_enroll_token(
    State(state): State<AppState>,
    operator: Operator,
    Json(request): Json<EnrollTokenRequest>,
) -> ApiResult<Json<EnrollTokens>> {
    let count = request.count.unwrap_or(1);
    if !(1..=10_000).contains(&count) {
        return Err(AppError::bad_request("count must be 1–10000"));
    }
    let ttl_ms = request.ttl_s.unwrap_or(86_400).clamp(1, 30 * 86_400) * 1000;
    let expires_at_ms = now_ms() + ttl_ms;
    let mut tokens = Vec::with_capacity(count);
    for _ in 0..count {
        let token = new_token(ENROLL_PREFIX);
        state
            .store
            .insert_token(
                &hash_token(&token),
                TokenKind::Enroll,
                &request.label,
                Some(expires_at_ms),
            )
            .await?;
        tokens.push(token);
    }
    state
        .store
        .audit(
            &operator.actor(),
            "create_enroll_tokens",
            &request.label,
            &format!("{count} token(s)"),
        )
        .await?;
    Ok(Json(EnrollTokens {
        tokens,
        expires_at_ms,
    }))
}

pub async fn heartbeat(
    State(state): State<AppState>,
    agent: Agent,
    Json(heartbeat): Json<Heartbeat>,
) -> ApiResult<Json<HeartbeatResponse>> {
    // Every figure is a claim: only the checked, clamped heartbeat is read or stored, so a
    // `1.7e308` CPU figure cannot reach the gates' arithmetic.
    let heartbeat = heartbeat.validated()?;
    state.metrics.heartbeats.fetch_add(1, Ordering::Relaxed);
    let assignments = state
        .fleet
        .assignments(&agent.id, &heartbeat.releases, &state.authority);
    let remediations = state
        .fleet
        .remediations(&agent.id, &heartbeat.releases, &state.authority);
    let status =
        serde_json::to_value(&heartbeat).map_err(|e| AppError::internal("heartbeat", e))?;
    state.heartbeats.push(AgentStatusUpdate {
        agent_id: agent.id,
        seen_at: now_ms(),
        status,
    });
    Ok(Json(HeartbeatResponse {
        assignments,
        remediations,
        interval_s: state.config.heartbeat_interval.as_secs().max(1),
    }))
}

pub async fn reports(
    State(state): State<AppState>,
    agent: Agent,
    Json(batch): Json<WireReportBatch>,
) -> ApiResult<Json<ReportAck>> {
    batch.validate()?;
    // Every report is read by its kind before any is stored: an unknown kind or a malformed
    // body refuses the whole batch with a 422 naming the report, and the agent, which sends a
    // refused batch again one report at a time, sets that one aside and counts it.
    let reports = batch.typed()?;
    // The server's clock orders and filters reports; the agent's time is kept as a claim, and
    // clamped, so a report dated 2100 cannot count against every later rollout.
    let now = now_ms();
    let records: Vec<ReportRecord> = reports
        .into_iter()
        .map(|report| ReportRecord {
            // Scoped by the authenticated agent, so one agent cannot overwrite another's.
            id: format!("{}:{}", agent.id, report.id),
            agent_id: agent.id.clone(),
            at: report.claimed_at(now),
            kind: report.kind().as_str().to_owned(),
            received_at: now,
            body: report.body.to_json(),
        })
        .collect();
    let received = records.len();
    // Acknowledged only once the alerts are in the outbox: from here the sinks get them even if
    // this replica dies.
    let outbox = state.config.sinks.outbox();
    let stored = state.store.insert_reports_queued(&records, outbox).await?;
    state
        .metrics
        .reports
        .fetch_add(stored.new as u64, Ordering::Relaxed);
    if stored.queued > 0 {
        crate::sinks::wake_all(&state);
    }
    if stored.dropped > 0 {
        crate::sinks::outbox_overflowed(&state, stored.dropped).await;
    }
    Ok(Json(ReportAck {
        stored: stored.new,
        received,
    }))
}

pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
) -> ApiResult<Json<serde_json::Value>> {
    state.heartbeats.flush(&state.store).await?;
    let agents = state.store.agents().await?;
    let agents: Vec<_> = agents
        .into_iter()
        .map(|a| {
            serde_json::json!({
                "id": a.id, "hostname": a.hostname, "tags": a.tags,
                "enrolled_at_ms": a.enrolled_at, "last_seen_at_ms": a.last_seen_at, "status": a.status,
                "decommissioned_at_ms": a.decommissioned_at,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "agents": agents })))
}
