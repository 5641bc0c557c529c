//! `ringfence status` tells the truth about protection: against a real server (plain HTTP on
//! loopback), a host whose heartbeat shows a quarantined engine is listed as DEGRADED with
//! its reason, and `status --check` exits 1; a healthy fleet exits 0. `status --host --check`
//! exits 1 with no guard running.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

fn ringfence() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
}

/// A `ringfence server --insecure-http` on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = ringfence()
            .args(["server", "--insecure-http", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let address = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Server {
            child,
            address,
            dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn create(&self, what: &str) -> String {
        let out = ringfence()
            .args(["server", what, "create", "--data-dir"])
            .arg(self.dir.path())
            .output()
            .expect("create");
        assert!(out.status.success(), "{what}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .expect("a token")
            .trim()
            .to_owned()
    }

    /// One JSON POST over a fresh connection; returns the response body.
    fn post(&self, path: &str, bearer: Option<&str>, body: serde_json::Value) -> serde_json::Value {
        let body = body.to_string();
        let mut stream = TcpStream::connect(&self.address).expect("connect");
        let auth = bearer
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("receive");
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        let json = response.split("\r\n\r\n").nth(1).expect("a body");
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}: {e}: {json}"))
    }

    fn enroll(&self, hostname: &str) -> String {
        let token = self.create("enroll-token");
        let enrolled = self.post(
            "/api/v1/enroll",
            None,
            serde_json::json!({"token": token, "hostname": hostname}),
        );
        enrolled["credential"]
            .as_str()
            .unwrap_or_else(|| panic!("a credential: {enrolled}"))
            .to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn heartbeat(quarantined: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "agent_version": "1.0.0",
        "releases": [{"channel": "detection", "current": "1.0.0", "lkg": "1.0.0", "running": "current"}],
        "health": {"permission_events": 500, "quarantined": quarantined},
    })
}

#[test]
fn status_check_exits_non_zero_while_a_host_is_degraded() {
    let server = Server::start();
    let operator = server.create("token");
    let agent = server.enroll("web-1");
    let status = |check: bool| {
        let mut command = ringfence();
        command.args(["status", "--server", &server.url(), "--token", &operator]);
        if check {
            command.arg("--check");
        }
        let out = command.output().expect("status");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    server.post("/api/v1/agents/heartbeat", Some(&agent), heartbeat(&[]));
    let (code, text) = status(true);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("no host degraded"), "{text}");

    server.post(
        "/api/v1/agents/heartbeat",
        Some(&agent),
        heartbeat(&["faulty"]),
    );
    let (code, text) = status(true);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("DEGRADED: protection is off on 1 host(s) (quarantine 1)"),
        "{text}"
    );
    assert!(text.contains("host web-1"), "{text}");
    assert!(text.contains("quarantined: faulty"), "{text}");
    // Without --check the same report, exit 0: it is a view, not a probe.
    let (code, _) = status(false);
    assert_eq!(code, Some(0));

    // --json is the typed status, degraded hosts with their reasons.
    let out = ringfence()
        .args([
            "status",
            "--json",
            "--check",
            "--server",
            &server.url(),
            "--token",
            &operator,
        ])
        .output()
        .expect("status --json");
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["degraded"], 1);
    assert_eq!(json["hosts"][0]["degraded"][0]["reason"], "quarantine");
}

#[test]
fn disabled_channel_says_disabled_not_its_version() {
    let server = Server::start();
    let operator = server.create("token");
    let agent = server.enroll("db-1");
    let mut beat = heartbeat(&[]);
    beat["health"]["disabled"] = serde_json::json!(["detection"]);
    server.post("/api/v1/agents/heartbeat", Some(&agent), beat);
    let out = ringfence()
        .args([
            "status",
            "--check",
            "--server",
            &server.url(),
            "--token",
            &operator,
        ])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("channel detection: disabled: 1"), "{text}");
    assert!(!text.contains("1.0.0: 1"), "{text}");
}

#[test]
fn host_check_without_a_guard_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ringfence()
        .args(["status", "--host", "--check", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("status --host");
    assert_eq!(out.status.code(), Some(1));
    let out = ringfence()
        .args(["status", "--host", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("status --host");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn host_status_says_when_the_last_heartbeat_shows_protection_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let health = dir.path().join("health.json");
    let host = |args: &[&str]| {
        ringfence()
            .args(["status", "--host"])
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .expect("status --host")
    };
    std::fs::write(&health, heartbeat(&[]).to_string()).expect("write");
    let out = host(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("protection: on"), "{text}");

    std::fs::write(&health, heartbeat(&["faulty"]).to_string()).expect("write");
    let out = host(&["--check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("protection: DEGRADED") && text.contains("quarantined: faulty"),
        "{text}"
    );
    let out = host(&["--json"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        value["protection"]["degraded"][0], "quarantined: faulty",
        "{value}"
    );
}
