//! What an engine (or a policy standing in for one) says about an event.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Observe,
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Observe => "observe",
            Action::Deny => "deny",
        }
    }
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Info,
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub action: Action,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule_id: String,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Verdict {
    /// A plain allow with nothing to report.
    pub fn allow() -> Verdict {
        Verdict {
            action: Action::Allow,
            rule_id: String::new(),
            severity: Severity::Info,
            message: String::new(),
            tags: Vec::new(),
        }
    }

    /// Combines verdicts from several engines: any deny wins, then observe, then allow; among
    /// equals the more severe one is kept so the alert says the worst thing that was seen.
    pub fn strongest(self, other: Verdict) -> Verdict {
        if (other.action, other.severity) > (self.action, self.severity) {
            other
        } else {
            self
        }
    }
}

/// What to answer when an engine cannot: the engine failed, missed its deadline, or is
/// quarantined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Allow the operation and raise an alert. The default: a broken engine must not stop
    /// the machine.
    #[default]
    FailOpen,
    /// Deny the operation. For allow-list engines, where letting an unknown binary run is the
    /// greater harm.
    FailClosed,
}

impl FailurePolicy {
    /// The verdict standing in for an engine that could not answer.
    pub fn verdict(self, engine: &str, why: &str) -> Verdict {
        let (action, word) = match self {
            FailurePolicy::FailOpen => (Action::Observe, "allowed (fail-open)"),
            FailurePolicy::FailClosed => (Action::Deny, "denied (fail-closed)"),
        };
        Verdict {
            action,
            rule_id: format!("ringfence.engine-failure.{engine}"),
            severity: Severity::High,
            message: format!("engine {engine} could not decide ({why}); {word}"),
            tags: Vec::new(),
        }
    }
}

impl std::str::FromStr for FailurePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail-open" | "open" => Ok(FailurePolicy::FailOpen),
            "fail-closed" | "closed" => Ok(FailurePolicy::FailClosed),
            other => Err(format!(
                "unknown failure policy {other:?}; expected fail-open or fail-closed"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(action: Action, severity: Severity) -> Verdict {
        Verdict {
            action,
            severity,
            ..Verdict::allow()
        }
    }

    #[test]
    fn deny_beats_observe_beats_allow() {
        let deny = verdict(Action::Deny, Severity::Low);
        let observe = verdict(Action::Observe, Severity::Critical);
        assert_eq!(observe.clone().strongest(deny.clone()), deny);
        assert_eq!(Verdict::allow().strongest(observe.clone()), observe);
    }

    #[test]
    fn policy_verdicts() {
        assert_eq!(
            FailurePolicy::FailOpen.verdict("e", "trap").action,
            Action::Observe
        );
        assert_eq!(
            FailurePolicy::FailClosed.verdict("e", "trap").action,
            Action::Deny
        );
    }
}
