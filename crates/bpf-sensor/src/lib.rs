//! The BPF sensor: fixed, kernel-verified programs that observe and forward — exec with argv
//! and credentials, TCP connect/listen/accept, file rename/unlink/chmod/chown/link, set-id
//! calls, `ptrace`, module loads and `bpf()` — over one bounded ring buffer.
//!
//! Programs never take content or rules: every judgement stays in the wasm engines in user
//! space. The ring buffer is bounded (1 MiB); a record that does not fit is counted in a
//! per-CPU map ([`BpfSensor::lost`]), never dropped silently.
//!
//! - [`BpfSensor::load`] loads the object embedded at build time and attaches each hook on its
//!   own, reporting which ones the kernel refused ([`Hooks`]).
//! - [`BpfSensor::read`] waits on the ring buffer and decodes records with [`record::decode`],
//!   a pure function that validates every length and never panics.
//!
//! **Architecture invariant:** no `unsafe` here; the loader is aya (pure Rust), and the one
//! descriptor we wait on is a safe duplicate of the ring buffer's.
#![forbid(unsafe_code)]

mod error;
mod loader;
pub mod record;

pub use error::BpfError;
pub use loader::{BpfConfig, BpfSensor, Hooks, KERNEL_BTF, ReadOutcome};
pub use record::{BpfEvent, DecodeError, FileOp, ModuleLoad, NetKind, Process, SetId};
