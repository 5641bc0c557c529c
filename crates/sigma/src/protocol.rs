//! Adapters for native callers: `ringfence_protocol` events in, verdicts out.

use crate::ast::Level;
use crate::event::{ConnectionView, EventFields, ExecView, FileChange, FileChangeView, OpenView};
use crate::verdict::{Action, Outcome};
use ringfence_protocol::{Event, FileOp, NetworkOp, Severity, Verdict};

/// The rule view of a protocol event; `None` for what no Sigma category covers: fork, exit,
/// a listen (Sysmon reports connections, not listening sockets) and privilege calls.
pub fn fields(event: &Event) -> Option<EventFields<'_>> {
    match event {
        Event::Exec(e) => Some(EventFields::from_exec(ExecView {
            pid: e.pid,
            ppid: e.ppid,
            uid: e.uid,
            exe: &e.exe,
            argv: &e.argv,
            cwd: &e.cwd,
            parent_exe: &e.parent_exe,
            user: &e.user,
            parent_argv: e
                .ancestors
                .first()
                .filter(|parent| parent.pid == e.ppid)
                .map(|parent| parent.argv.as_slice()),
        })),
        Event::Open(o) => Some(EventFields::from_open(OpenView {
            pid: o.pid,
            uid: o.uid,
            path: &o.path,
            exe: &o.exe,
            write: o.write,
        })),
        Event::Network(n) => {
            let outgoing = match n.op {
                NetworkOp::Connect => true,
                NetworkOp::Accept => false,
                NetworkOp::Listen => return None,
            };
            Some(EventFields::from_connection(ConnectionView {
                pid: n.process.pid,
                uid: n.process.uid,
                user: &n.process.user,
                exe: &n.process.exe,
                outgoing,
                local_ip: &n.local_ip,
                local_port: n.local_port,
                remote_ip: &n.remote_ip,
                remote_port: n.remote_port,
            }))
        }
        Event::FileChange(f) => {
            let to = f.target.as_deref().unwrap_or_default();
            Some(EventFields::from_file_change(FileChangeView {
                pid: f.process.pid,
                uid: f.process.uid,
                user: &f.process.user,
                exe: &f.process.exe,
                path: &f.path,
                change: match f.op {
                    FileOp::Rename => FileChange::Rename { to },
                    FileOp::Link => FileChange::Link { to },
                    FileOp::Unlink => FileChange::Unlink,
                    FileOp::Chmod => FileChange::Chmod,
                    FileOp::Chown => FileChange::Chown,
                },
            }))
        }
        Event::Fork(_) | Event::Exit(_) | Event::Privilege(_) => None,
    }
}

pub fn severity(level: Level) -> Severity {
    match level {
        Level::Informational => Severity::Info,
        Level::Low => Severity::Low,
        Level::Medium => Severity::Medium,
        Level::High => Severity::High,
        Level::Critical => Severity::Critical,
    }
}

/// The verdict for an outcome (or a plain allow when nothing matched).
pub fn verdict(outcome: Option<Outcome<'_>>) -> Verdict {
    let Some(outcome) = outcome else {
        return Verdict::allow();
    };
    Verdict {
        action: match outcome.action {
            Action::Observe => ringfence_protocol::Action::Observe,
            Action::Deny => ringfence_protocol::Action::Deny,
        },
        rule_id: outcome.rule.id.clone(),
        severity: severity(outcome.rule.level),
        message: outcome.message(),
        tags: outcome.rule.tags.clone(),
    }
}

