//! The agent's client against a real server over real sockets and real TLS, with bad input: the
//! wrong CA, a certificate for another name, a pinned fingerprint that does not match, plain
//! HTTP to the HTTPS port and HTTPS to a plain port, plain HTTP off loopback, expired and reused
//! enrollment tokens. Each fails with an error that says what is wrong, and enrolls nothing.
//! Then mutual TLS: the agent's own key and the certificate the server's CA signs for it, a
//! credential without it where one is required, another agent's certificate, a certificate from
//! another CA, and servers that have no CA to sign with. Refused requests record nothing.

use ringfence_protocol::api::{CertificateRenewal, EnrollRequest, Heartbeat, ReportBatch};
use ringfence_protocol::report::ReportBody;
use ringfence_server::ServerConfig;
use ringfence_server::tls::{TlsMaterial, Transport, VerifiedCsr};
use ringfence_uplink::link::report;
use ringfence_uplink::{
    AgentKey, CaCert, ClientError, Fingerprint, Identity, ServerClient, TrustError,
};
use std::io::{Read, Write};
use std::time::Duration;

struct Server {
    url: String,
    address: std::net::SocketAddr,
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    state: ringfence_server::AppState,
}

impl Server {
    /// A server on `bind` (port 0) serving `transport`.
    fn start(bind: &str, transport: Transport) -> Server {
        Server::start_with(bind, transport, false)
    }

    /// A server with its own CA that refuses agents without their client certificate.
    fn requiring_certs() -> Server {
        Server::start_with(
            "127.0.0.1:0",
            Transport::GeneratedTls { names: Vec::new() },
            true,
        )
    }

    fn start_with(bind: &str, transport: Transport, require_agent_certs: bool) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = ServerConfig::new(dir.path().to_owned());
        let scheme = if transport == Transport::InsecureHttp {
            "http"
        } else {
            "https"
        };
        config.transport = transport;
        config.require_agent_certs = require_agent_certs;
        let (address, state) = runtime.block_on(async {
            let state = ringfence_server::open(config).await.expect("open");
            let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
            let address = listener.local_addr().expect("address");
            tokio::spawn(ringfence_server::serve(
                state.clone(),
                listener,
                std::future::pending(),
            ));
            (address, state)
        });
        Server {
            url: format!("{scheme}://{address}"),
            address,
            dir,
            runtime,
            state,
        }
    }

    fn tls(bind: &str) -> Server {
        Server::start(bind, Transport::GeneratedTls { names: Vec::new() })
    }

    fn ca(&self) -> CaCert {
        CaCert::read_file(&self.dir.path().join("tls/ca.pem")).expect("CA")
    }

    fn token(&self, ttl: Duration) -> String {
        self.runtime
            .block_on(ringfence_server::create_enroll_tokens(
                &self.state.store,
                "test",
                1,
                ttl,
            ))
            .expect("token")
            .remove(0)
    }

    /// Agents whose heartbeat the server accepted.
    fn seen(&self) -> usize {
        self.runtime.block_on(async {
            self.state
                .heartbeats
                .flush(&self.state.store)
                .await
                .expect("flush");
            let agents = self.state.store.agents().await.expect("agents");
            agents.iter().filter(|a| a.last_seen_at.is_some()).count()
        })
    }

    fn reports(&self) -> usize {
        self.runtime
            .block_on(self.state.store.reports_since("alert", 0))
            .expect("reports")
            .len()
    }

    /// Enrolls like `ringfence agent` does: a key made here, its CSR sent with the token.
    fn enroll_agent(&self) -> Identity {
        let ca = (!self.url.starts_with("http://")).then(|| self.ca());
        let mut client = client(&self.url);
        if let Some(ca) = &ca {
            client = client.with_ca(ca);
        }
        let key = AgentKey::generate().expect("key");
        let response = client
            .enroll(&EnrollRequest {
                token: self.token(Duration::from_secs(60)),
                hostname: "host".into(),
                tags: Vec::new(),
                csr: Some(key.csr_pem().to_owned()),
            })
            .expect("enroll");
        Identity::from_enrollment(&self.url, ca.as_ref(), key, response).expect("identity")
    }

    fn enrolled(&self) -> usize {
        self.runtime
            .block_on(self.state.store.agents())
            .expect("agents")
            .len()
    }
}

