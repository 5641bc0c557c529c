//! Credentials: operator API tokens, single-use enrollment tokens and per-agent credentials.
//! Only sha256 hashes are stored; a token is shown once, when it is made. An agent's credential
//! is also checked against the client certificate of its connection, when there is one (or
//! must be: with `--require-agent-certs`, and for an agent that was issued one).

use crate::error::AppError;
use crate::state::AppState;
use crate::tls::ClientCert;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub const OPERATOR_PREFIX: &str = "rfo_";
pub const ENROLL_PREFIX: &str = "rfe_";
pub const AGENT_PREFIX: &str = "rfa_";

/// A new random token with a prefix that says what it is.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The credential of an `Authorization: Bearer <token>` header. The scheme name is
/// case-insensitive (RFC 7235 §2.1) and may be followed by several spaces; a header that is not
/// one scheme and one token carries no credential.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains([' ', '\t']))
        .then_some(token)
}

/// The connection this request came on has proved a credential: it leaves the
/// unauthenticated budget and is never evicted to make room for others.
fn connection_authenticated(parts: &Parts) {
    if let Some(slot) = parts.extensions.get::<crate::tls::ConnectionSlot>() {
        slot.authenticated();
    }
}

/// An authenticated operator.
#[derive(Debug, Clone)]
pub struct Operator {
    pub label: String,
}

impl Operator {
    pub fn actor(&self) -> String {
        format!("operator:{}", self.label)
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(AppError::unauthorized)?;
        if token.starts_with(AGENT_PREFIX) {
            return Err(AppError::forbidden(
                "agent credentials cannot perform operator actions",
            ));
        }
        Operator::authenticate(parts, state, token).await
    }
}

impl Operator {
    async fn authenticate(parts: &Parts, state: &AppState, token: &str) -> Result<Self, AppError> {
        let record = state.store.operator_token(&hash_token(token)).await?;
        match record {
            Some(record)
                if record
                    .expires_at
                    .is_none_or(|at| at > ringfence_store::now_ms()) =>
            {
                connection_authenticated(parts);
                Ok(Operator {
                    label: record.label,
                })
            }
            _ => Err(AppError::unauthorized()),
        }
    }
}

/// An authenticated agent: handlers take its id from here, never from the body, so an agent
/// can only write about itself.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    /// The connection presented a client certificate naming this agent, proving the key made
    /// on its host, not only the credential.
    pub with_certificate: bool,
}

/// What the credential cache knows about an agent.
#[derive(Debug, Clone)]
pub struct KnownAgent {
    pub id: String,
    /// A client certificate was signed for it: its credential is no longer enough alone.
    pub certificate_issued: bool,
    /// When the database said so; an entry without a certificate is looked up again after
    /// [`UNBOUND_RECHECK`].
    pub checked_at: Instant,
}

/// How long a replica trusts its cached "no certificate issued" for an agent. Another replica
/// may sign one meanwhile (enrollment, renewal); from then on the credential alone must stop
/// working everywhere, within this bound.
pub const UNBOUND_RECHECK: Duration = Duration::from_secs(300);

impl FromRequestParts<AppState> for Agent {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(AppError::unauthorized)?;
        if !token.starts_with(AGENT_PREFIX) {
            return Err(AppError::forbidden(
                "this endpoint takes an agent credential",
            ));
        }
        Agent::authenticate(parts, state, token).await
    }
}

impl Agent {
    async fn authenticate(parts: &Parts, state: &AppState, token: &str) -> Result<Self, AppError> {
        let hash = hash_token(token);
        let cached = state
            .agent_ids
            .read()
            .ok()
            .and_then(|cache| cache.get(&hash).cloned())
            .filter(|known| {
                known.certificate_issued || known.checked_at.elapsed() < UNBOUND_RECHECK
            });
        let known = match cached {
            Some(known) => known,
            None => {
                let agent = state
                    .store
                    .agent_by_credential(&hash)
                    .await?
                    .ok_or_else(AppError::unauthorized)?;
                let known = KnownAgent {
                    id: agent.id,
                    certificate_issued: agent.client_cert_issued_at.is_some(),
                    checked_at: Instant::now(),
                };
                match state.agent_ids.write() {
                    // A renewal may have marked the entry while we read the database: the
                    // mark never goes back.
                    Ok(mut cache) => cache
                        .entry(hash)
                        .and_modify(|cached| {
                            cached.certificate_issued |= known.certificate_issued;
                            cached.checked_at = known.checked_at;
                        })
                        .or_insert(known)
                        .clone(),
                    Err(_) => known,
                }
            }
        };
        match check_client_cert(parts, state, &known) {
            Ok(with_certificate) => {
                connection_authenticated(parts);
                Ok(Agent {
                    id: known.id,
                    with_certificate,
                })
            }
            Err(error) => {
                state.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
                tracing::info!(agent = %known.id, "agent refused: {}", error.message);
                Err(error)
            }
        }
    }
}

