//! Which server certificates agents and operator tools accept. The server's CA is trusted only
//! when given explicitly: as a file, or as a pinned SHA-256 fingerprint (kubeadm-style: fetch
//! the CA once over an unverified connection, accept it only if its hash equals the pin, then
//! verify every connection strictly against it). There are no built-in web roots: a public CA
//! vouching for some other host must never be able to serve releases to our agents.

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, RootCerts, TlsConfig, TlsProvider};

/// The CA certificate is small; anything bigger is not one.
const MAX_CA_BYTES: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: not a PEM certificate ({reason})")]
    NotPem { what: String, reason: String },
    #[error(
        "not a CA fingerprint: {0:?} (expected sha256: and 64 hex digits, as the server prints it)"
    )]
    BadFingerprint(String),
    #[error("cannot fetch the CA from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error(
        "{url} is HTTPS: give the server's CA file or pin its CA fingerprint (`ringfence server` prints both when it starts)"
    )]
    Missing { url: String },
    #[error(
        "the server at {url} presented a CA with fingerprint {actual}, but {pinned} was pinned: refusing it (wrong server, or someone in between)"
    )]
    Mismatch {
        url: String,
        pinned: Fingerprint,
        actual: Fingerprint,
    },
    #[error("the agent's client certificate: {0}")]
    ClientCertificate(String),
}

/// A SHA-256 fingerprint of a certificate's DER bytes, written `sha256:<hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl FromStr for Fingerprint {
    type Err = TrustError;

    /// Takes `sha256:<hex>` as printed by the server, or the bare hex; colons between bytes
    /// (as `openssl x509 -fingerprint` prints them) and upper case are accepted.
    fn from_str(text: &str) -> Result<Fingerprint, TrustError> {
        let trimmed = text.trim();
        let hex_part = trimmed
            .strip_prefix("sha256:")
            .or_else(|| trimmed.strip_prefix("SHA256:"))
            .unwrap_or(trimmed)
            .replace(':', "");
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part.to_ascii_lowercase(), &mut bytes)
            .map_err(|_| TrustError::BadFingerprint(text.to_owned()))?;
        Ok(Fingerprint(bytes))
    }
}

/// The CA a client verifies the server against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCert {
    pem: String,
    der: Vec<u8>,
}

