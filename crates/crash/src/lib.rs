//! Native crash capture. A process that crashes cannot be trusted to describe itself, so the
//! agent starts a small monitor process (`ringfence crash-monitor`) and, when it crashes, hands
//! the monitor its crash context over a Unix socket; the monitor writes a minidump by reading
//! the crashed process from outside (ptrace), then a report into the agent's spool.
//!
//! The guard separately reports every agent death (signal or exit code); the monitor's report
//! (kind `minidump`) is the evidence attached to it, not a second crash. The signal handler
//! itself is `ringfence_sys::crash`.

#![forbid(unsafe_code)]

mod client;
mod monitor;

pub use client::{CrashCapture, CrashError};
pub use monitor::run_monitor;
