//! Slot tests: the state machine under proptest (pure and on disk), and the store's handling of
//! tampered files, corrupt state and pruning.

use super::*;
use crate::testutil::{self, CONTENT, ENGINE, key, trusted, v};
use crate::{RollbackDirective, VerifiedRelease, VerifyOptions, verify};
use proptest::prelude::*;
use std::collections::BTreeSet;

const CH: &str = "exec-allowlist";

fn verified(store: &SlotStore, version: &str) -> Result<VerifiedRelease, VerifyError> {
    let state = store.state(CH).expect("state");
    verify(
        &testutil::bundle(CH, version),
        &trusted(),
        &state,
        &VerifyOptions::now(),
    )
}

fn stage(store: &SlotStore, version: &str) -> PathBuf {
    store
        .stage(&verified(store, version).expect("verifies"))
        .expect("stage")
}

fn store() -> (tempfile::TempDir, SlotStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SlotStore::open(dir.path()).expect("open");
    (dir, store)
}

#[test]
fn stage_activate_bless_restore() {
    let (_dir, store) = store();
    let path = stage(&store, "1.0.0");
    assert_eq!(path, store.release_dir(CH, &v("1.0.0")).expect("dir"));
    for file in ["manifest.json", "signatures.json", "engine.wasm", "content"] {
        assert!(path.join(file).is_file(), "{file}");
    }
    assert_eq!(
        store.state(CH).expect("state").highest_installed,
        Some(v("1.0.0"))
    );
    assert!(matches!(
        store.load_current(CH, &trusted()),
        Err(SlotError::Transition(TransitionError::NoCurrent))
    ));

    store.activate(CH, &v("1.0.0")).expect("activate");
    let loaded = store.load_current(CH, &trusted()).expect("load");
    assert_eq!(loaded.engine(), Some(ENGINE));
    assert_eq!(loaded.content(), Some(CONTENT));
    assert_eq!(loaded.version(), &v("1.0.0"));
    assert!(matches!(
        store.restore_lkg(CH),
        Err(SlotError::Transition(TransitionError::NoLkg))
    ));

    store.bless(CH).expect("bless");
    stage(&store, "2.0.0");
    let state = store.activate(CH, &v("2.0.0")).expect("activate 2");
    assert_eq!(state.current, Some(v("2.0.0")));
    assert_eq!(state.lkg, Some(v("1.0.0")));
    assert!(!state.current_blessed);

    // The guard's move: back to LKG, with no keys and no network.
    let state = store.restore_lkg(CH).expect("restore");
    assert_eq!(state.current, Some(v("1.0.0")));
    assert_eq!(
        store.load_lkg(CH, &trusted()).expect("lkg").version(),
        &v("1.0.0")
    );
    assert_eq!(store.channels().expect("channels"), vec![CH.to_owned()]);
}

#[test]
fn install_verifies_against_the_channel_state() {
    let (_dir, store) = store();
    let bytes = testutil::bundle(CH, "2.0.0").to_bytes().expect("bytes");
    let release = store
        .install(&bytes, &trusted(), &VerifyOptions::now())
        .expect("install");
    assert_eq!(release.manifest().version, v("2.0.0"));
    assert!(store.is_staged(CH, &v("2.0.0")));
    let older = testutil::bundle(CH, "1.0.0").to_bytes().expect("bytes");
    let err = store
        .install(&older, &trusted(), &VerifyOptions::now())
        .expect_err("downgrade");
    assert!(
        matches!(&err, SlotError::Refused(e) if matches!(**e, VerifyError::Downgrade { .. })),
        "{err}"
    );
    let err = store
        .install(b"garbage", &trusted(), &VerifyOptions::now())
        .expect_err("garbage");
    assert!(matches!(err, SlotError::Refused(_)), "{err}");
}

#[test]
fn unblessed_current_never_becomes_lkg() {
    let (_dir, store) = store();
    stage(&store, "1.0.0");
    stage(&store, "2.0.0");
    store.activate(CH, &v("1.0.0")).expect("activate 1");
    let state = store.activate(CH, &v("2.0.0")).expect("activate 2");
    assert_eq!(state.lkg, None);
}

