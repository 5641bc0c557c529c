//! Serving until told otherwise: the loop every agent process runs once its agent has started.
//! It collects the daemon signals (blocked since `main`, so a stop is a clean shutdown and never
//! kills the process mid-answer), beats the guard's heartbeat between waits (a hung agent stops
//! beating and the guard restarts it), and turns the upgrade signal into a verified, probed next
//! binary before anything is torn down.

use crate::upgrade::{Prepared, SelfUpgrade};
use ringfence_protocol::guard_link::GuardLink;
use ringfence_sys::signals::{UPGRADE_SIGNAL, wait_termination};
use std::ops::ControlFlow;
use std::time::Duration;

/// Why [`serve`] returned.
#[derive(Debug)]
pub enum Ending {
    /// A termination signal (the guard was told the stop was asked for), or the caller's
    /// `each` said the work is done.
    Stop,
    /// The upgrade signal came and the next binary passed verification and its probe: the
    /// caller hands the agent over and executes it.
    Upgrade(Prepared),
}

/// Waits for a daemon signal, `tick` at a time, beating `guard` between waits and asking `each`
/// whether to go on. With `upgrade`, the upgrade signal ends the loop once the next binary is
/// verified and probed (a refused binary leaves everything serving, and says why); without it,
/// the signal is ignored with a warning (a replaying agent has nothing to hand over).
pub fn serve(
    upgrade: Option<&SelfUpgrade>,
    guard: Option<&GuardLink>,
    tick: Duration,
    mut each: impl FnMut() -> ControlFlow<()>,
) -> Ending {
    loop {
        if let Some(guard) = guard {
            guard.beat();
        }
        match wait_termination(tick) {
            Some(UPGRADE_SIGNAL) => match upgrade {
                Some(upgrade) => {
                    if let Ok(prepared) = upgrade.prepare_logged() {
                        return Ending::Upgrade(prepared);
                    }
                }
                None => tracing::warn!("this agent does not upgrade in place; signal ignored"),
            },
            Some(signal) => {
                tracing::info!(signal, "stopping on signal");
                // So the guard takes our exit for a requested stop, not a crash.
                if let Some(guard) = guard {
                    guard.stopping();
                }
                return Ending::Stop;
            }
            None => {}
        }
        if each().is_break() {
            return Ending::Stop;
        }
    }
}
