//! Invariants of ARCHITECTURE.md that a tool can check, checked on every test run (in the
//! manner of rust-analyzer's tidy tests): every Rust file says why it exists in a `//!` header,
//! `unsafe` code lives only in the modules named there (every other crate forbids it), SQL
//! only in `crates/store`, and the agent's lifecycle only in `crates/host`, not the binary.

use std::path::{Path, PathBuf};

/// The only places with `unsafe` code (ARCHITECTURE.md, "where unsafe lives"): the `sys` crate,
/// and files named one by one.
const UNSAFE_MODULES: &[&str] = &[
    "crates/sys/src/",
    // wasmtime's own contract for loading a compiled artifact (`Component::deserialize`).
    "crates/engine-host/src/cache/verified.rs",
    // The bundled faulty engine's deliberate out-of-bounds read, inside the wasm sandbox.
    "engines/faulty/src/lib.rs",
];

/// This file names the patterns it looks for.
const THIS_FILE: &str = "crates/testkit/tests/tidy.rs";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// Every `.rs` file of ours: crates, engines and fuzz targets, not build output.
fn rust_files() -> Vec<(String, String)> {
    let root = workspace();
    let mut out = Vec::new();
    let mut pending = vec![
        root.join("crates"),
        root.join("engines"),
        root.join("fuzz/fuzz_targets"),
    ];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                let relative = path
                    .strip_prefix(&root)
                    .expect("under the root")
                    .display()
                    .to_string();
                let text = std::fs::read_to_string(&path).expect("read a source file");
                out.push((relative, text));
            }
        }
    }
    assert!(out.len() > 100, "found only {} Rust files", out.len());
    out
}

/// Lines that are code, not comments (a rough cut: enough for keywords and string literals).
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|line| {
        let line = line.trim_start();
        !line.starts_with("//") && !line.starts_with("*")
    })
}

#[test]
fn every_rust_file_says_why_it_exists() {
    let missing: Vec<String> = rust_files()
        .into_iter()
        .filter(|(_, text)| {
            text.lines()
                .find(|line| !line.trim().is_empty())
                .is_none_or(|first| !first.starts_with("//!"))
        })
        .map(|(path, _)| path)
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` header saying why they exist: {missing:#?}"
    );
}

fn may_hold_unsafe(path: &str) -> bool {
    UNSAFE_MODULES
        .iter()
        .any(|allowed| path.starts_with(allowed))
}

#[test]
fn unsafe_code_lives_only_where_the_architecture_says() {
    let offending: Vec<String> = rust_files()
        .into_iter()
        .filter(|(path, _)| path != THIS_FILE && !may_hold_unsafe(path))
        .filter(|(_, text)| {
            // The keyword followed by what makes it code: a block, a function, an impl, an
            // extern block.
            code_lines(text).any(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                words.windows(2).any(|pair| {
                    pair[0].trim_start_matches(['(', '=']) == "unsafe"
                        && ["{", "fn", "impl", "extern"].contains(&pair[1])
                })
            })
        })
        .map(|(path, _)| path)
        .collect();
    assert!(
        offending.is_empty(),
        "unsafe code outside the modules ARCHITECTURE.md names: {offending:#?}"
    );
}

#[test]
fn sql_lives_only_in_the_store() {
    const STATEMENTS: &[&str] = &[
        "\"SELECT ",
        "\"INSERT INTO",
        "\"DELETE FROM",
        "\"CREATE TABLE",
        "\"ALTER TABLE",
    ];
    let offending: Vec<String> = rust_files()
        .into_iter()
        .filter(|(path, _)| path != THIS_FILE && !path.starts_with("crates/store/"))
        .filter(|(_, text)| {
            code_lines(text).any(|line| STATEMENTS.iter().any(|s| line.contains(s)))
        })
        .map(|(path, _)| path)
        .collect();
    assert!(
        offending.is_empty(),
        "SQL outside crates/store: {offending:#?}"
    );
}

/// The binary is clap definitions and calls: the agent process's lifecycle (opening and
/// adopting the kernel channels, confinement, starting the agent, serving, upgrading in place)
/// is `crates/host`'s, for the standalone and the managed agent alike.
#[test]
fn the_binary_leaves_the_agent_lifecycle_to_the_host_crate() {
    const LIFECYCLE: &[&str] = &[
        "Agent::start",
        "Channels::adopt_from_env",
        "confine::confine(",
        "ringfence_host::serve(",
        "exec_or_resume(",
        "handoff_and_exec(",
        "Link::start(",
    ];
    let offending: Vec<String> = rust_files()
        .into_iter()
        .filter(|(path, _)| path.starts_with("crates/ringfence/src/"))
        .filter(|(_, text)| {
            code_lines(text).any(|line| LIFECYCLE.iter().any(|call| line.contains(call)))
        })
        .map(|(path, _)| path)
        .collect();
    assert!(
        offending.is_empty(),
        "agent lifecycle in the binary crate (it belongs in crates/host): {offending:#?}"
    );
}

#[test]
fn crates_without_an_unsafe_module_forbid_unsafe_code() {
    // `forbid`, not the workspace's `deny`: no `#[allow(unsafe_code)]` can creep into them.
    let roots: Vec<(String, String)> = rust_files()
        .into_iter()
        .filter(|(path, _)| {
            path.starts_with("crates/")
                && (path.ends_with("/src/lib.rs") || path.ends_with("/src/main.rs"))
        })
        .collect();
    assert!(roots.len() > 15, "found only {} crate roots", roots.len());
    let offending: Vec<String> = roots
        .into_iter()
        .filter(|(path, _)| {
            let krate = path.split("/src/").next().unwrap_or_default();
            !UNSAFE_MODULES
                .iter()
                .any(|module| module.starts_with(&format!("{krate}/")))
        })
        .filter(|(_, text)| !text.contains("#![forbid(unsafe_code)]"))
        .map(|(path, _)| path)
        .collect();
    assert!(
        offending.is_empty(),
        "crate roots with no unsafe module that do not `#![forbid(unsafe_code)]`: {offending:#?}"
    );
}
