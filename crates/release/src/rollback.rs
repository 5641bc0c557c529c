//! Rollback directives: the only way past rollback protection. A directive is signed by a
//! release key and says "on channel C, hosts that have installed at most `from_version` may go
//! back to `to_version`, until `expires_at`". The server issues one when a rollout is rolled back.
//!
//! The envelope is `{"signed": "<directive JSON as a string>", "signatures": [...]}`: the
//! signature covers the string's exact bytes, so there is nothing to canonicalise.

use crate::keys::{ReleaseKey, TrustedKeys};
use crate::manifest::{validate_channel, validate_version};
use crate::sign::{self, Purpose, Signature, SignatureError};
use semver::Version;
use serde::{Deserialize, Serialize};

/// Largest directive envelope accepted.
pub const MAX_DIRECTIVE_BYTES: u64 = 16 << 10;

/// How far in the future `issued_at` may be, for hosts whose clocks run a little slow.
pub const CLOCK_SKEW_SECS: u64 = 300;

/// Longest reason kept.
const MAX_REASON_BYTES: usize = 1024;

/// Permission to install an older release on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackDirective {
    pub channel: String,
    /// The newest version this directive rolls back from: a host that has installed anything
    /// newer is not covered.
    pub from_version: Version,
    /// The version hosts may go back to; it must be older than `from_version`.
    pub to_version: Version,
    pub reason: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds; the directive is refused after this.
    pub expires_at: u64,
}

/// A directive with its signatures, as shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRollbackDirective {
    /// The directive's JSON, exactly as signed.
    pub signed: String,
    pub signatures: Vec<Signature>,
}

/// Why a directive was refused.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("rollback directive is {size} bytes, more than the {MAX_DIRECTIVE_BYTES} allowed")]
    TooLarge { size: u64 },
    #[error("rollback directive is not valid: {0}")]
    Malformed(String),
    #[error("rollback directive is not valid: {0}")]
    Name(crate::manifest::NameError),
    #[error("rollback directive: {0}")]
    Signature(#[from] SignatureError),
    #[error("rollback directive expired at {expires_at} (now {now})")]
    Expired { expires_at: u64, now: u64 },
    #[error("rollback directive is issued at {issued_at}, in the future (now {now})")]
    NotYetValid { issued_at: u64, now: u64 },
}

impl RollbackDirective {
    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), RollbackError> {
        let bad = |s: String| Err(RollbackError::Malformed(s));
        validate_channel(&self.channel).map_err(RollbackError::Name)?;
        validate_version(&self.from_version).map_err(RollbackError::Name)?;
        validate_version(&self.to_version).map_err(RollbackError::Name)?;
        if self.to_version >= self.from_version {
            return bad(format!(
                "to_version {} is not older than from_version {}",
                self.to_version, self.from_version
            ));
        }
        if self.expires_at <= self.issued_at {
            return bad("expires_at is not after issued_at".into());
        }
        if self.reason.len() > MAX_REASON_BYTES {
            return bad(format!("reason is longer than {MAX_REASON_BYTES} bytes"));
        }
        Ok(())
    }

    /// Signs the directive.
    pub fn sign(&self, key: &ReleaseKey) -> Result<SignedRollbackDirective, RollbackError> {
        self.validate()?;
        let signed =
            serde_json::to_string(self).map_err(|e| RollbackError::Malformed(e.to_string()))?;
        let signature = sign::sign(key, Purpose::RollbackDirective, signed.as_bytes());
        Ok(SignedRollbackDirective {
            signed,
            signatures: vec![signature],
        })
    }
}

