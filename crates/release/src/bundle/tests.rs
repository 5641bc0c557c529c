//! Bad-input tests for bundle parsing: every way a bundle can be malformed is refused with
//! the right error, and no input panics.

use super::*;
use crate::testutil::{self, CONTENT, ENGINE};

/// A tar with the given raw members, with no checks of our own.
fn raw_tar(members: &[(&[u8], &[u8], tar::EntryType)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data, kind) in members {
        let mut header = tar::Header::new_gnu();
        // set_path refuses `..`; write the name bytes directly, as an attacker would.
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(*kind);
        header.set_cksum();
        builder.append(&header, *data).expect("append");
    }
    builder.into_inner().expect("tar")
}

fn good_members(bundle: &Bundle) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (b"manifest.json".to_vec(), bundle.manifest_bytes().to_vec()),
        (b"signatures.json".to_vec(), bundle.signatures_bytes()),
        (b"engine.wasm".to_vec(), ENGINE.to_vec()),
        (b"content".to_vec(), CONTENT.to_vec()),
    ]
}

fn tar_of(members: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&[u8], &[u8], tar::EntryType)> = members
        .iter()
        .map(|(n, d)| (n.as_slice(), d.as_slice(), tar::EntryType::Regular))
        .collect();
    raw_tar(&refs)
}

#[test]
fn round_trip_is_deterministic() {
    let bundle = testutil::bundle("exec-allowlist", "1.0.0");
    let bytes = bundle.to_bytes().expect("bytes");
    assert_eq!(bytes, bundle.to_bytes().expect("bytes again"));
    let read = Bundle::read(&bytes).expect("read");
    assert_eq!(read, bundle);
    assert_eq!(read.engine(), Some(ENGINE));
    assert_eq!(read.content(), Some(CONTENT));
    // Our hand-made tar reads the same.
    assert_eq!(
        Bundle::read(&tar_of(&good_members(&bundle))).expect("raw"),
        bundle
    );
}

#[test]
fn content_only_bundle() {
    let mut manifest = testutil::manifest("detection", "1.0.0");
    manifest.engine = None;
    let bundle =
        Bundle::build(&manifest, None, Some(CONTENT.to_vec()), &testutil::key()).expect("build");
    let read = Bundle::read(&bundle.to_bytes().expect("bytes")).expect("read");
    assert_eq!(read.engine(), None);
}

#[test]
fn tampered_members_are_hash_mismatches() {
    let bundle = testutil::bundle("exec-allowlist", "1.0.0");
    for (index, member) in [(2, Member::Engine), (3, Member::Content)] {
        let mut members = good_members(&bundle);
        members[index].1[0] ^= 1;
        let err = Bundle::read(&tar_of(&members)).expect_err("tampered");
        assert!(
            matches!(err, BundleError::HashMismatch(m) if m == member),
            "{member}: {err}"
        );
        // Same hash prefix but a different length is caught too.
        let mut members = good_members(&bundle);
        members[index].1.push(0);
        assert!(matches!(
            Bundle::read(&tar_of(&members)),
            Err(BundleError::HashMismatch(_))
        ));
    }
}

#[test]
fn missing_duplicate_and_unexpected_members() {
    let bundle = testutil::bundle("exec-allowlist", "1.0.0");
    for (index, member) in Member::ALL.into_iter().enumerate() {
        let mut members = good_members(&bundle);
        members.remove(index);
        let err = Bundle::read(&tar_of(&members)).expect_err("missing");
        assert!(
            matches!(err, BundleError::Missing(m) if m == member),
            "{member}: {err}"
        );

        let mut members = good_members(&bundle);
        members.push(members[index].clone());
        let err = Bundle::read(&tar_of(&members)).expect_err("duplicate");
        assert!(
            matches!(err, BundleError::Duplicate(m) if m == member),
            "{member}: {err}"
        );
    }
    let mut members = good_members(&bundle);
    members.push((b"README".to_vec(), b"hi".to_vec()));
    assert!(matches!(
        Bundle::read(&tar_of(&members)),
        Err(BundleError::UnexpectedMember(_))
    ));
    // An engine the manifest does not list is refused, not ignored.
    let mut manifest = testutil::manifest("exec-allowlist", "1.0.0");
    manifest.engine = None;
    let no_engine =
        Bundle::build(&manifest, None, Some(CONTENT.to_vec()), &testutil::key()).expect("build");
    let mut members = good_members(&no_engine);
    members[1].1 = no_engine.signatures_bytes();
    assert!(matches!(
        Bundle::read(&tar_of(&members)),
        Err(BundleError::UnexpectedMember(_))
    ));
}

