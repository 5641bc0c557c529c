//! Generated bindings for both versions of the `ringfence:engine` world, and conversions to
//! protocol types.
//!
//! The protocol crate owns the public shapes; the WIT types stay inside this crate so that a
//! new interface version touches only this file. A component is bound to the newest world it
//! exports (`Pre::new`); engines built for 0.1 keep loading and are simply never handed the
//! event kinds 0.2 added.

use ringfence_protocol as proto;
use wasmtime::Store;
use wasmtime::component::InstancePre;

pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.1",
        world: "engine",
    });
}

pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.2",
        world: "engine",
    });
}

/// Which `ringfence:engine` interface a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum InterfaceVersion {
    #[serde(rename = "0.1.0")]
    V0_1,
    #[serde(rename = "0.2.0")]
    V0_2,
}

impl InterfaceVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            InterfaceVersion::V0_1 => "0.1.0",
            InterfaceVersion::V0_2 => "0.2.0",
        }
    }

    /// Whether engines of this version are handed `event` at all.
    pub fn receives(self, event: &proto::Event) -> bool {
        self >= InterfaceVersion::V0_2 || !event.is_v0_2()
    }
}

impl std::fmt::Display for InterfaceVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine said about content it accepted, whatever its version.
pub(crate) struct ContentInfo {
    pub rules: u32,
    pub version: String,
    pub warnings: Vec<String>,
}

/// Why the engine refused content, whatever its version.
pub(crate) struct ContentError {
    pub message: String,
    pub line: Option<u32>,
}

/// A linked component, ready to instantiate, bound to the newest world it implements.
pub(crate) enum Pre<T: 'static> {
    V0_1(v0_1::EnginePre<T>),
    V0_2(v0_2::EnginePre<T>),
}

/// One instance's exports.
pub(crate) enum Guest {
    V0_1(v0_1::Engine),
    V0_2(v0_2::Engine),
}

impl<T: Send + 'static> Pre<T> {
    /// Binds to 0.2 when the component exports its detector, else to 0.1; the error is 0.1's
    /// (the older, more likely intended world) together with 0.2's.
    pub(crate) fn new(pre: InstancePre<T>) -> Result<Pre<T>, String> {
        let newer = match v0_2::EnginePre::new(pre.clone()) {
            Ok(bound) => return Ok(Pre::V0_2(bound)),
            Err(error) => error,
        };
        v0_1::EnginePre::new(pre).map(Pre::V0_1).map_err(|older| {
            format!(
                "component implements neither ringfence:engine@0.2.0 ({newer:#}) nor \
                 ringfence:engine@0.1.0 ({older:#})"
            )
        })
    }

    pub(crate) fn version(&self) -> InterfaceVersion {
        match self {
            Pre::V0_1(_) => InterfaceVersion::V0_1,
            Pre::V0_2(_) => InterfaceVersion::V0_2,
        }
    }

    pub(crate) fn instantiate(&self, store: &mut Store<T>) -> wasmtime::Result<Guest> {
        Ok(match self {
            Pre::V0_1(pre) => Guest::V0_1(pre.instantiate(store)?),
            Pre::V0_2(pre) => Guest::V0_2(pre.instantiate(store)?),
        })
    }
}

