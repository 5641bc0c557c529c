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
    /// The name of `uid`, filled by the agent; empty when unknown (and then not written, so
    /// corpora recorded before names existed read and write back the same).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// The name of `gid`, as `user`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The parent first, then its parent, at most [`MAX_ANCESTORS`]; filled by the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Ancestor>,
}

/// How many ancestors an event carries at most.
pub const MAX_ANCESTORS: usize = 4;

/// One ancestor of a process, as `/proc` showed it when the agent looked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ancestor {
    pub pid: u32,
    /// Empty when it could not be read.
    #[serde(default)]
    pub exe: String,
    /// Its command line (bounded: at most 64 strings, 4 KiB in all).
    #[serde(default)]
    pub argv: Vec<String>,
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

/// The process behind a kernel-observed event (network, file change, privilege), as the BPF
/// sensor saw it at the hook, with what the agent could add from this host: user and group
/// names from `/etc/passwd` and `/etc/group`, the executable and the cgroup from `/proc`.
/// Every added field is empty when it could not be read (the process was gone, the id has no
/// name), never guessed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub pid: u32,
    #[serde(default)]
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub euid: u32,
    #[serde(default)]
    pub egid: u32,
    /// The name of `uid`.
    #[serde(default)]
    pub user: String,
    /// The name of `gid`.
    #[serde(default)]
    pub group: String,
    /// Absolute path of the executable.
    #[serde(default)]
    pub exe: String,
    /// The kernel's short task name (at most 15 bytes).
    #[serde(default)]
    pub comm: String,
    /// The cgroup v2 path (`/system.slice/docker-<id>.scope`).
    #[serde(default)]
    pub cgroup: String,
    /// The Docker, containerd, CRI-O or Kubernetes container id the cgroup path names.
    #[serde(default)]
    pub container_id: String,
    /// The parent first, then its parent, at most [`MAX_ANCESTORS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Ancestor>,
}

/// What a TCP socket did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkOp {
    /// An outgoing connection started.
    Connect,
    /// A socket started listening.
    Listen,
    /// An incoming connection completed its handshake on a listener. The process is whoever
    /// ran the handshake in the kernel, often not the one that will accept it.
    Accept,
}

/// A TCP connect, listen or accept (the 5-tuple's protocol is always TCP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkEvent {
    pub process: Process,
    pub op: NetworkOp,
    /// This host's address and port.
    pub local_ip: String,
    pub local_port: u16,
    /// The peer's address and port; unspecified (`0.0.0.0`, port 0) for a listen.
    pub remote_ip: String,
    pub remote_port: u16,
}

/// What happened to a directory entry or an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOp {
    Rename,
    Unlink,
    Chmod,
    Chown,
    Link,
}

/// A file changed. `path` is absolute when the agent could resolve it (against the process's
/// working directory or directory descriptor), else as the caller gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileChangeEvent {
    pub process: Process,
    pub op: FileOp,
    pub path: String,
    /// The new name of a rename or link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// chmod's new mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// chown's new owner (`u32::MAX`: unchanged, as the call takes `-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_uid: Option<u32>,
    /// chown's new group (`u32::MAX`: unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_gid: Option<u32>,
}

/// Which privilege-bearing call was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrivilegeOp {
    Setuid,
    Setgid,
    Setreuid,
    Setregid,
    Setresuid,
    Setresgid,
    Ptrace,
    InitModule,
    FinitModule,
    Bpf,
}

/// A call that changes or reaches across privilege: the set-id family, `ptrace`, a kernel
/// module load, `bpf()`. `args` are the call's arguments as the kernel got them: the ids of a
/// set-id call in order (`u32::MAX` is "unchanged"), ptrace's request and target pid,
/// `init_module`'s image length, `finit_module`'s descriptor, `bpf`'s command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivilegeEvent {
    pub process: Process,
    pub op: PrivilegeOp,
    #[serde(default)]
    pub args: Vec<i64>,
}

/// One event. In JSON the variant is the `kind` field: `{"kind":"exec","pid":1,...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    Exec(ExecEvent),
    Open(OpenEvent),
    Fork(ForkEvent),
    Exit(ExitEvent),
    // Boxed: they carry a whole `Process`, and an `Event` travels by value through bounded
    // queues whose slots are all as large as the largest variant.
    Network(Box<NetworkEvent>),
    FileChange(Box<FileChangeEvent>),
    Privilege(Box<PrivilegeEvent>),
}

impl Event {
    /// The `kind` string, as in JSON and in failure records.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Exec(_) => "exec",
            Event::Open(_) => "open",
            Event::Fork(_) => "fork",
            Event::Exit(_) => "exit",
            Event::Network(_) => "network",
            Event::FileChange(_) => "file_change",
            Event::Privilege(_) => "privilege",
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
            Event::Network(e) => e.process.pid,
            Event::FileChange(e) => e.process.pid,
            Event::Privilege(e) => e.process.pid,
        }
    }

    /// True for the kinds engines of interface 0.1 never receive (added in 0.2).
    pub fn is_v0_2(&self) -> bool {
        matches!(
            self,
            Event::Network(_) | Event::FileChange(_) | Event::Privilege(_)
        )
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
    fn kernel_observed_kinds_read_from_json_lines() {
        let json = r#"{"kind":"network","process":{"pid":9,"uid":1000,"gid":1000,"user":"alice","exe":"/usr/bin/curl"},"op":"connect","local_ip":"127.0.0.1","local_port":40000,"remote_ip":"127.0.0.1","remote_port":8080}"#;
        let event: Event = serde_json::from_str(json).expect("parses");
        let Event::Network(net) = &event else {
            panic!("not network: {event:?}")
        };
        assert_eq!((net.op, net.remote_port), (NetworkOp::Connect, 8080));
        assert_eq!(net.process.user, "alice");
        assert_eq!(event.kind(), "network");
        let back: Event =
            serde_json::from_str(&serde_json::to_string(&event).expect("writes")).expect("reads");
        assert_eq!(back, event);

        let json = r#"{"kind":"file_change","process":{"pid":9,"uid":0,"gid":0},"op":"rename","path":"/tmp/a","target":"/tmp/b"}"#;
        let event: Event = serde_json::from_str(json).expect("parses");
        assert!(event.is_v0_2() && !event.is_permission());
        let json = r#"{"kind":"privilege","process":{"pid":9,"uid":0,"gid":0},"op":"setresuid","args":[0,0,4294967295]}"#;
        assert_eq!(
            serde_json::from_str::<Event>(json).expect("parses").kind(),
            "privilege"
        );
        // Strict like the rest of the corpus: a misspelt field is an error, not a default.
        let json = r#"{"kind":"network","process":{"pid":9,"uid":0,"gid":0,"usr":"x"},"op":"listen","local_ip":"::","local_port":1,"remote_ip":"::","remote_port":0}"#;
        assert!(serde_json::from_str::<Event>(json).is_err());
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
