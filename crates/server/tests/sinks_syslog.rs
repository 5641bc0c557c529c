//! Alerts reach a real syslog receiver over TLS: Debian's rsyslog (with rsyslog-gnutls) on
//! loopback, fed by the server's forwarder from the outbox. The receiver is stopped while agents
//! keep uploading and started again: nothing is lost and each host's alerts stay in order.

mod common;

use axum::http::StatusCode;
use common::Harness;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "syslog_sink_survives_a_receiver_outage";

/// A CA and a certificate for 127.0.0.1 signed by it, written to `dir`: (ca, cert, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("params");
    let cert = params
        .signed_by(&key, &Issuer::new(ca_params, ca_key))
        .expect("cert");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("write ca");
    std::fs::write(&paths.1, cert.pem()).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    (paths.0, paths.1, paths.2)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Rsyslog {
    child: Child,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts rsyslogd in the foreground on `port` (TLS), writing each message's MSG part, one a
/// line, to `out`; waits until it listens.
fn rsyslog(dir: &Path, port: u16, out: &Path) -> Rsyslog {
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k"
  DefaultNetstreamDriver="gtls"
  DefaultNetstreamDriverCAFile="{ca}"
  DefaultNetstreamDriverCertFile="{cert}"
  DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="msgonly" type="string" string="%msg%\n")
action(type="omfile" file="{out}" template="msgonly")
"#,
            work = work.display(),
            ca = ca.display(),
            cert = cert.display(),
            key = key.display(),
            out = out.display(),
        ),
    )
    .expect("config");
    let child = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rsyslogd");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rsyslogd did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Rsyslog { child }
}

/// Event ids received, in arrival order.
fn received(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line.trim()).ok())
        .filter_map(|event| event["metadata"]["uid"].as_str().map(str::to_owned))
        .collect()
}