impl Guest {
    pub(crate) fn init<T>(
        &self,
        store: &mut Store<T>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Guest::V0_1(g) => g.ringfence_engine_detector().call_init(store, config),
            Guest::V0_2(g) => g.ringfence_engine_detector().call_init(store, config),
        }
    }

    pub(crate) fn load_content<T>(
        &self,
        store: &mut Store<T>,
        content: &[u8],
    ) -> wasmtime::Result<Result<ContentInfo, ContentError>> {
        macro_rules! load {
            ($guest:expr) => {
                $guest
                    .ringfence_engine_detector()
                    .call_load_content(store, content)
                    .map(|answer| {
                        answer
                            .map(|info| ContentInfo {
                                rules: info.rules,
                                version: info.version,
                                warnings: info.warnings,
                            })
                            .map_err(|error| ContentError {
                                message: error.message,
                                line: error.line,
                            })
                    })
            };
        }
        match self {
            Guest::V0_1(g) => load!(g),
            Guest::V0_2(g) => load!(g),
        }
    }

    /// One event; the caller hands a 0.1 guest only kinds it [`InterfaceVersion::receives`].
    pub(crate) fn on_event<T>(
        &self,
        store: &mut Store<T>,
        event: &proto::Event,
    ) -> wasmtime::Result<proto::Verdict> {
        match self {
            Guest::V0_1(g) => match v0_1_event(event) {
                Some(event) => g
                    .ringfence_engine_detector()
                    .call_on_event(store, &event)
                    .map(v0_1_verdict),
                None => Ok(proto::Verdict::allow()),
            },
            Guest::V0_2(g) => g
                .ringfence_engine_detector()
                .call_on_event(store, &v0_2_event(event))
                .map(v0_2_verdict),
        }
    }

    /// A batch the caller filtered as for [`Guest::on_event`]; one verdict per event given.
    pub(crate) fn on_events<T>(
        &self,
        store: &mut Store<T>,
        events: &[&proto::Event],
    ) -> wasmtime::Result<Vec<proto::Verdict>> {
        match self {
            Guest::V0_1(g) => {
                let events: Vec<_> = events.iter().filter_map(|e| v0_1_event(e)).collect();
                g.ringfence_engine_detector()
                    .call_on_events(store, &events)
                    .map(|verdicts| verdicts.into_iter().map(v0_1_verdict).collect())
            }
            Guest::V0_2(g) => {
                let events: Vec<_> = events.iter().map(|e| v0_2_event(e)).collect();
                g.ringfence_engine_detector()
                    .call_on_events(store, &events)
                    .map(|verdicts| verdicts.into_iter().map(v0_2_verdict).collect())
            }
        }
    }
}

/// The 0.1 form of an event; `None` for the kinds 0.1 does not have.
fn v0_1_event(event: &proto::Event) -> Option<v0_1::ringfence::engine::types::Event> {
    use v0_1::ringfence::engine::types as wit;
    Some(match event {
        proto::Event::Exec(e) => wit::Event::Exec(wit::ExecEvent {
            pid: e.pid,
            ppid: e.ppid,
            uid: e.uid,
            gid: e.gid,
            exe: e.exe.clone(),
            argv: e.argv.clone(),
            cwd: e.cwd.clone(),
            parent_exe: e.parent_exe.clone(),
        }),
        proto::Event::Open(e) => wit::Event::Open(wit::OpenEvent {
            pid: e.pid,
            uid: e.uid,
            gid: e.gid,
            path: e.path.clone(),
            exe: e.exe.clone(),
            write: e.write,
        }),
        proto::Event::Fork(e) => wit::Event::Fork(wit::ForkEvent {
            parent_pid: e.parent_pid,
            child_pid: e.child_pid,
        }),
        proto::Event::Exit(e) => wit::Event::Exit(wit::ExitEvent {
            pid: e.pid,
            exit_code: e.exit_code,
        }),
        proto::Event::Network(_) | proto::Event::FileChange(_) | proto::Event::Privilege(_) => {
            return None;
        }
    })
}

fn v0_2_process(p: &proto::Process) -> v0_2::ringfence::engine::types::Process {
    v0_2::ringfence::engine::types::Process {
        pid: p.pid,
        ppid: p.ppid,
        uid: p.uid,
        gid: p.gid,
        euid: p.euid,
        egid: p.egid,
        user: p.user.clone(),
        group: p.group.clone(),
        exe: p.exe.clone(),
        comm: p.comm.clone(),
        cgroup: p.cgroup.clone(),
        container_id: p.container_id.clone(),
        ancestors: v0_2_ancestors(&p.ancestors),
    }
}

fn v0_2_ancestors(ancestors: &[proto::Ancestor]) -> Vec<v0_2::ringfence::engine::types::Ancestor> {
    ancestors
        .iter()
        .map(|a| v0_2::ringfence::engine::types::Ancestor {
            pid: a.pid,
            exe: a.exe.clone(),
            argv: a.argv.clone(),
        })
        .collect()
}

