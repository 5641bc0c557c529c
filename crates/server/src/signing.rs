//! The server's release authority: which keys it trusts for published bundles, and the key it
//! signs rollback directives with.
//!
//! The key lives in the data directory (`release.key`, 0600), made on first start with its
//! public half next to it (`release.pub`). Operators sign releases with it
//! (`ringfence release build --key <data-dir>/release.key`) or add their own public keys to
//! `<data-dir>/trusted-keys/*.pub`. Agents learn the public keys at enrollment.

use ringfence_protocol::FailurePolicy;
use ringfence_release::{
    Bundle, BundleError, KeyError, PublicKey, ReleaseKey, RollbackDirective, SlotState,
    TrustedKeys, VerifyError, VerifyOptions, Version, verify,
};
use std::path::Path;

/// Why a published bundle is refused; the message goes back to the publisher.
#[derive(Debug, thiserror::Error)]
pub enum BundleRefused {
    #[error("{0}")]
    Malformed(#[from] BundleError),
    #[error("{0}")]
    Unverified(#[from] VerifyError),
    #[error("its manifest cannot be stored: {0}")]
    Manifest(#[from] serde_json::Error),
}

/// How long a rollback directive stays valid: long enough for an agent that was offline for a
/// while to come back and roll back, short enough not to be a standing downgrade licence.
const DIRECTIVE_LIFETIME_S: u64 = 24 * 3600;

/// What the server needs from a verified bundle.
#[derive(Debug, Clone)]
pub struct PublishedBundle {
    pub channel: String,
    pub version: String,
    pub manifest: serde_json::Value,
    pub engine_name: String,
    pub engine: Option<Vec<u8>>,
    pub content: Option<Vec<u8>>,
    pub policy: FailurePolicy,
    /// Ids of the trusted keys whose signatures verified: an agent accepts the release only if
    /// it trusts one of them.
    pub signed_by: Vec<String>,
}

#[derive(Debug)]
pub struct ReleaseAuthority {
    key: ReleaseKey,
    trusted: TrustedKeys,
}

impl ReleaseAuthority {
    /// Loads (or makes) the release key in `data_dir` and the extra trusted public keys.
    /// Key errors name the file they are about.
    pub fn open(data_dir: &Path) -> Result<ReleaseAuthority, KeyError> {
        let key_path = data_dir.join("release.key");
        let key = if key_path.exists() {
            ReleaseKey::read_file(&key_path)?
        } else {
            let key = ReleaseKey::generate()?;
            key.write_file(&key_path)?;
            key.public().write_file(&data_dir.join("release.pub"))?;
            tracing::info!(key = %key.key_id(), "created the release signing key in {}", key_path.display());
            key
        };
        let mut trusted = TrustedKeys::new();
        trusted.insert(key.public());
        let extra = data_dir.join("trusted-keys");
        if let Ok(entries) = std::fs::read_dir(&extra) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) == Some("pub") {
                    trusted.insert(PublicKey::read_file(&path)?);
                }
            }
        }
        Ok(ReleaseAuthority { key, trusted })
    }

    /// Checks structure, hashes and signature of a published bundle.
    pub fn verify_bundle(&self, bytes: &[u8]) -> Result<PublishedBundle, BundleRefused> {
        let bundle = Bundle::read(bytes)?;
        // The server has nothing installed: no rollback check here, only the signature.
        let verified = verify(
            &bundle,
            &self.trusted,
            &SlotState::default(),
            &VerifyOptions::now(),
        )?;
        let manifest = verified.manifest();
        let signed_by = bundle
            .signatures()
            .iter()
            .filter(|s| self.trusted.get(&s.keyid).is_some())
            .map(|s| s.keyid.to_string())
            .collect();
        Ok(PublishedBundle {
            signed_by,
            channel: manifest.name.clone(),
            version: manifest.version.to_string(),
            manifest: serde_json::to_value(manifest)?,
            engine_name: manifest.engine_name.clone(),
            engine: bundle.engine().map(<[u8]>::to_vec),
            content: bundle.content().map(<[u8]>::to_vec),
            policy: manifest.failure_policy,
        })
    }

    /// A signed permission for hosts on `from` to go back to `to` on `channel`.
    pub fn rollback_directive(
        &self,
        channel: &str,
        from: &str,
        to: &str,
    ) -> Option<serde_json::Value> {
        let now = ringfence_protocol::clock::unix_secs();
        let directive = RollbackDirective {
            channel: channel.to_owned(),
            from_version: Version::parse(from).ok()?,
            to_version: Version::parse(to).ok()?,
            reason: format!("rollout of {channel}@{from} rolled back"),
            issued_at: now,
            expires_at: now + DIRECTIVE_LIFETIME_S,
        };
        let signed = directive.sign(&self.key).ok()?;
        serde_json::to_value(signed).ok()
    }

    /// Every trusted key as (key id, public key `ed25519:<hex>`), for the store's record of
    /// when each was first trusted.
    pub fn keys(&self) -> Vec<(String, String)> {
        self.trusted
            .ids()
            .filter_map(|id| Some((id.to_string(), self.trusted.get(id)?.to_string())))
            .collect()
    }

    /// Public keys (`ed25519:<hex>`) agents should trust, for enrollment: the server's own
    /// and every operator key in `trusted-keys/`.
    pub fn public_keys(&self) -> Vec<String> {
        self.trusted
            .ids()
            .filter_map(|id| self.trusted.get(id))
            .map(ToString::to_string)
            .collect()
    }
}