async fn wait_for(out: &Path, want: &BTreeSet<String>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = received(out);
        let distinct: BTreeSet<String> = got.iter().cloned().collect();
        if want.is_subset(&distinct) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {} alerts arrived",
            want.intersection(&distinct).count(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn upload(harness: &Harness, credential: &str, agent: &str, from: usize, count: usize) {
    let reports: Vec<_> = (from..from + count)
        .map(|n| {
            json!({"id": format!("{n}"), "kind": "alert", "at_ms": 1,
                   "body": {"class_uid": 1007, "severity_id": 4, "message": format!("{agent} alert {n}")}})
        })
        .collect();
    let (status, reply) = harness
        .post_json(
            "/api/v1/agents/reports",
            Some(credential),
            json!({ "reports": reports }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_sink_survives_a_receiver_outage() {
    if Command::new("rsyslogd").arg("-v").output().is_err() {
        ringfence_testkit::skip(
            TEST,
            "rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)",
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, _, _) = certificates(dir.path());
    let port = free_port();
    let out = dir.path().join("received.log");
    let spec = format!("siem=syslog+tls://127.0.0.1:{port}?ca={}", ca.display());
    let data = tempfile::tempdir().expect("data dir");
    let harness = Harness::configured(data.path(), None, |config| {
        config.sinks.sinks = vec![ringfence_server::sinks::SinkConfig::parse(&spec).expect("sink")];
        config.sinks.batch = 50;
    })
    .await;
    let forwarders = ringfence_server::sinks::spawn(&harness.state);
    let hosts = [
        harness.enroll("web-1", &[]).await,
        harness.enroll("web-2", &[]).await,
    ];
    let mut want = BTreeSet::new();
    let add = |want: &mut BTreeSet<String>, agent: &str, from: usize, count: usize| {
        for n in from..from + count {
            want.insert(format!("{agent}:{n}"));
        }
    };

    let receiver = rsyslog(dir.path(), port, &out);
    for host in &hosts {
        upload(&harness, &host.credential, &host.agent_id, 0, 100).await;
        add(&mut want, &host.agent_id, 0, 100);
    }
    wait_for(&out, &want).await;

    // The receiver goes away; agents keep uploading and are acknowledged.
    drop(receiver);
    for host in &hosts {
        upload(&harness, &host.credential, &host.agent_id, 100, 150).await;
        add(&mut want, &host.agent_id, 100, 150);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let states = harness.state.store.sink_states().await.expect("states");
    assert!(states[0].depth > 0, "{states:?}");
    assert!(states[0].failures > 0, "{states:?}");

    let _receiver = rsyslog(dir.path(), port, &out);
    let got = wait_for(&out, &want).await;

    // Each host's alerts arrive in order (a resend after a failure may repeat some; the first
    // arrival of each counts).
    let mut seen = BTreeSet::new();
    let mut per_host: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for id in &got {
        if seen.insert(id.clone()) {
            let (agent, n) = id.rsplit_once(':').expect("agent:n");
            per_host
                .entry(agent.to_owned())
                .or_default()
                .push(n.parse().expect("n"));
        }
    }
    for (agent, order) in &per_host {
        assert!(order.is_sorted(), "{agent}: {order:?}");
        assert_eq!(order.len(), 250, "{agent}");
    }
    let metrics = harness.get_text("/metrics").await.1;
    assert!(
        metrics.contains("ringfence_sink_sent_total{sink=\"siem\"}"),
        "{metrics}"
    );
    for task in forwarders {
        task.abort();
    }
}

/// Two replicas on one PostgreSQL send each alert once (one holds the sink's lease), and when
/// the sending replica stops, the other takes over from the cursor: nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_send_each_alert_once_and_take_over() {
    const NAME: &str = "two_replicas_send_each_alert_once_and_take_over";
    if Command::new("rsyslogd").arg("-v").output().is_err() {
        ringfence_testkit::skip(
            NAME,
            "rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)",
        );
        return;
    }
    let Some(base) = ringfence_testkit::postgres_or_skip(NAME) else {
        return;
    };
    let url = ringfence_store::testing::fresh_postgres_url(&base).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, _, _) = certificates(dir.path());
    let port = free_port();
    let out = dir.path().join("received.log");
    let spec = format!("siem=syslog+tls://127.0.0.1:{port}?ca={}", ca.display());
    let _receiver = rsyslog(dir.path(), port, &out);
    let mut replicas = Vec::new();
    let mut data_dirs = Vec::new();
    for name in ["replica-a", "replica-b"] {
        let data = tempfile::tempdir().expect("data dir");
        let mut harness = Harness::configured(data.path(), Some(url.clone()), |config| {
            config.sinks.sinks =
                vec![ringfence_server::sinks::SinkConfig::parse(&spec).expect("sink")];
            config.sinks.batch = 20;
        })
        .await;
        harness.state.replica = name.to_owned();
        let tasks = ringfence_server::sinks::spawn(&harness.state);
        // replica-a starts first, so it takes the sink's lease.
        tokio::time::sleep(Duration::from_millis(500)).await;
        replicas.push((harness, tasks));
        data_dirs.push(data);
    }
    let host = replicas[0].0.enroll("web-1", &[]).await;
    let mut want = BTreeSet::new();
    // Uploads land on both replicas, as behind a load balancer.
    for round in 0..10 {
        let (harness, _) = &replicas[round % 2];
        upload(harness, &host.credential, &host.agent_id, round * 20, 20).await;
        for n in round * 20..round * 20 + 20 {
            want.insert(format!("{}:{n}", host.agent_id));
        }
    }
    let got = wait_for(&out, &want).await;
    assert_eq!(got.len(), want.len(), "no replica doubled a batch");

    // The sending replica stops (its forwarder dies with its lease held); the other resumes.
    let holder = 0;
    for task in &replicas[holder].1 {
        task.abort();
    }
    let other = 1 - holder;
    upload(
        &replicas[other].0,
        &host.credential,
        &host.agent_id,
        200,
        50,
    )
    .await;
    for n in 200..250 {
        want.insert(format!("{}:{n}", host.agent_id));
    }
    let got = wait_for(&out, &want).await;
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!(distinct.len(), 250);
    for (_, tasks) in &replicas {
        for task in tasks {
            task.abort();
        }
    }
}