fn v0_2_event(event: &proto::Event) -> v0_2::ringfence::engine::types::Event {
    use v0_2::ringfence::engine::types as wit;
    match event {
        proto::Event::Exec(e) => wit::Event::Exec(wit::ExecEvent {
            pid: e.pid,
            ppid: e.ppid,
            uid: e.uid,
            gid: e.gid,
            exe: e.exe.clone(),
            argv: e.argv.clone(),
            cwd: e.cwd.clone(),
            parent_exe: e.parent_exe.clone(),
            user: e.user.clone(),
            group: e.group.clone(),
            ancestors: v0_2_ancestors(&e.ancestors),
        }),
        proto::Event::Open(e) => wit::Event::Open(wit::OpenEvent {
            pid: e.pid,
            uid: e.uid,
            gid: e.gid,
            path: e.path.clone(),
            exe: e.exe.clone(),
            write: e.write,
        }),
        proto::Event::Fork(e) => wit::Event::Fork(wit::ForkEvent {
            parent_pid: e.parent_pid,
            child_pid: e.child_pid,
        }),
        proto::Event::Exit(e) => wit::Event::Exit(wit::ExitEvent {
            pid: e.pid,
            exit_code: e.exit_code,
        }),
        proto::Event::Network(e) => wit::Event::Network(wit::NetworkEvent {
            process: v0_2_process(&e.process),
            op: match e.op {
                proto::NetworkOp::Connect => wit::NetworkOp::Connect,
                proto::NetworkOp::Listen => wit::NetworkOp::Listen,
                proto::NetworkOp::Accept => wit::NetworkOp::Accept,
            },
            local_ip: e.local_ip.clone(),
            local_port: e.local_port,
            remote_ip: e.remote_ip.clone(),
            remote_port: e.remote_port,
        }),
        proto::Event::FileChange(e) => wit::Event::FileChange(wit::FileChangeEvent {
            process: v0_2_process(&e.process),
            op: match e.op {
                proto::FileOp::Rename => wit::FileOp::Rename,
                proto::FileOp::Unlink => wit::FileOp::Unlink,
                proto::FileOp::Chmod => wit::FileOp::Chmod,
                proto::FileOp::Chown => wit::FileOp::Chown,
                proto::FileOp::Link => wit::FileOp::Link,
            },
            path: e.path.clone(),
            target: e.target.clone(),
            mode: e.mode,
            owner_uid: e.owner_uid,
            owner_gid: e.owner_gid,
        }),
        proto::Event::Privilege(e) => wit::Event::Privilege(wit::PrivilegeEvent {
            process: v0_2_process(&e.process),
            op: match e.op {
                proto::PrivilegeOp::Setuid => wit::PrivilegeOp::Setuid,
                proto::PrivilegeOp::Setgid => wit::PrivilegeOp::Setgid,
                proto::PrivilegeOp::Setreuid => wit::PrivilegeOp::Setreuid,
                proto::PrivilegeOp::Setregid => wit::PrivilegeOp::Setregid,
                proto::PrivilegeOp::Setresuid => wit::PrivilegeOp::Setresuid,
                proto::PrivilegeOp::Setresgid => wit::PrivilegeOp::Setresgid,
                proto::PrivilegeOp::Ptrace => wit::PrivilegeOp::Ptrace,
                proto::PrivilegeOp::InitModule => wit::PrivilegeOp::InitModule,
                proto::PrivilegeOp::FinitModule => wit::PrivilegeOp::FinitModule,
                proto::PrivilegeOp::Bpf => wit::PrivilegeOp::Bpf,
            },
            args: e.args.clone(),
        }),
    }
}

/// Longest rule id, message or tag we keep from a guest; the rest is cut.
const MAX_TEXT: usize = 1024;
const MAX_TAGS: usize = 32;

fn bounded(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The verdict types of both versions are the same shape; one macro converts either.
macro_rules! verdict_from {
    ($name:ident, $($wit:ident)::+) => {
        fn $name(verdict: $($wit)::+::Verdict) -> proto::Verdict {
            use $($wit)::+ as wit;
            proto::Verdict {
                action: match verdict.action {
                    wit::Action::Allow => proto::Action::Allow,
                    wit::Action::Deny => proto::Action::Deny,
                    wit::Action::Observe => proto::Action::Observe,
                },
                rule_id: bounded(verdict.rule_id),
                severity: match verdict.severity {
                    wit::Severity::Info => proto::Severity::Info,
                    wit::Severity::Low => proto::Severity::Low,
                    wit::Severity::Medium => proto::Severity::Medium,
                    wit::Severity::High => proto::Severity::High,
                    wit::Severity::Critical => proto::Severity::Critical,
                },
                message: bounded(verdict.message),
                tags: verdict
                    .tags
                    .into_iter()
                    .take(MAX_TAGS)
                    .map(bounded)
                    .collect(),
            }
        }
    };
}

verdict_from!(v0_1_verdict, v0_1::ringfence::engine::types);
verdict_from!(v0_2_verdict, v0_2::ringfence::engine::types);