#[test]
fn path_traversal_and_odd_names_are_refused() {
    let bundle = testutil::bundle("exec-allowlist", "1.0.0");
    for name in [
        &b"../manifest.json"[..],
        b"/manifest.json",
        b"./manifest.json",
        b"x/../manifest.json",
        b"manifest.json/",
        b"../../etc/cron.d/evil",
    ] {
        let mut members = good_members(&bundle);
        members[0].0 = name.to_vec();
        let err = Bundle::read(&tar_of(&members)).expect_err("traversal");
        assert!(
            matches!(err, BundleError::UnexpectedMember(_)),
            "{}: {err}",
            String::from_utf8_lossy(name)
        );
    }
}

#[test]
fn links_and_directories_are_refused() {
    let bundle = testutil::bundle("exec-allowlist", "1.0.0");
    for kind in [
        tar::EntryType::Symlink,
        tar::EntryType::Link,
        tar::EntryType::Directory,
        tar::EntryType::Fifo,
    ] {
        let members = good_members(&bundle);
        let mut raw: Vec<(&[u8], &[u8], tar::EntryType)> = members
            .iter()
            .map(|(n, d)| (n.as_slice(), d.as_slice(), tar::EntryType::Regular))
            .collect();
        raw[2].2 = kind;
        let err = Bundle::read(&raw_tar(&raw)).expect_err("non-regular");
        assert!(matches!(err, BundleError::Malformed(_)), "{kind:?}: {err}");
    }
}

#[test]
fn oversized_members_are_refused_before_reading() {
    // A header claiming a huge manifest: refused on the header's size alone.
    let mut header = tar::Header::new_gnu();
    header.set_path("manifest.json").expect("path");
    header.set_size(crate::MAX_MANIFEST_BYTES + 1);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(b' ', 1024));
    let err = Bundle::read(&bytes).expect_err("too large");
    assert!(matches!(err, BundleError::TooLarge { .. }), "{err}");

    let bundle = testutil::bundle("exec-allowlist", "1.0.0");
    let mut members = good_members(&bundle);
    members[1].1 = vec![b' '; crate::MAX_SIGNATURES_BYTES as usize + 1];
    assert!(matches!(
        Bundle::read(&tar_of(&members)),
        Err(BundleError::TooLarge { .. })
    ));
}

#[test]
fn whole_bundle_size_limit() {
    let huge = vec![0u8; crate::MAX_BUNDLE_BYTES as usize + 1];
    assert!(matches!(
        Bundle::read(&huge),
        Err(BundleError::TooLarge { .. })
    ));
}

#[test]
fn truncated_and_garbage_bundles_are_refused() {
    let bytes = testutil::bundle("exec-allowlist", "1.0.0")
        .to_bytes()
        .expect("bytes");
    // Cutting anywhere before the last member's data ends must fail (cuts inside the trailing
    // zero blocks leave a complete archive, which is fine).
    let data_end = bytes.len() - 1024;
    for cut in (0..data_end).step_by(97) {
        assert!(Bundle::read(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    for garbage in [&b""[..], b"not a tar at all", &[0xff; 2048], &[0u8; 1024]] {
        assert!(Bundle::read(garbage).is_err());
    }
}

#[test]
fn trailing_data_is_refused() {
    let mut bytes = testutil::bundle("exec-allowlist", "1.0.0")
        .to_bytes()
        .expect("bytes");
    bytes.extend_from_slice(b"hidden payload");
    let err = Bundle::read(&bytes).expect_err("trailing");
    assert!(err.to_string().contains("after the end"), "{err}");
}

#[test]
fn garbage_manifest_and_signatures() {
    let bundle = testutil::bundle("exec-allowlist", "1.0.0");
    let mut members = good_members(&bundle);
    members[0].1 = b"{\"format\": 1, \"name\": }".to_vec();
    assert!(matches!(
        Bundle::read(&tar_of(&members)),
        Err(BundleError::Manifest(_))
    ));
    let mut members = good_members(&bundle);
    members[1].1 = b"[1,2,3]".to_vec();
    assert!(matches!(
        Bundle::read(&tar_of(&members)),
        Err(BundleError::Signatures(_))
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
        crate::fuzz::bundle(&data);
        crate::fuzz::manifest(&data);
        crate::fuzz::signatures(&data);
        crate::fuzz::rollback_directive(&data);
    }

    #[test]
    fn flipped_bits_never_verify_as_a_different_bundle(index in 0usize..4096, bit in 0u8..8) {
        let bundle = testutil::bundle("exec-allowlist", "1.0.0");
        let mut bytes = bundle.to_bytes().expect("bytes");
        let index = index % bytes.len();
        bytes[index] ^= 1 << bit;
        if let Ok(read) = Bundle::read(&bytes) {
            // Header fields we ignore (mode, mtime, owner) may change without an error; any
            // change to a member must then fail verification.
            let verified = crate::verify(
                &read,
                &testutil::trusted(),
                &crate::SlotState::default(),
                &crate::VerifyOptions::now(),
            );
            proptest::prop_assert!(read == bundle || verified.is_err());
        }
    }
}
