//! Typed calls to the server. Errors say whether to retry (the server is away or overloaded) or
//! not (the server refused: a bad credential, a bad request).

use crate::client_cert::AgentCertificate;
use crate::tls::{self, CaCert, TrustError};
use ringfence_protocol::api::{
    ApiError, CertificateRenewal, EnrollRequest, EnrollResponse, Heartbeat, HeartbeatResponse,
    RenewedCertificate, ReportAck, ReportBatch,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Largest bundle we download.
const MAX_BLOB_BYTES: u64 = 128 << 20;
const MAX_JSON_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer: connection refused, timeout, DNS. Retry later.
    #[error("server unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with an error status.
    #[error("server refused {what} ({status}): {message}")]
    Refused {
        what: &'static str,
        status: u16,
        message: String,
    },
    /// The server answered something we cannot read.
    #[error("unreadable answer to {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    /// A server answered but could not be verified: the wrong CA, a certificate for another
    /// name, or no TLS at all. Nothing was sent to it.
    #[error("will not talk to the server at {url}: {reason}")]
    Untrusted { url: String, reason: String },
}

impl ClientError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Refused { status, .. } => *status == 429 || *status >= 500,
            ClientError::Malformed { .. } | ClientError::Untrusted { .. } => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerClient {
    base: String,
    agent: ureq::Agent,
    credential: Option<String>,
    timeout: Duration,
    ca: Option<CaCert>,
    client_cert: Option<ureq::tls::ClientCert>,
}

fn agent(
    timeout: Duration,
    ca: Option<&CaCert>,
    client_cert: Option<ureq::tls::ClientCert>,
) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .tls_config(tls::config(ca, client_cert))
        .build()
        .into()
}

impl ServerClient {
    /// A client that trusts no certificate yet: fine for http:// (a server started with
    /// `--insecure-http`); an https:// server needs [`ServerClient::with_ca`].
    pub fn new(base_url: &str, timeout: Duration) -> ServerClient {
        ServerClient {
            base: base_url.trim_end_matches('/').to_owned(),
            agent: agent(timeout, None, None),
            credential: None,
            timeout,
            ca: None,
            client_cert: None,
        }
    }

    /// Verifies the server against `ca`, and nothing else, from now on.
    pub fn with_ca(mut self, ca: &CaCert) -> ServerClient {
        self.agent = agent(self.timeout, Some(ca), self.client_cert.clone());
        self.ca = Some(ca.clone());
        self
    }

    /// Presents the agent's client certificate from now on (mutual TLS).
    pub fn with_client_cert(
        mut self,
        certificate: &AgentCertificate,
    ) -> Result<ServerClient, TrustError> {
        let client_cert = certificate.for_tls()?;
        self.agent = agent(self.timeout, self.ca.as_ref(), Some(client_cert.clone()));
        self.client_cert = Some(client_cert);
        Ok(self)
    }

    /// Uses `credential` as the bearer token from now on.
    pub fn with_credential(mut self, credential: &str) -> ServerClient {
        self.credential = Some(credential.to_owned());
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, error: ureq::Error) -> ClientError {
        match tls::explain(&error, self.ca.is_some()) {
            Some(reason) => ClientError::Untrusted {
                url: self.base.clone(),
                reason,
            },
            None => ClientError::Unreachable {
                url: self.base.clone(),
                reason: error.to_string(),
            },
        }
    }

    fn check(
        &self,
        what: &'static str,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        // Errors are `{"error": ...}`; a preflight rejection is the release with its report.
        let body: serde_json::Value = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_json()
            .unwrap_or(serde_json::Value::Null);
        let message = match serde_json::from_value::<ApiError>(body.clone()) {
            Ok(error) => error.error,
            Err(_) => body["preflight_report"]["reason"]
                .as_str()
                .map(|reason| format!("preflight rejected it: {reason}"))
                .unwrap_or_else(|| "no details".to_owned()),
        };
        Err(ClientError::Refused {
            what,
            status,
            message,
        })
    }

