//! The agent process's lifecycle, one for the standalone and the managed agent: open the kernel
//! channels (or adopt them from a previous image), confine the process ([`confine`]), start the
//! agent, serve until a signal ([`serve`]), and stop or upgrade in place ([`upgrade`]).
//!
//! The order is the point. Channels are opened while the process still holds
//! `CAP_SYS_ADMIN`/`CAP_NET_ADMIN`; confinement happens on the main thread before any other
//! thread exists, so every thread inherits it; the threads that never look at other processes
//! are started under the Landlock view. The managed agent adds its uplink (enrollment, spool,
//! heartbeat) around this; the binary crate only turns flags into calls.
//!
//! **Architecture invariant:** nothing here decides about an event or a release; this crate
//! holds the process's order of operations and the upgrade handshake, and the agent crate the
//! decisions.

#![forbid(unsafe_code)]

pub mod confine;
mod error;
pub mod serve;
pub mod upgrade;

pub use error::HostError;
pub use serve::{Ending, serve};
pub use upgrade::{Prepared, SelfUpgrade};
