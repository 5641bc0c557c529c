//! Fixtures shared by the unit tests: keys, manifests and bundles built the way the CLI
//! builds them.

use crate::{Bundle, Component, MANIFEST_FORMAT, Manifest, ReleaseKey, TrustedKeys};
use ringfence_protocol::FailurePolicy;
use semver::Version;

pub(crate) fn key() -> ReleaseKey {
    ReleaseKey::from_seed(&[42; 32])
}

pub(crate) fn other_key() -> ReleaseKey {
    ReleaseKey::from_seed(&[9; 32])
}

pub(crate) fn trusted() -> TrustedKeys {
    [key().public()].into_iter().collect()
}

pub(crate) fn v(text: &str) -> Version {
    Version::parse(text).expect("test version")
}

pub(crate) const ENGINE: &[u8] = b"\0asm fake component";
pub(crate) const CONTENT: &[u8] = b"allow /usr/bin/*\ndefault deny\n";

pub(crate) fn manifest(channel: &str, version: &str) -> Manifest {
    Manifest {
        format: MANIFEST_FORMAT,
        name: channel.into(),
        version: v(version),
        engine_name: "exec-allowlist".into(),
        engine: Some(Component::of(ENGINE)),
        content: Some(Component::of(CONTENT)),
        failure_policy: FailurePolicy::FailClosed,
        min_agent_version: v("0.1.0"),
        created_at: 1_700_000_000,
        notes: String::new(),
    }
}

pub(crate) fn bundle(channel: &str, version: &str) -> Bundle {
    Bundle::build(
        &manifest(channel, version),
        Some(ENGINE.to_vec()),
        Some(CONTENT.to_vec()),
        &key(),
    )
    .expect("test bundle")
}
