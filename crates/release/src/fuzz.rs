//! Entry points for fuzzers (cargo-fuzz targets call these): every parser of untrusted bytes
//! in this crate, which must return an error, never panic, on any input.

use crate::{Bundle, Manifest, Signatures, SignedRollbackDirective};

/// Parses bundle bytes.
pub fn bundle(data: &[u8]) {
    if let Ok(bundle) = Bundle::read(data) {
        // A bundle that parses must write back to bytes that parse to the same bundle.
        if let Ok(bytes) = bundle.to_bytes() {
            assert!(Bundle::read(&bytes).is_ok_and(|again| again == bundle));
        }
    }
}

/// Parses manifest bytes.
pub fn manifest(data: &[u8]) {
    let _ = Manifest::parse(data);
}

/// Parses a signatures file.
pub fn signatures(data: &[u8]) {
    let _ = Signatures::parse(data);
}

/// Parses a rollback directive envelope and the directive inside it.
pub fn rollback_directive(data: &[u8]) {
    if let Ok(envelope) = SignedRollbackDirective::parse(data) {
        let _ = envelope.unverified();
    }
}
