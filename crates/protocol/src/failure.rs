//! Structured records of engine failures: the raw material of crash reports.

use serde::{Deserialize, Serialize};

/// How an engine call (or an engine load) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The guest trapped (unreachable, out-of-bounds access, panic, ...).
    Trap,
    /// The call ran past its deadline and was interrupted.
    Deadline,
    /// The guest tried to grow memory past its limit.
    Memory,
    /// The bytes are not a component of the `ringfence:engine` world.
    InvalidComponent,
    /// The engine refused the content in `load-content` (or `init` failed).
    ContentRejected,
    /// The engine+content is quarantined; it was not called.
    Quarantined,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::InvalidComponent => "invalid_component",
            FailureKind::ContentRejected => "content_rejected",
            FailureKind::Quarantined => "quarantined",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One frame of a wasm backtrace, innermost first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Demangled function name from the component's name section, when present.
    pub function: Option<String>,
    pub func_index: u32,
    /// Byte offset of the faulting instruction within the module.
    pub module_offset: Option<usize>,
    pub module: Option<String>,
}

/// Everything known about one failure; serialised as-is into crash reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub engine: String,
    /// sha256 of the content the instance was running, hex.
    pub content_sha256: String,
    pub kind: FailureKind,
    /// Wasmtime's trap code (e.g. `unreachable`, `memory_out_of_bounds`) for traps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trap_code: Option<String>,
    /// Human detail: the error message, or what the engine said about its content.
    pub message: String,
    /// The `kind` of the event being handled, when the failure happened during a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backtrace: Vec<Frame>,
    /// Wall-clock time of the failure, nanoseconds since the Unix epoch.
    pub at_unix_ns: u64,
    /// How long the failed call ran before it was stopped, in microseconds.
    #[serde(default)]
    pub elapsed_us: u64,
}

impl FailureRecord {
    /// The innermost frame that has a name: what a person reads first.
    pub fn top_function(&self) -> Option<&str> {
        self.backtrace.iter().find_map(|f| f.function.as_deref())
    }

    /// A stable grouping key: kind, trap code and the top named frames.
    pub fn signature(&self) -> String {
        let frames: Vec<&str> = self
            .backtrace
            .iter()
            .filter_map(|f| f.function.as_deref())
            .take(3)
            .collect();
        // Parts that are not known are left out rather than shown as placeholders: a
        // quarantine has no trap code and no frames, and `faulty:quarantined` says all there is.
        let mut signature = format!("{}:{}", self.engine, self.kind);
        for part in [self.trap_code.as_deref().unwrap_or(""), &frames.join("<")] {
            if !part.is_empty() {
                signature.push(':');
                signature.push_str(part);
            }
        }
        signature
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: FailureKind, trap_code: Option<&str>, functions: &[&str]) -> FailureRecord {
        FailureRecord {
            engine: "faulty".into(),
            content_sha256: String::new(),
            kind,
            trap_code: trap_code.map(str::to_owned),
            message: String::new(),
            event_kind: None,
            backtrace: functions
                .iter()
                .map(|function| Frame {
                    function: Some((*function).to_owned()),
                    func_index: 0,
                    module_offset: None,
                    module: None,
                })
                .collect(),
            at_unix_ns: 0,
            elapsed_us: 0,
        }
    }

    #[test]
    fn a_signature_leaves_out_what_is_not_known() {
        assert_eq!(
            record(FailureKind::Quarantined, None, &[]).signature(),
            "faulty:quarantined"
        );
        assert_eq!(
            record(
                FailureKind::Trap,
                Some("memory_out_of_bounds"),
                &["parse", "main"]
            )
            .signature(),
            "faulty:trap:memory_out_of_bounds:parse<main"
        );
    }
}
