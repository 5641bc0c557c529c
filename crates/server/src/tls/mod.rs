//! The server's TLS identity. Agents run as root on every host and take their engines from this
//! server, so the channel must be authenticated: by default the server makes its own private CA
//! and a certificate signed by it (once, kept in `<data-dir>/tls/`), and clients trust exactly
//! that CA, given as a file or pinned by its SHA-256 fingerprint. An operator can bring a
//! certificate of their own instead. Plain HTTP is an explicit choice, and only on loopback.
//! With its own CA the server also signs agents' client certificates (`client_certs`).

pub mod client_certs;
pub mod edge;
mod generate;
pub mod listener;

pub use client_certs::{AgentIssuer, ClientCert, CsrError, VerifiedCsr};
pub use edge::{ConnectionBudget, ConnectionSlot, EdgeConfig, EdgeCounters};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("cannot make the server's certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error(
        "refusing plain HTTP on {0}: --insecure-http is for loopback addresses only (127.0.0.1, ::1); serve HTTPS on other addresses"
    )]
    InsecureNotLoopback(SocketAddr),
    #[error(
        "--require-agent-certs needs the server's own CA, which signs the agents' certificates: it cannot be used with --tls-cert/--tls-key or --insecure-http"
    )]
    AgentCertsUnavailable,
}

/// How the server talks to its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// HTTPS with a private CA and a certificate made in `<data-dir>/tls/` on first start and
    /// reused later. The certificate names localhost, the loopback addresses, the host name and
    /// these extra names (DNS names or IP addresses).
    GeneratedTls { names: Vec<String> },
    /// HTTPS with the operator's certificate chain and private key (PEM files).
    GivenTls { cert: PathBuf, key: PathBuf },
    /// Plain HTTP, on loopback only: tests, and a server behind a local TLS terminator.
    InsecureHttp,
}

/// What a TLS server presents, and what its clients may pin.
#[derive(Debug)]
pub struct TlsMaterial {
    pub config: Arc<rustls::ServerConfig>,
    /// The private CA (PEM) when the server made its own; served at `/api/v1/tls/ca.pem` so
    /// that a client holding only the fingerprint can fetch it and check it.
    pub ca_pem: Option<String>,
    /// `sha256:<hex>` of the CA certificate (DER), when the server made its own.
    pub ca_fingerprint: Option<String>,
    /// Where the CA file is, for the startup message.
    pub ca_path: Option<PathBuf>,
    /// Signs agents' client certificates, when the server made its own CA; the handshake then
    /// asks clients for a certificate from that CA (and accepts none).
    pub agent_issuer: Option<AgentIssuer>,
}

/// `sha256:<64 hex>` of a DER certificate: the form printed by the server and pinned by clients.
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Plain HTTP leaks credentials and lets anyone on the path swap releases, so it is refused
/// anywhere but loopback.
pub fn check_insecure_listen(address: SocketAddr) -> Result<(), TlsError> {
    if address.ip().is_loopback() {
        Ok(())
    } else {
        Err(TlsError::InsecureNotLoopback(address))
    }
}

impl TlsMaterial {
    /// Loads what `transport` asks for; `None` for plain HTTP.
    pub fn for_transport(
        transport: &Transport,
        data_dir: &Path,
    ) -> Result<Option<TlsMaterial>, TlsError> {
        match transport {
            Transport::InsecureHttp => Ok(None),
            Transport::GivenTls { cert, key } => TlsMaterial::given(cert, key).map(Some),
            Transport::GeneratedTls { names } => {
                TlsMaterial::generated(&data_dir.join("tls"), names).map(Some)
            }
        }
    }

    /// The operator's certificate chain and key. Clients verify it with their own CA file.
    pub fn given(cert: &Path, key: &Path) -> Result<TlsMaterial, TlsError> {
        let chain = read_chain(cert)?;
        let key = read_key(key)?;
        Ok(TlsMaterial {
            config: server_config(chain, key, None)?,
            ca_pem: None,
            ca_fingerprint: None,
            ca_path: None,
            agent_issuer: None,
        })
    }

