//! Release keys: the ed25519 signing key (a secret file, 0600), public keys, key ids and the
//! set of keys an agent trusts.
//!
//! Files are one line of text so they can be pasted into configuration:
//! `ed25519-secret:<64 hex digits of the 32-byte seed>` and `ed25519:<64 hex digits>`.
//! A key id is the hex SHA-256 of the 32 raw public key bytes.

use crate::digest::Sha256Digest;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

const SECRET_PREFIX: &str = "ed25519-secret:";
const PUBLIC_PREFIX: &str = "ed25519:";

/// Key files are one short line; refuse to read anything much bigger.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Why a key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {reason}")]
    Format {
        what: String,
        #[source]
        reason: KeyTextError,
    },
    /// A secret key readable by others is treated as leaked; ssh refuses such keys too.
    #[error(
        "{path}: secret key file has mode {mode:o}; it must not be readable by group or others (chmod 600)"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// What is wrong with a key's text (`ed25519:<hex>` or `ed25519-secret:<hex>`).
#[derive(Debug, thiserror::Error)]
pub enum KeyTextError {
    #[error("this is a secret key, not a public key")]
    SecretNotPublic,
    #[error("this is a public key, not a secret key")]
    PublicNotSecret,
    #[error("a key starts with {0:?}")]
    MissingPrefix(&'static str),
    #[error("expected 64 hex digits, found {0} characters")]
    Length(usize),
    #[error("bad hex: {0}")]
    Hex(#[from] hex::FromHexError),
    #[error("not a valid ed25519 public key")]
    NotAKey,
    #[error("{0} bytes is far too large for a key file")]
    TooLarge(u64),
    #[error("not UTF-8 text")]
    NotUtf8,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A key id: hex SHA-256 of the raw public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub Sha256Digest);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl FromStr for KeyId {
    type Err = crate::digest::DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(KeyId)
    }
}

/// An ed25519 public key that signatures are checked against.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn key_id(&self) -> KeyId {
        KeyId(Sha256Digest::of(self.0.as_bytes()))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Whether `sig` is this key's signature of `message` (strict: no malleable forms).
    pub(crate) fn verifies(&self, message: &[u8], sig: &[u8; 64]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        self.0.verify_strict(message, &sig).is_ok()
    }

    /// Reads a public key file (`ed25519:<hex>`).
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_text(path)?;
        text.parse().map_err(|reason| KeyError::Format {
            what: path.display().to_string(),
            reason,
        })
    }

    /// Writes a public key file, replacing any old one.
    pub fn write_file(&self, path: &Path) -> Result<(), KeyError> {
        std::fs::write(path, format!("{self}\n")).map_err(io(path))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl FromStr for PublicKey {
    type Err = KeyTextError;
    /// Parses `ed25519:<64 hex>`; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, KeyTextError> {
        let s = s.trim();
        if s.starts_with(SECRET_PREFIX) {
            return Err(KeyTextError::SecretNotPublic);
        }
        let hex_part = s
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or(KeyTextError::MissingPrefix(PUBLIC_PREFIX))?;
        let bytes = decode_32(hex_part)?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| KeyTextError::NotAKey)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The secret release signing key. Its `Debug` shows only the key id, and the seed is zeroed
/// when it is dropped (ed25519-dalek's `zeroize`).
pub struct ReleaseKey(SigningKey);

impl fmt::Debug for ReleaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReleaseKey({})", self.key_id())
    }
}

impl ReleaseKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(Self(key))
    }

    /// A key from a 32-byte seed (tests, and keys held in a secret manager).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn key_id(&self) -> KeyId {
        self.public().key_id()
    }

    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Writes the secret key to a new file created with mode 0600; refuses to overwrite.
    pub fn write_file(&self, path: &Path) -> Result<(), KeyError> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io(path))?;
        let text = format!("{SECRET_PREFIX}{}\n", hex::encode(self.0.to_bytes()));
        file.write_all(text.as_bytes()).map_err(io(path))?;
        file.sync_all().map_err(io(path))
    }

    /// Reads a secret key file; refuses one that group or others can read.
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let mode = std::fs::metadata(path)
            .map_err(io(path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        let text = read_key_text(path)?;
        let format = |reason: KeyTextError| KeyError::Format {
            what: path.display().to_string(),
            reason,
        };
        let text = text.trim();
        if text.starts_with(PUBLIC_PREFIX) {
            return Err(format(KeyTextError::PublicNotSecret));
        }
        let hex_part = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| format(KeyTextError::MissingPrefix(SECRET_PREFIX)))?;
        let seed = decode_32(hex_part).map_err(format)?;
        Ok(Self::from_seed(&seed))
    }
}

