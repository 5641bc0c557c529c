//! Whether a verdict is carried out or only reported: the agent's mode, the mode an
//! assignment asks a host to run a release in, and the mode a rollout goes out in. One type,
//! because the agent, the heartbeat, the server and the CLI must spell it the same way.

use serde::{Deserialize, Serialize};

/// How an agent carries out its engines' verdicts.
///
/// `Audit` (permissive) decides every event exactly as `Enforce` would, logs and counts a deny
/// as "would deny", and answers the kernel allow; it lets a release be measured on real
/// traffic before it blocks anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Deny verdicts deny.
    #[default]
    Enforce,
    /// Deny verdicts are reported as "would deny" and allowed.
    Audit,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforce => "enforce",
            Enforcement::Audit => "audit",
        }
    }

    pub fn is_audit(self) -> bool {
        self == Enforcement::Audit
    }

    /// The stricter reading of two wishes that both hold: audit wins, since the point of an
    /// audit wish (an operator's flag, an audit rollout) is that nothing is blocked.
    pub fn either_audits(self, other: Enforcement) -> Enforcement {
        if self.is_audit() || other.is_audit() {
            Enforcement::Audit
        } else {
            Enforcement::Enforce
        }
    }
}

impl std::fmt::Display for Enforcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is neither `enforce` nor `audit`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?}: expected enforce or audit")]
pub struct UnknownEnforcement(pub String);

impl std::str::FromStr for Enforcement {
    type Err = UnknownEnforcement;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "enforce" => Ok(Enforcement::Enforce),
            "audit" | "permissive" => Ok(Enforcement::Audit),
            other => Err(UnknownEnforcement(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for mode in [Enforcement::Enforce, Enforcement::Audit] {
            assert_eq!(mode.as_str().parse::<Enforcement>(), Ok(mode));
            let json = serde_json::to_string(&mode).expect("serialise");
            assert_eq!(json, format!("\"{mode}\""));
        }
        assert_eq!("permissive".parse(), Ok(Enforcement::Audit));
        assert!("Enforce".parse::<Enforcement>().is_err());
        assert!("".parse::<Enforcement>().is_err());
    }

    #[test]
    fn audit_wins_when_either_asks_for_it() {
        use Enforcement::*;
        assert_eq!(Enforce.either_audits(Enforce), Enforce);
        assert_eq!(Enforce.either_audits(Audit), Audit);
        assert_eq!(Audit.either_audits(Enforce), Audit);
    }
}
