//! The uplink against a real server over real HTTPS with agent certificates required (mutual
//! TLS): enroll, follow a rollout, verify and stage the bundle, report; roll back with the
//! server's signed directive; refuse a tampered blob; lose nothing while the server is down;
//! audit at an audit rollout's or plan's word and enforce again when it is enforced or retired.

use ringfence_bundled_engines as bundled;
use ringfence_protocol::api::{EnrollRequest, HealthFigures};
use ringfence_protocol::report::{CrashKind, CrashReport, FailureReport, ReportBody};
use ringfence_protocol::{FailureKind, FailurePolicy, FailureRecord};
use ringfence_release::{
    Bundle, Component, LoadedRelease, MANIFEST_FORMAT, Manifest, ReleaseKey, SlotStore, Version,
};
use ringfence_server::ServerConfig;
use ringfence_uplink::link::report;
use ringfence_uplink::{
    AgentHost, AgentKey, CaCert, HostError, Identity, Link, LinkConfig, ServerClient, Spool,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records what the uplink activates; the only test double, standing in for the agent. It can
/// take its time (a long compile) and refuse a version (a swap the agent refused).
#[derive(Default)]
struct RecordingHost {
    activated: Mutex<Vec<String>>,
    disabled: Mutex<Vec<String>>,
    /// How long each activation takes.
    delay: Mutex<Duration>,
    /// A version whose engines the agent refuses (they fail on its recent events).
    refuse: Mutex<Option<String>>,
    /// Heartbeats asked for so far.
    beats: std::sync::atomic::AtomicU64,
    /// Activations begun so far.
    activating: std::sync::atomic::AtomicU64,
    /// The channels the server wanted audited at the last heartbeat answered.
    audited: Mutex<Option<BTreeSet<String>>>,
}

impl RecordingHost {
    /// True once the last heartbeat answer audited exactly `channels`.
    fn audits(&self, channels: &[&str]) -> bool {
        let wanted: BTreeSet<String> = channels.iter().map(|c| (*c).to_owned()).collect();
        self.audited.lock().expect("lock").as_ref() == Some(&wanted)
    }
}

impl AgentHost for RecordingHost {
    fn activate(
        &self,
        channel: &str,
        release: &LoadedRelease,
        deadline: Instant,
    ) -> Result<(), HostError> {
        self.activating
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let delay = *self.delay.lock().expect("lock");
        std::thread::sleep(delay);
        if Instant::now() >= deadline {
            return Err(HostError::TimedOut);
        }
        let version = release.version().to_string();
        if self.refuse.lock().expect("lock").as_deref() == Some(version.as_str()) {
            return Err(HostError::Refused(
                "engine faulty failed on sample event 0 (exec): trap".into(),
            ));
        }
        self.activated
            .lock()
            .expect("lock")
            .push(format!("{channel}@{version}"));
        Ok(())
    }

    fn disable(&self, channel: &str) -> Result<(), HostError> {
        self.disabled.lock().expect("lock").push(channel.to_owned());
        Ok(())
    }

    fn assign_audited_channels(&self, channels: &BTreeSet<String>) {
        *self.audited.lock().expect("lock") = Some(channels.clone());
    }

    fn health(&self) -> HealthFigures {
        self.beats
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HealthFigures::default()
    }
}

struct Server {
    url: String,
    /// The CA the server made in its data directory; agents and operator verify it over TLS.
    ca: CaCert,
    operator: String,
    data_dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(|_| {}, |_| {})
    }

    /// Starts a server after `prepare` has set up its (empty) data directory and `configure`
    /// its configuration.
    fn start_with(
        prepare: impl FnOnce(&std::path::Path),
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Server {
        let data_dir = tempfile::tempdir().expect("tempdir");
        prepare(data_dir.path());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = ServerConfig::new(data_dir.path().to_owned());
        config.controller_tick = Duration::from_millis(100);
        config.heartbeat_interval = Duration::from_secs(1);
        // Every heartbeat, download and report of these tests must then carry the agent's
        // client certificate.
        config.require_agent_certs = true;
        configure(&mut config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (url, operator) = runtime.block_on(async {
            let state = ringfence_server::open(config).await.expect("open");
            let operator = ringfence_server::create_operator_token(&state.store, "test")
                .await
                .expect("token");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("https://{}", listener.local_addr().expect("addr"));
            tokio::spawn(ringfence_server::serve(state, listener, async {
                let _ = rx.await;
            }));
            (url, operator)
        });
        let ca = CaCert::read_file(&data_dir.path().join("tls/ca.pem")).expect("server CA");
        Server {
            url,
            ca,
            operator,
            data_dir,
            runtime,
            shutdown: Some(tx),
        }
    }

    fn operator(&self) -> ServerClient {
        ServerClient::new(&self.url, Duration::from_secs(60))
            .with_ca(&self.ca)
            .with_credential(&self.operator)
    }

    fn enroll_token(&self) -> String {
        let reply: Value = self
            .operator()
            .post_json("tokens", "/api/v1/enroll-tokens", &json!({"count": 1}))
            .expect("tokens");
        reply["tokens"][0].as_str().expect("token").to_owned()
    }

    fn publish(&self, version: &str, content: &[u8], skip_preflight: bool) -> Value {
        let key = ReleaseKey::read_file(&self.data_dir.path().join("release.key")).expect("key");
        self.publish_signed(&key, version, content, skip_preflight)
    }

    fn publish_signed(
        &self,
        key: &ReleaseKey,
        version: &str,
        content: &[u8],
        skip_preflight: bool,
    ) -> Value {
        let wasm = bundled::faulty().to_vec();
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            name: "detection".into(),
            version: Version::parse(version).expect("version"),
            engine_name: "faulty".into(),
            engine: Some(Component::of(&wasm)),
            content: Some(Component::of(content)),
            failure_policy: FailurePolicy::FailOpen,
            min_agent_version: Version::new(0, 1, 0),
            created_at: 1,
            notes: String::new(),
        };
        let bytes = Bundle::build(&manifest, Some(wasm), Some(content.to_vec()), key)
            .expect("build")
            .to_bytes()
            .expect("bytes");
        let path = format!("/api/v1/releases?skip_preflight={skip_preflight}");
        self.operator()
            .post_bytes("publish", &path, &bytes)
            .expect("publish")
    }

    fn start_rollout(&self, version: &str) -> String {
        let body =
            json!({"channel": "detection", "version": version, "rings": "100", "bake_s": 0.5});
        let rollout: Value = self
            .operator()
            .post_json("rollout", "/api/v1/rollouts", &body)
            .expect("rollout");
        rollout["id"].as_str().expect("id").to_owned()
    }

    fn rollout(&self, id: &str) -> Value {
        self.operator()
            .get_json("rollout", &format!("/api/v1/rollouts/{id}"))
            .expect("rollout")
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Agent {
    identity: Identity,
    dir: tempfile::TempDir,
    spool: Arc<Spool>,
    host: Arc<RecordingHost>,
}

impl Agent {
    fn enroll(server: &Server, tags: &[&str]) -> Agent {
        let client = ServerClient::new(&server.url, Duration::from_secs(10)).with_ca(&server.ca);
        let key = AgentKey::generate().expect("key");
        let response = client
            .enroll(&EnrollRequest {
                token: server.enroll_token(),
                hostname: "test-host".into(),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                csr: Some(key.csr_pem().to_owned()),
            })
            .expect("enroll");
        let identity = Identity::from_enrollment(&server.url, Some(&server.ca), key, response)
            .expect("identity");
        assert!(identity.client_cert.is_some(), "links run over mutual TLS");
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Arc::new(Spool::open(&dir.path().join("spool"), 1 << 20).expect("spool"));
        Agent {
            identity,
            dir,
            spool,
            host: Arc::default(),
        }
    }

    fn identity_path(&self) -> std::path::PathBuf {
        self.dir.path().join("identity.json")
    }

    fn link(&self) -> Link {
        self.link_saving_to(self.identity_path())
    }

    fn link_saving_to(&self, identity_path: std::path::PathBuf) -> Link {
        self.link_with(identity_path, Duration::from_secs(120))
    }

    fn link_with(&self, identity_path: std::path::PathBuf, install_timeout: Duration) -> Link {
        let slots = SlotStore::open(self.dir.path().join("slots")).expect("slots");
        let config = LinkConfig {
            interval: Duration::from_millis(200),
            bless_after: Duration::from_millis(300),
            identity_path: Some(identity_path),
            health_path: Some(self.dir.path().join("health.json")),
            install_timeout,
            ..LinkConfig::default()
        };
        Link::start(
            &self.identity,
            Arc::clone(&self.spool),
            slots,
            Arc::clone(&self.host),
            config,
        )
        .expect("link")
    }

    fn current(&self) -> Option<String> {
        let slots = SlotStore::open(self.dir.path().join("slots")).expect("slots");
        slots
            .state("detection")
            .ok()?
            .current
            .map(|v| v.to_string())
    }

    fn lkg(&self) -> Option<String> {
        let slots = SlotStore::open(self.dir.path().join("slots")).expect("slots");
        slots.state("detection").ok()?.lkg.map(|v| v.to_string())
    }
}

fn install_reports(server: &Server) -> Vec<Value> {
    let installs: Value = server
        .operator()
        .get_json("reports", "/api/v1/reports?kind=install")
        .expect("reports");
    installs["reports"].as_array().expect("list").clone()
}

/// The body of a listed report, wherever the server puts it.
fn report_body(report: &Value) -> &Value {
    report.get("body").unwrap_or(report)
}

#[test]
fn a_release_the_agent_refuses_is_reported_and_never_runs_or_blessed() {
    let server = Server::start();
    let agent = Agent::enroll(&server, &[]);
    *agent.host.refuse.lock().expect("lock") = Some("2.0.0".into());
    let _link = agent.link();
    server.publish("1.0.0", b"ok", false);
    let first = server.start_rollout("1.0.0");
    wait_for("1.0.0 blessed", Duration::from_secs(20), || {
        agent.lkg().as_deref() == Some("1.0.0")
    });
    wait_for("rollout complete", Duration::from_secs(20), || {
        server.rollout(&first)["phase"] == "completed"
    });

    server.publish("2.0.0", b"trap", true);
    server.start_rollout("2.0.0");
    wait_for("a refused install report", Duration::from_secs(20), || {
        install_reports(&server)
            .iter()
            .any(|r| report_body(r)["outcome"] == "refused")
    });
    let reports = install_reports(&server);
    let refused = reports
        .iter()
        .map(report_body)
        .find(|body| body["outcome"] == "refused")
        .expect("refused report");
    assert_eq!(refused["version"], "2.0.0");
    let reason = refused["reason"].as_str().expect("reason");
    assert!(reason.contains("trap"), "{reason}");
    // Long enough for a blessing, had it run.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        agent.current().as_deref(),
        Some("1.0.0"),
        "not listed as running"
    );
    assert_eq!(agent.lkg().as_deref(), Some("1.0.0"), "never blessed");
    assert_eq!(
        *agent.host.activated.lock().expect("lock"),
        vec!["detection@1.0.0"]
    );
}

#[test]
fn heartbeats_go_on_while_an_install_takes_long() {
    let server = Server::start();
    let agent = Agent::enroll(&server, &[]);
    *agent.host.delay.lock().expect("lock") = Duration::from_secs(4);
    let _link = agent.link();
    server.publish("1.0.0", b"ok", false);
    server.start_rollout("1.0.0");
    wait_for("the activation to start", Duration::from_secs(20), || {
        agent
            .host
            .activating
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    });
    let before = agent.host.beats.load(std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(2500));
    let during = agent.host.beats.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        agent.host.activated.lock().expect("lock").is_empty(),
        "still installing"
    );
    assert!(during >= 2, "{during} heartbeats in 2.5 s of installing");
    wait_for("installed", Duration::from_secs(20), || {
        agent.host.activated.lock().expect("lock").len() == 1
    });
}

#[test]
fn an_install_that_outlasts_its_timeout_is_refused_and_the_agent_stays() {
    let server = Server::start();
    let agent = Agent::enroll(&server, &[]);
    let _link = agent.link_with(agent.identity_path(), Duration::from_secs(1));
    server.publish("1.0.0", b"ok", false);
    let first = server.start_rollout("1.0.0");
    wait_for("1.0.0 runs", Duration::from_secs(20), || {
        agent.current().as_deref() == Some("1.0.0")
    });
    wait_for("rollout complete", Duration::from_secs(20), || {
        server.rollout(&first)["phase"] == "completed"
    });
    *agent.host.delay.lock().expect("lock") = Duration::from_secs(3);
    server.publish("2.0.0", b"ok", true);
    server.start_rollout("2.0.0");
    wait_for("a refused install report", Duration::from_secs(20), || {
        install_reports(&server)
            .iter()
            .any(|r| report_body(r)["outcome"] == "refused")
    });
    let reports = install_reports(&server);
    let refused = reports
        .iter()
        .map(report_body)
        .find(|body| body["outcome"] == "refused")
        .expect("refused");
    let reason = refused["reason"].as_str().expect("reason");
    assert!(reason.contains("install timeout"), "{reason}");
    // The host gives up before switching, once its compile is done: nothing changes.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(agent.current().as_deref(), Some("1.0.0"));
    assert_eq!(
        *agent.host.activated.lock().expect("lock"),
        vec!["detection@1.0.0"]
    );
    assert_eq!(
        install_reports(&server).len(),
        2,
        "each install reported once"
    );
}

#[test]
fn follows_a_rollout_and_rolls_back_with_the_signed_directive() {
    let server = Server::start();
    let agent = Agent::enroll(&server, &["canary"]);
    let _link = agent.link();
    server.publish("1.0.0", b"ok", false);
    let first = server.start_rollout("1.0.0");
    wait_for("1.0.0 installed", Duration::from_secs(20), || {
        agent.current().as_deref() == Some("1.0.0")
    });
    wait_for("rollout complete", Duration::from_secs(20), || {
        server.rollout(&first)["phase"] == "completed"
    });
    // Let 1.0.0 become the last known good before the bad release arrives.
    std::thread::sleep(Duration::from_millis(800));

    server.publish("2.0.0", b"cf291", true);
    let second = server.start_rollout("2.0.0");
    wait_for("2.0.0 installed", Duration::from_secs(20), || {
        agent.current().as_deref() == Some("2.0.0")
    });
    // The engine fails on this host: the agent reports it, the crash gate trips.
    agent
        .spool
        .push(&report(ReportBody::Failure(FailureReport {
            record: FailureRecord {
                engine: "faulty".into(),
                content_sha256: String::new(),
                kind: FailureKind::Trap,
                trap_code: None,
                message: "oob".into(),
                event_kind: None,
                backtrace: Vec::new(),
                at_unix_ns: 0,
                elapsed_us: 0,
            },
            during: None,
        })))
        .expect("spool");
    wait_for("rolled back", Duration::from_secs(20), || {
        server.rollout(&second)["phase"] == "rolled_back"
    });
    // The agent switches first and the slots follow: wait for both.
    wait_for("back on 1.0.0", Duration::from_secs(20), || {
        agent.host.activated.lock().expect("lock").len() == 3
            && agent.current().as_deref() == Some("1.0.0")
    });
    let activated = agent.host.activated.lock().expect("lock").clone();
    assert_eq!(
        activated,
        vec!["detection@1.0.0", "detection@2.0.0", "detection@1.0.0"]
    );
    wait_for("three install reports", Duration::from_secs(20), || {
        let installs: Value = server
            .operator()
            .get_json("reports", "/api/v1/reports?kind=install")
            .expect("reports");
        installs["reports"].as_array().expect("list").len() == 3
    });
}

#[test]
fn reports_spooled_while_the_server_is_down_arrive_once() {
    let mut server = Server::start();
    let agent = Agent::enroll(&server, &[]);
    for i in 0..5 {
        agent
            .spool
            .push(&report(ReportBody::Alert(json!({"n": i}))))
            .expect("spool");
    }
    let operator = server.operator();
    let url = server.url.clone();
    server.stop();
    std::thread::sleep(Duration::from_millis(300));
    {
        // The server is gone: the link keeps everything.
        let _link = agent.link();
        std::thread::sleep(Duration::from_millis(700));
    }
    assert_eq!(
        agent.spool.stats().pending,
        5,
        "nothing lost, nothing acknowledged"
    );
    // A new server on the same data directory and port would do; here the same process
    // serves again on a new listener.
    let data_dir = server.data_dir.path().to_owned();
    let runtime = &server.runtime;
    let addr = url.trim_start_matches("https://").to_owned();
    runtime.block_on(async {
        let mut config = ServerConfig::new(data_dir);
        config.heartbeat_interval = Duration::from_secs(1);
        let state = ringfence_server::open(config).await.expect("reopen");
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .expect("same port");
        tokio::spawn(ringfence_server::serve(
            state,
            listener,
            std::future::pending(),
        ));
    });
    let _link = agent.link();
    wait_for("spool drained", Duration::from_secs(20), || {
        agent.spool.stats().pending == 0
    });
    let alerts: Value = operator
        .get_json("reports", "/api/v1/reports?kind=alert")
        .expect("reports");
    assert_eq!(
        alerts["reports"].as_array().expect("list").len(),
        5,
        "each report exactly once"
    );
}

#[test]
fn a_report_no_server_accepts_is_set_aside_and_the_rest_arrive() {
    let server = Server::start();
    let agent = Agent::enroll(&server, &[]);
    agent
        .spool
        .push(&report(ReportBody::Alert(json!({"n": 0}))))
        .expect("spool");
    // A crash report with a body past the protocol's limit, spooled between two good ones: it
    // must neither be retried forever nor hold the others back.
    let oversize = "00".repeat(ringfence_protocol::api::limits::MAX_REPORT_BODY_BYTES);
    agent
        .spool
        .push(&report(ReportBody::Crash(CrashReport {
            engine: "agent".into(),
            exit_code: None,
            kind: CrashKind::Native,
            message: oversize,
            ran_ms: 0,
            signal: None,
            slot: Default::default(),
        })))
        .expect("spool");
    agent
        .spool
        .push(&report(ReportBody::Alert(json!({"n": 1}))))
        .expect("spool");
    let _link = agent.link();
    wait_for("spool drained", Duration::from_secs(20), || {
        agent.spool.stats().pending == 0
    });
    let stats = agent.spool.stats();
    assert_eq!(stats.set_aside, 1, "{stats:?}");
    let alerts: Value = server
        .operator()
        .get_json("reports", "/api/v1/reports?kind=alert")
        .expect("reports");
    assert_eq!(alerts["reports"].as_array().expect("list").len(), 2);
    // The host's copy of its heartbeat counts the report set aside once the next beat is out.
    wait_for(
        "the last heartbeat counts it",
        Duration::from_secs(10),
        || {
            std::fs::read(agent.dir.path().join("health.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .is_some_and(|last| last["health"]["spool_dropped"] == 1)
        },
    );
    let kept = std::fs::read_dir(agent.dir.path().join("spool/rejected"))
        .expect("rejected dir")
        .count();
    assert_eq!(kept, 1, "the refused report is kept for a person to read");
}

#[test]
fn a_release_the_agent_does_not_trust_is_refused_and_reported() {
    // The server trusts an extra key the agent never learned: the agent must refuse releases
    // signed only by it, keep running what it has, and say why.
    let stranger = ReleaseKey::generate().expect("key");
    let stranger_public = stranger.public();
    let server = Server::start_with(
        |dir| {
            std::fs::create_dir_all(dir.join("trusted-keys")).expect("mkdir");
            stranger_public
                .write_file(&dir.join("trusted-keys/stranger.pub"))
                .expect("write key");
        },
        |_| {},
    );
    let agent = Agent::enroll(&server, &["canary"]);
    // Enrollment told the agent about every key the server trusts; forget the stranger, as an
    // agent provisioned with only the fleet's release key would.
    let own = server.data_dir.path().join("release.pub");
    let own_key = std::fs::read_to_string(own)
        .expect("release.pub")
        .trim()
        .to_owned();
    let mut identity = agent.identity.clone();
    identity.release_keys = vec![own_key];
    let agent = Agent { identity, ..agent };
    let _link = agent.link();
    server.publish("1.0.0", b"ok", false);
    let first = server.start_rollout("1.0.0");
    wait_for("1.0.0 installed", Duration::from_secs(20), || {
        agent.current().as_deref() == Some("1.0.0")
    });
    wait_for("rollout complete", Duration::from_secs(20), || {
        server.rollout(&first)["phase"] == "completed"
    });
    server.publish_signed(&stranger, "1.1.0", b"ok", false);
    server.start_rollout("1.1.0");
    wait_for("a refusal report", Duration::from_secs(20), || {
        let installs: Value = server
            .operator()
            .get_json("reports", "/api/v1/reports?kind=install")
            .expect("reports");
        installs["reports"]
            .as_array()
            .expect("list")
            .iter()
            .any(|r| r["body"]["outcome"] == "refused")
    });
    assert_eq!(
        agent.current().as_deref(),
        Some("1.0.0"),
        "still on what it ran"
    );
    let installs: Value = server
        .operator()
        .get_json("reports", "/api/v1/reports?kind=install")
        .expect("reports");
    let refusal = installs["reports"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["body"]["outcome"] == "refused")
        .cloned()
        .expect("refusal");
    assert!(
        refusal["body"]["reason"]
            .as_str()
            .expect("reason")
            .contains("key"),
        "{refusal}"
    );
}

#[test]
fn remediation_plans_pin_and_disable() {
    let server = Server::start();
    let agent = Agent::enroll(&server, &["canary"]);
    let _link = agent.link();
    server.publish("1.0.0", b"ok", false);
    let first = server.start_rollout("1.0.0");
    wait_for("rollout complete", Duration::from_secs(20), || {
        server.rollout(&first)["phase"] == "completed"
    });
    server.publish("2.0.0", b"ok", false);
    let second = server.start_rollout("2.0.0");
    wait_for("2.0.0 installed", Duration::from_secs(20), || {
        agent.current().as_deref() == Some("2.0.0")
    });
    wait_for("rollout complete", Duration::from_secs(20), || {
        server.rollout(&second)["phase"] == "completed"
    });
    // An operator pins the fleet back to 1.0.0: the plan overrides the completed rollout and
    // carries the signed permission to go back.
    let pin = json!({"scope": "fleet", "channel": "detection", "action": "pin", "version": "1.0.0", "reason": "pin while we investigate"});
    let _: Value = server
        .operator()
        .post_json("plan", "/api/v1/remediations", &pin)
        .expect("pin plan");
    wait_for("pinned to 1.0.0", Duration::from_secs(20), || {
        agent.current().as_deref() == Some("1.0.0")
    });
    // Then disables the channel on canaries altogether.
    let disable = json!({"scope": "tag:canary", "channel": "detection", "action": "disable", "reason": "stop detection on canaries"});
    let _: Value = server
        .operator()
        .post_json("plan", "/api/v1/remediations", &disable)
        .expect("disable plan");
    wait_for("disabled", Duration::from_secs(20), || {
        !agent.host.disabled.lock().expect("lock").is_empty()
    });
    wait_for("remediation reports", Duration::from_secs(20), || {
        let reports: Value = server
            .operator()
            .get_json("reports", "/api/v1/reports?kind=remediation")
            .expect("reports");
        reports["reports"].as_array().expect("list").len() == 2
    });
}

#[test]
fn a_client_certificate_is_renewed_before_it_expires_and_kept() {
    // A day of backdating and an hour ahead: less than a third of its life is left at once.
    let server = Server::start_with(
        |_| {},
        |config| config.agent_cert_validity = Duration::from_secs(3600),
    );
    let agent = Agent::enroll(&server, &[]);
    agent.identity.save(&agent.identity_path()).expect("save");
    let first = agent.identity.client_cert.clone().expect("certificate");
    assert!(first.renewal_due(std::time::SystemTime::now()));
    let _link = agent.link();
    let saved = || {
        Identity::load(&agent.identity_path())
            .expect("load")
            .expect("identity")
            .client_cert
            .expect("certificate")
    };
    wait_for(
        "a renewed certificate on disk",
        Duration::from_secs(20),
        || saved() != first,
    );
    let renewed = saved();
    assert_ne!(renewed.key, first.key, "a new key, made on the host");
    // The renewed identity works on its own, where certificates are required.
    let mut identity = agent.identity.clone();
    identity.client_cert = Some(renewed);
    identity
        .client(Duration::from_secs(10))
        .expect("client")
        .heartbeat(&ringfence_protocol::api::Heartbeat::default())
        .expect("heartbeat with the renewed certificate");
}

/// Renewals the server has audited.
fn renewals(server: &Server) -> usize {
    let log: Value = server
        .operator()
        .get_json("audit", "/api/v1/audit?limit=1000")
        .expect("audit");
    log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|entry| entry["action"] == "renew_certificate")
        .count()
}

/// Waits for `beats` more heartbeats of the fleet's only agent.
fn wait_heartbeats(server: &Server, beats: usize) -> usize {
    let last_seen = || {
        let agents: Value = server
            .operator()
            .get_json("agents", "/api/v1/agents")
            .expect("agents");
        agents["agents"][0]["last_seen_at_ms"].as_i64().unwrap_or(0)
    };
    let mut seen_beats = 0;
    let mut seen = last_seen();
    wait_for("more heartbeats", Duration::from_secs(20), || {
        let now = last_seen();
        if now > seen {
            seen_beats += 1;
            seen = now;
        }
        seen_beats >= beats
    });
    seen_beats
}

#[test]
fn a_certificate_due_as_soon_as_it_is_renewed_is_not_renewed_on_every_heartbeat() {
    // An hour of validity after a day of backdating: every certificate this server signs is
    // due at once, as with a host clock far ahead of the server's.
    let server = Server::start_with(
        |_| {},
        |config| config.agent_cert_validity = Duration::from_secs(3600),
    );
    let agent = Agent::enroll(&server, &[]);
    agent.identity.save(&agent.identity_path()).expect("save");
    let _link = agent.link();
    wait_for("a first renewal", Duration::from_secs(20), || {
        renewals(&server) > 0
    });
    let beats = wait_heartbeats(&server, 4);
    assert_eq!(renewals(&server), 1, "one renewal over {beats} heartbeats");
}

#[test]
fn a_renewal_that_cannot_be_saved_is_not_retried_on_every_heartbeat() {
    let server = Server::start_with(
        |_| {},
        |config| config.agent_cert_validity = Duration::from_secs(3600),
    );
    let agent = Agent::enroll(&server, &[]);
    // The identity's directory is a file: every save fails, as on a read-only or full disk.
    let blocker = agent.dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"").expect("file");
    let _link = agent.link_saving_to(blocker.join("identity.json"));
    wait_for("a first renewal", Duration::from_secs(20), || {
        renewals(&server) > 0
    });
    // The server asks for a heartbeat a second: wait for several more.
    let beats = wait_heartbeats(&server, 4);
    assert_eq!(renewals(&server), 1, "one renewal over {beats} heartbeats");
    assert!(!blocker.join("identity.json").exists());
}

#[test]
fn an_audit_rollout_and_an_audit_plan_put_the_host_in_audit_until_enforced_or_retired() {
    let server = Server::start();
    let agent = Agent::enroll(&server, &["canary"]);
    let _link = agent.link();
    server.publish("1.0.0", b"ok", false);
    let body = json!({"channel": "detection", "version": "1.0.0", "rings": "100", "bake_s": 0.5,
                      "mode": "audit"});
    let audit: Value = server
        .operator()
        .post_json("rollout", "/api/v1/rollouts", &body)
        .expect("audit rollout");
    let audit = audit["id"].as_str().expect("id").to_owned();
    wait_for("installed in audit mode", Duration::from_secs(20), || {
        agent.current().as_deref() == Some("1.0.0") && agent.host.audits(&["detection"])
    });
    wait_for("audit rollout complete", Duration::from_secs(20), || {
        server.rollout(&audit)["phase"] == "completed"
    });
    let enforcing: Value = server
        .operator()
        .post_json(
            "enforce",
            &format!("/api/v1/rollouts/{audit}/enforce"),
            &json!({"reason": "reviewed"}),
        )
        .expect("enforce");
    assert_eq!(enforcing["mode"], "enforce", "{enforcing}");
    wait_for(
        "enforcing the same release",
        Duration::from_secs(20),
        || agent.host.audits(&[]),
    );
    assert_eq!(
        agent.host.activated.lock().expect("lock").len(),
        1,
        "no reinstall: the release runs already"
    );

    let plan: Value = server
        .operator()
        .post_json(
            "plan",
            "/api/v1/remediations",
            &json!({"scope": "tag:canary", "channel": "detection", "action": "audit",
                    "reason": "watch the canaries"}),
        )
        .expect("audit plan");
    wait_for("audit by plan", Duration::from_secs(20), || {
        agent.host.audits(&["detection"])
    });
    let id = plan["id"].as_str().expect("plan id");
    let _: Value = server
        .operator()
        .post_json(
            "retire",
            &format!("/api/v1/remediations/{id}/retire"),
            &json!({}),
        )
        .expect("retire");
    wait_for("enforcing again", Duration::from_secs(20), || {
        agent.host.audits(&[])
    });
}
