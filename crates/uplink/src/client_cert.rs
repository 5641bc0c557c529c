//! The agent's own key and client certificate (mutual TLS). A bearer credential copied off a
//! host works from anywhere; a key made on the host, whose signing request is all that leaves
//! it, does not. At enrollment the agent sends that request, the server's CA signs a
//! certificate naming the agent, and the agent presents it on every later connection. A server
//! with the operator's own certificate (no CA key) or on plain HTTP signs nothing, and the
//! agent then goes on with its credential alone. An expired certificate fails every handshake,
//! so the uplink trades a new key's request for a new certificate when a third of the old
//! one's lifetime is left.

use crate::tls::TrustError;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use ureq::tls::{Certificate, ClientCert, PrivateKey};

/// A key made for enrollment, with the signing request the server sees.
pub struct AgentKey {
    key: KeyPair,
    csr: String,
}

impl AgentKey {
    /// A fresh ECDSA P-256 key and a signing request for it.
    pub fn generate() -> Result<AgentKey, TrustError> {
        let failed = |e: rcgen::Error| TrustError::ClientCertificate(e.to_string());
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = CertificateParams::default();
        // The server names the certificate after the agent id it assigns; this is for people
        // reading the request.
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "ringfence agent");
        params.distinguished_name = name;
        let csr = params
            .serialize_request(&key)
            .and_then(|request| request.pem())
            .map_err(failed)?;
        Ok(AgentKey { key, csr })
    }

    /// The PKCS#10 signing request (PEM): proves the key without revealing it.
    pub fn csr_pem(&self) -> &str {
        &self.csr
    }

    /// The key with the certificate the server signed for it, checked to be usable.
    pub fn certified(self, certificate: String) -> Result<AgentCertificate, TrustError> {
        let certified = AgentCertificate {
            certificate,
            key: self.key.serialize_pem(),
        };
        certified.for_tls()?;
        Ok(certified)
    }
}

/// An agent's client certificate and its private key (both PEM), kept in the identity file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCertificate {
    pub certificate: String,
    pub key: String,
}

impl fmt::Debug for AgentCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output ends up in logs; the key must not.
        f.debug_struct("AgentCertificate")
            .field("certificate", &self.certificate)
            .field("key", &"[elided]")
            .finish()
    }
}

impl AgentCertificate {
    /// True when less than a third of the certificate's lifetime is left at `now`: time enough
    /// to renew across a long outage. False for a certificate we cannot read, which a new one
    /// from the same server would not help.
    pub fn renewal_due(&self, now: SystemTime) -> bool {
        let Ok(certificate) = Certificate::from_pem(self.certificate.as_bytes()) else {
            return false;
        };
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.der()) else {
            return false;
        };
        let validity = parsed.validity();
        let (start, end) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        (end - now) * 3 < end - start
    }

    /// What the TLS client presents.
    pub(crate) fn for_tls(&self) -> Result<ClientCert, TrustError> {
        let bad = |what: &str, e: ureq::Error| {
            TrustError::ClientCertificate(format!("the {what} is not usable PEM: {e}"))
        };
        let certificate = Certificate::from_pem(self.certificate.as_bytes())
            .map_err(|e| bad("certificate", e))?;
        let key = PrivateKey::from_pem(self.key.as_bytes()).map_err(|e| bad("key", e))?;
        Ok(ClientCert::new_with_certs(&[certificate], key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_the_public_key_only() {
        let key = AgentKey::generate().expect("key");
        let csr = key.csr_pem().to_owned();
        assert!(
            csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{csr}"
        );
        assert!(!csr.contains("PRIVATE KEY"));
        let other = AgentKey::generate().expect("key");
        assert_ne!(csr, other.csr_pem(), "a fresh key every time");
    }

    #[test]
    fn a_certificate_that_is_not_pem_is_refused_and_the_key_never_printed() {
        let error = AgentKey::generate()
            .expect("key")
            .certified("not a certificate".into())
            .expect_err("garbage");
        assert!(error.to_string().contains("certificate"), "{error}");
        let certified = AgentCertificate {
            certificate: "c".into(),
            key: "-----BEGIN PRIVATE KEY-----secret".into(),
        };
        assert!(!format!("{certified:?}").contains("secret"));
    }
}
