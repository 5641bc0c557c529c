//! Events from the kernel, as engines see them and as corpora store them.

use serde::{Deserialize, Serialize};

/// A process is about to execute (or has executed) a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEvent {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub exe: String,
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub parent_exe: String,
}

/// A process opens a watched file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenEvent {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub path: String,
    #[serde(default)]
    pub exe: String,
    #[serde(default)]
    pub write: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkEvent {
    pub parent_pid: u32,
    pub child_pid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitEvent {
    pub pid: u32,
    pub exit_code: i32,
}

/// One event. In JSON the variant is the `kind` field: `{"kind":"exec","pid":1,...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    Exec(ExecEvent),
    Open(OpenEvent),
    Fork(ForkEvent),
    Exit(ExitEvent),
}

impl Event {
    /// The `kind` string, as in JSON and in failure records.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Exec(_) => "exec",
            Event::Open(_) => "open",
            Event::Fork(_) => "fork",
            Event::Exit(_) => "exit",
        }
    }

    /// True for events the kernel waits on (exec and open permission checks).
    pub fn is_permission(&self) -> bool {
        matches!(self, Event::Exec(_) | Event::Open(_))
    }

    /// The process the event is about.
    pub fn pid(&self) -> u32 {
        match self {
            Event::Exec(e) => e.pid,
            Event::Open(e) => e.pid,
            Event::Fork(e) => e.child_pid,
            Event::Exit(e) => e.pid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_tagged_by_kind() {
        let event = Event::Fork(ForkEvent {
            parent_pid: 1,
            child_pid: 2,
        });
        let json = serde_json::to_string(&event).expect("serialises");
        assert_eq!(json, r#"{"kind":"fork","parent_pid":1,"child_pid":2}"#);
        let back: Event = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, event);
    }

    #[test]
    fn optional_exec_fields_default() {
        let event: Event = serde_json::from_str(
            r#"{"kind":"exec","pid":5,"ppid":1,"uid":0,"gid":0,"exe":"/bin/ls"}"#,
        )
        .expect("parses");
        let Event::Exec(exec) = event else {
            panic!("not exec")
        };
        assert!(exec.argv.is_empty());
        assert_eq!(exec.parent_exe, "");
    }
}
