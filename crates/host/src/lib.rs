//! The agent process's lifecycle, one for the standalone and the managed agent: open the kernel
//! channels (or adopt them from a previous image), confine the process ([`confine`]), start the
//! agent, serve until a signal ([`serve`]), and stop or upgrade in place ([`upgrade`]).
//!
//! The order is the point. Channels are opened while the process still holds
//! `CAP_SYS_ADMIN`/`CAP_NET_ADMIN`; confinement happens on the main thread before any other
//! thread exists, so every thread inherits it; the threads that never look at other processes
//! are started under the Landlock view. The standalone agent ([`standalone`]) and the managed
//! one ([`managed`], which adds its uplink: enrollment, spool, heartbeat, crash monitor) run this
//! same order and the same [`serve`] loop; the binary crate only turns flags into calls.
//!
//! **Architecture invariant:** nothing here decides about an event or a release; this crate
//! holds the process's order of operations and the upgrade handshake, and the agent crate the
//! decisions.

#![forbid(unsafe_code)]

pub mod confine;
mod error;
pub mod managed;
pub mod serve;
pub mod standalone;
pub mod upgrade;

pub use error::HostError;
pub use serve::{Ending, serve};
pub use upgrade::{Prepared, SelfUpgrade};

use ringfence_agent::{Agent, Visibility};
use ringfence_engine_host::Runtime;
use std::path::Path;

/// `runtime` keeping compiled engines in `<data_dir>/engine-cache/`, unless `mib` is 0: a
/// restart or an in-place upgrade (the new image gets the same arguments) then loads them
/// instead of compiling them again.
pub fn with_engine_cache(runtime: Runtime, data_dir: &Path, mib: u64) -> Runtime {
    if mib == 0 {
        return runtime;
    }
    runtime.with_cache(data_dir.join("engine-cache"), mib.saturating_mul(1 << 20))
}

/// One line on what the BPF sensor sees, when it was asked for: reduced visibility is not an
/// error, but nobody should have to find it in a debug log.
fn report_visibility(agent: &Agent) {
    match agent.visibility() {
        Some(Visibility::Reduced { reason }) => {
            eprintln!("ringfence agent: reduced visibility (BPF sensor off): {reason}");
        }
        Some(Visibility::Full { attached, absent }) => eprintln!(
            "ringfence agent: BPF sensor attached ({} hooks{})",
            attached.len(),
            if absent.is_empty() {
                String::new()
            } else {
                format!("; not in this kernel: {}", absent.join(", "))
            }
        ),
        None => {}
    }
}
