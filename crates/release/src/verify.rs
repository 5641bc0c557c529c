//! Agent-side verification: the one function that turns untrusted bundle bytes into a
//! [`VerifiedRelease`]. It checks, in order: structure and hashes ([`Bundle::read`]), a
//! signature by a trusted key over the exact manifest bytes, the minimum agent version, and
//! rollback protection (newer than anything ever installed on the channel, or covered by a
//! valid signed rollback directive).

use crate::bundle::{Bundle, BundleError};
use crate::keys::{KeyId, TrustedKeys};
use crate::manifest::Manifest;
use crate::rollback::{RollbackDirective, RollbackError, SignedRollbackDirective};
use crate::sign::{self, Purpose, SignatureError};
use crate::slots::SlotState;
use semver::Version;

/// Why a release was refused. The agent reports it and keeps running what it has.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No signature is by a key this host trusts.
    #[error("release is signed only by untrusted keys: {}", keyids.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", "))]
    UnknownKey { keyids: Vec<KeyId> },
    /// A trusted key's signature does not match: the release was altered.
    #[error("the signature by trusted key {keyid} does not match (the release was altered)")]
    BadSignature { keyid: KeyId },
    /// A member does not match the manifest's hash or size.
    #[error("{member} does not match the hash in the manifest (tampered or corrupt)")]
    HashMismatch { member: String },
    /// The release is not newer than what the channel has already installed.
    #[error(
        "downgrade refused: version {offered} is not newer than {installed}, the highest installed on this channel"
    )]
    Downgrade {
        installed: Version,
        offered: Version,
    },
    /// The rollback directive is out of its validity window.
    #[error("rollback directive is not valid now: {0}")]
    Expired(String),
    /// A rollback directive was given but does not cover this release on this host.
    #[error("rollback refused: {reason}")]
    RollbackRefused { reason: String },
    /// The agent is older than the release's minimum agent version.
    #[error("release needs agent {required} or newer; this agent is {agent}")]
    AgentTooOld { required: Version, agent: Version },
    #[error("malformed release: {reason}")]
    Malformed { reason: String },
    #[error("{what} is {size} bytes, more than the {limit} allowed")]
    TooLarge { what: String, size: u64, limit: u64 },
}

impl From<BundleError> for VerifyError {
    fn from(e: BundleError) -> Self {
        match e {
            BundleError::TooLarge { what, size, limit } => {
                VerifyError::TooLarge { what, size, limit }
            }
            BundleError::HashMismatch(member) => VerifyError::HashMismatch {
                member: member.to_string(),
            },
            BundleError::Signatures(e) => e.into(),
            other => VerifyError::Malformed {
                reason: other.to_string(),
            },
        }
    }
}

impl From<SignatureError> for VerifyError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::UnknownKey { keyids } => VerifyError::UnknownKey { keyids },
            SignatureError::BadSignature { keyid } => VerifyError::BadSignature { keyid },
            other => VerifyError::Malformed {
                reason: other.to_string(),
            },
        }
    }
}

impl From<RollbackError> for VerifyError {
    fn from(e: RollbackError) -> Self {
        match e {
            RollbackError::Signature(e) => e.into(),
            e @ (RollbackError::Expired { .. } | RollbackError::NotYetValid { .. }) => {
                VerifyError::Expired(e.to_string())
            }
            RollbackError::TooLarge { size } => VerifyError::TooLarge {
                what: "rollback directive".into(),
                size,
                limit: crate::rollback::MAX_DIRECTIVE_BYTES,
            },
            RollbackError::Malformed(reason) => VerifyError::Malformed {
                reason: format!("rollback directive: {reason}"),
            },
            RollbackError::Name(reason) => VerifyError::Malformed {
                reason: format!("rollback directive: {reason}"),
            },
        }
    }
}

/// What verification needs besides the bundle, the keys and the channel's state.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions<'a> {
    /// This agent's version, checked against the manifest's `min_agent_version`; `None` skips
    /// the check (tools that inspect bundles, not agents that run them).
    pub agent_version: Option<&'a Version>,
    /// Unix seconds, for the rollback directive's validity window.
    pub now: u64,
    /// A signed rollback directive that accompanies the release, if any.
    pub rollback: Option<&'a SignedRollbackDirective>,
}

