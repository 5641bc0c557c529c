//! The operator's admin commands against a real server process: `agent list|show|decommission`
//! with `-o table|wide|json`, `remediation create|list` (pin, disable, audit), `server token create --ttl|list|revoke`,
//! and the exit codes and messages for bad input (an unknown agent, a revoked token, a channel
//! that does not exist, a bad lifetime). And `ringfence server` refusing a truncated database
//! until `--init`.

mod common;

use common::Server;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ringfence() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn server_cmd(data_dir: &Path, args: &[&str]) -> Output {
    ringfence()
        .arg("server")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run")
}

/// An operator command against `server` with `token`.
fn op(server: &Server, token: &str, args: &[&str]) -> Output {
    ringfence()
        .args(args)
        .args(["--server", &server.url, "--token", token, "--ca"])
        .arg(server.ca())
        .output()
        .expect("run")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn agents_remediations_and_tokens_from_the_command_line() {
    let server = Server::start();
    let created = server_cmd(
        server.dir.path(),
        &["token", "create", "--label", "ops", "--ttl", "30d"],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let token = stdout(&created).trim().to_owned();

    // An enrolled agent, written where the server keeps them (the server process shares the
    // file; the store's busy timeout keeps the two writers apart).
    let url = format!(
        "sqlite://{}",
        server.dir.path().join("ringfence.db").display()
    );
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let store = ringfence_store::Store::connect(&url).await.expect("store");
            store
                .insert_agent("agent-1", "hash-1", "web-1", &["canary".to_owned()])
                .await
                .expect("agent");
            store.close().await;
        });

    let listed = json(&op(&server, &token, &["agent", "list", "-o", "json"]));
    assert_eq!(listed["agents"][0]["id"], "agent-1", "{listed}");
    let table = op(&server, &token, &["agent", "list"]);
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(
        stdout(&table).starts_with("ID") && stdout(&table).contains("web-1"),
        "{}",
        stdout(&table)
    );
    let wide = op(&server, &token, &["agent", "list", "-o", "wide"]);
    assert!(stdout(&wide).contains("canary"), "{}", stdout(&wide));
    let shown = json(&op(
        &server,
        &token,
        &["agent", "show", "agent-1", "-o", "json"],
    ));
    assert_eq!(shown["hostname"], "web-1");

    let unknown = op(&server, &token, &["agent", "show", "nobody"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no agent nobody"),
        "{}",
        stderr(&unknown)
    );
    let bad_id = op(&server, &token, &["agent", "show", "../tokens"]);
    assert_eq!(bad_id.status.code(), Some(2));
    assert!(
        stderr(&bad_id).contains("is not an id"),
        "{}",
        stderr(&bad_id)
    );

    let gone = op(
        &server,
        &token,
        &[
            "agent",
            "decommission",
            "agent-1",
            "--reason",
            "host retired",
        ],
    );
    assert!(gone.status.success(), "{}", stderr(&gone));
    assert!(stdout(&gone).contains("decommissioned agent agent-1"));
    let shown = json(&op(
        &server,
        &token,
        &["agent", "show", "agent-1", "-o", "json"],
    ));
    assert!(shown["decommissioned_at_ms"].is_number(), "{shown}");
    let again = op(
        &server,
        &token,
        &["agent", "decommission", "agent-1", "--reason", "twice"],
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already decommissioned"),
        "{}",
        stderr(&again)
    );

    let plans = json(&op(&server, &token, &["remediation", "list", "-o", "json"]));
    assert_eq!(plans["remediations"], serde_json::json!([]));
    let nothing = op(
        &server,
        &token,
        &[
            "remediation",
            "create",
            "--channel",
            "nothing",
            "--action",
            "disable",
            "--reason",
            "typo",
        ],
    );
    assert_eq!(nothing.status.code(), Some(2));
    assert!(
        stderr(&nothing).contains("no channel"),
        "{}",
        stderr(&nothing)
    );
    // An audit plan (follow rollouts, block nothing) is refused the same ways.
    let plan = |extra: &[&str]| {
        let mut args = vec![
            "remediation",
            "create",
            "--scope",
            "agent:a1",
            "--channel",
            "nothing",
            "--reason",
            "watch first",
        ];
        args.extend_from_slice(extra);
        op(&server, &token, &args)
    };
    let unknown = plan(&["--action", "audit"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no channel"),
        "{}",
        stderr(&unknown)
    );
    let versioned = plan(&["--action", "audit", "--version", "1.0.0"]);
    assert_eq!(versioned.status.code(), Some(2));
    assert!(
        stderr(&versioned).contains("`audit` takes no version"),
        "{}",
        stderr(&versioned)
    );
    let lenient = plan(&["--action", "lenient"]);
    assert_eq!(lenient.status.code(), Some(2));
    assert!(stderr(&lenient).contains("audit"), "{}", stderr(&lenient));

    // Tokens: listed without the secret, revoked by id, refused at once.
    let list = server_cmd(server.dir.path(), &["token", "list", "--json"]);
    let list = json(&list);
    let ops = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["label"] == "ops")
        .expect("listed")
        .clone();
    assert_eq!(ops["state"], "active");
    assert!(ops["expires_at_ms"].is_number(), "{ops}");
    assert!(!list.to_string().contains(&token));
    let id = ops["id"].as_str().expect("id");
    // The table says when in words; `-o wide` adds when it was made and revoked.
    let table = server_cmd(server.dir.path(), &["token", "list"]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains(id) && table.contains("active") && table.contains("in "),
        "{table}"
    );
    let wide = server_cmd(server.dir.path(), &["token", "list", "-o", "wide"]);
    assert!(
        String::from_utf8_lossy(&wide.stdout).contains("CREATED"),
        "{}",
        String::from_utf8_lossy(&wide.stdout)
    );
    let revoked = server_cmd(
        server.dir.path(),
        &["token", "revoke", id, "--reason", "leaked"],
    );
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let refused = op(&server, &token, &["agent", "list"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("401"), "{}", stderr(&refused));
    let twice = server_cmd(server.dir.path(), &["token", "revoke", id]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(
        stderr(&twice).contains("already revoked"),
        "{}",
        stderr(&twice)
    );
    let unknown = server_cmd(server.dir.path(), &["token", "revoke", "000000000000"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no operator token"),
        "{}",
        stderr(&unknown)
    );
    for ttl in ["0d", "30y", "forever"] {
        let bad = server_cmd(server.dir.path(), &["token", "create", "--ttl", ttl]);
        assert_eq!(bad.status.code(), Some(2), "{ttl}");
        assert!(stderr(&bad).contains("--ttl"), "{ttl}: {}", stderr(&bad));
    }
}

#[test]
fn a_truncated_database_stops_the_server_until_init() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let made = server_cmd(&data, &["token", "create"]);
    assert!(made.status.success(), "{}", stderr(&made));
    let db = data.join("ringfence.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::File::create(&db).expect("truncate");
    let start = |extra: &[&str], wait: Duration| {
        let mut child = ringfence()
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start");
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let out = child.wait_with_output().expect("output");
                return (Some(status), stderr(&out));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return (None, String::new());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (status, err) = start(&[], Duration::from_secs(60));
    let status = status.expect("the server must exit, not serve an empty database");
    assert!(!status.success());
    assert!(
        err.contains("empty (0 bytes)") && err.contains("--init"),
        "{err}"
    );
    // With --init it serves (and keeps serving: it is killed after the timeout).
    let (status, _) = start(&["--init"], Duration::from_secs(5));
    assert!(status.is_none(), "--init must start the server: {status:?}");
}
