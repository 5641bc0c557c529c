//! Compiles the BPF programs in `bpf/sensor.bpf.c` (C with CO-RE) into one object embedded by
//! the crate, so the agent needs no compiler or libbpf at run time.
//!
//! `vmlinux.h` is generated here from the build machine's BTF with `bpftool`; CO-RE relocates
//! every field access against the BTF of the host that loads the object, so the build machine's
//! kernel does not need to match the fleet's.
//!
//! The BPF object is optional at build time: without clang, bpftool, libbpf's headers or a
//! BTF-enabled kernel the crate builds with the cfg `ringfence_no_bpf`, and the sensor reports
//! "not built with BPF support" as reduced visibility at run time (so `ringfence demo` never
//! needs clang). `RINGFENCE_REQUIRE_BPF=1` (CI, scripts/test.sh as root) makes that an error.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const SOURCE: &str = "bpf/sensor.bpf.c";
const BTF: &str = "/sys/kernel/btf/vmlinux";
const REQUIRE: &str = "RINGFENCE_REQUIRE_BPF";

fn main() -> ExitCode {
    println!("cargo:rustc-check-cfg=cfg(ringfence_no_bpf)");
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed={REQUIRE}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let Some(out) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        eprintln!("error: cargo did not set OUT_DIR");
        return ExitCode::FAILURE;
    };
    match build(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) if env::var(REQUIRE).is_ok_and(|v| v == "1") => {
            // Cargo shows a failed build script's stderr; one clear paragraph is all we print.
            eprintln!(
                "\nerror: the BPF sensor cannot be built: {why}\n\
                 Install the tools (Debian: apt-get install -y clang llvm libbpf-dev bpftool) \
                 or unset {REQUIRE} to build without BPF support.\n"
            );
            ExitCode::FAILURE
        }
        Err(why) => {
            println!(
                "cargo:warning=building without the BPF sensor ({why}); install clang, llvm, \
                 libbpf-dev and bpftool for it"
            );
            println!("cargo:rustc-cfg=ringfence_no_bpf");
            ExitCode::SUCCESS
        }
    }
}

fn build(out: &Path) -> Result<(), String> {
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    run(Command::new(&clang).arg("--version"))
        .map_err(|e| format!("clang is missing ({clang}: {e})"))?;
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        return Err("libbpf's headers (bpf/bpf_helpers.h) are missing".into());
    }
    if !Path::new(BTF).exists() {
        return Err(format!("this kernel exposes no BTF at {BTF}"));
    }
    let vmlinux = run(Command::new("bpftool").args(["btf", "dump", "file", BTF, "format", "c"]))
        .map_err(|e| format!("bpftool could not dump the kernel's BTF: {e}"))?;
    std::fs::write(out.join("vmlinux.h"), vmlinux)
        .map_err(|e| format!("writing vmlinux.h: {e}"))?;
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => return Err(format!("no BPF target arch for {other}")),
        Err(_) => return Err("cargo did not set CARGO_CFG_TARGET_ARCH".into()),
    };
    let object = out.join("sensor.bpf.o");
    run(Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .arg("-I")
        .arg(out)
        .arg("-c")
        .arg(SOURCE)
        .arg("-o")
        .arg(&object))
    .map_err(|e| format!("clang failed on {SOURCE}: {e}"))?;
    // The debug info is what carries BTF and CO-RE relocations; only DWARF proper goes.
    run(Command::new("llvm-strip").arg("-g").arg(&object)).ok();
    Ok(())
}

fn run(command: &mut Command) -> Result<Vec<u8>, String> {
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}
