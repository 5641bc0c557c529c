//! The agent's enforcement mode as one atomic, so that an operator or the control plane can
//! switch between enforcing and auditing while the agent runs, like an engine swap: the next
//! answer uses the new mode, no event waits for the switch.
//!
//! Self-protection of the agent's own files is not subject to it: a tamper attempt is denied
//! in audit mode too, because audit mode is about a release's verdicts, never about leaving
//! the agent open to being switched off.

use ringfence_protocol::Enforcement;
use std::sync::atomic::{AtomicBool, Ordering};

/// The live mode, shared by every thread that answers the kernel.
#[derive(Debug, Default)]
pub struct ModeSwitch {
    audit: AtomicBool,
}

/// How one decided answer is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    /// What the kernel is told.
    pub allow: bool,
    /// The verdict denied, but audit mode allowed it.
    pub would_deny: bool,
}

impl ModeSwitch {
    pub fn new(mode: Enforcement) -> ModeSwitch {
        ModeSwitch {
            audit: AtomicBool::new(mode.is_audit()),
        }
    }

    pub fn get(&self) -> Enforcement {
        if self.audit.load(Ordering::Relaxed) {
            Enforcement::Audit
        } else {
            Enforcement::Enforce
        }
    }

    /// Switches the mode; returns the previous one.
    pub fn set(&self, mode: Enforcement) -> Enforcement {
        if self.audit.swap(mode.is_audit(), Ordering::Relaxed) {
            Enforcement::Audit
        } else {
            Enforcement::Enforce
        }
    }

    /// Carries out a decided answer in the current mode: a deny in audit mode is allowed and
    /// marked as a would-deny. The mode is read once, so the answer and its accounting agree.
    pub fn carry(&self, decided_allow: bool) -> Carried {
        let audit = self.audit.load(Ordering::Relaxed);
        Carried {
            allow: decided_allow || audit,
            would_deny: !decided_allow && audit,
        }
    }
}

impl Carried {
    /// Adds what audited engines said: when the answer allows although the full verdict
    /// denies, an audited engine denied, and that is a would-deny too.
    pub fn or_audited(self, verdict_denies: bool) -> Carried {
        Carried {
            allow: self.allow,
            would_deny: self.would_deny || (self.allow && verdict_denies),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_allows_a_deny_and_marks_it_and_never_touches_an_allow() {
        let mode = ModeSwitch::new(Enforcement::Enforce);
        assert_eq!(
            mode.carry(false),
            Carried {
                allow: false,
                would_deny: false
            }
        );
        assert_eq!(mode.set(Enforcement::Audit), Enforcement::Enforce);
        assert_eq!(mode.get(), Enforcement::Audit);
        assert_eq!(
            mode.carry(false),
            Carried {
                allow: true,
                would_deny: true
            }
        );
        assert_eq!(
            mode.carry(true),
            Carried {
                allow: true,
                would_deny: false
            }
        );
    }
}
