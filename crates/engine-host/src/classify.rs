//! Turns whatever wasmtime returned from a failed guest call into a [`FailureRecord`].
//!
//! Order matters: a guest that hit the memory limit usually aborts with `unreachable`, so the
//! limiter's flag is checked before the trap code; an epoch interrupt is a deadline, not a trap,
//! unless the call grew its memory by a thirty-second of its limit or more: then the guest was
//! racing toward the limit and its page faults ate the deadline first, which is a memory failure.

use ringfence_protocol::{FailureKind, FailureRecord, Frame};
use std::time::Duration;
use wasmtime::{Trap, WasmBacktrace};

/// What the caller knows about the failed call.
pub(crate) struct CallContext<'a> {
    pub(crate) engine: &'a str,
    pub(crate) content_sha256: &'a str,
    pub(crate) event_kind: Option<&'a str>,
    pub(crate) elapsed: Duration,
    pub(crate) memory_exhausted: bool,
    /// Bytes of linear memory the call grew, and the instance's limit.
    pub(crate) memory_grown: usize,
    pub(crate) memory_limit: usize,
    pub(crate) stderr: String,
}

/// `UnreachableCodeReached` → `unreachable_code_reached`.
fn trap_code_name(trap: Trap) -> String {
    let debug = format!("{trap:?}");
    let mut name = String::with_capacity(debug.len() + 4);
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

fn frames(error: &wasmtime::Error) -> Vec<Frame> {
    let Some(backtrace) = error.downcast_ref::<WasmBacktrace>() else {
        return Vec::new();
    };
    backtrace
        .frames()
        .iter()
        .map(|frame| Frame {
            function: frame
                .func_name()
                .map(|name| format!("{:#}", rustc_demangle::demangle(name))),
            func_index: frame.func_index(),
            module_offset: frame.module_offset(),
            module: frame.module().name().map(str::to_owned),
        })
        .collect()
}

pub(crate) fn classify(error: &wasmtime::Error, call: CallContext<'_>) -> FailureRecord {
    let trap = error.downcast_ref::<Trap>().copied();
    // Interrupted after growing a thirty-second of its limit or more (2 MiB of the default 64)
    // in this one call: the guest was eating memory, and the time its page faults took
    // (measured: 8–16 MiB per 5 ms of CPU on an idle host, under 4 MiB while the host's page
    // cache was being flooded) stopped it before the limit did.
    let racing_to_the_limit =
        trap == Some(Trap::Interrupt) && call.memory_grown.saturating_mul(32) >= call.memory_limit;
    let (kind, trap_code) = if call.memory_exhausted || racing_to_the_limit {
        (FailureKind::Memory, trap.map(trap_code_name))
    } else {
        match trap {
            Some(Trap::Interrupt) => (FailureKind::Deadline, None),
            Some(trap) => (FailureKind::Trap, Some(trap_code_name(trap))),
            // A guest calling `wasi:cli/exit`, or a host function failing: still the guest's
            // doing, and the instance is unusable either way.
            None => (FailureKind::Trap, Some("host_error".to_owned())),
        }
    };
    let mut message = match kind {
        FailureKind::Deadline => format!(
            "call exceeded its deadline and was interrupted after {} µs",
            call.elapsed.as_micros()
        ),
        FailureKind::Memory if call.memory_exhausted => {
            "instance tried to grow memory past its limit".to_owned()
        }
        FailureKind::Memory => format!(
            "instance grew its memory by {} MiB of its {} MiB limit within one call and was \
             interrupted at its deadline",
            call.memory_grown >> 20,
            call.memory_limit >> 20
        ),
        // wasmtime wraps the trap in context ("error while executing at wasm backtrace: ...");
        // the trap itself is what a person needs.
        _ => match trap {
            Some(trap) => trap.to_string(),
            None => error.root_cause().to_string(),
        },
    };
    if !call.stderr.is_empty() {
        message.push_str("; guest stderr: ");
        message.push_str(&call.stderr);
    }
    FailureRecord {
        engine: call.engine.to_owned(),
        content_sha256: call.content_sha256.to_owned(),
        kind,
        trap_code,
        message,
        event_kind: call.event_kind.map(str::to_owned),
        backtrace: frames(error),
        at_unix_ns: ringfence_protocol::clock::unix_ns(),
        elapsed_us: u64::try_from(call.elapsed.as_micros()).unwrap_or(u64::MAX),
    }
}

/// A failure that is not a guest call: a bad component, refused content.
pub(crate) fn load_failure(
    engine: &str,
    content_sha256: &str,
    kind: FailureKind,
    message: String,
) -> FailureRecord {
    FailureRecord {
        engine: engine.to_owned(),
        content_sha256: content_sha256.to_owned(),
        kind,
        trap_code: None,
        message,
        event_kind: None,
        backtrace: Vec::new(),
        at_unix_ns: ringfence_protocol::clock::unix_ns(),
        elapsed_us: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(memory_grown: usize) -> CallContext<'static> {
        CallContext {
            engine: "e",
            content_sha256: "abc",
            event_kind: Some("exec"),
            elapsed: Duration::from_millis(5),
            memory_exhausted: false,
            memory_grown,
            memory_limit: 64 << 20,
            stderr: String::new(),
        }
    }

    #[test]
    fn an_interrupt_while_racing_to_the_memory_limit_is_memory() {
        let interrupt = wasmtime::Error::from(Trap::Interrupt);
        let record = classify(&interrupt, call(40 << 20));
        assert_eq!(record.kind, FailureKind::Memory);
        assert!(
            record.message.contains("40 MiB of its 64 MiB"),
            "{}",
            record.message
        );
        let record = classify(&interrupt, call(1 << 20));
        assert_eq!(
            record.kind,
            FailureKind::Deadline,
            "a little growth is no excuse"
        );
        let trap = wasmtime::Error::from(Trap::UnreachableCodeReached);
        assert_eq!(classify(&trap, call(40 << 20)).kind, FailureKind::Trap);
    }

    #[test]
    fn trap_codes_are_snake_case() {
        assert_eq!(
            trap_code_name(Trap::UnreachableCodeReached),
            "unreachable_code_reached"
        );
        assert_eq!(
            trap_code_name(Trap::MemoryOutOfBounds),
            "memory_out_of_bounds"
        );
    }
}