impl SignedRollbackDirective {
    /// Parses an envelope from untrusted bytes (does not check signatures).
    pub fn parse(bytes: &[u8]) -> Result<Self, RollbackError> {
        if bytes.len() as u64 > MAX_DIRECTIVE_BYTES {
            return Err(RollbackError::TooLarge {
                size: bytes.len() as u64,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| RollbackError::Malformed(e.to_string()))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Strings and arrays of strings always serialise.
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// The directive without checking who signed it: for display only.
    pub fn unverified(&self) -> Result<RollbackDirective, RollbackError> {
        let directive: RollbackDirective = serde_json::from_str(&self.signed)
            .map_err(|e| RollbackError::Malformed(e.to_string()))?;
        directive.validate()?;
        Ok(directive)
    }

    /// Checks the signature against `keys` and the validity window against `now` (unix
    /// seconds), and returns the directive. Whether it covers a given release is
    /// [`crate::verify`]'s decision.
    pub fn verify(&self, keys: &TrustedKeys, now: u64) -> Result<RollbackDirective, RollbackError> {
        if self.signed.len() as u64 > MAX_DIRECTIVE_BYTES {
            return Err(RollbackError::TooLarge {
                size: self.signed.len() as u64,
            });
        }
        sign::check(
            keys,
            Purpose::RollbackDirective,
            self.signed.as_bytes(),
            &self.signatures,
        )?;
        let directive = self.unverified()?;
        if now > directive.expires_at {
            return Err(RollbackError::Expired {
                expires_at: directive.expires_at,
                now,
            });
        }
        if directive.issued_at > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(RollbackError::NotYetValid {
                issued_at: directive.issued_at,
                now,
            });
        }
        Ok(directive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directive() -> RollbackDirective {
        RollbackDirective {
            channel: "detection".into(),
            from_version: Version::new(2, 0, 0),
            to_version: Version::new(1, 0, 0),
            reason: "rollout 7 halted: crash gate".into(),
            issued_at: 1000,
            expires_at: 2000,
        }
    }

    #[test]
    fn sign_and_verify() {
        let key = ReleaseKey::from_seed(&[3; 32]);
        let keys: TrustedKeys = [key.public()].into_iter().collect();
        let signed = directive().sign(&key).expect("sign");
        let parsed = SignedRollbackDirective::parse(&signed.to_bytes()).expect("parse");
        assert_eq!(parsed.verify(&keys, 1500).expect("valid"), directive());
    }

    #[test]
    fn refuses_expired_future_tampered_and_untrusted() {
        let key = ReleaseKey::from_seed(&[3; 32]);
        let keys: TrustedKeys = [key.public()].into_iter().collect();
        let signed = directive().sign(&key).expect("sign");
        assert!(matches!(
            signed.verify(&keys, 2001),
            Err(RollbackError::Expired { .. })
        ));
        assert!(matches!(
            signed.verify(&keys, 1000 - CLOCK_SKEW_SECS - 1),
            Err(RollbackError::NotYetValid { .. })
        ));
        let mut tampered = signed.clone();
        tampered.signed = tampered.signed.replace("1.0.0", "0.9.0");
        assert!(matches!(
            tampered.verify(&keys, 1500),
            Err(RollbackError::Signature(
                SignatureError::BadSignature { .. }
            ))
        ));
        let stranger: TrustedKeys = [ReleaseKey::from_seed(&[4; 32]).public()]
            .into_iter()
            .collect();
        assert!(matches!(
            signed.verify(&stranger, 1500),
            Err(RollbackError::Signature(SignatureError::UnknownKey { .. }))
        ));
    }

    #[test]
    fn refuses_nonsense_directives() {
        let key = ReleaseKey::from_seed(&[3; 32]);
        let mut forward = directive();
        forward.to_version = Version::new(3, 0, 0);
        assert!(forward.sign(&key).is_err());
        let mut backwards_time = directive();
        backwards_time.expires_at = 10;
        assert!(backwards_time.sign(&key).is_err());
        assert!(SignedRollbackDirective::parse(b"{\"signed\":1}").is_err());
        assert!(SignedRollbackDirective::parse(&vec![b' '; 20 << 10]).is_err());
    }
}