#[test]
fn activate_needs_a_staged_release() {
    let (_dir, store) = store();
    assert!(matches!(
        store.activate(CH, &v("1.0.0")),
        Err(SlotError::NotStaged { .. })
    ));
    assert!(matches!(
        store.activate("../etc", &v("1.0.0")),
        Err(SlotError::InvalidChannel(_))
    ));
}

#[test]
fn stage_is_idempotent_and_refuses_downgrades() {
    let (_dir, store) = store();
    let release = verified(&store, "2.0.0").expect("verifies");
    store.stage(&release).expect("stage");
    store.stage(&release).expect("stage again is a no-op");
    // Verified against an old state, staged against the new one: still refused.
    let (_dir2, empty) = self::store();
    let stale = verified(&empty, "1.0.0").expect("verifies against empty state");
    assert!(matches!(
        store.stage(&stale),
        Err(SlotError::Transition(TransitionError::Downgrade { .. }))
    ));
    assert!(!store.is_staged(CH, &v("1.0.0")));
    // Same version, different bytes.
    let mut manifest = testutil::manifest(CH, "2.0.0");
    manifest.notes = "other build".into();
    let other = crate::Bundle::build(
        &manifest,
        Some(ENGINE.to_vec()),
        Some(CONTENT.to_vec()),
        &key(),
    )
    .expect("bundle");
    let other = verify(
        &other,
        &trusted(),
        &SlotState::default(),
        &VerifyOptions::now(),
    )
    .expect("verifies against empty state");
    assert!(matches!(
        store.stage(&other),
        Err(SlotError::AlreadyStaged { .. })
    ));
}

#[test]
fn rollback_directive_lets_an_older_release_in_but_keeps_the_floor() {
    let (_dir, store) = store();
    stage(&store, "2.0.0");
    let now = ringfence_protocol::clock::unix_secs();
    let directive = RollbackDirective {
        channel: CH.into(),
        from_version: v("2.0.0"),
        to_version: v("1.0.0"),
        reason: "halted".into(),
        issued_at: now - 10,
        expires_at: now + 600,
    }
    .sign(&key())
    .expect("sign");
    let release = verify(
        &testutil::bundle(CH, "1.0.0"),
        &trusted(),
        &store.state(CH).expect("state"),
        &VerifyOptions {
            agent_version: None,
            now,
            rollback: Some(&directive),
        },
    )
    .expect("rollback verifies");
    store.stage(&release).expect("stage rollback");
    let state = store.activate(CH, &v("1.0.0")).expect("activate");
    assert_eq!(state.highest_installed, Some(v("2.0.0")));
}

#[test]
fn tampered_files_on_disk_are_refused() {
    let (_dir, store) = store();
    let path = stage(&store, "1.0.0");
    store.activate(CH, &v("1.0.0")).expect("activate");
    let tampered = |store: &SlotStore| {
        matches!(
            store.load_current(CH, &trusted()),
            Err(SlotError::Tampered { .. })
        )
    };

    std::fs::write(path.join("content"), b"allow *\n").expect("tamper content");
    assert!(tampered(&store), "content");
    std::fs::write(path.join("content"), CONTENT).expect("restore content");
    store.load_current(CH, &trusted()).expect("good again");

    std::fs::write(path.join("engine.wasm"), b"evil").expect("tamper engine");
    assert!(tampered(&store), "engine");
    std::fs::write(path.join("engine.wasm"), ENGINE).expect("restore engine");

    // Rewrite the manifest consistently with new content: the signature catches it.
    let manifest = std::fs::read_to_string(path.join("manifest.json")).expect("read");
    let evil = crate::Component::of(b"allow *\n");
    let old = crate::Component::of(CONTENT);
    let manifest = manifest
        .replace(&old.sha256.to_hex(), &evil.sha256.to_hex())
        .replace(
            &format!("\"size\": {}", old.size),
            &format!("\"size\": {}", evil.size),
        );
    std::fs::write(path.join("manifest.json"), manifest).expect("tamper manifest");
    std::fs::write(path.join("content"), b"allow *\n").expect("tamper content");
    let err = store.load_current(CH, &trusted()).expect_err("refused");
    assert!(
        matches!(
            &err,
            SlotError::Tampered { source, .. } if matches!(**source, VerifyError::BadSignature { .. })
        ),
        "{err}"
    );

    // An untrusted key set refuses even a pristine release.
    let (_dir, store) = self::store();
    stage(&store, "1.0.0");
    let stranger: crate::TrustedKeys = [testutil::other_key().public()].into_iter().collect();
    assert!(matches!(
        store.load(CH, &v("1.0.0"), &stranger),
        Err(SlotError::Tampered { source, .. }) if matches!(*source, VerifyError::UnknownKey { .. })
    ));
}

