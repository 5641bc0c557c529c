//! A managed agent that crashes natively, under its guard, against a real server: the crash
//! monitor writes a minidump from outside the dead process, the guard reports the death, the
//! restarted agent uploads both, and the server groups the crash in plain words.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ringfence() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
}

fn cli(args: &[&str], dir: &Path) -> String {
    let out = ringfence()
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn reports(url: &str, token: &str, kind: &str) -> Vec<serde_json::Value> {
    let reply = http_get(url, token, &format!("/api/v1/reports?kind={kind}"));
    reply["reports"].as_array().cloned().unwrap_or_default()
}

/// A plain HTTP/1.0 GET with std, so the test needs no client library or curl.
fn http_get(url: &str, token: &str, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("null");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

#[test]
fn native_crash_leaves_a_minidump_and_reaches_the_server() {
    let server_dir = tempfile::tempdir().expect("tempdir");
    let mut server = ringfence()
        .args([
            "server",
            // Plain HTTP on loopback: this test reads reports with a std-only HTTP GET; TLS is
            // tested in server_cli.
            "--insecure-http",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "1s",
            "--data-dir",
        ])
        .arg(server_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let _server = Killed(server);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("url")
        .to_owned();
    let token = cli(&["server", "token", "create"], server_dir.path());
    let enroll = cli(&["server", "enroll-token", "create"], server_dir.path());

    let host = tempfile::tempdir().expect("tempdir");
    let exe = env!("CARGO_BIN_EXE_ringfence");
    let guard = ringfence()
        .args([
            "guard",
            "--heartbeat-timeout",
            "15s",
            "--failures",
            "10",
            "--data-dir",
        ])
        .arg(host.path())
        .args([
            "--",
            exe,
            "agent",
            "--server",
            &url,
            "--enroll-token",
            &enroll,
            "--sensor",
            "none",
            "--crash-after",
            "1s",
            "--data-dir",
        ])
        .arg(host.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("guard");
    let _guard = Killed(guard);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dumps: Vec<_> = std::fs::read_dir(host.path().join("crashes"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        let minidumps = reports(&url, &token, "minidump");
        let crashes = reports(&url, &token, "crash");
        if !dumps.is_empty() && !minidumps.is_empty() && !crashes.is_empty() {
            let bytes = std::fs::read(&dumps[0]).expect("dump");
            assert_eq!(&bytes[..4], b"MDMP", "a minidump");
            assert_eq!(crashes[0]["body"]["signal"], "SIGABRT", "{crashes:?}");
            assert!(minidumps[0]["body"]["bytes"].as_u64().expect("bytes") > 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no minidump and reports after 60 s: dumps {dumps:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let groups = http_get(&url, &token, "/api/v1/crash-groups");
    let summaries: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["summary"].as_str())
        .collect();
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("the agent process died (SIGABRT)")),
        "{summaries:?}"
    );
}