/// Notes in the credential cache that `agent_id` now has a client certificate, so that the
/// next request with its credential alone is refused without waiting for the database.
pub fn certificate_issued(state: &AppState, agent_id: &str) {
    if let Ok(mut cache) = state.agent_ids.write() {
        for known in cache.values_mut().filter(|known| known.id == agent_id) {
            known.certificate_issued = true;
        }
    }
}

/// A client certificate proves the key the agent made at enrollment; it must name the agent the
/// credential belongs to, or a stolen credential could ride on another host's certificate.
/// An agent that was given one must present it: otherwise a copy of its credential would work
/// anywhere. Only a server with its own CA can check certificates, so only there is that
/// enforced. Requests without a connection (in-process tests) have no certificate. Ok(true):
/// the certificate named this agent.
fn check_client_cert(
    parts: &Parts,
    state: &AppState,
    agent: &KnownAgent,
) -> Result<bool, AppError> {
    let certificate = parts
        .extensions
        .get::<ConnectInfo<ClientCert>>()
        .map_or(&ClientCert::Absent, |info| &info.0);
    let refuse = |message: &str| Err(AppError::new(StatusCode::UNAUTHORIZED, message));
    let checks_certificates = state
        .tls
        .as_deref()
        .is_some_and(|tls| tls.agent_issuer.is_some());
    match certificate {
        ClientCert::Agent(named) if *named == agent.id => Ok(true),
        ClientCert::Agent(_) => {
            refuse("the client certificate belongs to another agent than the credential")
        }
        ClientCert::Unnamed => refuse("the client certificate names no agent"),
        ClientCert::Absent if state.config.require_agent_certs => refuse(
            "this server requires agent client certificates; re-enroll the agent (it needs a version that sends a CSR at enrollment)",
        ),
        ClientCert::Absent if agent.certificate_issued && checks_certificates => refuse(
            "this agent was issued a client certificate and its credential is accepted only with it; if the agent lost it, re-enroll the agent",
        ),
        ClientCert::Absent => Ok(false),
    }
}

/// Either kind of caller; for reads both may do (blob downloads).
#[derive(Debug, Clone)]
pub enum Caller {
    Operator(Operator),
    Agent(Agent),
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The header is read once and the token handed on, not parsed again per kind.
        match bearer(parts) {
            Some(token) if token.starts_with(AGENT_PREFIX) => {
                Agent::authenticate(parts, state, token)
                    .await
                    .map(Caller::Agent)
            }
            Some(token) => Operator::authenticate(parts, state, token)
                .await
                .map(Caller::Operator),
            None => Err(AppError::unauthorized()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(authorization: &str) -> Parts {
        let (parts, ()) = axum::http::Request::builder()
            .header(axum::http::header::AUTHORIZATION, authorization)
            .body(())
            .expect("request")
            .into_parts();
        parts
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_one_word() {
        for header in [
            "Bearer rfa_x",
            "bearer rfa_x",
            "BEARER rfa_x",
            "bEaReR   rfa_x",
            "Bearer rfa_x  ",
        ] {
            assert_eq!(bearer(&parts(header)), Some("rfa_x"), "{header:?}");
        }
        for header in [
            "Basic cmZhX3g=",
            "Bearer",
            "Bearer ",
            "Bearerrfa_x",
            "Bearer rfa_x extra",
            "rfa_x",
        ] {
            assert_eq!(bearer(&parts(header)), None, "{header:?}");
        }
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let a = new_token(OPERATOR_PREFIX);
        let b = new_token(OPERATOR_PREFIX);
        assert!(a.starts_with("rfo_") && a.len() == 68);
        assert_ne!(a, b);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
