//! Builds the example engines in `engines/` to wasm components, so a fresh clone needs no hand
//! steps: `cargo build` or `cargo test` produces `target/engines/<name>.wasm` and embeds them.
//!
//! The guests are a separate cargo workspace (they target `wasm32-wasip2`); we run cargo on it
//! with a target directory of its own so that the outer build's lock is never contended.
//!
//! `rust-toolchain.toml` names the target, but rustup adds it only when it installs the
//! toolchain: a machine that already had the toolchain lacks it. So we check, add it with
//! rustup when we can, and otherwise stop with one sentence that says what to run — never a
//! panic and a backtrace.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// (package name, file stem of the built artefact, engine name users see).
const ENGINES: &[(&str, &str, &str)] = &[
    ("exec-allowlist", "exec_allowlist", "exec-allowlist"),
    ("faulty", "faulty", "faulty"),
    ("sigma", "sigma", "sigma"),
];

const TARGET: &str = "wasm32-wasip2";

fn main() -> ExitCode {
    match build() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Cargo shows a failed build script's stderr; one clear paragraph is all we print.
            eprintln!("\nerror: {message}\n");
            ExitCode::FAILURE
        }
    }
}

fn build() -> Result<(), String> {
    let var = |name: &str| env::var_os(name).ok_or_else(|| format!("cargo did not set {name}"));
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .ok_or("this crate must live at crates/<name> of the workspace")?
        .to_path_buf();
    let engines_dir = root.join("engines");
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    // The outer target directory: `CARGO_TARGET_DIR` when set, else `<root>/target`.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));

    for path in ["wit", "engines", "crates/allowlist/src", "crates/sigma/src"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    ensure_wasm_target()?;
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&engines_dir)
        .args(["build", "--release", "--locked", "--target", TARGET])
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
    let status = command.status().map_err(|e| {
        format!(
            "could not run cargo to build the engines in {}: {e}",
            engines_dir.display()
        )
    })?;
    if !status.success() {
        return Err(format!(
            "building the wasm engines in {} failed ({status}); the compiler's messages are above",
            engines_dir.display()
        ));
    }

    let built = target_dir.join("engines-build/wasm32-wasip2/release");
    let stable = target_dir.join("engines");
    std::fs::create_dir_all(&stable).map_err(|e| format!("create {}: {e}", stable.display()))?;
    let mut consts = String::new();
    for (_, stem, name) in ENGINES {
        let from = built.join(format!("{stem}.wasm"));
        let into_out = out_dir.join(format!("{name}.wasm"));
        copy(&from, &into_out)?;
        copy(&from, &stable.join(format!("{name}.wasm")))?;
        consts.push_str(&format!(
            "    BundledEngine {{ name: {name:?}, wasm: include_bytes!({:?}) }},\n",
            into_out.display().to_string()
        ));
    }
    let consts_file = out_dir.join("engines.rs");
    std::fs::write(
        &consts_file,
        format!("pub const ALL: &[BundledEngine] = &[\n{consts}];\n"),
    )
    .map_err(|e| format!("write {}: {e}", consts_file.display()))
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))
}

/// Makes sure the compiler has the standard library for the guests' target, adding it with
/// rustup (for the toolchain this build runs on) when it is missing.
fn ensure_wasm_target() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("could not run rustc to find its sysroot: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let installed = || {
        sysroot
            .join("lib/rustlib")
            .join(TARGET)
            .join("lib")
            .is_dir()
    };
    if installed() {
        return Ok(());
    }
    let how = format!("rustup target add {TARGET}");
    println!("cargo:warning=the {TARGET} target is missing; adding it with `{how}`");
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    // The rustup proxy names the toolchain it chose (from rust-toolchain.toml); add the target
    // to exactly that one.
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        rustup.arg("--toolchain").arg(toolchain);
    }
    let outcome = rustup.output();
    match outcome {
        Ok(output) if output.status.success() && installed() => Ok(()),
        Ok(output) => Err(format!(
            "the bundled engines are WebAssembly components and need the {TARGET} target, which \
             this toolchain lacks; adding it failed ({}). Run `{how}` (with network access) and \
             build again.",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .rfind(|line| !line.trim().is_empty())
                .unwrap_or("no message")
                .trim()
        )),
        Err(error) => Err(format!(
            "the bundled engines are WebAssembly components and need the {TARGET} target, which \
             this toolchain lacks, and rustup could not be run to add it ({error}). Install the \
             target for {} and build again.",
            sysroot.display()
        )),
    }
}
