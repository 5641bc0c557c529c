//! Capability drop: the agent keeps only what its running threads still use, in every set
//! (effective, permitted, inheritable, ambient, bounding), and locks the secure bits so that
//! executing a program as root — a self-upgrade re-exec, the crash monitor — regains nothing.
//!
//! Capabilities are per thread in Linux: the drop must run on the main thread before any other
//! thread exists, so that every thread created afterwards inherits the reduced sets.

use crate::HardeningError;
use caps::{CapSet, Capability, CapsHashSet};
use ringfence_sys::confine as sys;

/// What the running agent keeps, with the reason.
///
/// Opening the fanotify group and the netlink socket needs `CAP_SYS_ADMIN` and `CAP_NET_ADMIN`,
/// but only at start: answering permission events on an open group, reading events and
/// receiving netlink messages need nothing.
pub const KEPT: &[(Capability, &str)] = &[(
    Capability::CAP_SYS_PTRACE,
    "read /proc/PID/exe and /proc/PID/cwd of processes of other users (ptrace read access)",
)];

/// The kept set as a bit mask, as `/proc/PID/status` prints it (`CapEff`, `CapPrm`, `CapBnd`).
pub fn kept_mask() -> u64 {
    KEPT.iter().fold(0, |mask, (cap, _)| mask | cap.bitmask())
}

fn kept() -> CapsHashSet {
    KEPT.iter().map(|(cap, _)| *cap).collect()
}

fn failed(what: &'static str) -> impl FnOnce(caps::errors::CapsError) -> HardeningError {
    move |error| HardeningError::Capabilities {
        what,
        reason: error.to_string(),
    }
}

/// Drops every capability but [`KEPT`] from the calling thread, in an order where each step
/// still has the capability it needs (`CAP_SETPCAP` for the bounding set and the secure bits).
pub fn drop_to_kept() -> Result<(), HardeningError> {
    let kept = kept();
    for cap in caps::runtime::thread_all_supported() {
        if !kept.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(failed("drop from the bounding set"))?;
        }
    }
    // Inheritable and ambient hold the kept set: with SECBIT_NOROOT, ambient capabilities are
    // the only ones that survive an execve, and a re-executed agent needs the kept set too.
    caps::set(None, CapSet::Inheritable, &kept).map_err(failed("set the inheritable set"))?;
    caps::clear(None, CapSet::Ambient).map_err(failed("clear the ambient set"))?;
    for cap in &kept {
        caps::raise(None, CapSet::Ambient, *cap).map_err(failed("raise an ambient capability"))?;
    }
    sys::set_securebits(
        sys::SECBIT_NOROOT
            | sys::SECBIT_NO_SETUID_FIXUP
            | sys::SECBIT_KEEP_CAPS_LOCKED
            | sys::SECBIT_NO_CAP_AMBIENT_RAISE,
    )
    .map_err(|error| HardeningError::Capabilities {
        what: "lock the secure bits",
        reason: error.to_string(),
    })?;
    // Last: this gives up CAP_SETPCAP, which every step above needed.
    caps::set(None, CapSet::Effective, &kept).map_err(failed("set the effective set"))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(failed("set the permitted set"))?;
    Ok(())
}

/// Names of the kept capabilities, for the start-up log line.
pub fn kept_names() -> Vec<String> {
    KEPT.iter().map(|(cap, _)| cap.to_string()).collect()
}

/// True when the calling thread holds nothing beyond [`KEPT`] in its permitted and bounding
/// sets: an agent re-executed by a previous image (which no longer has `CAP_SETPCAP` to drop
/// anything, and has nothing left to drop).
pub fn already_reduced() -> bool {
    let kept = kept();
    let subset = |set| caps::read(None, set).is_ok_and(|caps| caps.is_subset(&kept));
    subset(CapSet::Permitted) && subset(CapSet::Bounding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_mask_is_what_proc_status_prints() {
        assert_eq!(kept_mask(), 1 << 19, "CAP_SYS_PTRACE is capability 19");
        assert_eq!(kept_names(), vec!["CAP_SYS_PTRACE".to_owned()]);
    }
}
