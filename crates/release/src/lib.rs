//! Releases: the signed, versioned bundles that carry engines and content from the server to
//! every host, and the agent-side slots that keep the current and last known good release.
//!
//! Trust flows one way: [`Bundle::read`] only checks structure and hashes, [`verify`] adds the
//! signature, rollback and agent-version checks and is the only way to get a
//! [`VerifiedRelease`], and [`SlotStore::stage`] only accepts a [`VerifiedRelease`].
//! Everything read back from disk is checked again ([`SlotStore::load_current`]).
//!
//! See `docs/releases.md` for the formats and the rules.

#![forbid(unsafe_code)]

mod artifact;
mod blob;
mod bundle;
mod digest;
mod fsutil;
// The fuzzing key is public: it must never be linked into a binary that verifies releases.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
mod keys;
mod manifest;
mod rollback;
mod sign;
mod slots;
#[cfg(test)]
mod testutil;
mod verify;

pub use artifact::{ArtifactError, ArtifactSignature, signature_path};
pub use blob::{BlobError, BlobStore};
pub use bundle::{Bundle, BundleError, Member};
pub use digest::{DigestError, Sha256Digest};
pub use keys::{KeyError, KeyId, KeyTextError, PublicKey, ReleaseKey, TrustedKeys};
pub use manifest::{
    Component, MANIFEST_FORMAT, Manifest, ManifestError, NameError, validate_channel,
    validate_version,
};
pub use rollback::{RollbackDirective, RollbackError, SignedRollbackDirective};
pub use semver::Version;
pub use sign::{Signature, SignatureError, Signatures};
pub use slots::{LoadedRelease, SlotError, SlotState, SlotStore, TransitionError};
pub use verify::{VerifiedRelease, VerifyError, VerifyOptions, verify, verify_bytes};

/// Largest engine component in a bundle; the engine host refuses bigger ones too.
pub const MAX_ENGINE_BYTES: u64 = 64 << 20;
/// Largest content blob in a bundle; the engine host refuses bigger ones too.
pub const MAX_CONTENT_BYTES: u64 = 64 << 20;
/// Largest manifest: it is a few hundred bytes of metadata, so anything near this is hostile.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 10;
/// Largest signatures file (a handful of 64-byte signatures).
pub const MAX_SIGNATURES_BYTES: u64 = 16 << 10;
/// Most signatures one document may carry; verifying is cheap, but not free.
pub const MAX_SIGNATURES: usize = 8;
/// Largest whole bundle: every member at its limit plus tar headers.
pub const MAX_BUNDLE_BYTES: u64 =
    MAX_ENGINE_BYTES + MAX_CONTENT_BYTES + MAX_MANIFEST_BYTES + MAX_SIGNATURES_BYTES + (64 << 10);