fn enroll(client: &ServerClient, token: String) -> Result<String, ClientError> {
    client
        .enroll(&EnrollRequest {
            token,
            hostname: "host".into(),
            tags: Vec::new(),
            csr: None,
        })
        .map(|response| response.agent_id)
}

fn client(url: &str) -> ServerClient {
    ServerClient::new(url, Duration::from_secs(10))
}

#[test]
fn the_servers_own_ca_is_trusted_and_another_ca_is_refused() {
    let server = Server::tls("127.0.0.1:0");
    let other = tempfile::tempdir().expect("tempdir");
    TlsMaterial::generated(other.path(), &[]).expect("another CA");
    let wrong = CaCert::read_file(&other.path().join("ca.pem")).expect("CA");

    let error = enroll(
        &client(&server.url).with_ca(&wrong),
        server.token(Duration::from_secs(60)),
    )
    .expect_err("wrong CA");
    assert!(matches!(error, ClientError::Untrusted { .. }), "{error}");
    assert!(
        error.to_string().contains("not signed by the CA we trust"),
        "{error}"
    );
    assert!(!error.is_transient());

    let error = enroll(&client(&server.url), server.token(Duration::from_secs(60)))
        .expect_err("no CA at all");
    assert!(error.to_string().contains("no CA is configured"), "{error}");
    assert_eq!(server.enrolled(), 0, "nothing enrolled");

    enroll(
        &client(&server.url).with_ca(&server.ca()),
        server.token(Duration::from_secs(60)),
    )
    .expect("the right CA");
    assert_eq!(server.enrolled(), 1);
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    // 127.0.0.2 is loopback too, but not a name the generated certificate carries.
    let server = Server::tls("127.0.0.2:0");
    let error = enroll(
        &client(&server.url).with_ca(&server.ca()),
        server.token(Duration::from_secs(60)),
    )
    .expect_err("wrong name");
    assert!(error.to_string().contains("for another name"), "{error}");
    assert_eq!(server.enrolled(), 0);

    // With the name given to the server (--tls-name), the same address is fine.
    let named = Server::start(
        "127.0.0.2:0",
        Transport::GeneratedTls {
            names: vec!["127.0.0.2".into()],
        },
    );
    enroll(
        &client(&named.url).with_ca(&named.ca()),
        named.token(Duration::from_secs(60)),
    )
    .expect("named");
}

