//! `ringfence alerts` against a real server (plain HTTP on loopback): an enrolled agent uploads
//! alerts, `alerts list -o json` returns them newest first and with each filter, a bad severity
//! fails with the server's reason, and `alerts sinks -o json` lists the configured sinks.

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
    fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = ringfence()
            .args(["server", "--insecure-http", "--listen", "127.0.0.1:0"])
            .args(extra)
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

    /// Enrolls `hostname`: (agent id, credential).
    fn enroll(&self, hostname: &str) -> (String, String) {
        let token = self.create("enroll-token");
        let enrolled = self.post(
            "/api/v1/enroll",
            None,
            serde_json::json!({"token": token, "hostname": hostname}),
        );
        let field = |key: &str| {
            enrolled[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key}: {enrolled}"))
                .to_owned()
        };
        (field("agent_id"), field("credential"))
    }

    /// `ringfence alerts ARGS --server … --token …`: (exit code, stdout, stderr).
    fn alerts(&self, token: &str, args: &[&str]) -> (Option<i32>, String, String) {
        let out = ringfence()
            .arg("alerts")
            .args(args)
            .args(["--server", &self.url(), "--token", token])
            .output()
            .expect("alerts");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The ids `alerts list -o json ARGS` returns, in order.
    fn listed(&self, token: &str, args: &[&str]) -> Vec<String> {
        let mut all = vec!["list", "-o", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.alerts(token, &all);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
        json["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| a["id"].as_str().expect("id").to_owned())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alert(id: &str, rule: &str, severity_id: i64, severity: &str) -> serde_json::Value {
    serde_json::json!({"reports": [{
        "id": id,
        "kind": "alert",
        "at_ms": 5,
        "body": {
            "class_uid": 1007,
            "severity_id": severity_id,
            "severity": severity,
            "message": format!("{rule} fired"),
            "unmapped": {"ringfence": {"rule_id": rule}},
        },
    }]})
}

#[test]
fn alerts_list_returns_the_fleets_alerts_with_each_filter() {
    let server = Server::start(&[
        "--alert-sink",
        "siem=syslog+tls://127.0.0.1:9?ca=/nonexistent/ca.pem",
        "--alert-retention",
        "1d",
        "--alert-retention-max",
        "1000",
    ]);
    let operator = server.create("token");
    let (web1, web1_key) = server.enroll("web-1");
    let (web2, web2_key) = server.enroll("web-2");
    let reports = "/api/v1/agents/reports";
    server.post(reports, Some(&web1_key), alert("1", "ssh-keys", 4, "High"));
    std::thread::sleep(std::time::Duration::from_millis(5));
    server.post(reports, Some(&web2_key), alert("1", "curl-pipe", 2, "Low"));
    std::thread::sleep(std::time::Duration::from_millis(5));
    server.post(
        reports,
        Some(&web1_key),
        serde_json::json!({"reports": [{"id": "2", "kind": "failure", "at_ms": 5, "body": {"engine": "faulty", "content_sha256": "", "kind": "trap", "message": "trap", "at_unix_ns": 0}}]}),
    );

    let (a1, b1) = (format!("{web1}:1"), format!("{web2}:1"));
    assert_eq!(server.listed(&operator, &[]), [b1.as_str(), a1.as_str()]);
    assert_eq!(server.listed(&operator, &["--since", "1h"]).len(), 2);
    assert_eq!(
        server.listed(&operator, &["--host", "web-1"]),
        [a1.as_str()]
    );
    assert_eq!(server.listed(&operator, &["--host", &web2]), [b1.as_str()]);
    assert_eq!(server.listed(&operator, &["--rule", "SSH"]), [a1.as_str()]);
    assert_eq!(
        server.listed(&operator, &["--severity", "low"]),
        [b1.as_str()]
    );
    assert_eq!(server.listed(&operator, &["--limit", "1"]), [b1.as_str()]);

    // The table names the host and the rule.
    let (code, table, stderr) = server.alerts(&operator, &["list", "--severity", "4"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        table.contains("web-1") && table.contains("ssh-keys"),
        "{table}"
    );
    assert!(!table.contains("curl-pipe"), "{table}");

    // A severity the server does not know: refused with its reason.
    let (code, _, stderr) = server.alerts(&operator, &["list", "--severity", "severe"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("severity"), "{stderr}");

    let (code, stdout, stderr) = server.alerts(&operator, &["sinks", "-o", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let sinks: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(sinks["sinks"][0]["name"], "siem", "{sinks}");
    assert_eq!(sinks["sinks"][0]["kind"], "syslog", "{sinks}");
    assert_eq!(sinks["sinks"][0]["target"], "127.0.0.1:9", "{sinks}");
    let (code, table, stderr) = server.alerts(&operator, &["sinks"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(table.contains("siem") && table.contains("DEPTH"), "{table}");
}
