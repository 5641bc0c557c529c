//! The guard's decisions as a pure state machine — crash window, boot counter, slot choice — so
//! they can be tested exhaustively (proptest) without processes, clocks or files.

use crate::slot::Slot;
use crate::state::{GuardState, Restore, RestoreReason};
use std::collections::VecDeque;
use std::time::Duration;

/// The knobs of the recovery policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures within `window` that make a crash loop (N).
    pub failures: u32,
    /// The crash-loop window.
    pub window: Duration,
    /// Starts of the current release allowed without it ever becoming healthy (tries-left).
    pub boot_tries: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            failures: 3,
            window: Duration::from_secs(60),
            boot_tries: 3,
        }
    }
}

/// Why an agent run ended without the guard asking it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It exited by itself with this code.
    Exited(i32),
    /// A signal killed it (name, e.g. `SIGSEGV`).
    Signaled(String),
    /// It stopped heartbeating and the guard killed it.
    Hung,
    /// It could not even be started.
    SpawnFailed(String),
    /// It exited with code 0 although nobody asked it to stop.
    ExitedUnasked,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Exited(code) => write!(f, "exited with code {code}"),
            Failure::Signaled(sig) => write!(f, "killed by {sig}"),
            Failure::Hung => write!(f, "missed its heartbeat and was killed"),
            Failure::SpawnFailed(why) => write!(f, "could not be started: {why}"),
            Failure::ExitedUnasked => write!(f, "exited with code 0 without a stop request"),
        }
    }
}

/// How one agent run ended, as the guard saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Someone asked the agent to stop (the guard, systemd, an operator) and it did: not a
    /// crash, no report, and it counts toward neither the crash window nor the boot counter.
    Requested(String),
    /// Anything else: a crash report, and it counts.
    Failed(Failure),
}

/// Signals whose whole meaning is "please stop": dying of one is obeying a request.
const TERMINATION_SIGNALS: [&str; 3] = ["SIGTERM", "SIGINT", "SIGHUP"];

/// Tells a requested stop from a crash. `outcome` is what `waitpid` (or the heartbeat deadline)
/// said; `said_stopping` is true when the agent announced `stopping` on the heartbeat pipe (it
/// received a termination signal); `stop_pending` is true when the guard itself has a stop
/// request waiting (systemd signalled the whole unit and the agent was faster).
///
/// Exit 0 alone is not enough: an agent that quits on its own leaves the host unprotected, and
/// one that does so repeatedly is as broken as one that crashes. A non-zero exit, a fatal
/// signal or a hang is a crash whatever was asked.
pub fn classify(outcome: Failure, said_stopping: bool, stop_pending: bool) -> Ending {
    match &outcome {
        Failure::Exited(0) if said_stopping || stop_pending => {
            Ending::Requested("exited with code 0 after a stop request".to_owned())
        }
        Failure::Signaled(signal) if TERMINATION_SIGNALS.contains(&signal.as_str()) => {
            Ending::Requested(format!("terminated by {signal}"))
        }
        Failure::Exited(0) => Ending::Failed(Failure::ExitedUnasked),
        _ => Ending::Failed(outcome),
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Restart on the same slot after backoff step `attempt`.
    Restart { attempt: u32 },
    /// Switch to the last known good slot and start at once.
    RestoreLkg(Restore),
}

/// The crash window and boot counter around a persistent [`GuardState`].
/// `now` is monotonic time since the guard started; `unix` is wall time for the record.
#[derive(Debug, Clone)]
pub struct Machine {
    policy: Policy,
    state: GuardState,
    failures: VecDeque<Duration>,
    attempt: u32,
}

impl Machine {
    /// Starts from persisted state; a new release identity resets the boot counter and unpins
    /// LKG, because the pin was about the release that failed.
    pub fn new(policy: Policy, mut state: GuardState, release: Option<String>) -> Self {
        if release.is_some() && release != state.release {
            state.release = release;
            state.boot_tries_left = policy.boot_tries;
            state.pinned_lkg = None;
            state.blessed = false;
        }
        state.boot_tries_max = policy.boot_tries;
        state.boot_tries_left = state.boot_tries_left.min(policy.boot_tries);
        Self {
            policy,
            state,
            failures: VecDeque::new(),
            attempt: 0,
        }
    }

    pub fn state(&self) -> &GuardState {
        &self.state
    }

    pub fn slot(&self) -> Slot {
        if self.state.pinned_lkg.is_some() {
            Slot::Lkg
        } else {
            Slot::Current
        }
    }

    pub fn failures_in_window(&self) -> usize {
        self.failures.len()
    }

    /// Called before every start; the caller persists the state before spawning, so a guard
    /// killed right after still counts this try. Returns the slot to start and, when the boot
    /// counter ran out just now, the restore it caused.
    pub fn before_start(&mut self, unix: u64) -> (Slot, Option<Restore>) {
        if self.slot() == Slot::Lkg {
            return (Slot::Lkg, None);
        }
        if self.state.boot_tries_left == 0 {
            let restore = Restore {
                at_unix: unix,
                reason: RestoreReason::BootLoop,
                detail: format!(
                    "{} starts of the current release never became healthy",
                    self.policy.boot_tries
                ),
            };
            self.pin(restore.clone());
            return (Slot::Lkg, Some(restore));
        }
        self.state.boot_tries_left -= 1;
        self.state.blessed = false;
        (Slot::Current, None)
    }

    /// The agent has been healthy long enough: bless the release (reset tries-left) and the
    /// backoff.
    pub fn on_healthy(&mut self) {
        self.attempt = 0;
        if self.slot() == Slot::Current {
            self.state.boot_tries_left = self.policy.boot_tries;
            self.state.blessed = true;
        }
    }

    /// A run ended because someone asked it to stop: the start it used is given back to the
    /// boot counter (unless the release was blessed meanwhile, which refilled it), so stopping
    /// an agent before it was blessed — a `systemctl restart`, a reboot — never moves the host
    /// towards a boot-loop restore. The crash window and the backoff are left as they are.
    pub fn on_requested_stop(&mut self) {
        if self.slot() == Slot::Current && !self.state.blessed {
            self.state.boot_tries_left = self
                .state
                .boot_tries_left
                .saturating_add(1)
                .min(self.policy.boot_tries);
        }
    }

    /// A run ended badly at `now`.
    pub fn on_failure(&mut self, now: Duration, unix: u64, failure: &Failure) -> Decision {
        self.state.restarts = self.state.restarts.saturating_add(1);
        self.failures.push_back(now);
        while let Some(&first) = self.failures.front() {
            if now.saturating_sub(first) >= self.policy.window {
                self.failures.pop_front();
            } else {
                break;
            }
        }
        let n = self.failures.len();
        if self.slot() == Slot::Current && n >= self.policy.failures as usize {
            let restore = Restore {
                at_unix: unix,
                reason: RestoreReason::CrashLoop,
                detail: format!(
                    "{n} failures within {}s, the last one: agent {failure}",
                    self.policy.window.as_secs()
                ),
            };
            self.pin(restore.clone());
            return Decision::RestoreLkg(restore);
        }
        let attempt = self.attempt;
        self.attempt = self.attempt.saturating_add(1);
        Decision::Restart { attempt }
    }

    fn pin(&mut self, restore: Restore) {
        self.state.pinned_lkg = Some(restore.clone());
        self.state.last_restore = Some(restore);
        self.failures.clear();
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests;