#[test]
fn a_release_moved_to_another_slot_is_refused() {
    let (_dir, store) = store();
    let path = stage(&store, "1.0.0");
    let fake = store.release_dir(CH, &v("9.0.0")).expect("dir");
    std::fs::rename(&path, &fake).expect("move");
    let err = store.load(CH, &v("9.0.0"), &trusted()).expect_err("moved");
    assert!(matches!(err, SlotError::Tampered { .. }), "{err}");
}

#[test]
fn corrupt_state_is_a_clear_error_and_recover_keeps_the_floor() {
    let (dir, store) = store();
    stage(&store, "1.0.0");
    stage(&store, "3.0.0");
    store.activate(CH, &v("3.0.0")).expect("activate");
    let state_file = dir.path().join("slots").join(format!("{CH}.json"));
    std::fs::write(&state_file, b"{\"current\": \"3.0").expect("corrupt");
    let err = store.state(CH).expect_err("corrupt");
    assert!(matches!(err, SlotError::CorruptState { .. }), "{err}");
    assert!(err.to_string().contains("recover"), "{err}");
    // Mutations refuse to build on a corrupt state too.
    assert!(store.bless(CH).is_err());
    assert!(store.restore_lkg(CH).is_err());

    let state = store.recover(CH).expect("recover");
    assert_eq!(
        state,
        SlotState {
            highest_installed: Some(v("3.0.0")),
            ..SlotState::default()
        }
    );
    assert!(
        dir.path()
            .join("slots")
            .join(format!("{CH}.json.corrupt"))
            .is_file()
    );
    // The floor held: an older release is still a downgrade.
    assert!(matches!(
        verified(&store, "2.0.0"),
        Err(VerifyError::Downgrade { .. })
    ));
    // Staged releases can be activated again without a download.
    store
        .activate(CH, &v("3.0.0"))
        .expect("activate after recover");
    // Recover on a healthy state changes nothing.
    assert_eq!(
        store.recover(CH).expect("recover"),
        store.state(CH).expect("state")
    );
}

#[test]
fn deleted_state_file_does_not_reset_the_floor() {
    let (dir, store) = store();
    stage(&store, "2.0.0");
    std::fs::remove_file(dir.path().join("slots").join(format!("{CH}.json"))).expect("rm");
    assert!(matches!(
        store.state(CH),
        Err(SlotError::CorruptState { .. })
    ));
    let state = store.recover(CH).expect("recover");
    assert_eq!(state.highest_installed, Some(v("2.0.0")));
}

#[test]
fn pruning_keeps_current_lkg_and_newer() {
    let (_dir, store) = store();
    for version in ["1.0.0", "2.0.0", "3.0.0", "4.0.0"] {
        stage(&store, version);
    }
    store.activate(CH, &v("2.0.0")).expect("activate");
    store.bless(CH).expect("bless");
    assert_eq!(
        store.staged_versions(CH).expect("list"),
        vec![v("2.0.0"), v("3.0.0"), v("4.0.0")]
    );
    store.activate(CH, &v("4.0.0")).expect("activate 4");
    assert_eq!(
        store.staged_versions(CH).expect("list"),
        vec![v("2.0.0"), v("4.0.0")]
    );
    assert!(matches!(
        store.remove(CH, &v("2.0.0")),
        Err(SlotError::InUse { .. })
    ));
    assert!(matches!(
        store.remove(CH, &v("4.0.0")),
        Err(SlotError::InUse { .. })
    ));
}

#[derive(Debug, Clone)]
enum Op {
    Stage(u64, bool),
    Activate(u64),
    Bless,
    RestoreLkg,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..8, any::<bool>()).prop_map(|(m, r)| Op::Stage(m, r)),
        (1u64..8).prop_map(Op::Activate),
        Just(Op::Bless),
        Just(Op::RestoreLkg),
    ]
}

