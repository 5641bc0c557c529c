//! Agent release slots: verified releases unpacked under `releases/<channel>/<version>/` and a
//! per-channel state file that says which one is current and which is the last known good.
//! The agent stages, activates and blesses; the guard restores the LKG without the network.

mod state;
mod store;

pub use state::{SlotState, TransitionError};
pub use store::SlotStore;

use crate::bundle::Bundle;
use crate::keys::KeyId;
use crate::manifest::Manifest;
use crate::verify::VerifyError;
use semver::Version;
use std::path::PathBuf;

/// Why a slot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The state file cannot be read as a state. Call [`SlotStore::recover`] for the
    /// documented safe default.
    #[error(
        "slot state {path} is corrupt ({reason}); `recover` resets it to no current release and keeps the rollback floor"
    )]
    CorruptState { path: PathBuf, reason: String },
    #[error("invalid channel: {0}")]
    InvalidChannel(crate::manifest::NameError),
    #[error("release {channel} {version} is not staged")]
    NotStaged { channel: String, version: Version },
    #[error("release {channel} {version} is already staged with a different manifest")]
    AlreadyStaged { channel: String, version: Version },
    #[error("release {channel} {version} is {slot} and cannot be removed")]
    InUse {
        channel: String,
        version: Version,
        slot: &'static str,
    },
    /// A staged release on disk no longer verifies: it was altered after staging.
    #[error("staged release {channel} {version} refused: {source}")]
    Tampered {
        channel: String,
        version: Version,
        source: Box<VerifyError>,
    },
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// [`SlotStore::install`] refused the release.
    #[error("release refused: {0}")]
    Refused(Box<VerifyError>),
}

/// A staged release read back from disk, with hashes and signature checked again.
#[derive(Debug, Clone)]
pub struct LoadedRelease {
    bundle: Bundle,
    signer: KeyId,
}

impl LoadedRelease {
    pub fn manifest(&self) -> &Manifest {
        self.bundle.manifest()
    }

    pub fn version(&self) -> &Version {
        &self.bundle.manifest().version
    }

    pub fn engine(&self) -> Option<&[u8]> {
        self.bundle.engine()
    }

    pub fn content(&self) -> Option<&[u8]> {
        self.bundle.content()
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    pub fn signer(&self) -> KeyId {
        self.signer
    }
}

#[cfg(test)]
mod tests;
