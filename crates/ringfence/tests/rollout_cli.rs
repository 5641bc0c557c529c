//! The operator's rollout verbs against a real server process, as argo-rollouts and kubectl
//! users expect them: `status --watch` exits 0 when a rollout completes and 1 when it is
//! aborted; `promote` moves on only when every gate passes; `abort` rolls back; `retry` starts a
//! stopped rollout over; `enforce` (or `promote --enforce`) enforces what a completed audit
//! rollout brought; `-o table|wide|json` (and the old `--json`), `--bake 10m` (and the old
//! `--bake-s`); and the exit codes and messages for bad input.
//!
//! Releases and agents are written straight into the server's database: these tests are about
//! the command line, and the server's own tests cover publishing and heartbeats.

mod common;

use common::Server;
use serde_json::{Value, json};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn ringfence() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A server with an operator token and, in its database, releases 1.0.0 and 2.0.0 of
/// `detection` and the agents given (id, tags).
struct Setup {
    server: Server,
    token: String,
}

impl Setup {
    fn new(agents: &[(&str, &[&str])]) -> Setup {
        let server = Server::start();
        let created = ringfence()
            .args(["server", "token", "create", "--label", "ops", "--data-dir"])
            .arg(server.dir.path())
            .output()
            .expect("run");
        assert!(created.status.success(), "{}", stderr(&created));
        let token = stdout(&created).trim().to_owned();
        let url = format!(
            "sqlite://{}",
            server.dir.path().join("ringfence.db").display()
        );
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async {
                let store = ringfence_store::Store::connect(&url).await.expect("store");
                for version in ["1.0.0", "2.0.0"] {
                    let sha = format!("{:0>64}", version.replace('.', ""));
                    store
                        .put_blob(&sha, version.as_bytes())
                        .await
                        .expect("blob");
                    store
                        .insert_release(&ringfence_store::ReleaseRecord {
                            channel: "detection".into(),
                            version: version.into(),
                            manifest: json!({"name": "detection", "version": version}),
                            bundle_sha256: sha,
                            published_at: 0,
                            preflight: ringfence_store::PreflightStatus::Passed,
                            preflight_report: None,
                        })
                        .await
                        .expect("release");
                }
                for (id, tags) in agents {
                    let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
                    store
                        .insert_agent(id, &format!("hash-{id}"), id, &tags)
                        .await
                        .expect("agent");
                }
                store.close().await;
            });
        Setup { server, token }
    }

    /// `ringfence rollout ARGS` against this server, not yet run.
    fn rollout(&self, args: &[&str]) -> Command {
        let mut command = ringfence();
        command
            .arg("rollout")
            .args(args)
            .args(["--server", &self.server.url, "--token", &self.token, "--ca"])
            .arg(self.server.ca());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.rollout(args).output().expect("run")
    }

    /// A command that must succeed and print one JSON document.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
    }

    /// Starts `version` through `rings` with a bake of `bake`; returns the rollout's id.
    fn start(&self, version: &str, rings: &str, bake: &str) -> String {
        let started = self.json(&[
            "start",
            "--channel",
            "detection",
            "--version",
            version,
            "--rings",
            rings,
            "--bake",
            bake,
            "-o",
            "json",
        ]);
        started["id"].as_str().expect("id").to_owned()
    }
}

/// Asserts the command failed with exit code 2 and `needle` in its message.
fn refused(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "{}{}", stdout(out), stderr(out));
    assert!(
        stderr(out).contains(needle),
        "{needle:?} not in {}",
        stderr(out)
    );
}

