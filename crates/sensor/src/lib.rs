//! Kernel event sources: fanotify permission events and the netlink process connector.
//!
//! - [`Fanotify`] marks mounts for exec authorisation and paths for open authorisation and
//!   yields [`FanEvent`]s, each permission event carrying a [`Ticket`] answered exactly once.
//! - [`KernelCache`] lets the kernel answer execs whose allow verdict is cached, with a lease on
//!   each file so that no write can outrun the removal of its answer.
//! - [`EntryWatch`] reports who creates, deletes or renames the agent's own files.
//! - [`ProcConnector`] yields fork/exec/exit notifications enriched from /proc.
//! - [`handoff`] passes the fanotify groups and the connector socket to a new image of the agent
//!   across `execve` (self-upgrade).
//! - [`replay`] reads a recorded corpus so everything above the sensor runs without root.
//!
//! **Architecture invariant:** every raw system call goes through `ringfence_sys`; this crate is
//! safe Rust (`forbid(unsafe_code)`), and every decoder of kernel bytes is a pure function that
//! cannot panic.

#![forbid(unsafe_code)]

pub mod connector;
pub mod decode;
pub mod entries;
mod error;
pub mod fanotify;
pub mod handoff;
pub mod intent;
pub mod kcache;
pub mod mounts;
pub mod procfs;
pub mod resolve;
mod ticket;

pub use connector::ProcConnector;
pub use entries::{EntryChange, EntryChangeKind, EntryWatch};
pub use error::SensorError;
pub use fanotify::{Access, FanEvent, Fanotify, FanotifyConfig, FileId};
pub use handoff::{Channels, HANDOFF_ENV, Inheritable};
pub use kcache::KernelCache;
pub use resolve::{resolve_exec, resolve_open};
pub use ticket::Ticket;

/// Reads a recorded corpus for the replay sensor.
pub fn replay(path: &std::path::Path) -> Result<Vec<ringfence_protocol::Event>, SensorError> {
    Ok(ringfence_protocol::corpus::read_file(path)?)
}
