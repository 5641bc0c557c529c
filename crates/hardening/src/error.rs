//! Why hardening failed. The binary refuses to start a hardened agent half-way confined; the
//! operator can debug with `--no-harden`.

/// A step of hardening that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    /// A capability set could not be changed.
    #[error("capabilities: could not {what}: {reason}")]
    Capabilities { what: &'static str, reason: String },
    /// `PR_SET_NO_NEW_PRIVS` failed.
    #[error("no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    /// A checked-in allow-list does not compile (unknown system call, missing reason).
    #[error("seccomp policy {role}: {reason}")]
    Policy { role: &'static str, reason: String },
    /// The kernel refused a seccomp program.
    #[error("seccomp {role}: {reason}")]
    Seccomp { role: &'static str, reason: String },
    /// Landlock could not be applied.
    #[error("landlock: {0}")]
    Landlock(String),
}