#[test]
fn status_watch_exits_0_on_completion_and_1_when_the_rollout_is_aborted() {
    let setup = Setup::new(&[]);
    // One ring and no bake: the controller completes it on its next tick.
    let first = setup.start("1.0.0", "100", "0s");
    let out = setup.run(&["status", &first, "--watch", "--interval", "200ms"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("phase completed"), "{}", stdout(&out));
    // Each ring says how many of its hosts run the release (none enrolled here).
    assert!(
        stdout(&out).contains("[done, 0/0 hosts]"),
        "{}",
        stdout(&out)
    );

    let second = setup.start("2.0.0", "5,100", "1h");
    let watcher = setup
        .rollout(&["status", &second, "-w", "--interval", "200ms", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the watch");
    std::thread::sleep(Duration::from_secs(1));
    let aborted = setup.json(&["abort", &second, "--reason", "bad content", "-o", "json"]);
    assert_eq!(aborted["phase"], "rolled_back", "{aborted}");
    let out = watcher.wait_with_output().expect("the watch ends");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per change"))
        .collect();
    assert_eq!(lines.first().map(|r| &r["phase"]), Some(&json!("running")));
    assert_eq!(
        lines.last().map(|r| &r["phase"]),
        Some(&json!("rolled_back"))
    );
    assert!(
        lines.last().is_some_and(|r| r["reason"] == "bad content"),
        "{lines:?}"
    );

    // A rollout that already ended answers at once.
    let out = setup.run(&["status", &second, "--watch"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = setup.run(&["status", "ro-nosuchrollout", "--watch"]);
    refused(&out, "no rollout ro-nosuchrollout");
    let out = setup.run(&["status", &second, "--watch", "--interval", "1ms"]);
    refused(&out, "shorter than 100ms");
    let out = setup.run(&["status", "--watch"]);
    assert_eq!(out.status.code(), Some(2), "--watch needs an id");
}

#[test]
fn promote_moves_on_only_when_every_gate_passes() {
    // A canary that never heartbeats: ring 0 never shows the release installed. (Its silence
    // fails the heartbeat gate only 15 s after enrollment; the refusal below comes long before.)
    let setup = Setup::new(&[("agent-canary", &["canary"])]);
    let first = setup.start("1.0.0", "5,100", "1h");
    let out = setup.run(&["promote", &first, "--reason", "in a hurry"]);
    refused(&out, "409");
    assert!(
        stderr(&out).contains("adoption"),
        "names the gate: {}",
        stderr(&out)
    );
    let still = &setup.json(&["status", &first, "-o", "json"])["rollouts"][0];
    assert_eq!(
        (&still["phase"], &still["ring"]),
        (&json!("running"), &json!(0))
    );

    let out = setup.run(&["promote", "ro-nosuchrollout"]);
    refused(&out, "no rollout ro-nosuchrollout");
    let out = setup.run(&["promote", "../../agents"]);
    refused(&out, "is not an id");

    // The canary gone from the fleet, the empty ring passes: on to ring 1, then complete.
    let out = ringfence()
        .args(["agent", "decommission", "agent-canary", "--reason", "gone"])
        .args([
            "--server",
            &setup.server.url,
            "--token",
            &setup.token,
            "--ca",
        ])
        .arg(setup.server.ca())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let promoted = setup.json(&[
        "promote",
        &first,
        "--reason",
        "canary retired",
        "-o",
        "json",
    ]);
    assert_eq!(
        (&promoted["phase"], &promoted["ring"]),
        (&json!("running"), &json!(1))
    );
    assert!(
        promoted["reason"]
            .as_str()
            .is_some_and(|r| r.contains("canary retired")),
        "{promoted}"
    );
    let out = setup.run(&["promote", &first]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("phase completed"), "{}", stdout(&out));

    let out = setup.run(&["promote", &first]);
    refused(&out, "409");
    assert!(stderr(&out).contains("Completed"), "{}", stderr(&out));
}

#[test]
fn retry_starts_a_stopped_rollout_over_and_refuses_a_running_one() {
    let setup = Setup::new(&[]);
    let first = setup.start("1.0.0", "5,100", "10m");

    let out = setup.run(&["retry", &first]);
    refused(&out, "409");
    assert!(stderr(&out).contains("still Running"), "{}", stderr(&out));
    let out = setup.run(&["retry", "ro-nosuchrollout"]);
    refused(&out, "no rollout ro-nosuchrollout");

    let halted = setup.json(&["halt", &first, "--json"]);
    assert_eq!(halted["phase"], "halted", "--json still works");
    let retried = setup.json(&["retry", &first, "--reason", "host fixed", "-o", "json"]);
    let second = retried["id"].as_str().expect("id");
    assert_ne!(second, first);
    assert_eq!(
        (&retried["version"], &retried["ring"]),
        (&json!("1.0.0"), &json!(0))
    );
    assert_eq!(
        retried["rings"][1]["bake_ms"], 600_000,
        "the same bake: {retried}"
    );
    let old = setup.json(&["status", &first, "-o", "json"]);
    assert_eq!(
        old["rollouts"][0]["phase"], "disabled",
        "a first release is disabled: {old}"
    );

    // Tables: one line per rollout, `wide` adds gates and the reason.
    let out = setup.run(&["status", "-o", "table"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["ID", "RELEASE", "PHASE", "RING", "AGE"], "{table}");
    assert_eq!(lines.clone().count(), 2, "{table}");
    assert!(
        table.contains(second) && table.contains("detection@1.0.0") && table.contains("running"),
        "{table}"
    );
    let out = setup.run(&["status", &first, "-o", "wide"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let wide = stdout(&out);
    assert!(wide.starts_with("ID") && wide.contains("GATES") && wide.contains("REASON"));
    assert!(wide.contains("host fixed"), "the retry's reason: {wide}");
    let out = setup.run(&["status", "-o", "yaml"]);
    assert_eq!(out.status.code(), Some(2), "an unknown format is refused");
}

#[test]
fn durations_take_units_and_the_old_spellings_still_work() {
    let setup = Setup::new(&[]);
    let out = setup.run(&[
        "start",
        "--channel",
        "detection",
        "--version",
        "1.0.0",
        "--bake",
        "ten minutes",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--bake"), "{}", stderr(&out));
    let out = setup.run(&[
        "start",
        "--channel",
        "detection",
        "--version",
        "1.0.0",
        "--rings",
        "50,100",
        "--bake-s",
        "90",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("deprecated"), "{}", stderr(&out));
    let started: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(started["rings"][0]["bake_ms"], 90_000, "{started}");
    let out = setup.run(&["start", "--channel", "detection", "--version", "2.0.0"]);
    refused(&out, "still Running");
}

#[test]
fn every_rollout_subcommand_has_examples() {
    for verb in [
        "start", "status", "pause", "resume", "halt", "rollback", "promote", "abort", "retry",
        "enforce",
    ] {
        let out = ringfence()
            .args(["rollout", verb, "--help"])
            .output()
            .expect("run");
        assert!(out.status.success(), "{verb}: {}", stderr(&out));
        let help = stdout(&out);
        assert!(
            help.contains("Examples:") && help.contains(&format!("ringfence rollout {verb}")),
            "{verb}: {help}"
        );
        assert!(
            !help.contains("--bake-s"),
            "deprecated spellings stay hidden"
        );
    }
    let out = ringfence()
        .args(["rollout", "status", "--help"])
        .output()
        .expect("run");
    let help = stdout(&out);
    assert!(
        help.contains("Exit codes:") && help.contains("rolled back"),
        "{help}"
    );
}

#[test]
fn enforce_starts_enforcing_a_completed_audit_rollout_and_refuses_bad_input() {
    let setup = Setup::new(&[]);
    let audit = |rings: &str, bake: &str| {
        let started = setup.json(&[
            "start",
            "--channel",
            "detection",
            "--version",
            "1.0.0",
            "--rings",
            rings,
            "--bake",
            bake,
            "--mode",
            "audit",
            "-o",
            "json",
        ]);
        assert_eq!(started["mode"], "audit", "{started}");
        started["id"].as_str().expect("id").to_owned()
    };
    let out = setup.run(&[
        "start",
        "--channel",
        "detection",
        "--version",
        "1.0.0",
        "--mode",
        "lenient",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("enforce or audit"),
        "{}",
        stderr(&out)
    );

    let out = setup.run(&["enforce", "ro-nosuchrollout"]);
    refused(&out, "no rollout ro-nosuchrollout");
    let out = setup.run(&["promote", "ro-nosuchrollout", "--enforce"]);
    refused(&out, "no rollout ro-nosuchrollout");

    // Still running: there is nothing to enforce yet.
    let running = audit("5,100", "1h");
    let out = setup.run(&["enforce", &running]);
    refused(&out, "409");
    assert!(stderr(&out).contains("must complete"), "{}", stderr(&out));
    let aborted = setup.json(&["abort", &running, "-o", "json"]);
    assert_eq!(aborted["phase"], "disabled", "{aborted}");

    let audited = audit("100", "0s");
    let out = setup.run(&["status", &audited, "--watch", "--interval", "200ms"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("mode audit"), "{}", stdout(&out));

    let out = setup.run(&[
        "promote",
        &audited,
        "--enforce",
        "--reason",
        "alerts reviewed",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.contains("mode enforce") && shown.contains(&format!("audit rollout {audited}")),
        "{shown}"
    );
    let enforcing = &setup.json(&["status", "-o", "json"])["rollouts"][0];
    assert_eq!(enforcing["enforces"], json!(audited), "{enforcing}");
    let enforcing_id = enforcing["id"].as_str().expect("id").to_owned();

    let out = setup.run(&["enforce", &audited]);
    refused(&out, "409");
    assert!(
        stderr(&out).contains("enforced already"),
        "{}",
        stderr(&out)
    );
    let out = setup.run(&["enforce", &enforcing_id]);
    refused(&out, "409");
    assert!(
        stderr(&out).contains("only an audit rollout"),
        "{}",
        stderr(&out)
    );
    let out = setup.run(&["enforce", "../../agents"]);
    refused(&out, "is not an id");
}
