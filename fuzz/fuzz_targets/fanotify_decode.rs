//! The fanotify event buffer decoder on arbitrary bytes: what a kernel bug, a short read or a
//! misunderstanding of the record layout would hand the agent. It must never panic, never
//! report more records than the buffer holds headers, and the records it returns before an
//! error must be exactly what the bytes before the error decode to, so the agent can answer
//! (and close) every event it did get.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_sensor::decode::{DecodeError, FAN_METADATA_LEN, fanotify_events};

fuzz_target!(|data: &[u8]| {
    let (events, error) = fanotify_events(data);
    assert!(events.len() * FAN_METADATA_LEN <= data.len());
    let at = match error {
        None => return,
        Some(DecodeError::Truncated(at) | DecodeError::BadLength { at, .. }) => at,
        // The version is checked before the length, so this error carries no offset.
        Some(DecodeError::Version(_)) => return,
    };
    assert!(at < data.len(), "error offset {at} past the buffer");
    assert_eq!(fanotify_events(&data[..at]), (events, None));
});
