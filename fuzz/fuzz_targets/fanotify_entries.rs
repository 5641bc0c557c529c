//! The decoder of directory-entry events (`FAN_REPORT_DFID_NAME`) on arbitrary bytes: the
//! self-protection watch reads them from the kernel, and an info record's lengths (its own, its
//! file handle's, its name's) are three more chances to read past a record. It must never
//! panic; the records before an error must be what the bytes before it decode to; a directory
//! key always holds its fsid and handle header, and a name never carries a NUL.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_sensor::decode::{DecodeError, FAN_METADATA_LEN, fanotify_entry_events};

fuzz_target!(|data: &[u8]| {
    let (events, error) = fanotify_entry_events(data);
    assert!(events.len() * FAN_METADATA_LEN <= data.len());
    for event in &events {
        assert!(event.dir.is_empty() || event.dir.len() >= 16, "{event:?}");
        assert!(!event.name.contains(&0), "{event:?}");
    }
    let at = match error {
        None => return,
        Some(DecodeError::Truncated(at) | DecodeError::BadLength { at, .. }) => at,
        Some(DecodeError::Version(_)) => return,
    };
    assert!(at < data.len(), "error offset {at} past the buffer");
    // An error in a record's info names an offset inside that record, whose length then
    // reaches past a buffer cut there: either way the cut decodes to the same records.
    assert_eq!(fanotify_entry_events(&data[..at]).0, events);
});
