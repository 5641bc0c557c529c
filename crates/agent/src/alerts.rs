//! Alerts as JSON lines in OCSF (Open Cybersecurity Schema Framework) 1.3: Process Activity
//! (class 1007) for execs, forks and exits, File System Activity (class 1001) for opens.
//! `docs/alerts.md` documents the fields; ringfence-specific ones live under `unmapped`.

use ringfence_protocol::{
    Action, Ancestor, Enforcement, Event, FailureRecord, FileOp, NetworkOp, PrivilegeOp, Process,
    Severity, Verdict,
};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Why the agent answered the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The engines decided.
    Engine,
    /// The decision cache answered.
    Cache,
    /// The deadline passed; the failure policy answered.
    Deadline,
    /// The queue was full; the failure policy answered.
    QueueFull,
    /// A notification (nothing waited on the answer).
    Notification,
    /// The agent was shutting down; the failure policy answered.
    Shutdown,
    /// Self-protection: a process tried to modify the agent's own files.
    Tamper,
    /// An engine was quarantined: protection by it is off until new content arrives.
    Quarantine,
    /// Self-protection: a process created, deleted or renamed one of the agent's own files.
    TamperEntry(EntryActivity),
    /// A sensor lost events (the BPF ring buffer was full): what engines did not see.
    SensorLoss,
}

/// What a process did to a directory entry, as OCSF File System Activity names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryActivity {
    Create,
    Delete,
    Rename,
}

impl EntryActivity {
    fn ocsf(self) -> (u32, &'static str) {
        match self {
            EntryActivity::Create => (1, "Create"),
            EntryActivity::Delete => (4, "Delete"),
            EntryActivity::Rename => (5, "Rename"),
        }
    }
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Engine => "engine",
            Reason::Cache => "cache",
            Reason::Deadline => "deadline",
            Reason::QueueFull => "queue_full",
            Reason::Notification => "notification",
            Reason::Shutdown => "shutdown",
            Reason::Tamper | Reason::TamperEntry(_) => "tamper",
            Reason::Quarantine => "quarantine",
            Reason::SensorLoss => "sensor_loss",
        }
    }
}

/// One verdict worth reporting from one engine.
#[derive(Debug, Clone)]
pub struct EngineVerdict {
    pub engine: String,
    pub verdict: Verdict,
}

/// Everything one alert says.
#[derive(Debug, Clone)]
pub struct Alert<'a> {
    pub event: &'a Event,
    /// The combined verdict (strongest of all engines).
    pub verdict: &'a Verdict,
    /// Whether the operation was allowed (`None` for notifications: nothing was asked).
    pub allowed: Option<bool>,
    pub reason: Reason,
    pub engines: &'a [EngineVerdict],
    pub failures: &'a [FailureRecord],
}

impl Alert<'_> {
    /// A deny verdict whose operation was allowed: only audit mode answers so (in enforce
    /// mode a deny verdict is always answered deny), so this is a "would deny".
    pub fn would_deny(&self) -> bool {
        self.allowed == Some(true) && self.verdict.action == Action::Deny
    }
}

fn severity_id(severity: Severity) -> (u8, &'static str) {
    match severity {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// The host's name, read once: an alert is written on the permission path (the responder
/// writes some), which reads nothing from `/proc`. A host renamed while the agent runs keeps
/// its old name in alerts until the agent restarts.
fn hostname() -> &'static str {
    static HOSTNAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOSTNAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    })
}

/// An OCSF user or group: the numeric id, and the name when there is one.
fn named(id_key: &str, id: u32, name: &str) -> Value {
    let mut out = json!({ id_key: id.to_string() });
    if !name.is_empty() {
        out["name"] = json!(name);
    }
    out
}

/// The OCSF parent process: its pid, and what the agent read of it when it was still there.
fn parent(ppid: u32, ancestors: &[Ancestor]) -> Value {
    match ancestors.first().filter(|a| a.pid == ppid) {
        Some(a) => json!({"pid": ppid, "file": {"path": a.exe}, "cmd_line": a.argv.join(" ")}),
        None => json!({"pid": ppid}),
    }
}

