//! The process connector decoder on arbitrary netlink datagrams: the kernel's bytes, or a
//! forged datagram if the socket's sender check ever failed. It must never panic, must skip
//! what it does not understand, and cannot find more events than the datagram has room for.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_sensor::connector::wait_status_code;
use ringfence_sensor::decode::{ProcEvent, proc_events};

/// The smallest message that yields an event: nlmsghdr (16) + cn_msg (20) + the proc_event
/// header (16) + an exec's two u32 fields (8). Messages never overlap.
const MIN_EVENT_MESSAGE: usize = 60;

fuzz_target!(|data: &[u8]| {
    let events = proc_events(data);
    assert!(events.len() * MIN_EVENT_MESSAGE <= data.len());
    for event in events {
        if let ProcEvent::Exit { exit_code, .. } = event {
            // What the agent reports for the exit: a shell's code, 0-255 or 128 + signal.
            assert!((0..=255).contains(&wait_status_code(exit_code)));
        }
    }
});