fn read_key_text(path: &Path) -> Result<String, KeyError> {
    let bytes = crate::fsutil::read_limited(path, MAX_KEY_FILE_BYTES).map_err(|e| match e {
        crate::fsutil::ReadLimited::Io(source) => KeyError::Io {
            path: path.to_owned(),
            source,
        },
        crate::fsutil::ReadLimited::TooLarge(size) => KeyError::Format {
            what: path.display().to_string(),
            reason: KeyTextError::TooLarge(size),
        },
    })?;
    String::from_utf8(bytes).map_err(|_| KeyError::Format {
        what: path.display().to_string(),
        reason: KeyTextError::NotUtf8,
    })
}

fn decode_32(hex_part: &str) -> Result<[u8; 32], KeyTextError> {
    let mut out = [0u8; 32];
    if hex_part.len() != 64 {
        return Err(KeyTextError::Length(hex_part.len()));
    }
    hex::decode_to_slice(hex_part, &mut out)?;
    Ok(out)
}

/// The public keys an agent accepts signatures from, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(BTreeMap<KeyId, PublicKey>);

impl TrustedKeys {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, key: PublicKey) {
        self.0.insert(key.key_id(), key);
    }

    pub fn get(&self, id: &KeyId) -> Option<&PublicKey> {
        self.0.get(id)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.0.keys()
    }

    /// Reads each public key file.
    pub fn read_files<P: AsRef<Path>>(paths: &[P]) -> Result<Self, KeyError> {
        let mut keys = Self::new();
        for path in paths {
            keys.insert(PublicKey::read_file(path.as_ref())?);
        }
        Ok(keys)
    }
}

impl FromIterator<PublicKey> for TrustedKeys {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        let mut keys = Self::new();
        for key in iter {
            keys.insert(key);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_secret_is_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ReleaseKey::generate().expect("key");
        let secret = dir.path().join("release.key");
        let public = dir.path().join("release.pub");
        key.write_file(&secret).expect("write secret");
        key.public().write_file(&public).expect("write public");
        let mode = std::fs::metadata(&secret)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ReleaseKey::read_file(&secret).expect("read secret");
        assert_eq!(again.key_id(), key.key_id());
        assert_eq!(
            PublicKey::read_file(&public).expect("read pub"),
            key.public()
        );
        // Never overwrite an existing secret key.
        assert!(key.write_file(&secret).is_err());
        // Public and secret key files are not interchangeable.
        assert!(PublicKey::read_file(&secret).is_err());
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(ReleaseKey::read_file(&public).is_err());
    }

    #[test]
    fn refuses_world_readable_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("release.key");
        ReleaseKey::generate()
            .expect("key")
            .write_file(&secret)
            .expect("write");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            ReleaseKey::read_file(&secret),
            Err(KeyError::InsecurePermissions { .. })
        ));
    }

    #[test]
    fn key_id_is_sha256_of_public_key() {
        let key = ReleaseKey::from_seed(&[7; 32]);
        assert_eq!(
            key.key_id().0,
            Sha256Digest::of(key.public().as_bytes()),
            "key id"
        );
        assert!(!format!("{key:?}").contains(&hex::encode([7u8; 32])));
    }

    #[test]
    fn refuses_bad_public_keys() {
        for bad in [
            "",
            "ed25519:",
            "ed25519:zz",
            "rsa:00",
            &format!("ed25519:{}", "0".repeat(66)),
        ] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad}");
        }
    }
}
