//! Builds the example engines in `engines/` to wasm components, so a fresh clone needs no hand
//! steps: `cargo build` or `cargo test` produces `target/engines/<name>.wasm` and embeds them.
//!
//! The guests are a separate cargo workspace (they target `wasm32-wasip2`); we run cargo on it
//! with a target directory of its own so that the outer build's lock is never contended.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (package name, file stem of the built artefact, engine name users see).
const ENGINES: &[(&str, &str, &str)] = &[
    ("exec-allowlist", "exec_allowlist", "exec-allowlist"),
    ("faulty", "faulty", "faulty"),
    ("sigma", "sigma", "sigma"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("crate lives at crates/<name>")
        .to_path_buf();
    let engines_dir = root.join("engines");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    // The outer target directory: `CARGO_TARGET_DIR` when set, else `<root>/target`.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));

    for path in ["wit", "engines", "crates/allowlist/src", "crates/sigma/src"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&engines_dir)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(target_dir.join("engines-build"));
    // The outer build's settings are for the host, not for the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        command.env_remove(var);
    }
    let status = command.status().unwrap_or_else(|e| {
        panic!(
            "could not run cargo to build the engines in {}: {e}",
            engines_dir.display()
        )
    });
    assert!(
        status.success(),
        "building the wasm engines failed ({status}); is the wasm32-wasip2 target installed? \
         `rustup target add wasm32-wasip2`"
    );

    let built = target_dir.join("engines-build/wasm32-wasip2/release");
    let stable = target_dir.join("engines");
    std::fs::create_dir_all(&stable).expect("create target/engines");
    let mut consts = String::new();
    for (_, stem, name) in ENGINES {
        let from = built.join(format!("{stem}.wasm"));
        let into_out = out_dir.join(format!("{name}.wasm"));
        copy(&from, &into_out);
        copy(&from, &stable.join(format!("{name}.wasm")));
        consts.push_str(&format!(
            "    BundledEngine {{ name: {name:?}, wasm: include_bytes!({:?}) }},\n",
            into_out.display().to_string()
        ));
    }
    std::fs::write(
        out_dir.join("engines.rs"),
        format!("pub const ALL: &[BundledEngine] = &[\n{consts}];\n"),
    )
    .expect("write engines.rs");
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}
