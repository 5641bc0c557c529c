//! A TLS client for tests that talk to the real listener: the harness's server on a loopback
//! listener with a chosen connection budget, a client that trusts its CA, and one operator
//! request on a fresh connection.

use ringfence_server::tls::ConnectionBudget;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.expect("CA PEM")).expect("CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One operator request on a fresh TLS connection: the status line.
pub async fn operator_request(addr: SocketAddr, tls: &TlsConnector, token: &str) -> String {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut stream = tls.connect(name, tcp).await.expect("operator handshake");
    let request = format!(
        "GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// Serves the harness's state on a fresh loopback listener under `budget`: the address, a TLS
/// client that trusts the server's own CA, and the serving task (abort it to stop).
pub async fn listen(
    h: &super::Harness,
    budget: Arc<ConnectionBudget>,
) -> (
    SocketAddr,
    TlsConnector,
    tokio::task::JoinHandle<Result<(), ringfence_server::ServerError>>,
) {
    let ca_pem = h
        .state
        .tls
        .as_ref()
        .and_then(|tls| tls.ca_pem.clone())
        .expect("the server's own CA");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(ringfence_server::serve_with(
        h.state.clone(),
        listener,
        budget,
        std::future::pending(),
    ));
    (addr, connector(&ca_pem), server)
}