/// The OCSF `actor` of a kernel-observed event: the process with its user and group (names
/// when the agent resolved them), and the container its cgroup names.
fn actor(process: &Process) -> Value {
    let user = named("uid", process.uid, &process.user);
    let group = named("gid", process.gid, &process.group);
    let mut out = json!({
        "process": {"pid": process.pid, "name": process.comm, "file": {"path": process.exe},
                    "parent_process": parent(process.ppid, &process.ancestors)},
        "user": user,
        "group": group,
    });
    if !process.cgroup.is_empty() {
        out["process"]["cgroup"] = json!(process.cgroup);
    }
    if !process.container_id.is_empty() {
        out["process"]["container"] = json!({"uid": process.container_id});
    }
    out
}

/// The OCSF object for an alert written while the agent runs in `mode`.
///
/// A would-deny (audit mode) is an allowed operation in OCSF terms (`action` and `disposition`
/// "Allowed"), marked `unmapped.ringfence.would_deny` and `mode = "audit"`, with a message
/// that starts "would deny", so that no reader mistakes it for a block nor misses it.
pub fn ocsf(alert: &Alert<'_>, mode: Enforcement) -> Value {
    let would_deny = alert.would_deny();
    // A would-deny was answered in audit mode even if the mode switched since.
    let mode = if would_deny { Enforcement::Audit } else { mode };
    let message = if would_deny {
        format!("would deny (audit mode): {}", alert.verdict.message)
    } else {
        alert.verdict.message.clone()
    };
    let (class_uid, class_name, activity_id, activity_name, body) = match alert.event {
        Event::Exec(e) => (
            1007,
            "Process Activity",
            1,
            "Launch",
            json!({
                "process": {
                    "pid": e.pid,
                    "file": {"path": e.exe},
                    "cmd_line": e.argv.join(" "),
                    "working_directory": e.cwd,
                    "user": named("uid", e.uid, &e.user),
                    "group": named("gid", e.gid, &e.group),
                },
                "actor": {"process": match e.ancestors.first().filter(|a| a.pid == e.ppid) {
                    Some(a) => json!({"pid": e.ppid, "file": {"path": e.parent_exe},
                                      "cmd_line": a.argv.join(" ")}),
                    None => json!({"pid": e.ppid, "file": {"path": e.parent_exe}}),
                }},
            }),
        ),
        Event::Open(e) => (
            1001,
            "File System Activity",
            14,
            "Open",
            json!({
                "file": {"path": e.path},
                "actor": {"process": {"pid": e.pid, "file": {"path": e.exe},
                          "user": {"uid": e.uid.to_string()}}},
            }),
        ),
        Event::Fork(e) => (
            1007,
            "Process Activity",
            1,
            "Launch",
            json!({
                "process": {"pid": e.child_pid},
                "actor": {"process": {"pid": e.parent_pid}},
            }),
        ),
        Event::Exit(e) => (
            1007,
            "Process Activity",
            2,
            "Terminate",
            json!({"process": {"pid": e.pid}, "exit_code": e.exit_code}),
        ),
        Event::Network(e) => {
            let (activity_id, activity_name, direction_id, direction) = match e.op {
                NetworkOp::Connect => (1, "Open", 2, "Outbound"),
                NetworkOp::Accept => (1, "Open", 1, "Inbound"),
                NetworkOp::Listen => (7, "Listen", 0, "Unknown"),
            };
            (
                4001,
                "Network Activity",
                activity_id,
                activity_name,
                json!({
                    "src_endpoint": {"ip": e.local_ip, "port": e.local_port},
                    "dst_endpoint": {"ip": e.remote_ip, "port": e.remote_port},
                    "connection_info": {"protocol_name": "tcp", "direction_id": direction_id,
                                        "direction": direction},
                    "actor": actor(&e.process),
                }),
            )
        }
        Event::FileChange(e) => {
            let (activity_id, activity_name) = match e.op {
                FileOp::Rename => (5, "Rename"),
                FileOp::Unlink => (4, "Delete"),
                FileOp::Chmod | FileOp::Chown => (7, "Set Security"),
                FileOp::Link => (1, "Create"),
            };
            let mut body = json!({
                "file": {"path": e.path},
                "actor": actor(&e.process),
            });
            if let Some(target) = &e.target {
                body["file_result"] = json!({"path": target});
            }
            (
                1001,
                "File System Activity",
                activity_id,
                activity_name,
                body,
            )
        }
        Event::Privilege(e) => {
            let (class_uid, class_name, activity_id, activity_name) = match e.op {
                PrivilegeOp::InitModule | PrivilegeOp::FinitModule => {
                    (1002, "Kernel Extension Activity", 1, "Load")
                }
                PrivilegeOp::Ptrace => (1007, "Process Activity", 3, "Open"),
                PrivilegeOp::Bpf => (1007, "Process Activity", 99, "Other"),
                _ => (1007, "Process Activity", 5, "Set User ID"),
            };
            (
                class_uid,
                class_name,
                activity_id,
                activity_name,
                json!({
                    "actor": actor(&e.process),
                    "api": {"operation": serde_json::to_value(e.op).unwrap_or_default(),
                            "request": {"data": e.args}},
                }),
            )
        }
    };
    let (activity_id, activity_name) = match alert.reason {
        Reason::TamperEntry(activity) => activity.ocsf(),
        _ => (activity_id, activity_name),
    };
    let (severity_id, severity) = severity_id(alert.verdict.severity);
    let (action_id, action, disposition_id, disposition) = match alert.allowed {
        Some(true) => (1, "Allowed", 1, "Allowed"),
        Some(false) => (2, "Denied", 2, "Blocked"),
        None => (0, "Unknown", 15, "Detected"),
    };
    let (category_uid, category_name) = if class_uid / 1000 == 4 {
        (4, "Network Activity")
    } else {
        (1, "System Activity")
    };
    let mut object = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "time": ringfence_protocol::clock::unix_ms(),
        "severity_id": severity_id,
        "severity": severity,
        "action_id": action_id,
        "action": action,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "status_id": 1,
        "message": message,
        "metadata": {
            "version": "1.3.0",
            "product": {"name": "ringfence", "vendor_name": "ringfence",
                        "version": env!("CARGO_PKG_VERSION")},
        },
        "device": {"hostname": hostname(), "type_id": 0},
        "unmapped": {
            "ringfence": {
                "reason": alert.reason.as_str(),
                "mode": mode.as_str(),
                "would_deny": would_deny,
                "verdict": alert.verdict.action.as_str(),
                "rule_id": alert.verdict.rule_id,
                "tags": alert.verdict.tags,
                "engines": alert.engines.iter().map(|v| json!({
                    "engine": v.engine,
                    "action": v.verdict.action.as_str(),
                    "rule_id": v.verdict.rule_id,
                    "message": v.verdict.message,
                })).collect::<Vec<_>>(),
                "failures": alert.failures,
            }
        },
    });
    if let (Value::Object(target), Value::Object(fields)) = (&mut object, body) {
        target.extend(fields);
    }
    object
}

