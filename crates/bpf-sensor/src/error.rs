//! Why the BPF sensor could not be had, worded for the operator who reads "reduced
//! visibility" in the agent's status.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// This binary was built without clang (see the crate's build script).
    #[error("not built with BPF support (clang, libbpf-dev or bpftool were missing at build time)")]
    NotBuilt,
    /// Switched off on purpose (the guard after a boot loop, or the operator), with why.
    #[error("{0}")]
    SwitchedOff(String),
    /// The kernel's type information, needed to relocate the programs (CO-RE), is missing.
    #[error("no usable BTF at {path}: {source}")]
    Btf {
        path: PathBuf,
        #[source]
        source: aya::BtfError,
    },
    /// The object could not be parsed or its maps created.
    #[error("the kernel refused the BPF object: {0}")]
    Object(#[source] aya::EbpfError),
    /// tracefs, through which tracepoints are attached, is not mounted.
    #[error("tracefs is not mounted at /sys/kernel/tracing")]
    NoTracefs,
    /// No program could be loaded and attached; the first failure says why.
    #[error("no BPF program attached (first failure, {hook}: {reason})")]
    NothingAttached { hook: &'static str, reason: String },
    /// A map the object must define is missing or of the wrong type.
    #[error("BPF map {name}: {reason}")]
    Map { name: &'static str, reason: String },
    /// Waiting on the ring buffer failed.
    #[error("polling the BPF ring buffer: {0}")]
    Poll(#[source] std::io::Error),
}
