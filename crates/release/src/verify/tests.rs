//! Verification tests: signatures, trust, agent version and rollback protection with and
//! without directives.

use super::*;
use crate::testutil::{self, key, other_key, trusted, v};
use crate::{ReleaseKey, RollbackDirective};

const NOW: u64 = 1_800_000_000;

fn installed(highest: &str) -> SlotState {
    SlotState {
        highest_installed: Some(v(highest)),
        ..SlotState::default()
    }
}

fn options(rollback: Option<&SignedRollbackDirective>) -> VerifyOptions<'_> {
    VerifyOptions {
        agent_version: None,
        now: NOW,
        rollback,
    }
}

fn directive(channel: &str, from: &str, to: &str, signer: &ReleaseKey) -> SignedRollbackDirective {
    RollbackDirective {
        channel: channel.into(),
        from_version: v(from),
        to_version: v(to),
        reason: "rollout halted".into(),
        issued_at: NOW - 60,
        expires_at: NOW + 3600,
    }
    .sign(signer)
    .expect("sign directive")
}

#[test]
fn good_release_verifies() {
    let bytes = testutil::bundle("exec-allowlist", "1.0.0")
        .to_bytes()
        .expect("bytes");
    let verified =
        verify_bytes(&bytes, &trusted(), &SlotState::default(), &options(None)).expect("verifies");
    assert_eq!(verified.signer(), key().key_id());
    assert_eq!(verified.manifest().version, v("1.0.0"));
    assert!(verified.rollback().is_none());
    // Newer than installed is fine.
    verify_bytes(&bytes, &trusted(), &installed("0.9.9"), &options(None)).expect("upgrade");
}

#[test]
fn unknown_key_is_refused() {
    let keys: TrustedKeys = [other_key().public()].into_iter().collect();
    let err = verify(
        &testutil::bundle("exec-allowlist", "1.0.0"),
        &keys,
        &SlotState::default(),
        &options(None),
    )
    .expect_err("unknown key");
    assert!(matches!(err, VerifyError::UnknownKey { .. }), "{err}");
    let err = verify(
        &testutil::bundle("exec-allowlist", "1.0.0"),
        &TrustedKeys::new(),
        &SlotState::default(),
        &options(None),
    )
    .expect_err("no keys");
    assert!(matches!(err, VerifyError::UnknownKey { .. }), "{err}");
}

#[test]
fn bad_signature_is_refused() {
    // Re-sign a different manifest and graft the signature onto this one: the hashes all
    // match, only the signature is wrong.
    let bundle = testutil::bundle("exec-allowlist", "1.0.0");
    let other = testutil::bundle("exec-allowlist", "1.0.1");
    let forged = Bundle::from_parts(
        bundle.manifest_bytes().to_vec(),
        other.signatures().to_vec(),
        bundle.engine().map(<[u8]>::to_vec),
        bundle.content().map(<[u8]>::to_vec),
    )
    .expect("structurally fine");
    let err = verify(&forged, &trusted(), &SlotState::default(), &options(None))
        .expect_err("bad signature");
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
}

#[test]
fn tampered_member_is_a_hash_mismatch() {
    let bundle = testutil::bundle("exec-allowlist", "1.0.0");
    let mut bytes = bundle.to_bytes().expect("bytes");
    let at = bytes
        .windows(testutil::CONTENT.len())
        .position(|w| w == testutil::CONTENT)
        .expect("content in tar");
    bytes[at] ^= 0x20;
    let err = verify_bytes(&bytes, &trusted(), &SlotState::default(), &options(None))
        .expect_err("tampered");
    assert!(
        matches!(&err, VerifyError::HashMismatch { member } if member == "content"),
        "{err}"
    );
}

#[test]
fn garbage_and_oversized_are_typed() {
    let err = verify_bytes(
        b"garbage",
        &trusted(),
        &SlotState::default(),
        &options(None),
    )
    .expect_err("garbage");
    assert!(matches!(err, VerifyError::Malformed { .. }), "{err}");
    let huge = vec![0u8; crate::MAX_BUNDLE_BYTES as usize + 1];
    let err =
        verify_bytes(&huge, &trusted(), &SlotState::default(), &options(None)).expect_err("huge");
    assert!(matches!(err, VerifyError::TooLarge { .. }), "{err}");
}

#[test]
fn downgrade_and_replay_without_directive_are_refused() {
    let bundle = testutil::bundle("exec-allowlist", "1.0.0");
    for highest in ["1.0.0", "1.0.1", "2.0.0"] {
        let err = verify(&bundle, &trusted(), &installed(highest), &options(None))
            .expect_err("downgrade");
        assert!(
            matches!(&err, VerifyError::Downgrade { installed, offered }
                if *installed == v(highest) && *offered == v("1.0.0")),
            "{err}"
        );
    }
    // A pre-release is older than its release.
    let rc = testutil::bundle("exec-allowlist", "1.0.0-rc.1");
    assert!(matches!(
        verify(&rc, &trusted(), &installed("1.0.0"), &options(None)),
        Err(VerifyError::Downgrade { .. })
    ));
}

