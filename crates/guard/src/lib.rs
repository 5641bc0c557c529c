//! `ringfence guard`: the supervisor that must never crash. It starts the agent, watches its exit
//! and its heartbeat pipe, restarts it with backoff, and restores the last known good slot
//! locally on a crash loop or a boot loop — with std, nix, serde_json, thiserror, tracing,
//! ringfence-backoff, ringfence-protocol (for the contract below) and ringfence-sys (libc alone)
//! only: no engine code, no async runtime.
//!
//! The contract with the agent: env `RINGFENCE_GUARD_FD=<n>` names an inherited, non-blocking
//! pipe to write heartbeats to (`ok\n` at least every heartbeat timeout, `ready\n` once serving);
//! env `RINGFENCE_SLOT=current|lkg` and, for LKG, the arguments `--slot lkg` say which slot to
//! run. The agent runs in its own process group and dies with SIGKILL if the guard dies.

#![forbid(unsafe_code)]

pub mod crash_report;
mod fsutil;
pub mod heartbeat;
pub mod notify;
pub mod policy;
pub mod signals;
pub mod slot;
pub mod state;
pub mod status;
pub mod supervisor;

pub use heartbeat::GUARD_FD_ENV;
pub use notify::Notifier;
pub use policy::{Decision, Failure, Machine, Policy};
pub use ringfence_backoff::{BackoffError, ExpBackoff, Jitter};
pub use signals::ShutdownSignals;
pub use slot::{AgentCommand, ArgSlotSwitch, SLOT_ENV, Slot, SlotSwitch};
pub use state::{GuardState, Restore, RestoreReason};
pub use status::{Phase, Status};
pub use supervisor::{Config, Guard, GuardError, Shutdown, StopPipe, StopTrigger, stop_pipe};
