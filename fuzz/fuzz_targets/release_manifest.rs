//! Release manifest bytes (signed JSON inside a bundle, parsed before the signature is
//! checked): strict parsing and validation, and the round trip through the writer.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringfence_release::fuzz::manifest(data));
