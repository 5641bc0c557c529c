//! Black-box tests of `ringfence agent --mode`: audit mode decides a replayed corpus exactly as
//! enforce mode does but allows every event and reports the denies as "would deny"; a bad mode
//! is a usage error. Replay needs no root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A standalone agent replaying the checked-in corpus with an allow-list that denies curl.
fn replay(dir: &Path, mode: &str) -> Output {
    let rules = dir.join("rules");
    std::fs::write(&rules, "deny /usr/bin/curl\nallow /**\n").expect("write rules");
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args([
            "agent",
            "--standalone",
            "--engine",
            "bundled:exec-allowlist",
        ])
        .arg("--content")
        .arg(&rules)
        .args(["--sensor", "replay", "--events"])
        .arg(repo().join("tests/data/corpus-small.jsonl"))
        .arg("--alerts")
        .arg(dir.join(format!("alerts-{mode}.jsonl")))
        .args(["--perm-deadline", "5s", "--no-harden", "--stats-json"])
        .args(["--mode", mode])
        .output()
        .expect("run ringfence")
}

/// The counters `--stats-json` printed: the last line of standard error.
fn stats(output: &Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

#[test]
fn audit_mode_allows_what_enforce_mode_denies_and_counts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let enforce = replay(dir.path(), "enforce");
    assert!(enforce.status.success(), "{enforce:?}");
    let enforced = stats(&enforce);
    let denied = enforced["denied"].as_u64().expect("denied");
    assert!(denied > 0, "{enforced}");
    assert_eq!(enforced["would_deny"], 0);

    let audit = replay(dir.path(), "audit");
    assert!(audit.status.success(), "{audit:?}");
    let stderr = String::from_utf8_lossy(&audit.stderr);
    assert!(stderr.contains("mode audit"), "{stderr}");
    let audited = stats(&audit);
    assert_eq!(audited["denied"], 0, "{audited}");
    assert_eq!(audited["would_deny"].as_u64(), Some(denied), "{audited}");
    let alerts = std::fs::read_to_string(dir.path().join("alerts-audit.jsonl")).expect("alerts");
    let would_deny = alerts
        .lines()
        .filter(|l| l.contains("\"would_deny\":true") && l.contains("\"disposition\":\"Allowed\""))
        .count() as u64;
    assert_eq!(would_deny, denied);
}

#[test]
fn an_unknown_mode_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args(["agent", "--standalone", "--mode", "lenient"])
        .output()
        .expect("run ringfence");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("enforce or audit"), "{stderr}");
}
