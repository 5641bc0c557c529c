//! The operator's commands against a real `ringfence server` process: tokens made on the server
//! host, then status, rollouts and crash groups over HTTPS verified against the server's own CA,
//! and clear errors for a bad token, a server that is not there, a missing or wrong CA, a wrong
//! pin, and plain HTTP where it is not allowed. Agents enroll with a key of their own and get a
//! client certificate; a server requiring them serves those agents and tells an agent without
//! one to re-enroll.

mod common;

use common::Server;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ringfence() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn token(server: &Server) -> String {
    let out = ringfence()
        .args(["server", "token", "create", "--data-dir"])
        .arg(server.dir.path())
        .output()
        .expect("token");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn operator_commands_over_https() {
    let server = Server::start();
    let token = token(&server);
    let ca = server.ca().display().to_string();
    for args in [
        &["status", "--json", "--ca", &ca][..],
        &["rollout", "status", "--json", "--ca", &ca],
        &[
            "crashes",
            "list",
            "--json",
            "--ca-fingerprint",
            &server.fingerprint,
        ],
    ] {
        let out = ringfence()
            .args(args)
            .args(["--server", &server.url, "--token", &token])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(value.is_object(), "{args:?}");
    }
    // Crash groups take `-o` like every other listing; `--json` stays for older scripts and
    // cannot be mixed with `-o`.
    let crashes = |extra: &[&str]| {
        ringfence()
            .args([
                "crashes",
                "list",
                "--ca",
                &ca,
                "--server",
                &server.url,
                "--token",
                &token,
            ])
            .args(extra)
            .output()
            .expect("run")
    };
    let out = crashes(&["-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(value["groups"], serde_json::json!([]));
    let out = crashes(&["-o", "wide"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no crashes reported"));
    assert_eq!(crashes(&["--json", "-o", "table"]).status.code(), Some(2));
    let out = ringfence()
        .args(["status", "--server", &server.url, "--token", "rfo_wrong"])
        .env("RINGFENCE_CA", &ca)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ringfence()
        .args([
            "crashes",
            "show",
            "nothing",
            "--server",
            &server.url,
            "--token",
            &token,
            "--ca",
            &ca,
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no crash group"));
}

#[test]
fn operator_commands_without_the_right_ca_are_refused() {
    let server = Server::start();
    let token = token(&server);
    let other = Server::start();
    let status = |extra: &[&str]| {
        ringfence()
            .args(["status", "--server", &server.url, "--token", &token])
            .args(extra)
            .env_remove("RINGFENCE_CA")
            .env_remove("RINGFENCE_CA_FINGERPRINT")
            .output()
            .expect("run")
    };
    let out = status(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("give the server's CA file"),
        "{}",
        stderr(&out)
    );

    let other_ca = other.ca().display().to_string();
    let out = status(&["--ca", &other_ca]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not signed by the CA we trust"),
        "{}",
        stderr(&out)
    );

    let out = status(&["--ca-fingerprint", &other.fingerprint]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&other.fingerprint) && stderr(&out).contains(&server.fingerprint),
        "names both fingerprints: {}",
        stderr(&out)
    );

    let plain = server.url.replacen("https://", "http://", 1);
    let out = ringfence()
        .args(["status", "--server", &plain, "--token", &token])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("speaks HTTPS"), "{}", stderr(&out));
}

#[test]
fn the_ca_is_made_once_and_reused_on_restart() {
    let first = Server::start();
    let dir = first.dir.path().to_owned();
    let fingerprint = first.fingerprint.clone();
    let mut first = first;
    let _ = first.child.kill();
    let _ = first.child.wait();
    let mut child = ringfence()
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("restart");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains(&fingerprint), "{line}");
}

#[test]
fn insecure_http_only_on_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ringfence()
        .args([
            "server",
            "--insecure-http",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));
    assert!(
        !dir.path().join("ringfence.db").exists(),
        "refused before opening anything"
    );
}

/// Runs a managed agent until it has written its identity (or exited); returns its stderr.
fn agent(server: &Server, host: &Path, pin: &str) -> (Option<String>, String) {
    agent_until(server, host, pin, &|| host.join("identity.json").exists())
}

/// Runs a managed agent until `done` (or it exited); returns its identity and its stderr.
fn agent_until(
    server: &Server,
    host: &Path,
    pin: &str,
    done: &dyn Fn() -> bool,
) -> (Option<String>, String) {
    let enroll = {
        let out = ringfence()
            .args(["server", "enroll-token", "create", "--data-dir"])
            .arg(server.dir.path())
            .output()
            .expect("token");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let log = host.join("agent.log");
    let mut child = ringfence()
        .args([
            "agent",
            "--server",
            &server.url,
            "--server-ca-fingerprint",
            pin,
        ])
        .args([
            "--enroll-token",
            &enroll,
            "--sensor",
            "none",
            "--no-crash-monitor",
        ])
        .arg("--data-dir")
        .arg(host)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("agent");
    let identity = host.join("identity.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !done() && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    (
        std::fs::read_to_string(&identity).ok(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[test]
fn an_agent_pins_the_ca_fingerprint_and_a_wrong_pin_enrolls_nothing() {
    let server = Server::start();
    let other = Server::start();
    let host = tempfile::tempdir().expect("tempdir");
    let (identity, log) = agent(&server, host.path(), &other.fingerprint);
    assert_eq!(identity, None, "nothing enrolled: {log}");
    assert!(log.contains("was pinned"), "{log}");

    let (identity, log) = agent(&server, host.path(), &server.fingerprint);
    let identity = identity.unwrap_or_else(|| panic!("enrolled: {log}"));
    let identity: serde_json::Value = serde_json::from_str(&identity).expect("identity");
    let pem = std::fs::read_to_string(server.ca()).expect("CA");
    assert_eq!(
        identity["server_ca"],
        pem.as_str(),
        "the CA is kept for later runs"
    );
    // The key made on the host and the certificate the server signed for it, kept 0600.
    let certificate = identity["client_cert"]["certificate"]
        .as_str()
        .unwrap_or("");
    assert!(
        certificate.starts_with("-----BEGIN CERTIFICATE-----"),
        "{identity}"
    );
    let key = identity["client_cert"]["key"].as_str().unwrap_or("");
    assert!(key.contains("PRIVATE KEY"), "{identity}");
    let mode = std::fs::metadata(host.path().join("identity.json"))
        .expect("identity")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Agents the server saw heartbeat recently, as `ringfence status` reports them.
fn online(server: &Server, token: &str) -> u64 {
    let out = ringfence()
        .args([
            "status",
            "--json",
            "--server",
            &server.url,
            "--token",
            token,
        ])
        .arg("--ca")
        .arg(server.ca())
        .output()
        .expect("status");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    status["online"].as_u64().unwrap_or(0)
}

#[test]
fn with_required_agent_certificates_an_agent_heartbeats_and_an_old_identity_is_told_to_re_enroll() {
    let server = Server::start_with(&["--require-agent-certs"]);
    let token = token(&server);
    let host = tempfile::tempdir().expect("tempdir");
    let (identity, log) = agent_until(&server, host.path(), &server.fingerprint, &|| {
        online(&server, &token) == 1
    });
    assert!(identity.is_some(), "enrolled: {log}");
    assert_eq!(
        online(&server, &token),
        1,
        "heartbeats over mutual TLS: {log}"
    );

    // An identity from before client certificates: the credential alone is refused, and the
    // agent says what to do.
    let path = host.path().join("identity.json");
    let mut identity: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("identity")).expect("json");
    identity
        .as_object_mut()
        .expect("object")
        .remove("client_cert");
    std::fs::write(&path, identity.to_string()).expect("write");
    let log_path = host.path().join("agent.log");
    let (_, log) = agent_until(&server, host.path(), &server.fingerprint, &|| {
        std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains("re-enroll the agent"))
    });
    assert!(
        log.contains("requires agent client certificates; re-enroll the agent"),
        "{log}"
    );
}

#[test]
fn requiring_agent_certificates_without_the_generated_ca_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ringfence()
        .args([
            "server",
            "--insecure-http",
            "--require-agent-certs",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--require-agent-certs needs the server's own CA"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("data").exists(), "nothing was made");
}

#[test]
fn a_server_that_is_not_there_is_named() {
    let out = ringfence()
        .args([
            "status",
            "--server",
            "http://127.0.0.1:1",
            "--token",
            "rfo_x",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable at http://127.0.0.1:1"));
}
