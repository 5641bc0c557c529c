//! An artifact's detached `<file>.sig` (the agent binary's, downloaded beside it for an
//! in-place upgrade): strict parsing, the round trip through the writer, and verification,
//! where only the name, digest and size the fuzzing key signed may ever pass.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringfence_release::fuzz::artifact_signature(data));
