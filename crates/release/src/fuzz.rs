//! Entry points for fuzzers (the cargo-fuzz targets in `fuzz/` call these): every parser of
//! untrusted bytes in this crate, which must return an error, never panic, on any input, plus
//! the properties a parse must keep (what we write parses back to the same value; nothing but
//! what the fuzzing key signed ever verifies).
//!
//! The fuzzing key is public (its seed is below), so it proves nothing outside fuzzing. It is
//! there so that the fuzzer starts from a correctly signed bundle and directive (the seeds in
//! `fuzz/seeds/`, kept current by the test at the end) and can explore verification past the
//! signature check, while the assertions hold it to never getting anything else accepted.

use crate::{
    ArtifactSignature, Bundle, Component, MANIFEST_FORMAT, Manifest, ReleaseKey, RollbackDirective,
    Signatures, SignedRollbackDirective, SlotState, TrustedKeys, VerifyOptions, Version,
    verify_bytes,
};
use ringfence_protocol::FailurePolicy;
use std::sync::OnceLock;

/// Seed of the fuzzing key. Public on purpose; see the module comment.
const KEY_SEED: [u8; 32] = [0xf2; 32];
/// The clock verification runs at: inside the seed directive's validity window.
const NOW: u64 = 1_800_000_000;
const SEED_ENGINE: &[u8] = b"\0asm fuzz seed component";
const SEED_CONTENT: &[u8] = b"allow /usr/bin/*\ndefault deny\n";
/// The one artifact (a stand-in agent binary) the fuzzing key signs.
const SEED_ARTIFACT: &[u8] = b"\x7fELF fuzz seed agent binary";

fn key() -> ReleaseKey {
    ReleaseKey::from_seed(&KEY_SEED)
}

fn trusted() -> &'static TrustedKeys {
    static KEYS: OnceLock<TrustedKeys> = OnceLock::new();
    KEYS.get_or_init(|| [key().public()].into_iter().collect())
}

fn version(text: &str) -> Version {
    Version::parse(text).unwrap_or_else(|e| panic!("fixture version {text}: {e}"))
}

/// The one release manifest the fuzzing key signs: version 0.9.0 on `fuzz`, older than what
/// [`verify`] pretends is installed, so verification also runs rollback protection.
fn seed_manifest() -> Manifest {
    Manifest {
        format: MANIFEST_FORMAT,
        name: "fuzz".into(),
        version: version("0.9.0"),
        engine_name: "exec-allowlist".into(),
        engine: Some(Component::of(SEED_ENGINE)),
        content: Some(Component::of(SEED_CONTENT)),
        failure_policy: FailurePolicy::FailClosed,
        min_agent_version: version("0.1.0"),
        created_at: 1_700_000_000,
        notes: String::new(),
    }
}

fn seed_manifest_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        seed_manifest()
            .to_bytes()
            .unwrap_or_else(|e| panic!("fixture manifest: {e}"))
    })
}

/// The one rollback directive the fuzzing key signs: `fuzz` may go from 1.0.0 back to 0.9.0.
fn seed_directive() -> &'static SignedRollbackDirective {
    static SIGNED: OnceLock<SignedRollbackDirective> = OnceLock::new();
    SIGNED.get_or_init(|| {
        RollbackDirective {
            channel: "fuzz".into(),
            from_version: version("1.0.0"),
            to_version: version("0.9.0"),
            reason: "fuzz seed".into(),
            issued_at: NOW - 60,
            expires_at: NOW + 3600,
        }
        .sign(&key())
        .unwrap_or_else(|e| panic!("fixture directive: {e}"))
    })
}

/// The signature of [`SEED_ARTIFACT`] by the fuzzing key.
fn seed_artifact() -> &'static ArtifactSignature {
    static SIGNED: OnceLock<ArtifactSignature> = OnceLock::new();
    SIGNED.get_or_init(|| ArtifactSignature::sign(&key(), "ringfence", SEED_ARTIFACT))
}

/// Parses bundle bytes.
pub fn bundle(data: &[u8]) {
    if let Ok(bundle) = Bundle::read(data) {
        // A bundle that parses must write back to bytes that parse to the same bundle.
        if let Ok(bytes) = bundle.to_bytes() {
            assert!(Bundle::read(&bytes).is_ok_and(|again| again == bundle));
        }
    }
}

/// Verifies bundle bytes as an agent would, on a channel that has installed 1.0.0 and with the
/// seed directive at hand. Whatever the fuzzer does to the tar, the members or the signatures
/// file, only the exact manifest the key signed may come out verified.
pub fn verify(data: &[u8]) {
    let installed = SlotState {
        highest_installed: Some(version("1.0.0")),
        ..SlotState::default()
    };
    let agent = version("0.5.0");
    let options = VerifyOptions {
        agent_version: Some(&agent),
        now: NOW,
        rollback: Some(seed_directive()),
    };
    if let Ok(verified) = verify_bytes(data, trusted(), &installed, &options) {
        assert_eq!(verified.bundle().manifest_bytes(), seed_manifest_bytes());
    }
}

