//! Black-box tests of `ringfence release`: keys, build, verify, inspect and rollback
//! directives, including refusals of untrusted, tampered and downgraded bundles.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ringfence(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args(args)
        .output()
        .expect("run ringfence")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(output: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

fn keygen(dir: &Path) -> (String, String) {
    let output = ringfence(&["release", "keygen", "--out", &s(dir)]);
    assert!(output.status.success(), "{}", text(&output));
    (s(&dir.join("release.key")), s(&dir.join("release.pub")))
}

fn build(key: &str, version: &str, out: &Path) {
    let content = s(&repo().join("examples/allowlist.rules"));
    let output = ringfence(&[
        "release",
        "build",
        "--name",
        "exec-allowlist",
        "--version",
        version,
        "--engine",
        "bundled:exec-allowlist",
        "--content",
        &content,
        "--policy",
        "fail-closed",
        "--key",
        key,
        "--out",
        &s(out),
    ]);
    assert!(output.status.success(), "{}", text(&output));
}

fn verify_json(bundle: &Path, public: &str, extra: &[&str]) -> (Output, serde_json::Value) {
    let bundle = s(bundle);
    let mut args = vec!["release", "verify", &bundle, "--pub", public, "--json"];
    args.extend_from_slice(extra);
    let output = ringfence(&args);
    let report = serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    (output, report)
}

#[test]
fn keygen_build_verify_inspect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(&dir.path().join("keys"));
    let mode = std::fs::metadata(&key).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A second keygen never overwrites the secret key.
    let again = ringfence(&["release", "keygen", "--out", &s(&dir.path().join("keys"))]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));

    let bundle = dir.path().join("r.bundle");
    build(&key, "1.2.0", &bundle);

    let (output, report) = verify_json(&bundle, &public, &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(report["ok"], true);
    assert_eq!(report["version"], "1.2.0");
    assert_eq!(report["manifest"]["failure_policy"], "fail-closed");
    assert_eq!(report["manifest"]["engine_name"], "exec-allowlist");

    let output = ringfence(&["release", "inspect", &s(&bundle), "--json"]);
    assert!(output.status.success(), "{}", text(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["verified"], false);
    assert_eq!(report["manifest"]["name"], "exec-allowlist");
    assert_eq!(report["signers"].as_array().map(Vec::len), Some(1));
    let output = ringfence(&["release", "inspect", &s(&bundle)]);
    assert!(
        text(&output).contains("exec-allowlist 1.2.0"),
        "{}",
        text(&output)
    );
}

#[test]
fn untrusted_tampered_and_garbage_bundles_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(&dir.path().join("a"));
    let (_, other_public) = keygen(&dir.path().join("b"));
    let bundle = dir.path().join("r.bundle");
    build(&key, "1.0.0", &bundle);

    let (output, report) = verify_json(&bundle, &other_public, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("untrusted")),
        "{report}"
    );

    // Flip one byte of the content inside the tar.
    let public = s(&dir.path().join("a/release.pub"));
    let mut bytes = std::fs::read(&bundle).expect("read");
    let rules = std::fs::read(repo().join("examples/allowlist.rules")).expect("rules");
    let at = bytes
        .windows(rules.len())
        .position(|w| w == rules.as_slice())
        .expect("content in bundle");
    bytes[at] ^= 1;
    let tampered = dir.path().join("tampered.bundle");
    std::fs::write(&tampered, &bytes).expect("write");
    let (output, report) = verify_json(&tampered, &public, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("content")),
        "{report}"
    );

    let garbage = dir.path().join("garbage.bundle");
    std::fs::write(&garbage, b"not a bundle").expect("write");
    let output = ringfence(&["release", "inspect", &s(&garbage)]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("garbage.bundle"),
        "{}",
        text(&output)
    );
}

#[test]
fn downgrade_needs_a_rollback_directive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path());
    let bundle = dir.path().join("r.bundle");
    build(&key, "1.0.0", &bundle);

    let (output, report) = verify_json(&bundle, &public, &["--installed", "2.0.0"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("downgrade")),
        "{report}"
    );

    let directive = s(&dir.path().join("rollback.json"));
    for (channel, to, ok) in [
        ("exec-allowlist", "1.0.0", true),
        ("detection", "1.0.0", false),
        ("exec-allowlist", "0.9.0", false),
    ] {
        let output = ringfence(&[
            "release",
            "rollback-directive",
            "--channel",
            channel,
            "--from",
            "2.0.0",
            "--to",
            to,
            "--reason",
            "rollout halted",
            "--key",
            &key,
            "--out",
            &directive,
        ]);
        assert!(output.status.success(), "{}", text(&output));
        let (output, report) = verify_json(
            &bundle,
            &public,
            &["--installed", "2.0.0", "--rollback", &directive],
        );
        assert_eq!(output.status.success(), ok, "{channel} {to}: {report}");
        if ok {
            assert_eq!(report["rollback"]["to_version"], "1.0.0");
        }
    }
}

#[test]
fn content_only_release_from_a_sigma_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path());
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("mkdir");
    std::fs::write(rules.join("a.yml"), "title: a\n").expect("write");
    std::fs::write(rules.join("b.yml"), "title: b\n").expect("write");
    let bundle = dir.path().join("detection.bundle");
    let base = [
        "release",
        "build",
        "--name",
        "detection",
        "--version",
        "3.0.0",
        "--content",
    ];
    let (rules, key, out) = (s(&rules), key, s(&bundle));
    let mut args: Vec<&str> = base.to_vec();
    args.extend_from_slice(&[&rules, "--key", &key, "--out", &out]);
    let output = ringfence(&args);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("--engine-name"), "{}", text(&output));

    args.extend_from_slice(&["--engine-name", "sigma"]);
    let output = ringfence(&args);
    assert!(output.status.success(), "{}", text(&output));
    let (output, report) = verify_json(&bundle, &public, &[]);
    assert!(output.status.success(), "{report}");
    assert!(report["manifest"].get("engine").is_none(), "{report}");
    assert_eq!(report["manifest"]["content"]["size"], 26);
}
