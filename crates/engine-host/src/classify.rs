//! Turns whatever wasmtime returned from a failed guest call into a [`FailureRecord`].
//!
//! Order matters: a guest that hit the memory limit usually aborts with `unreachable`, so the
//! limiter's flag is checked before the trap code; an epoch interrupt is a deadline, not a trap.

use ringfence_protocol::{FailureKind, FailureRecord, Frame};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmtime::{Trap, WasmBacktrace};

/// What the caller knows about the failed call.
pub(crate) struct CallContext<'a> {
    pub(crate) engine: &'a str,
    pub(crate) content_sha256: &'a str,
    pub(crate) event_kind: Option<&'a str>,
    pub(crate) elapsed: Duration,
    pub(crate) memory_exhausted: bool,
    pub(crate) stderr: String,
}

pub(crate) fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
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
    let (kind, trap_code) = if call.memory_exhausted {
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
        FailureKind::Memory => "instance tried to grow memory past its limit".to_owned(),
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
        at_unix_ns: now_unix_ns(),
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
        at_unix_ns: now_unix_ns(),
        elapsed_us: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