/// Parses manifest bytes; a manifest that parses writes back to bytes that parse to it.
pub fn manifest(data: &[u8]) {
    if let Ok(manifest) = Manifest::parse(data) {
        let bytes = manifest.to_bytes().expect("a parsed manifest is valid");
        assert!(Manifest::parse(&bytes).is_ok_and(|again| again == manifest));
    }
}

/// Parses a signatures file; one that parses writes back to bytes that parse to it.
pub fn signatures(data: &[u8]) {
    if let Ok(signatures) = Signatures::parse(data) {
        assert!(Signatures::parse(&signatures.to_bytes()).is_ok_and(|again| again == signatures));
    }
}

/// Parses a rollback directive envelope and the directive inside it, and verifies it: only the
/// directive the key signed may verify.
pub fn rollback_directive(data: &[u8]) {
    if let Ok(envelope) = SignedRollbackDirective::parse(data) {
        let _ = envelope.unverified();
        if envelope.verify(trusted(), NOW).is_ok() {
            assert_eq!(envelope.signed, seed_directive().signed);
        }
        assert!(
            SignedRollbackDirective::parse(&envelope.to_bytes())
                .is_ok_and(|again| again == envelope)
        );
    }
}

/// Parses an artifact's detached `.sig` (what a self-upgrading agent downloads beside the new
/// binary) and checks it against the seed artifact: one that parses writes back to itself, and
/// only the name, digest and size the key signed may verify.
pub fn artifact_signature(data: &[u8]) {
    if let Ok(signature) = ArtifactSignature::parse(data) {
        if signature.verify(trusted(), SEED_ARTIFACT).is_ok() {
            let seed = seed_artifact();
            assert_eq!(
                (&signature.name, signature.sha256, signature.size),
                (&seed.name, seed.sha256, seed.size)
            );
        }
        assert!(
            ArtifactSignature::parse(&signature.to_bytes()).is_ok_and(|again| again == signature)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// Where the fuzz targets' checked-in seeds live, relative to this crate.
    fn seeds_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds")
    }

    /// The seeds the release targets start from: a signed bundle, its manifest and signatures
    /// file, and the signed directive.
    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let bundle = Bundle::build(
            &seed_manifest(),
            Some(SEED_ENGINE.to_vec()),
            Some(SEED_CONTENT.to_vec()),
            &key(),
        )
        .expect("seed bundle");
        vec![
            (
                "release_bundle/signed.tar",
                bundle.to_bytes().expect("bundle bytes"),
            ),
            (
                "release_manifest/manifest.json",
                bundle.manifest_bytes().to_vec(),
            ),
            (
                "release_signatures/signatures.json",
                bundle.signatures_bytes(),
            ),
            (
                "release_rollback/directive.json",
                seed_directive().to_bytes(),
            ),
            ("release_artifact/ringfence.sig", seed_artifact().to_bytes()),
        ]
    }

    /// The checked-in seeds must be what the fixtures build today, or the fuzzer would start
    /// from inputs the parsers reject and explore far less. `RINGFENCE_WRITE_FUZZ_SEEDS=1`
    /// rewrites them after a deliberate format change.
    #[test]
    fn checked_in_seeds_are_current() {
        let write = std::env::var_os("RINGFENCE_WRITE_FUZZ_SEEDS").is_some();
        for (name, bytes) in seeds() {
            let path = seeds_dir().join(name);
            if write {
                std::fs::create_dir_all(path.parent().expect("seed dir")).expect("mkdir");
                std::fs::write(&path, &bytes).expect("write seed");
            }
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == bytes,
                "{} is stale; rerun with RINGFENCE_WRITE_FUZZ_SEEDS=1",
                path.display()
            );
        }
    }

    /// The seeds exercise the success paths the assertions guard.
    #[test]
    fn seeds_pass_every_target() {
        for (name, bytes) in seeds() {
            bundle(&bytes);
            verify(&bytes);
            manifest(&bytes);
            signatures(&bytes);
            rollback_directive(&bytes);
            artifact_signature(&bytes);
            if name.starts_with("release_bundle/") {
                let installed = SlotState {
                    highest_installed: Some(version("1.0.0")),
                    ..SlotState::default()
                };
                let options = VerifyOptions {
                    agent_version: None,
                    now: NOW,
                    rollback: Some(seed_directive()),
                };
                verify_bytes(&bytes, trusted(), &installed, &options).expect("seed verifies");
            }
        }
        assert!(seed_directive().verify(trusted(), NOW).is_ok());
        assert!(seed_artifact().verify(trusted(), SEED_ARTIFACT).is_ok());
    }
}
