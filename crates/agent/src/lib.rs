//! The host agent: sensors in, engine verdicts out, every permission event answered on time.
//!
//! ```text
//!  kernel exec cache (inode ignore mark + read lease) ──▶ kernel answers, no event
//!        │ not cached, or taken back (lease break, swap, stop)
//!  fanotify reader ──mute/cache hit──▶ answer
//!        │ miss
//!        ▼
//!  bounded queue ──full──▶ answer by policy (counted)
//!        │                         ▲
//!        ▼                         │ deadline passed
//!  workers (EngineWorker per engine) ──▶ answer ◀── deadline responder
//!  proc connector / replay ──▶ notification thread (batched) ──▶ alerts
//!  engine failures (workers, notification thread) ──▶ failure channel (typed, bounded)
//!  BPF ring buffer ──▶ counters, argv of recent execs (read by workers), loss alerts
//!        └── network/file/privilege, enriched ──try──▶ notification thread (full: counted,
//!                                                      alerted)
//! ```
//!
//! **Architecture invariant:** every permission ticket is answered exactly once, by whoever is
//! first: worker, responder, queue-full or shutdown. No engine call sits between the kernel and
//! its answer without the responder watching.
#![forbid(unsafe_code)]

mod agent;
pub mod alerts;
pub mod bpf;
pub mod cache;
mod config;
mod confine;
pub mod engines;
pub mod enrich;
mod failures;
pub mod latency;
pub mod mode;
pub mod mute;
mod notify;
pub mod protect;
mod recent;
mod responder;
mod sensors;
mod shared;
pub mod stats;
mod watch;
mod worker;

pub use agent::Agent;
pub use bpf::Visibility;
pub use config::{AgentConfig, AgentError, KERNEL_CACHE_FILES, Sensor};
pub use engines::SwapError;
pub use failures::{FailureReceiver, FailureSender, failure_channel};
pub use latency::LatencySummary;
pub use mute::MuteSet;
pub use recent::RECENT_EVENTS;
pub use ringfence_protocol::Enforcement;
pub use shared::Submitted;
pub use stats::StatsSnapshot;
