//! The operator's commands against a real `ringfence server` process: tokens made on the server
//! host, then status, rollouts and crash groups over HTTP, and clear errors for a bad token or a
//! server that is not there.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ringfence() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
}

fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = ringfence()
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("url")
        .to_owned();
    Server { child, url, dir }
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
fn operator_commands_over_http() {
    let server = start();
    let token = token(&server);
    for args in [
        &["status", "--json"][..],
        &["rollout", "status", "--json"],
        &["crashes", "list", "--json"],
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
    let out = ringfence()
        .args(["status", "--server", &server.url, "--token", "rfo_wrong"])
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
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no crash group"));
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
