//! Black-box tests of `ringfence engine test` and `ringfence corpus`: the vendor's check must give
//! a clear error naming the file and reason for every kind of bad input, and never panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ringfence(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args(args)
        // `engine test` keeps compiled engines in the user's cache directory: not ours to fill.
        .env(
            "XDG_CACHE_HOME",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("engine-cli-cache"),
        )
        .output()
        .expect("run ringfence")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data(name: &str) -> String {
    repo().join("tests/data").join(name).display().to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    path.display().to_string()
}

#[test]
fn allowlist_over_the_checked_in_corpus_reports_json() {
    let content = repo()
        .join("examples/allowlist.rules")
        .display()
        .to_string();
    let output = ringfence(&[
        "engine",
        "test",
        "--engine",
        "bundled:exec-allowlist",
        "--content",
        &content,
        "--events",
        &data("corpus-small.jsonl"),
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    assert_eq!(report["events"], 500);
    assert!(report["verdicts"]["allow"].as_u64().expect("allow count") > 0);
    assert!(report["verdicts"]["deny"].as_u64().expect("deny count") > 0);
    assert!(
        report["failures"]
            .as_object()
            .expect("failures object")
            .is_empty()
    );
    for key in ["p50", "p99", "max"] {
        assert!(report["latency_us"][key].is_u64(), "latency_us.{key}");
    }
}

#[test]
fn failing_engine_exits_non_zero_and_names_the_function() {
    let dir = tempfile::tempdir().expect("tempdir");
    let content = write_temp(&dir, "cf291", b"cf291");
    let output = ringfence(&[
        "engine",
        "test",
        "--engine",
        "bundled:faulty",
        "--content",
        &content,
        "--events",
        &data("corpus-small.jsonl"),
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["failures"]["trap"], 500);
    assert_eq!(
        report["failure_records"][0]["backtrace"][0]["function"],
        "faulty::parse_template"
    );
}

#[test]
fn human_report_has_the_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let content = write_temp(&dir, "ok", b"ok");
    let output = ringfence(&[
        "engine",
        "test",
        "--engine",
        "bundled:faulty",
        "--content",
        &content,
        "--events",
        &data("corpus-small.jsonl"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "events   500",
        "failures none",
        "latency  p50",
        "memory   peak",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn a_second_run_loads_the_compiled_engine_from_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let content = write_temp(&dir, "ok", b"ok");
    let cache = dir.path().join("cache").display().to_string();
    let events = data("corpus-small.jsonl");
    let run = |cache_args: &[&str]| {
        let mut args = vec![
            "engine",
            "test",
            "--engine",
            "bundled:faulty",
            "--content",
            &content,
            "--events",
            &events,
        ];
        args.extend_from_slice(cache_args);
        let output = ringfence(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let first = run(&["--cache-dir", &cache]);
    assert!(first.contains("code     compiled in"), "{first}");
    let second = run(&["--cache-dir", &cache]);
    assert!(
        second.contains("code     from the engine cache in"),
        "{second}"
    );
    let uncached = run(&["--no-cache"]);
    assert!(uncached.contains("code     compiled in"), "{uncached}");
}

#[test]
fn bad_engines_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "garbage.wasm",
            b"\x13\x37 definitely not wasm".as_slice(),
            "not a valid wasm component",
        ),
        (
            "core.wasm",
            b"\0asm\x01\0\0\0".as_slice(),
            "core wasm module",
        ),
        (
            "other-world.wasm",
            b"\0asm\x0d\0\x01\0".as_slice(),
            "ringfence:engine@0.1.0",
        ),
    ];
    for (name, bytes, reason) in cases {
        let engine = write_temp(&dir, name, bytes);
        let output = ringfence(&[
            "engine",
            "test",
            "--engine",
            &engine,
            "--events",
            &data("corpus-small.jsonl"),
        ]);
        assert_eq!(output.status.code(), Some(2), "{name}");
        let err = stderr(&output);
        assert!(err.contains(name) && err.contains(reason), "{name}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let output = ringfence(&[
        "engine",
        "test",
        "--engine",
        "/nonexistent/e.wasm",
        "--events",
        &data("corpus-small.jsonl"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("/nonexistent/e.wasm"));
}

#[test]
fn rejected_content_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let content = write_temp(&dir, "bad.rules", b"allow /usr/bin/*\nallow\n");
    let output = ringfence(&[
        "engine",
        "test",
        "--engine",
        "bundled:exec-allowlist",
        "--content",
        &content,
        "--events",
        &data("corpus-small.jsonl"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("bad.rules") && err.contains("line 2") && err.contains("content_rejected"),
        "{err}"
    );
}

#[test]
fn malformed_corpus_line_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = write_temp(
        &dir,
        "broken.jsonl",
        b"{\"kind\":\"exit\",\"pid\":1,\"exit_code\":0}\n{\"kind\":\"exec\",\"pid\":\n",
    );
    let output = ringfence(&[
        "engine",
        "test",
        "--engine",
        "bundled:faulty",
        "--events",
        &corpus,
    ]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("broken.jsonl:2:"), "{err}");
}

#[test]
fn corpus_generate_is_reproducible_and_checkable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.jsonl").display().to_string();
    let b = dir.path().join("b.jsonl").display().to_string();
    for out in [&a, &b] {
        let output = ringfence(&[
            "corpus", "generate", "--events", "300", "--seed", "9", "--out", out,
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
    let output = ringfence(&["corpus", "check", &a, "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(summary["events"], 300);
}

#[test]
fn checked_in_corpus_matches_the_generator() {
    // The fixture is generated, not hand-edited: regenerate it with
    // `ringfence corpus generate --events 500 --seed 291 --out tests/data/corpus-small.jsonl`.
    let output = ringfence(&["corpus", "generate", "--events", "500", "--seed", "291"]);
    let fixture = std::fs::read(data("corpus-small.jsonl")).expect("fixture");
    assert_eq!(output.stdout, fixture);
}

#[test]
fn engine_list_prints_a_table_or_json_and_refuses_an_unknown_format() {
    let table = ringfence(&["engine", "list"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("ENGINE") && text.contains("bundled:sigma"),
        "{text}"
    );
    let json = ringfence(&["engine", "list", "-o", "json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    let engines = value["engines"].as_array().expect("engines");
    assert!(
        engines
            .iter()
            .all(|e| e["sha256"].as_str().is_some_and(|h| h.len() == 64)),
        "{value}"
    );
    let bad = ringfence(&["engine", "list", "-o", "yaml"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