#[test]
fn downgrade_with_valid_directive_is_allowed() {
    let bundle = testutil::bundle("exec-allowlist", "1.0.0");
    let d = directive("exec-allowlist", "2.0.0", "1.0.0", &key());
    for highest in ["1.0.0", "1.5.0", "2.0.0"] {
        let verified = verify(&bundle, &trusted(), &installed(highest), &options(Some(&d)))
            .expect("rollback allowed");
        assert_eq!(
            verified.rollback().map(|r| r.to_version.clone()),
            Some(v("1.0.0"))
        );
    }
}

#[test]
fn downgrade_with_bad_directives_is_refused() {
    let bundle = testutil::bundle("exec-allowlist", "1.0.0");
    let state = installed("2.0.0");
    let check = |d: &SignedRollbackDirective, now: u64| {
        verify(
            &bundle,
            &trusted(),
            &state,
            &VerifyOptions {
                agent_version: None,
                now,
                rollback: Some(d),
            },
        )
        .expect_err("refused")
    };

    let wrong_channel = directive("detection", "2.0.0", "1.0.0", &key());
    let err = check(&wrong_channel, NOW);
    assert!(
        matches!(&err, VerifyError::RollbackRefused { reason } if reason.contains("channel")),
        "{err}"
    );

    let expired = directive("exec-allowlist", "2.0.0", "1.0.0", &key());
    let err = check(&expired, NOW + 3601);
    assert!(matches!(err, VerifyError::Expired(_)), "{err}");

    let wrong_target = directive("exec-allowlist", "2.0.0", "0.9.0", &key());
    assert!(matches!(
        check(&wrong_target, NOW),
        VerifyError::RollbackRefused { .. }
    ));

    // The host has something newer than the directive covers.
    let too_old = directive("exec-allowlist", "1.5.0", "1.0.0", &key());
    assert!(matches!(
        check(&too_old, NOW),
        VerifyError::RollbackRefused { .. }
    ));

    let untrusted = directive("exec-allowlist", "2.0.0", "1.0.0", &other_key());
    assert!(matches!(
        check(&untrusted, NOW),
        VerifyError::UnknownKey { .. }
    ));

    let mut tampered = directive("exec-allowlist", "2.0.0", "1.0.0", &key());
    tampered.signed = tampered
        .signed
        .replace("3.0.0", "x")
        .replace("\"from_version\":\"2.0.0\"", "\"from_version\":\"9.0.0\"");
    assert!(matches!(
        check(&tampered, NOW),
        VerifyError::BadSignature { .. }
    ));

    // A manifest signature cannot stand in for a directive signature (domain separation).
    let manifest_sig = directive("exec-allowlist", "2.0.0", "1.0.0", &key());
    let grafted = SignedRollbackDirective {
        signed: manifest_sig.signed.clone(),
        signatures: bundle.signatures().to_vec(),
    };
    assert!(matches!(
        check(&grafted, NOW),
        VerifyError::BadSignature { .. }
    ));
}

#[test]
fn agent_too_old_is_refused() {
    let mut manifest = testutil::manifest("exec-allowlist", "1.0.0");
    manifest.min_agent_version = v("0.5.0");
    let bundle = Bundle::build(
        &manifest,
        Some(testutil::ENGINE.to_vec()),
        Some(testutil::CONTENT.to_vec()),
        &key(),
    )
    .expect("bundle");
    let old = v("0.4.9");
    let err = verify(
        &bundle,
        &trusted(),
        &SlotState::default(),
        &VerifyOptions {
            agent_version: Some(&old),
            now: NOW,
            rollback: None,
        },
    )
    .expect_err("too old");
    assert!(matches!(err, VerifyError::AgentTooOld { .. }), "{err}");
    let new = v("0.5.0");
    verify(
        &bundle,
        &trusted(),
        &SlotState::default(),
        &VerifyOptions {
            agent_version: Some(&new),
            now: NOW,
            rollback: None,
        },
    )
    .expect("new enough");
}

#[test]
fn cosigned_bundle_verifies_with_either_key() {
    let mut bundle = testutil::bundle("exec-allowlist", "1.0.0");
    bundle.add_signature(&other_key()).expect("cosign");
    let read = Bundle::read(&bundle.to_bytes().expect("bytes")).expect("read");
    let only_other: TrustedKeys = [other_key().public()].into_iter().collect();
    for keys in [trusted(), only_other] {
        verify(&read, &keys, &SlotState::default(), &options(None)).expect("verifies");
    }
}
