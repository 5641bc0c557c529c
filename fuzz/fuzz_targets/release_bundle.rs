//! Release bundle bytes as a compromised server or a network attacker would serve them: the
//! strict tar reader, the member checks and full agent-side verification. A bundle that parses
//! must write back to the same bundle, and nothing but the exact manifest the fuzzing key
//! signed may ever verify (see `ringfence_release::fuzz`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringfence_release::fuzz::bundle(data);
    ringfence_release::fuzz::verify(data);
});