    /// The private CA and server certificate in `dir`, made on first use.
    pub fn generated(dir: &Path, extra_names: &[String]) -> Result<TlsMaterial, TlsError> {
        let files = generate::ensure(dir, &generate::server_names(extra_names))?;
        let ca = read_chain(&files.ca_cert)?;
        let ca_der = ca.first().cloned().ok_or_else(|| TlsError::Pem {
            path: files.ca_cert.clone(),
            reason: "no certificate".into(),
        })?;
        let ca_fingerprint = fingerprint(&ca_der);
        let ca_pem = read(&files.ca_cert)?;
        let ca_key_pem = String::from_utf8_lossy(&read(&files.ca_key)?).into_owned();
        let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem).map_err(|e| TlsError::Pem {
            path: files.ca_key.clone(),
            reason: e.to_string(),
        })?;
        let agent_issuer = AgentIssuer::new(&ca_der, ca_key)?;
        let mut chain = read_chain(&files.server_cert)?;
        // Send the CA along: a client that pinned it sees the whole chain it verifies.
        chain.extend(ca);
        let key = read_key(&files.server_key)?;
        Ok(TlsMaterial {
            config: server_config(chain, key, Some(ca_der))?,
            ca_pem: Some(String::from_utf8_lossy(&ca_pem).into_owned()),
            ca_fingerprint: Some(ca_fingerprint),
            ca_path: Some(files.ca_cert),
            agent_issuer: Some(agent_issuer),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "no PEM certificate in the file".into(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        reason: format!("no usable PEM private key: {e}"),
    })
}

/// rustls with the ring provider, TLS 1.2 and 1.3, HTTP/1.1 only (the router speaks nothing
/// else). With `client_ca`, clients may present a certificate, which must then be one that CA
/// signed for client authentication, or the handshake fails; clients without one (operators,
/// browsers, enrolling agents) still connect, and the API decides what they may do.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<CertificateDer<'static>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(ca)
                .map_err(|e| TlsError::Config(format!("the CA as a client root: {e}")))?;
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Config(format!("client certificates: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_then_reused_with_private_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = dir.path().join("tls");
        let first = TlsMaterial::generated(&tls, &[]).expect("generate");
        let fingerprint = first.ca_fingerprint.clone().expect("fingerprint");
        assert!(fingerprint.starts_with("sha256:") && fingerprint.len() == 7 + 64);
        for key in ["ca.key", "server.key"] {
            let mode = std::fs::metadata(tls.join(key))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let server_pem = std::fs::read(tls.join("server.pem")).expect("server cert");
        let again = TlsMaterial::generated(&tls, &[]).expect("reuse");
        assert_eq!(again.ca_fingerprint, Some(fingerprint.clone()));
        assert_eq!(
            std::fs::read(tls.join("server.pem")).expect("server cert"),
            server_pem,
            "the server certificate is reused while its names stay the same"
        );
        // A new name reissues the server certificate from the same CA.
        let renamed =
            TlsMaterial::generated(&tls, &["rf.example.org".to_owned()]).expect("reissue");
        assert_eq!(renamed.ca_fingerprint, Some(fingerprint));
        assert_ne!(
            std::fs::read(tls.join("server.pem")).expect("server cert"),
            server_pem
        );
    }

    #[test]
    fn plain_http_only_on_loopback() {
        check_insecure_listen("127.0.0.1:7700".parse().expect("addr")).expect("loopback");
        check_insecure_listen("[::1]:7700".parse().expect("addr")).expect("loopback");
        let error = check_insecure_listen("0.0.0.0:7700".parse().expect("addr"))
            .expect_err("all addresses");
        assert!(error.to_string().contains("loopback"), "{error}");
        check_insecure_listen("10.1.2.3:7700".parse().expect("addr")).expect_err("LAN");
    }

    #[test]
    fn given_files_that_are_not_pem_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate").expect("write");
        let error = TlsMaterial::given(&cert, &cert).expect_err("garbage");
        assert!(error.to_string().contains("cert.pem"), "{error}");
        let missing = TlsMaterial::given(&dir.path().join("none.pem"), &cert).expect_err("none");
        assert!(missing.to_string().contains("none.pem"), "{missing}");
    }
}