proptest! {
    /// The pure state machine keeps its invariants under any sequence of operations.
    #[test]
    fn state_machine_invariants(ops in proptest::collection::vec(op(), 0..60)) {
        let mut state = SlotState::default();
        let mut staged = BTreeSet::new();
        let mut blessed = BTreeSet::new();
        for op in ops {
            let before = state.clone();
            match op {
                Op::Stage(major, rollback) => {
                    let version = Version::new(major, 0, 0);
                    match state.stage(&version, rollback) {
                        Ok(next) => {
                            staged.insert(version.clone());
                            state = next;
                        }
                        Err(TransitionError::Downgrade { .. }) => {
                            prop_assert!(!rollback);
                            prop_assert!(before.highest_installed.as_ref().is_some_and(|h| version <= *h));
                        }
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Activate(major) => {
                    let version = Version::new(major, 0, 0);
                    if staged.contains(&version) {
                        state = state.activate(&version);
                        prop_assert_eq!(state.current.as_ref(), Some(&version));
                        // Activation never changes the LKG.
                        prop_assert_eq!(&state.lkg, &before.lkg);
                    }
                }
                Op::Bless => {
                    if let Ok(next) = state.bless() {
                        blessed.insert(next.lkg.clone());
                        state = next;
                    } else {
                        prop_assert!(before.current.is_none());
                    }
                }
                Op::RestoreLkg => {
                    if let Ok(next) = state.restore_lkg() {
                        prop_assert_eq!(&next.current, &before.lkg);
                        state = next;
                    } else {
                        prop_assert!(before.lkg.is_none());
                    }
                }
            }
            // The rollback floor never goes down.
            prop_assert!(state.highest_installed >= before.highest_installed);
            // A blessed current is the LKG.
            prop_assert!(!state.current_blessed || state.current == state.lkg);
            // The LKG was blessed at some point; current and LKG were staged.
            prop_assert!(state.lkg.is_none() || blessed.contains(&state.lkg));
            for slot in [&state.current, &state.lkg].into_iter().flatten() {
                prop_assert!(staged.contains(slot));
                prop_assert!(state.keeps(slot));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The store on disk follows the pure machine, and current and LKG always load.
    #[test]
    fn store_follows_the_state_machine(ops in proptest::collection::vec(op(), 0..25)) {
        let (_dir, store) = store();
        let mut model = SlotState::default();
        let now = ringfence_protocol::clock::unix_secs();
        for op in ops {
            match op {
                Op::Stage(major, rollback) => {
                    let version = format!("{major}.0.0");
                    let directive = model.highest_installed.as_ref().and_then(|h| {
                        (rollback && Version::new(major, 0, 0) < *h).then(|| {
                            RollbackDirective {
                                channel: CH.into(),
                                from_version: h.clone(),
                                to_version: Version::new(major, 0, 0),
                                reason: "test".into(),
                                issued_at: now,
                                expires_at: now + 600,
                            }
                            .sign(&key())
                            .expect("sign")
                        })
                    });
                    let options = VerifyOptions { agent_version: None, now, rollback: directive.as_ref() };
                    let state = store.state(CH).expect("state");
                    let result = verify(&testutil::bundle(CH, &version), &trusted(), &state, &options);
                    if let Ok(release) = result {
                        let already = store.is_staged(CH, &release.manifest().version);
                        store.stage(&release).expect("stage");
                        if !already {
                            model = model.stage(&release.manifest().version, release.rollback().is_some()).expect("model");
                        }
                    }
                }
                Op::Activate(major) => {
                    let version = Version::new(major, 0, 0);
                    match store.activate(CH, &version) {
                        Ok(_) => model = model.activate(&version),
                        Err(SlotError::NotStaged { .. }) => {}
                        Err(e) => prop_assert!(false, "activate: {e}"),
                    }
                }
                Op::Bless => if let Ok(next) = model.bless() {
                    store.bless(CH).expect("bless");
                    model = next;
                },
                Op::RestoreLkg => if let Ok(next) = model.restore_lkg() {
                    store.restore_lkg(CH).expect("restore");
                    model = next;
                },
            }
            prop_assert_eq!(&store.state(CH).expect("state"), &model);
            if model.current.is_some() {
                store.load_current(CH, &trusted()).expect("current loads");
            }
            if model.lkg.is_some() {
                store.load_lkg(CH, &trusted()).expect("lkg loads");
            }
        }
    }
}
