//! The enrolled agent's identity on disk: id, credential, server URL, the server's CA, the
//! release keys learned at enrollment and the agent's client certificate with its key. Written
//! 0600 and atomically; the credential and the key are secrets.

use crate::client::ServerClient;
use crate::client_cert::{AgentCertificate, AgentKey};
use crate::tls::{CaCert, TrustError};
use ringfence_protocol::api::EnrollResponse;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub agent_id: String,
    pub credential: String,
    pub server: String,
    pub release_keys: Vec<String>,
    /// The CA (PEM) the server was verified against at enrollment; every later connection is
    /// verified against it. Absent for a plain-HTTP server on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ca: Option<String>,
    /// The client certificate the server's CA signed at enrollment, presented on every
    /// connection. Absent for identities from before mutual TLS and for servers without a CA of
    /// their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<AgentCertificate>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid identity file ({reason}); remove it and enroll again")]
    Corrupt { path: PathBuf, reason: String },
}

impl Identity {
    /// The identity an enrollment answered; `key` is the one whose CSR the request carried.
    pub fn from_enrollment(
        server: &str,
        ca: Option<&CaCert>,
        key: AgentKey,
        response: EnrollResponse,
    ) -> Result<Identity, TrustError> {
        let client_cert = response
            .client_cert
            .map(|certificate| key.certified(certificate))
            .transpose()?;
        Ok(Identity {
            agent_id: response.agent_id,
            credential: response.credential,
            server: server.to_owned(),
            release_keys: response.release_keys,
            server_ca: ca.map(|ca| ca.pem().to_owned()),
            client_cert,
        })
    }

    /// A client for the server this agent enrolled with, trusting its CA, carrying the
    /// credential and presenting the client certificate.
    pub fn client(&self, timeout: std::time::Duration) -> Result<ServerClient, TrustError> {
        let mut client = ServerClient::new(&self.server, timeout).with_credential(&self.credential);
        if let Some(pem) = &self.server_ca {
            client = client.with_ca(&CaCert::from_pem(
                "the identity's server CA",
                pem.as_bytes(),
            )?);
        }
        if let Some(certificate) = &self.client_cert {
            client = client.with_client_cert(certificate)?;
        }
        Ok(client)
    }

    /// `Ok(None)` when the agent has not enrolled yet.
    pub fn load(path: &Path) -> Result<Option<Identity>, IdentityError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| IdentityError::Corrupt {
                        path: path.to_owned(),
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(IdentityError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_owned(),
            source,
        };
        let temporary = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io)?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saved_private_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.json");
        assert_eq!(Identity::load(&path).expect("missing is fine"), None);
        let identity = Identity {
            agent_id: "agent-1".into(),
            credential: "rfa_secret".into(),
            server: "http://127.0.0.1:7700".into(),
            release_keys: vec!["ab".into()],
            server_ca: None,
            client_cert: Some(AgentCertificate {
                certificate: "cert".into(),
                key: "key".into(),
            }),
        };
        identity.save(&path).expect("save");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Identity::load(&path).expect("load"), Some(identity));
        std::fs::write(&path, b"{garbage").expect("corrupt");
        let error = Identity::load(&path).expect_err("corrupt");
        assert!(error.to_string().contains("enroll again"), "{error}");
    }

    #[test]
    fn an_identity_from_before_client_certificates_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.json");
        // Written by an agent that knew nothing of client certificates.
        std::fs::write(
            &path,
            r#"{"agent_id":"agent-1","credential":"rfa_secret","server":"https://rf:7700","release_keys":["ab"],"server_ca":"-----BEGIN CERTIFICATE-----"}"#,
        )
        .expect("write");
        let identity = Identity::load(&path).expect("load").expect("enrolled");
        assert_eq!(identity.agent_id, "agent-1");
        assert_eq!(identity.client_cert, None);
        identity.save(&path).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            !text.contains("client_cert"),
            "nothing new is written: {text}"
        );
    }
}
