//! Detached signatures over exact bytes, with a domain tag per kind of document so that a
//! signature on one kind (a manifest) can never be replayed as another (a rollback directive).
//!
//! The signed message is `ringfence-release/<purpose>/v1\n` followed by the document's bytes
//! exactly as shipped. Nothing is re-serialised before checking, so there is no
//! canonicalisation question.

use crate::keys::{KeyId, ReleaseKey, TrustedKeys};
use crate::{MAX_SIGNATURES, MAX_SIGNATURES_BYTES};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;

/// What a signature is for; part of the signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Manifest,
    RollbackDirective,
    Artifact,
}

impl Purpose {
    fn tag(self) -> &'static [u8] {
        match self {
            Purpose::Manifest => b"ringfence-release/manifest/v1\n",
            Purpose::RollbackDirective => b"ringfence-release/rollback-directive/v1\n",
            Purpose::Artifact => b"ringfence-release/artifact/v1\n",
        }
    }
}

fn message(purpose: Purpose, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(purpose.tag().len() + payload.len());
    message.extend_from_slice(purpose.tag());
    message.extend_from_slice(payload);
    message
}

/// One signature: who signed (key id) and the 64-byte ed25519 signature, hex in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub keyid: KeyId,
    pub sig: SigBytes,
}

/// The raw signature bytes; hex (128 digits) in JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SigBytes(pub [u8; 64]);

impl std::fmt::Debug for SigBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for SigBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for SigBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut out = [0u8; 64];
        hex::decode_to_slice(&text, &mut out)
            .map_err(|e| serde::de::Error::custom(format!("signature: {e}")))?;
        Ok(SigBytes(out))
    }
}

/// The detached signatures file of a bundle (`signatures.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signatures {
    pub signatures: Vec<Signature>,
}

impl Signatures {
    /// Parses a signatures file strictly.
    pub fn parse(bytes: &[u8]) -> Result<Self, SignatureError> {
        if bytes.len() as u64 > MAX_SIGNATURES_BYTES {
            return Err(SignatureError::Malformed(format!(
                "signatures file is {} bytes, more than the {MAX_SIGNATURES_BYTES} allowed",
                bytes.len()
            )));
        }
        let parsed: Signatures = serde_json::from_slice(bytes)
            .map_err(|e| SignatureError::Malformed(format!("signatures file: {e}")))?;
        check_shape(&parsed.signatures)?;
        Ok(parsed)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings and arrays cannot fail.
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// Why no trusted signature was found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("not signed")]
    Unsigned,
    /// None of the signers is a trusted key.
    #[error("signed only by untrusted keys: {}", join(keyids))]
    UnknownKey { keyids: Vec<KeyId> },
    /// A trusted key's signature does not match the bytes: they were altered.
    #[error("the signature by trusted key {keyid} does not match (the document was altered)")]
    BadSignature { keyid: KeyId },
    #[error("{0}")]
    Malformed(String),
}

fn join(ids: &[KeyId]) -> String {
    ids.iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses empty lists, too many entries and duplicate key ids (which would make a threshold
/// count ambiguous if we ever need one).
fn check_shape(signatures: &[Signature]) -> Result<(), SignatureError> {
    if signatures.is_empty() {
        return Err(SignatureError::Unsigned);
    }
    if signatures.len() > MAX_SIGNATURES {
        return Err(SignatureError::Malformed(format!(
            "{} signatures, more than the {MAX_SIGNATURES} allowed",
            signatures.len()
        )));
    }
    let mut seen = BTreeSet::new();
    for s in signatures {
        if !seen.insert(s.keyid) {
            return Err(SignatureError::Malformed(format!(
                "two signatures by key {}",
                s.keyid
            )));
        }
    }
    Ok(())
}

/// Signs `payload` for `purpose`.
pub(crate) fn sign(key: &ReleaseKey, purpose: Purpose, payload: &[u8]) -> Signature {
    Signature {
        keyid: key.key_id(),
        sig: SigBytes(key.sign_raw(&message(purpose, payload))),
    }
}

/// Finds a valid signature by a trusted key. Signatures by unknown keys are skipped (a bundle
/// may be co-signed by keys this host does not know), but a trusted key's bad signature is an
/// error in its own right: it means the bytes were altered.
pub(crate) fn check(
    keys: &TrustedKeys,
    purpose: Purpose,
    payload: &[u8],
    signatures: &[Signature],
) -> Result<KeyId, SignatureError> {
    check_shape(signatures)?;
    let message = message(purpose, payload);
    let mut bad = None;
    for s in signatures {
        if let Some(key) = keys.get(&s.keyid) {
            if key.verifies(&message, &s.sig.0) {
                return Ok(s.keyid);
            }
            bad.get_or_insert(s.keyid);
        }
    }
    match bad {
        Some(keyid) => Err(SignatureError::BadSignature { keyid }),
        None => Err(SignatureError::UnknownKey {
            keyids: signatures.iter().map(|s| s.keyid).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_bound_to_bytes_key_and_purpose() {
        let key = ReleaseKey::from_seed(&[1; 32]);
        let other = ReleaseKey::from_seed(&[2; 32]);
        let keys: TrustedKeys = [key.public()].into_iter().collect();
        let s = sign(&key, Purpose::Manifest, b"hello");
        assert_eq!(
            check(&keys, Purpose::Manifest, b"hello", std::slice::from_ref(&s)),
            Ok(key.key_id())
        );
        assert_eq!(
            check(&keys, Purpose::Manifest, b"hellO", std::slice::from_ref(&s)),
            Err(SignatureError::BadSignature {
                keyid: key.key_id()
            })
        );
        assert!(matches!(
            check(
                &keys,
                Purpose::RollbackDirective,
                b"hello",
                std::slice::from_ref(&s)
            ),
            Err(SignatureError::BadSignature { .. })
        ));
        let foreign = sign(&other, Purpose::Manifest, b"hello");
        assert!(matches!(
            check(
                &keys,
                Purpose::Manifest,
                b"hello",
                std::slice::from_ref(&foreign)
            ),
            Err(SignatureError::UnknownKey { .. })
        ));
        // An unknown co-signer does not hide a good trusted signature.
        assert_eq!(
            check(&keys, Purpose::Manifest, b"hello", &[foreign, s.clone()]),
            Ok(key.key_id())
        );
        assert_eq!(
            check(&keys, Purpose::Manifest, b"hello", &[]),
            Err(SignatureError::Unsigned)
        );
        assert!(matches!(
            check(&keys, Purpose::Manifest, b"hello", &[s.clone(), s]),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn signatures_file_is_strict() {
        let key = ReleaseKey::from_seed(&[1; 32]);
        let file = Signatures {
            signatures: vec![sign(&key, Purpose::Manifest, b"x")],
        };
        assert_eq!(Signatures::parse(&file.to_bytes()), Ok(file));
        for bad in [
            &br#"{"signatures":[]}"#[..],
            br#"{"signatures":[],"extra":1}"#,
            br#"{"signatures":[{"keyid":"00","sig":"00"}]}"#,
            b"garbage",
        ] {
            assert!(Signatures::parse(bad).is_err());
        }
    }
}
