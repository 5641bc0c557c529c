//! A bundle's `signatures.json`, parsed before any signature is checked: the shape checks
//! (count, duplicates, hex) and the round trip through the writer.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringfence_release::fuzz::signatures(data));
