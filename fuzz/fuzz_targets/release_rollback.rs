//! Signed rollback directives as the server hands them to agents: envelope and directive
//! parsing, validation, signature checks (only the directive the fuzzing key signed may
//! verify) and the round trip through the writer.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringfence_release::fuzz::rollback_directive(data));
