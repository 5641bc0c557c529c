//! Signed artifacts: files shipped beside releases (the agent binary above all) carry a detached
//! `<file>.sig` with their SHA-256, size and signatures by release keys, so an agent upgrading
//! itself in place can refuse a binary nobody it trusts built.
//!
//! The signed message is the artifact's name, digest and size on three lines under the domain
//! tag `ringfence-release/artifact/v1`: a manifest signature can never pass for an artifact's.

use crate::MAX_SIGNATURES_BYTES;
use crate::digest::Sha256Digest;
use crate::keys::{KeyId, ReleaseKey, TrustedKeys};
use crate::sign::{self, Purpose, Signature, SignatureError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `<file>.sig`, where an artifact's signature lives.
pub fn signature_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// The `<file>.sig` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSignature {
    /// The file name it was signed as (informational: a renamed file still verifies).
    pub name: String,
    pub sha256: Sha256Digest,
    pub size: u64,
    pub signatures: Vec<Signature>,
}

/// Why an artifact was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArtifactError {
    #[error("the signature file is malformed: {0}")]
    Malformed(String),
    #[error(
        "the file is not the one signed: sha256 {actual} ({actual_size} bytes), signed {expected} ({expected_size} bytes)"
    )]
    Mismatch {
        expected: Sha256Digest,
        expected_size: u64,
        actual: Sha256Digest,
        actual_size: u64,
    },
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

fn payload(name: &str, sha256: &Sha256Digest, size: u64) -> Vec<u8> {
    format!("{name}\n{sha256}\n{size}\n").into_bytes()
}

impl ArtifactSignature {
    /// Signs `bytes` as `name` with `key`.
    pub fn sign(key: &ReleaseKey, name: &str, bytes: &[u8]) -> ArtifactSignature {
        let sha256 = Sha256Digest::of(bytes);
        let size = bytes.len() as u64;
        ArtifactSignature {
            name: name.to_owned(),
            sha256,
            size,
            signatures: vec![sign::sign(
                key,
                Purpose::Artifact,
                &payload(name, &sha256, size),
            )],
        }
    }

    /// Parses a `.sig` file strictly.
    pub fn parse(bytes: &[u8]) -> Result<ArtifactSignature, ArtifactError> {
        if bytes.len() as u64 > MAX_SIGNATURES_BYTES {
            return Err(ArtifactError::Malformed(format!(
                "{} bytes, more than the {MAX_SIGNATURES_BYTES} allowed",
                bytes.len()
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| ArtifactError::Malformed(e.to_string()))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain strings and numbers: serialising cannot fail.
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Checks that `bytes` are the signed file and that a trusted key signed it.
    pub fn verify(&self, keys: &TrustedKeys, bytes: &[u8]) -> Result<KeyId, ArtifactError> {
        let actual = Sha256Digest::of(bytes);
        let actual_size = bytes.len() as u64;
        if actual != self.sha256 || actual_size != self.size {
            return Err(ArtifactError::Mismatch {
                expected: self.sha256,
                expected_size: self.size,
                actual,
                actual_size,
            });
        }
        Ok(sign::check(
            keys,
            Purpose::Artifact,
            &payload(&self.name, &self.sha256, self.size),
            &self.signatures,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_the_signed_bytes_only_and_only_with_a_trusted_key() {
        let key = ReleaseKey::from_seed(&[7; 32]);
        let keys: TrustedKeys = [key.public()].into_iter().collect();
        let signed = ArtifactSignature::sign(&key, "ringfence", b"binary");
        let parsed = ArtifactSignature::parse(&signed.to_bytes()).expect("parse");
        assert_eq!(parsed.verify(&keys, b"binary"), Ok(key.key_id()));
        assert!(matches!(
            parsed.verify(&keys, b"binarY"),
            Err(ArtifactError::Mismatch { .. })
        ));
        let stranger: TrustedKeys = [ReleaseKey::from_seed(&[8; 32]).public()]
            .into_iter()
            .collect();
        assert!(matches!(
            parsed.verify(&stranger, b"binary"),
            Err(ArtifactError::Signature(SignatureError::UnknownKey { .. }))
        ));
        let mut renamed = parsed.clone();
        renamed.name = "evil".into();
        assert!(matches!(
            renamed.verify(&keys, b"binary"),
            Err(ArtifactError::Signature(
                SignatureError::BadSignature { .. }
            ))
        ));
        assert!(ArtifactSignature::parse(b"{}").is_err());
        assert!(ArtifactSignature::parse(&[b' '; 20_000]).is_err());
    }
}