/// Decides one protocol event with `rules`, as the wasm engine does.
pub fn decide(rules: &crate::RuleSet, event: &Event, scratch: &mut crate::Scratch) -> Verdict {
    match fields(event) {
        Some(fields) => verdict(rules.evaluate(&fields, scratch)),
        None => Verdict::allow(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Categories, Field};
    use ringfence_protocol::{FileChangeEvent, NetworkEvent, Process};

    fn process() -> Process {
        Process {
            pid: 7,
            uid: 1000,
            gid: 1000,
            user: "alice".into(),
            exe: "/usr/bin/curl".into(),
            ..Process::default()
        }
    }

    fn network(op: NetworkOp) -> Event {
        Event::Network(Box::new(NetworkEvent {
            process: process(),
            op,
            local_ip: "10.0.0.5".into(),
            local_port: 40_000,
            remote_ip: "10.0.0.9".into(),
            remote_port: 4444,
        }))
    }

    #[test]
    fn connections_are_oriented_from_the_initiator_as_sysmon_does() {
        let connect = network(NetworkOp::Connect);
        let out = fields(&connect).expect("a connect is a network_connection");
        assert_eq!(out.categories, Categories::NETWORK_CONNECTION);
        assert_eq!(out.get(Field::Initiated), Some("true"));
        assert_eq!(out.get(Field::SourceIp), Some("10.0.0.5"));
        assert_eq!(out.get(Field::DestinationIp), Some("10.0.0.9"));
        assert_eq!(out.get(Field::DestinationPort), Some("4444"));
        assert_eq!(out.get(Field::Image), Some("/usr/bin/curl"));
        assert_eq!(out.get(Field::User), Some("alice"));
        let accept = network(NetworkOp::Accept);
        let inbound = fields(&accept).expect("an accept is a network_connection");
        assert_eq!(inbound.get(Field::Initiated), Some("false"));
        assert_eq!(inbound.get(Field::SourceIp), Some("10.0.0.9"));
        assert_eq!(inbound.get(Field::SourcePort), Some("4444"));
        assert_eq!(inbound.get(Field::DestinationPort), Some("40000"));
        assert!(fields(&network(NetworkOp::Listen)).is_none());
    }

    fn file(op: FileOp, target: Option<&str>, user: &str) -> Event {
        Event::FileChange(Box::new(FileChangeEvent {
            process: Process {
                user: user.into(),
                ..process()
            },
            op,
            path: "/tmp/payload".into(),
            target: target.map(str::to_owned),
            mode: None,
            owner_uid: None,
            owner_gid: None,
        }))
    }

    #[test]
    fn file_changes_land_in_the_categories_sigmahq_rules_use() {
        let rename = file(FileOp::Rename, Some("/etc/cron.d/job"), "alice");
        let out = fields(&rename).expect("mapped");
        assert!(out.categories.intersects(Categories::FILE_RENAME));
        assert!(out.categories.intersects(Categories::FILE_EVENT));
        assert_eq!(out.get(Field::TargetFilename), Some("/etc/cron.d/job"));
        assert_eq!(out.get(Field::SourceFilename), Some("/tmp/payload"));
        let unlink = file(FileOp::Unlink, None, "alice");
        let out = fields(&unlink).expect("mapped");
        assert_eq!(out.categories, Categories::FILE_DELETE);
        assert_eq!(out.get(Field::TargetFilename), Some("/tmp/payload"));
        assert_eq!(out.get(Field::SourceFilename), None);
        // No name known: `User` falls back to the numeric id rather than staying empty.
        let chmod = file(FileOp::Chmod, None, "");
        let out = fields(&chmod).expect("mapped");
        assert_eq!(out.categories, Categories::FILE_CHANGE);
        assert_eq!(out.get(Field::User), Some("1000"));
    }

    #[test]
    fn parent_command_line_comes_from_the_first_ancestor() {
        let exec = |ancestors: Vec<ringfence_protocol::Ancestor>| {
            Event::Exec(ringfence_protocol::ExecEvent {
                pid: 9,
                ppid: 8,
                uid: 0,
                gid: 0,
                exe: "/usr/bin/curl".into(),
                argv: vec!["curl".into()],
                cwd: "/".into(),
                parent_exe: "/usr/bin/python3".into(),
                user: "root".into(),
                group: "root".into(),
                ancestors,
            })
        };
        let parent = ringfence_protocol::Ancestor {
            pid: 8,
            exe: "/usr/bin/python3".into(),
            argv: vec!["python3".into(), "-c".into(), "import pty".into()],
        };
        let event = exec(vec![parent.clone()]);
        let out = fields(&event).expect("mapped");
        assert_eq!(
            out.get(Field::ParentCommandLine),
            Some("python3 -c import pty")
        );
        assert_eq!(out.get(Field::User), Some("root"));
        // An ancestor that is not the parent (it exited, the chain starts higher) is not one.
        let other = exec(vec![ringfence_protocol::Ancestor { pid: 7, ..parent }]);
        assert_eq!(
            fields(&other)
                .expect("mapped")
                .get(Field::ParentCommandLine),
            None
        );
    }

    #[test]
    fn rules_of_each_new_category_match_their_events() {
        let content = b"title: to a shell port
id: 11111111-1111-4111-8111-111111111111
level: high
logsource: {product: linux, category: network_connection}
detection:
  selection: {Initiated: 'true', DestinationPort: 4444, User: alice}
  condition: selection
---
title: into cron
id: 22222222-2222-4222-8222-222222222222
level: medium
logsource: {product: linux, category: file_event}
detection:
  selection: {TargetFilename|startswith: /etc/cron.d/}
  condition: selection
---
title: chmod in tmp
id: 33333333-3333-4333-8333-333333333333
level: low
logsource: {product: linux, category: file_change}
detection:
  selection: {TargetFilename|startswith: /tmp/}
  condition: selection
";
        let loaded = crate::load(content, &crate::Config::default()).expect("loads");
        assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
        let mut scratch = crate::Scratch::default();
        let rule_of = |event: &Event, scratch: &mut crate::Scratch| {
            decide(&loaded.rules, event, scratch).rule_id
        };
        assert_eq!(
            rule_of(&network(NetworkOp::Connect), &mut scratch),
            "11111111-1111-4111-8111-111111111111"
        );
        assert_eq!(rule_of(&network(NetworkOp::Accept), &mut scratch), "");
        assert_eq!(
            rule_of(
                &file(FileOp::Rename, Some("/etc/cron.d/job"), "alice"),
                &mut scratch
            ),
            "22222222-2222-4222-8222-222222222222"
        );
        assert_eq!(
            rule_of(&file(FileOp::Chmod, None, "alice"), &mut scratch),
            "33333333-3333-4333-8333-333333333333"
        );
        // A delete is not a change: category decides before any field does.
        assert_eq!(
            rule_of(&file(FileOp::Unlink, None, "alice"), &mut scratch),
            ""
        );
    }
}