#[test]
fn a_pinned_fingerprint_fetches_the_ca_and_a_mismatch_is_refused() {
    let server = Server::tls("127.0.0.1:0");
    let pin = server.ca().fingerprint();
    let fetched = CaCert::fetch_pinned(&server.url, pin, Duration::from_secs(10)).expect("pinned");
    assert_eq!(fetched, server.ca());
    enroll(
        &client(&server.url).with_ca(&fetched),
        server.token(Duration::from_secs(60)),
    )
    .expect("enroll with the pinned CA");

    let wrong: Fingerprint = format!("sha256:{}", "00".repeat(32)).parse().expect("pin");
    let error =
        CaCert::fetch_pinned(&server.url, wrong, Duration::from_secs(10)).expect_err("mismatch");
    assert!(matches!(error, TrustError::Mismatch { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&wrong.to_string()) && text.contains(&pin.to_string()),
        "names both fingerprints: {text}"
    );
    assert_eq!(server.enrolled(), 1, "only the pinned enrollment");
}

#[test]
fn an_operators_certificate_is_served_and_there_is_no_ca_to_pin() {
    // Stands in for a certificate from the operator's own CA (--tls-cert/--tls-key).
    let own = tempfile::tempdir().expect("tempdir");
    let material = TlsMaterial::generated(own.path(), &[]).expect("certificate");
    let ca = CaCert::read_file(&own.path().join("ca.pem")).expect("CA");
    let server = Server::start(
        "127.0.0.1:0",
        Transport::GivenTls {
            cert: own.path().join("server.pem"),
            key: own.path().join("server.key"),
        },
    );
    enroll(
        &client(&server.url).with_ca(&ca),
        server.token(Duration::from_secs(60)),
    )
    .expect("verified against the operator's CA");
    let pin = ca.fingerprint();
    assert_eq!(material.ca_fingerprint, Some(pin.to_string()));
    let error = CaCert::fetch_pinned(&server.url, pin, Duration::from_secs(10))
        .expect_err("nothing to pin");
    assert!(error.to_string().contains("no CA of its own"), "{error}");
}

#[test]
fn plain_http_to_the_https_port_gets_a_clear_400() {
    let server = Server::tls("127.0.0.1:0");
    let mut stream = std::net::TcpStream::connect(server.address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /livez HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.address
    )
    .expect("write");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("an answer, not a hang");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("this port speaks HTTPS"), "{answer}");

    // The agent's client with an http:// URL says the same, and enrolls nothing.
    let plain = server.url.replacen("https://", "http://", 1);
    let error =
        enroll(&client(&plain), server.token(Duration::from_secs(60))).expect_err("plain HTTP");
    assert!(
        matches!(error, ClientError::Refused { status: 400, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("speaks HTTPS"), "{error}");
    assert_eq!(server.enrolled(), 0);
}

#[test]
fn https_to_a_plain_http_server_is_named() {
    let server = Server::start("127.0.0.1:0", Transport::InsecureHttp);
    let tls = server.url.replacen("http://", "https://", 1);
    let ca = Server::tls("127.0.0.1:0").ca();
    let error = enroll(
        &client(&tls).with_ca(&ca),
        server.token(Duration::from_secs(60)),
    )
    .expect_err("no TLS there");
    assert!(error.to_string().contains("does not speak TLS"), "{error}");
    // Plain HTTP still works on loopback where it was asked for.
    enroll(&client(&server.url), server.token(Duration::from_secs(60))).expect("plain");
}

#[test]
fn insecure_http_is_refused_off_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut config = ServerConfig::new(dir.path().to_owned());
    config.transport = Transport::InsecureHttp;
    let error = runtime
        .block_on(async {
            let state = ringfence_server::open(config).await.expect("open");
            let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
                .await
                .expect("bind");
            ringfence_server::serve(state, listener, std::future::pending()).await
        })
        .expect_err("refused");
    assert!(error.to_string().contains("loopback"), "{error}");
}

#[test]
fn expired_and_reused_enrollment_tokens_are_refused_over_tls() {
    let server = Server::tls("127.0.0.1:0");
    let client = client(&server.url).with_ca(&server.ca());
    let expired = server.token(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(5));
    let error = enroll(&client, expired).expect_err("expired");
    assert!(
        matches!(error, ClientError::Refused { status: 401, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("expired"), "{error}");
    let token = server.token(Duration::from_secs(60));
    enroll(&client, token.clone()).expect("first use");
    let error = enroll(&client, token).expect_err("reused");
    assert!(error.to_string().contains("already used"), "{error}");
    assert_eq!(server.enrolled(), 1);
}

fn alert() -> ReportBatch {
    ReportBatch {
        reports: vec![report(ReportBody::Alert(
            serde_json::json!({"what": "test"}),
        ))],
    }
}

#[test]
fn an_agent_enrolls_with_its_own_key_and_talks_over_mutual_tls() {
    let server = Server::requiring_certs();
    let identity = server.enroll_agent();
    let certified = identity.client_cert.clone().expect("a client certificate");
    assert!(
        certified
            .certificate
            .starts_with("-----BEGIN CERTIFICATE-----"),
        "{certified:?}"
    );
    // Kept in the identity file (0600) and presented by the client made from it.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("identity.json");
    identity.save(&path).expect("save");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path).expect("stat").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let loaded = Identity::load(&path).expect("load").expect("enrolled");
    assert_eq!(loaded, identity);
    let client = loaded.client(Duration::from_secs(10)).expect("client");
    client
        .heartbeat(&Heartbeat::default())
        .expect("heartbeat over mutual TLS");
    let ack = client.upload(&alert()).expect("reports over mutual TLS");
    assert_eq!(ack.stored, 1);
    assert_eq!((server.seen(), server.reports()), (1, 1));
}

#[test]
fn where_certificates_are_required_a_credential_alone_is_refused() {
    let server = Server::requiring_certs();
    let identity = server.enroll_agent();
    let bare = client(&server.url)
        .with_ca(&server.ca())
        .with_credential(&identity.credential);
    let refused = |error: ClientError| {
        assert!(
            matches!(error, ClientError::Refused { status: 401, .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("requires agent client certificates; re-enroll the agent"),
            "{error}"
        );
    };
    refused(
        bare.heartbeat(&Heartbeat::default())
            .expect_err("heartbeat"),
    );
    refused(bare.upload(&alert()).expect_err("upload"));
    refused(bare.blob(&"00".repeat(32)).expect_err("download"));
    assert_eq!(
        (server.seen(), server.reports()),
        (0, 0),
        "nothing accepted"
    );

    // An agent that sends no CSR is refused before its token is spent: it can come back with one.
    let token = server.token(Duration::from_secs(60));
    let with_ca = client(&server.url).with_ca(&server.ca());
    let error = enroll(&with_ca, token.clone()).expect_err("no CSR");
    assert!(
        matches!(error, ClientError::Refused { status: 400, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("must carry a CSR"), "{error}");
    let key = AgentKey::generate().expect("key");
    let response = with_ca
        .enroll(&EnrollRequest {
            token,
            hostname: "host".into(),
            tags: Vec::new(),
            csr: Some(key.csr_pem().to_owned()),
        })
        .expect("the same token, now with a CSR");
    assert!(response.client_cert.is_some());
    assert_eq!(server.enrolled(), 2);
}

#[test]
fn another_agents_certificate_with_this_credential_is_refused() {
    let server = Server::tls("127.0.0.1:0");
    let a = server.enroll_agent();
    let b = server.enroll_agent();
    let mixed = client(&server.url)
        .with_ca(&server.ca())
        .with_credential(&b.credential)
        .with_client_cert(a.client_cert.as_ref().expect("A's certificate"))
        .expect("client");
    let error = mixed
        .heartbeat(&Heartbeat::default())
        .expect_err("A's certificate, B's credential");
    assert!(
        matches!(error, ClientError::Refused { status: 401, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("another agent"), "{error}");
    mixed.upload(&alert()).expect_err("upload");
    assert_eq!((server.seen(), server.reports()), (0, 0));

    // Even where certificates are optional, an agent that was issued one must present it: a
    // copy of its credential alone is refused, and cannot buy a certificate of its own.
    let bare = client(&server.url)
        .with_ca(&server.ca())
        .with_credential(&b.credential);
    let error = bare
        .heartbeat(&Heartbeat::default())
        .expect_err("B's credential alone");
    assert!(
        matches!(error, ClientError::Refused { status: 401, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("issued a client certificate"),
        "{error}"
    );
    let key = AgentKey::generate().expect("key");
    let error = bare
        .renew_certificate(&CertificateRenewal {
            csr: key.csr_pem().to_owned(),
        })
        .expect_err("renewal without B's certificate");
    assert!(
        matches!(error, ClientError::Refused { status: 401, .. }),
        "{error}"
    );
    b.client(Duration::from_secs(10))
        .expect("client")
        .heartbeat(&Heartbeat::default())
        .expect("B with its own certificate");
    assert_eq!(server.seen(), 1);
}

#[test]
fn a_client_certificate_from_another_ca_fails_the_handshake() {
    let server = Server::tls("127.0.0.1:0");
    let agent = server.enroll_agent();
    // Another server's CA signs a certificate naming this very agent.
    let other = tempfile::tempdir().expect("tempdir");
    let material = TlsMaterial::generated(other.path(), &[]).expect("another CA");
    let key = AgentKey::generate().expect("key");
    let csr = VerifiedCsr::from_pem(key.csr_pem()).expect("csr");
    let issued = material
        .agent_issuer
        .as_ref()
        .expect("issuer")
        .issue(&agent.agent_id, &csr, Duration::from_secs(86_400))
        .expect("issue");
    let foreign = key.certified(issued).expect("certified");
    let client = client(&server.url)
        .with_ca(&server.ca())
        .with_credential(&agent.credential)
        .with_client_cert(&foreign)
        .expect("client");
    let error = client
        .heartbeat(&Heartbeat::default())
        .expect_err("foreign certificate");
    assert!(matches!(error, ClientError::Untrusted { .. }), "{error}");
    assert!(
        error.to_string().contains("refused our client certificate"),
        "{error}"
    );
    assert_eq!(server.seen(), 0);
}

#[test]
fn servers_without_a_ca_of_their_own_sign_nothing_and_still_serve_the_agent() {
    let own = tempfile::tempdir().expect("tempdir");
    TlsMaterial::generated(own.path(), &[]).expect("certificate");
    let given = Server::start(
        "127.0.0.1:0",
        Transport::GivenTls {
            cert: own.path().join("server.pem"),
            key: own.path().join("server.key"),
        },
    );
    let operators_ca = CaCert::read_file(&own.path().join("ca.pem")).expect("CA");
    let key = AgentKey::generate().expect("key");
    let response = client(&given.url)
        .with_ca(&operators_ca)
        .enroll(&EnrollRequest {
            token: given.token(Duration::from_secs(60)),
            hostname: "host".into(),
            tags: Vec::new(),
            csr: Some(key.csr_pem().to_owned()),
        })
        .expect("enroll");
    assert_eq!(response.client_cert, None, "no CA key to sign with");
    let identity =
        Identity::from_enrollment(&given.url, Some(&operators_ca), key, response).expect("id");
    assert_eq!(identity.client_cert, None);
    identity
        .client(Duration::from_secs(10))
        .expect("client")
        .heartbeat(&Heartbeat::default())
        .expect("credential only");

    let plain = Server::start("127.0.0.1:0", Transport::InsecureHttp);
    let identity = plain.enroll_agent();
    assert_eq!(identity.client_cert, None, "no handshake to carry one");
    identity
        .client(Duration::from_secs(10))
        .expect("client")
        .heartbeat(&Heartbeat::default())
        .expect("plain HTTP");
    assert_eq!((given.seen(), plain.seen()), (1, 1));
}

#[test]
fn requiring_agent_certificates_without_the_servers_own_ca_is_refused_at_start() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for transport in [
        Transport::InsecureHttp,
        Transport::GivenTls {
            cert: "cert.pem".into(),
            key: "key.pem".into(),
        },
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut config = ServerConfig::new(data.clone());
        config.transport = transport.clone();
        config.require_agent_certs = true;
        let error = runtime
            .block_on(ringfence_server::open(config))
            .err()
            .unwrap_or_else(|| panic!("{transport:?} opened"));
        assert!(
            error
                .to_string()
                .contains("--require-agent-certs needs the server's own CA"),
            "{error}"
        );
        assert!(!data.exists(), "refused before anything was made");
    }
}