    fn read_json<R: DeserializeOwned>(
        what: &'static str,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<R, ClientError> {
        response
            .body_mut()
            .with_config()
            .limit(MAX_JSON_BYTES)
            .read_json()
            .map_err(|e| ClientError::Malformed {
                what,
                reason: e.to_string(),
            })
    }

    /// `GET path` → JSON; for operator tools.
    pub fn get_json<R: DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
    ) -> Result<R, ClientError> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(credential) = &self.credential {
            request = request.header("Authorization", format!("Bearer {credential}"));
        }
        let response = request.call().map_err(|e| self.unreachable(e))?;
        Self::read_json(what, self.check(what, response)?)
    }

    /// `GET path` → text (the Prometheus exposition at `/metrics`); for operator tools.
    pub fn get_text(&self, what: &'static str, path: &str) -> Result<String, ClientError> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(credential) = &self.credential {
            request = request.header("Authorization", format!("Bearer {credential}"));
        }
        let response = request.call().map_err(|e| self.unreachable(e))?;
        self.check(what, response)?
            .body_mut()
            .with_config()
            .limit(MAX_JSON_BYTES)
            .read_to_string()
            .map_err(|e| ClientError::Malformed {
                what,
                reason: e.to_string(),
            })
    }

    /// `POST path` with raw bytes → JSON.
    pub fn post_bytes<R: DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
        bytes: &[u8],
    ) -> Result<R, ClientError> {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/octet-stream");
        if let Some(credential) = &self.credential {
            request = request.header("Authorization", format!("Bearer {credential}"));
        }
        let response = request.send(bytes).map_err(|e| self.unreachable(e))?;
        Self::read_json(what, self.check(what, response)?)
    }

    /// `POST path` with a JSON body → JSON.
    pub fn post_json<B: Serialize, R: DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        self.post(what, path, body)
    }

    fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let mut request = self.agent.post(format!("{}{path}", self.base));
        if let Some(credential) = &self.credential {
            request = request.header("Authorization", format!("Bearer {credential}"));
        }
        let response = request.send_json(body).map_err(|e| self.unreachable(e))?;
        Self::read_json(what, self.check(what, response)?)
    }

    pub fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        self.post("enrollment", "/api/v1/enroll", request)
    }

    pub fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatResponse, ClientError> {
        self.post("heartbeat", "/api/v1/agents/heartbeat", heartbeat)
    }

    /// A new client certificate for the key whose signing request this is.
    pub fn renew_certificate(
        &self,
        request: &CertificateRenewal,
    ) -> Result<RenewedCertificate, ClientError> {
        self.post("certificate renewal", "/api/v1/agents/certificate", request)
    }

    pub fn upload(&self, batch: &ReportBatch) -> Result<ReportAck, ClientError> {
        self.post("report upload", "/api/v1/agents/reports", batch)
    }

    /// Downloads a content-addressed blob. The caller verifies the hash (and the signature).
    pub fn blob(&self, sha256: &str) -> Result<Vec<u8>, ClientError> {
        let mut request = self
            .agent
            .get(format!("{}/api/v1/blobs/{sha256}", self.base));
        if let Some(credential) = &self.credential {
            request = request.header("Authorization", format!("Bearer {credential}"));
        }
        let response = request.call().map_err(|e| self.unreachable(e))?;
        let mut response = self.check("blob download", response)?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_BLOB_BYTES)
            .read_to_vec()
            .map_err(|e| ClientError::Malformed {
                what: "blob download",
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_server_is_transient() {
        // Nothing listens on port 1 of loopback.
        let client = ServerClient::new("http://127.0.0.1:1", Duration::from_millis(500));
        let error = client
            .heartbeat(&Heartbeat::default())
            .expect_err("no server");
        assert!(error.is_transient(), "{error}");
        assert!(error.to_string().contains("unreachable"), "{error}");
    }
}
