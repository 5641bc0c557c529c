//! The one place the engine host turns bytes read from disk into machine code it will run.
//!
//! wasmtime marks `Component::deserialize` `unsafe` because it trusts a serialized artifact as
//! it trusts its own compiler: an artifact changed by one bit may hold any machine code. So the
//! digest check and the call sit together here, on the same in-memory bytes, and nothing else in
//! the crate may call it.
#![allow(
    unsafe_code,
    reason = "wasmtime has no safe way to load a compiled artifact"
)]

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// Why an artifact was not loaded. Either way the cache removes it and compiles again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    /// The bytes are not the ones written: corrupted, truncated, or replaced.
    #[error("its SHA-256 is {actual}, not the {recorded} recorded when it was written")]
    Digest { recorded: String, actual: String },
    /// wasmtime refused an artifact we did write: another wasmtime, configuration or CPU.
    #[error("wasmtime refused it: {0}")]
    Refused(String),
}

/// Loads `bytes` as a component for `engine`, if their SHA-256 is `recorded_sha256` (hex).
///
/// `recorded_sha256` must be a digest `EngineCache` itself recorded for the output of
/// `Component::serialize`, read from a directory `EngineCache::open` checked (ours, writable and
/// renamable by no one else); that, and the check here, is what the `SAFETY` argument rests on.
pub(crate) fn deserialize(
    engine: &wasmtime::Engine,
    bytes: &[u8],
    recorded_sha256: &str,
) -> Result<Component, VerifyError> {
    let actual = hex::encode(Sha256::digest(bytes));
    if actual != recorded_sha256 {
        return Err(VerifyError::Digest {
            recorded: recorded_sha256.to_owned(),
            actual,
        });
    }
    // SAFETY: wasmtime requires the unmodified output of `Component::serialize` from some
    // wasmtime; output of another version, configuration or CPU is refused with an error, never
    // undefined behaviour. `bytes` hash to the digest `EngineCache::store` recorded for exactly
    // such output when it wrote it, and both files sit in a directory that only this user (or
    // root) can write or rename away, so `bytes` are that output unless this user forged both
    // files, and such a party could replace the agent binary anyway. The digest was computed
    // over this very buffer, which wasmtime copies before returning: a change to the file after
    // the check cannot reach what is loaded.
    unsafe { Component::deserialize(engine, bytes) }
        .map_err(|error| VerifyError::Refused(format!("{error:#}")))
}
