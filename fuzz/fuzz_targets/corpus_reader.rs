//! The event corpus reader (JSON lines) on arbitrary bytes: corpora come from recorders on
//! other hosts and from operators, and preflight runs every release over one. Reading is
//! strict (an error names the line, nothing is skipped), and what it reads must survive the
//! writer and reader again unchanged, or a recorded corpus would replay as different events.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_protocol::corpus;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(events) = corpus::read(data, Path::new("fuzz")) else {
        return;
    };
    let mut written = Vec::new();
    corpus::write(&mut written, &events).expect("writing to memory");
    let again = corpus::read(written.as_slice(), Path::new("rewritten")).expect("rewritten corpus");
    assert_eq!(again, events);
});