impl CaCert {
    /// The first certificate of a PEM text.
    pub fn from_pem(what: &str, pem: &[u8]) -> Result<CaCert, TrustError> {
        let certificate = Certificate::from_pem(pem).map_err(|e| TrustError::NotPem {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(CaCert {
            pem: String::from_utf8_lossy(pem).into_owned(),
            der: certificate.der().to_vec(),
        })
    }

    pub fn read_file(path: &Path) -> Result<CaCert, TrustError> {
        let bytes = std::fs::read(path).map_err(|source| TrustError::Io {
            path: path.display().to_string(),
            source,
        })?;
        CaCert::from_pem(&path.display().to_string(), &bytes)
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.der)
    }

    /// Fetches the CA from the server's unauthenticated `/api/v1/tls/ca.pem` without verifying
    /// the connection, and accepts it only if its fingerprint is `pin`. Nothing but this
    /// certificate is read over that connection.
    pub fn fetch_pinned(
        base_url: &str,
        pin: Fingerprint,
        timeout: Duration,
    ) -> Result<CaCert, TrustError> {
        let base = base_url.trim_end_matches('/');
        let url = format!("{base}/api/v1/tls/ca.pem");
        let fetch = |reason: String| TrustError::Fetch {
            url: url.clone(),
            reason,
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(provider())
            .disable_verification(true)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .tls_config(tls)
            .build()
            .into();
        let mut response = agent.get(&url).call().map_err(|e| fetch(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_CA_BYTES)
            .read_to_vec()
            .map_err(|e| fetch(e.to_string()))?;
        if status != 200 {
            return Err(fetch(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        let ca = CaCert::from_pem(&url, &body)?;
        let actual = ca.fingerprint();
        if actual != pin {
            return Err(TrustError::Mismatch {
                url: base.to_owned(),
                pinned: pin,
                actual,
            });
        }
        Ok(ca)
    }
}

/// The CA to trust for `url`, from what the user gave: a file (checked against `pin` when both
/// are given), a pin alone (the CA is fetched and checked), or nothing, which is only right for
/// a plain http:// server.
pub fn resolve(
    url: &str,
    file: Option<&Path>,
    pin: Option<Fingerprint>,
    timeout: Duration,
) -> Result<Option<CaCert>, TrustError> {
    match (file, pin) {
        (Some(file), pin) => {
            let ca = CaCert::read_file(file)?;
            match pin {
                Some(pin) if ca.fingerprint() != pin => Err(TrustError::Mismatch {
                    url: file.display().to_string(),
                    pinned: pin,
                    actual: ca.fingerprint(),
                }),
                _ => Ok(Some(ca)),
            }
        }
        (None, Some(pin)) => CaCert::fetch_pinned(url, pin, timeout).map(Some),
        (None, None) if url.starts_with("https://") => Err(TrustError::Missing {
            url: url.to_owned(),
        }),
        (None, None) => Ok(None),
    }
}

/// rustls with ring: the one provider in the workspace, and the one the server uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS settings trusting exactly `ca`, presenting `client_cert` when the server asks for one.
/// Without a CA nothing is trusted: an https:// URL then fails with an error that says a CA is
/// needed.
pub(crate) fn config(ca: Option<&CaCert>, client_cert: Option<ClientCert>) -> TlsConfig {
    let roots: Vec<Certificate<'static>> = ca
        .map(|ca| Certificate::from_der(&ca.der).to_owned())
        .into_iter()
        .collect();
    TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider())
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .client_cert(client_cert)
        .build()
}

/// Says in plain words why a TLS connection failed, when it is a trust problem; `None` for
/// everything else (refused, timed out: the server is away).
pub(crate) fn explain(error: &ureq::Error, has_ca: bool) -> Option<String> {
    use rustls::{AlertDescription, CertificateError, Error as Tls};
    let tls = match error {
        ureq::Error::Rustls(tls) => tls,
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
        _ => return None,
    };
    let reason = match tls {
        Tls::InvalidCertificate(CertificateError::UnknownIssuer)
        | Tls::InvalidCertificate(CertificateError::BadSignature)
        | Tls::InvalidCertificate(CertificateError::UnknownRevocationStatus)
            if !has_ca =>
        {
            "no CA is configured for this server: give its CA file or pin its CA fingerprint (the server prints it at start)".to_owned()
        }
        Tls::InvalidCertificate(CertificateError::UnknownIssuer)
        | Tls::InvalidCertificate(CertificateError::BadSignature) => {
            "its certificate is not signed by the CA we trust (wrong CA file, or another server)"
                .to_owned()
        }
        Tls::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "its certificate is for another name than the one in the URL (start the server with --tls-name NAME, or use a name it has)".to_owned(),
        Tls::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "its certificate has expired".to_owned(),
        // Sent by a server that verified our client certificate and refused it; a certificate
        // from another ringfence server's CA carries the same issuer name, so its signature is
        // what fails (decrypt_error).
        Tls::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::DecryptError
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate,
        ) => "it refused our client certificate (signed by another CA, or expired): re-enroll the agent with this server".to_owned(),
        Tls::InvalidMessage(_) => {
            "it does not speak TLS (a server started with --insecure-http wants an http:// URL)"
                .to_owned()
        }
        other => format!("TLS handshake failed: {other}"),
    };
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_the_forms_people_paste() {
        let hex = "ab".repeat(32);
        let printed: Fingerprint = format!("sha256:{hex}").parse().expect("printed form");
        assert_eq!(printed.to_string(), format!("sha256:{hex}"));
        assert_eq!(hex.parse::<Fingerprint>().expect("bare"), printed);
        let openssl = vec!["AB"; 32].join(":");
        assert_eq!(openssl.parse::<Fingerprint>().expect("openssl"), printed);
        for bad in ["", "sha256:", "sha256:abcd", "md5:00", &"zz".repeat(32)] {
            let error = bad.parse::<Fingerprint>().expect_err(bad);
            assert!(error.to_string().contains("64 hex digits"), "{error}");
        }
    }

    #[test]
    fn https_without_a_ca_is_refused_before_connecting() {
        let error =
            resolve("https://127.0.0.1:1", None, None, Duration::from_secs(1)).expect_err("no CA");
        assert!(matches!(error, TrustError::Missing { .. }), "{error}");
        assert_eq!(
            resolve("http://127.0.0.1:1", None, None, Duration::from_secs(1)).expect("plain"),
            None
        );
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "hello").expect("write");
        let error = CaCert::read_file(&path).expect_err("not pem");
        assert!(error.to_string().contains("ca.pem"), "{error}");
        let error = CaCert::read_file(&dir.path().join("none.pem")).expect_err("missing");
        assert!(error.to_string().contains("none.pem"), "{error}");
    }
}