impl VerifyOptions<'_> {
    /// Options for the current time, no agent version check and no directive.
    pub fn now() -> Self {
        VerifyOptions {
            agent_version: None,
            now: ringfence_protocol::clock::unix_secs(),
            rollback: None,
        }
    }
}

/// A release that passed [`verify`]. Only this type can be staged into a slot.
#[derive(Debug, Clone)]
pub struct VerifiedRelease {
    bundle: Bundle,
    signer: KeyId,
    rollback: Option<RollbackDirective>,
}

impl VerifiedRelease {
    pub fn manifest(&self) -> &Manifest {
        self.bundle.manifest()
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The trusted key whose signature was accepted.
    pub fn signer(&self) -> KeyId {
        self.signer
    }

    /// The directive that allowed this release past rollback protection, if one was needed.
    pub fn rollback(&self) -> Option<&RollbackDirective> {
        self.rollback.as_ref()
    }

    pub fn engine(&self) -> Option<&[u8]> {
        self.bundle.engine()
    }

    pub fn content(&self) -> Option<&[u8]> {
        self.bundle.content()
    }
}

/// Parses untrusted bytes and verifies them; see [`verify`].
pub fn verify_bytes(
    bytes: &[u8],
    keys: &TrustedKeys,
    installed: &SlotState,
    options: &VerifyOptions<'_>,
) -> Result<VerifiedRelease, VerifyError> {
    let bundle = Bundle::read(bytes)?;
    verify(&bundle, keys, installed, options)
}

/// Verifies a parsed bundle against the trusted keys and the channel's slot state
/// (`SlotState::default()` when nothing was ever installed on the channel).
pub fn verify(
    bundle: &Bundle,
    keys: &TrustedKeys,
    installed: &SlotState,
    options: &VerifyOptions<'_>,
) -> Result<VerifiedRelease, VerifyError> {
    // Bundle guarantees the hashes, but a Bundle can be built in memory, so check the signature
    // here over the very bytes whose hashes Bundle checked.
    let signer = sign::check(
        keys,
        Purpose::Manifest,
        bundle.manifest_bytes(),
        bundle.signatures(),
    )?;
    let manifest = bundle.manifest();
    if let Some(agent) = options.agent_version
        && *agent < manifest.min_agent_version
    {
        return Err(VerifyError::AgentTooOld {
            required: manifest.min_agent_version.clone(),
            agent: agent.clone(),
        });
    }
    let rollback = check_rollback(manifest, keys, installed, options)?;
    Ok(VerifiedRelease {
        bundle: bundle.clone(),
        signer,
        rollback,
    })
}

/// Rollback protection. Returns the directive that was needed, if one was.
fn check_rollback(
    manifest: &Manifest,
    keys: &TrustedKeys,
    installed: &SlotState,
    options: &VerifyOptions<'_>,
) -> Result<Option<RollbackDirective>, VerifyError> {
    let offered = &manifest.version;
    let Some(highest) = installed.highest_installed.as_ref() else {
        return Ok(None);
    };
    if offered > highest {
        return Ok(None);
    }
    let Some(signed) = options.rollback else {
        return Err(VerifyError::Downgrade {
            installed: highest.clone(),
            offered: offered.clone(),
        });
    };
    let directive = signed.verify(keys, options.now)?;
    let refused = |reason: String| Err(VerifyError::RollbackRefused { reason });
    if directive.channel != manifest.name {
        return refused(format!(
            "the directive is for channel {:?}, the release for {:?}",
            directive.channel, manifest.name
        ));
    }
    if directive.to_version != *offered {
        return refused(format!(
            "the directive allows going back to {}, not to {offered}",
            directive.to_version
        ));
    }
    if *highest > directive.from_version {
        return refused(format!(
            "this host has installed {highest}, newer than the directive's from_version {}",
            directive.from_version
        ));
    }
    Ok(Some(directive))
}

#[cfg(test)]
mod tests;