/// Where alerts go: a file (JSON lines, flushed per alert), standard output, or nowhere.
#[derive(Debug)]
pub enum AlertSink {
    File(Mutex<std::fs::File>),
    Stdout,
    Discard,
}

impl AlertSink {
    /// Opens (appends to) an alert file, creating it with mode 0600.
    pub fn file(path: &Path) -> std::io::Result<AlertSink> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(AlertSink::File(Mutex::new(file)))
    }

    /// Writes one alert line; one `write` per line so concurrent writers never interleave.
    pub fn write(&self, alert: &Alert<'_>, mode: Enforcement) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&ocsf(alert, mode)).map_err(std::io::Error::other)?;
        line.push(b'\n');
        match self {
            AlertSink::File(file) => {
                let mut file = file
                    .lock()
                    .map_err(|_| std::io::Error::other("alert file lock poisoned"))?;
                file.write_all(&line)
            }
            AlertSink::Stdout => std::io::stdout().lock().write_all(&line),
            AlertSink::Discard => Ok(()),
        }
    }
}

/// True when a verdict is worth an alert.
pub fn alerts(verdict: &Verdict) -> bool {
    verdict.action != Action::Allow
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_protocol::ExecEvent;

    #[test]
    fn exec_alert_is_ocsf_process_activity() {
        let event = Event::Exec(ExecEvent {
            pid: 10,
            ppid: 1,
            uid: 0,
            gid: 0,
            exe: "/tmp/evil".into(),
            argv: vec!["/tmp/evil".into()],
            cwd: "/".into(),
            parent_exe: "/bin/sh".into(),
            user: String::new(),
            group: String::new(),
            ancestors: Vec::new(),
        });
        let verdict = Verdict {
            action: Action::Deny,
            rule_id: "r1".into(),
            severity: Severity::High,
            message: "no".into(),
            tags: vec![],
        };
        let alert = Alert {
            event: &event,
            verdict: &verdict,
            allowed: Some(false),
            reason: Reason::Engine,
            engines: &[],
            failures: &[],
        };
        let value = ocsf(&alert, Enforcement::Enforce);
        assert_eq!(value["class_uid"], 1007);
        assert_eq!(value["type_uid"], 100_701);
        assert_eq!(value["disposition"], "Blocked");
        assert_eq!(value["process"]["file"]["path"], "/tmp/evil");
        assert_eq!(value["unmapped"]["ringfence"]["rule_id"], "r1");
        assert_eq!(value["unmapped"]["ringfence"]["mode"], "enforce");
        assert_eq!(value["unmapped"]["ringfence"]["would_deny"], false);
    }

    #[test]
    fn a_deny_allowed_in_audit_mode_is_an_allowed_would_deny() {
        let event = Event::Exec(ExecEvent {
            pid: 10,
            ppid: 1,
            uid: 0,
            gid: 0,
            exe: "/tmp/evil".into(),
            argv: vec![],
            cwd: "/".into(),
            parent_exe: "/bin/sh".into(),
            user: String::new(),
            group: String::new(),
            ancestors: Vec::new(),
        });
        let verdict = Verdict {
            action: Action::Deny,
            rule_id: "r1".into(),
            severity: Severity::High,
            message: "no evil".into(),
            tags: vec![],
        };
        let alert = Alert {
            event: &event,
            verdict: &verdict,
            allowed: Some(true),
            reason: Reason::Engine,
            engines: &[],
            failures: &[],
        };
        // Even if the mode switched back before the line was written.
        for mode in [Enforcement::Audit, Enforcement::Enforce] {
            let value = ocsf(&alert, mode);
            assert_eq!(value["disposition"], "Allowed");
            assert_eq!(value["action"], "Allowed");
            assert_eq!(value["unmapped"]["ringfence"]["mode"], "audit");
            assert_eq!(value["unmapped"]["ringfence"]["would_deny"], true);
            assert_eq!(value["unmapped"]["ringfence"]["verdict"], "deny");
            assert_eq!(value["message"], "would deny (audit mode): no evil");
        }
    }

    #[test]
    fn a_renamed_agent_file_is_file_system_rename_detected() {
        let event = Event::Open(ringfence_protocol::OpenEvent {
            pid: 11,
            uid: 0,
            gid: 0,
            path: "/usr/bin/ringfence".into(),
            exe: "/usr/bin/mv".into(),
            write: true,
        });
        let verdict = Verdict {
            action: Action::Observe,
            rule_id: "ringfence-self-protection".into(),
            severity: Severity::High,
            message: "renamed".into(),
            tags: vec!["tamper".into()],
        };
        let alert = Alert {
            event: &event,
            verdict: &verdict,
            allowed: None,
            reason: Reason::TamperEntry(EntryActivity::Rename),
            engines: &[],
            failures: &[],
        };
        let value = ocsf(&alert, Enforcement::Enforce);
        assert_eq!(value["class_uid"], 1001);
        assert_eq!(value["activity_name"], "Rename");
        assert_eq!(value["type_uid"], 100_105);
        assert_eq!(value["disposition"], "Detected");
        assert_eq!(value["unmapped"]["ringfence"]["reason"], "tamper");
        assert_eq!(value["file"]["path"], "/usr/bin/ringfence");
    }
}
