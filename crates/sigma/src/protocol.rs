//! Adapters for native callers: `ringfence_protocol` events in, verdicts out.

use crate::ast::Level;
use crate::event::{EventFields, ExecView, OpenView};
use crate::verdict::{Action, Outcome};
use ringfence_protocol::{Event, Severity, Verdict};

/// The rule view of a protocol event; `None` for fork and exit, which no rule can see.
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
        })),
        Event::Open(o) => Some(EventFields::from_open(OpenView {
            pid: o.pid,
            uid: o.uid,
            path: &o.path,
            exe: &o.exe,
            write: o.write,
        })),
        Event::Fork(_) | Event::Exit(_) => None,
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
