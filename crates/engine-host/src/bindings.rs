//! Generated bindings for the `ringfence:engine` world and conversions to protocol types.
//!
//! The protocol crate owns the public shapes; the WIT types stay inside this crate so that a
//! change of interface version touches only this file.

use ringfence_protocol as proto;

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "engine",
});

pub(crate) use exports::ringfence::engine::detector::{ContentError, ContentInfo};
pub(crate) use ringfence::engine::types as wit;

pub(crate) fn event_to_wit(event: &proto::Event) -> wit::Event {
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

pub(crate) fn verdict_from_wit(verdict: wit::Verdict) -> proto::Verdict {
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
