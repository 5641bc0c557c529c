//! The command line as people and their tools meet it: completions and man pages on request,
//! logs without escape codes when they go to a file or journald, JSON logs for shippers.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn ringfence(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run ringfence")
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_ringfence"),
        ("zsh", "#compdef ringfence"),
        ("fish", "complete -c ringfence"),
    ] {
        let output = ringfence(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.contains(marker), "{shell} script lacks {marker:?}");
        assert!(
            script.contains("rollout"),
            "{shell} script lacks subcommands"
        );
    }
    let output = ringfence(&["completions", "cmd.exe"]);
    assert!(!output.status.success(), "an unknown shell is refused");
}

#[test]
fn man_pages_are_printed_for_the_binary_and_each_command() {
    let output = ringfence(&["man"]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains(".TH ringfence 1"));
    let output = ringfence(&["man", "rollout"]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains(".TH ringfence-rollout 1"));
    let output = ringfence(&["man", "no-such-command"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no command \"no-such-command\""));
}

/// Starts a server with `args` for long enough to log its start-up, then stops it and returns
/// what it wrote to standard error (a pipe: not a terminal).
fn server_log(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args(args)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server");
    std::thread::sleep(Duration::from_secs(2));
    let _ = child.kill();
    let output = child.wait_with_output().expect("server output");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let log = server_log(&["-v"]);
    assert!(log.contains("INFO"), "no log lines at -v: {log}");
    assert!(
        !log.contains('\x1b'),
        "escape codes in a piped log: {log:?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let log = server_log(&["-v", "--log-format", "json"]);
    // The server also prints a human hint (how agents join) on standard error: not a log line.
    assert!(
        !log.contains(" INFO "),
        "text log lines in JSON mode: {log}"
    );
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!lines.is_empty(), "no log lines: {log}");
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.get("level").is_some(), "{line}");
        assert!(value["fields"].get("message").is_some(), "{line}");
    }
}

#[test]
fn an_error_says_its_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.jsonl");
    let missing = missing.to_str().expect("utf-8 path");
    for args in [
        vec!["corpus", "check", missing],
        vec!["release", "verify", missing, "--pub", missing],
    ] {
        let output = ringfence(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.matches("(os error 2)").count(),
            1,
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn looking_at_a_host_changes_nothing_on_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("not-a-host");
    let data_dir = data_dir.to_str().expect("utf-8 path");
    let output = ringfence(&["status", "--host", "--data-dir", data_dir]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        !std::path::Path::new(data_dir).exists(),
        "status --host created {data_dir}"
    );
}
