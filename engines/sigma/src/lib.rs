//! `sigma`: runs Sigma rules against exec, open, network and file-change events
//! (`ringfence:engine@0.2.0`).
//!
//! Parsing, compilation and matching live in `ringfence-sigma` so that benchmarks can run the
//! same matcher natively; this file only adapts it to the `ringfence:engine` world and keeps
//! the per-instance state (config, compiled rules, scratch buffers).

wit_bindgen::generate!({
    path: "../../wit/0.2",
    world: "engine",
});

use exports::ringfence::engine::detector::Guest;
use ringfence::engine::types::{
    Action, ContentError, ContentInfo, Event, FileOp, NetworkOp, Severity, Verdict,
};
use ringfence_sigma::{
    Config, ConnectionView, EventFields, ExecView, FileChange, FileChangeView, Level, OpenView,
    Outcome, RuleSet, Scratch,
};
use std::cell::RefCell;

#[derive(Default)]
struct State {
    config: Config,
    rules: RuleSet,
    scratch: Scratch,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

struct Sigma;

fn allow() -> Verdict {
    Verdict {
        action: Action::Allow,
        rule_id: String::new(),
        severity: Severity::Info,
        message: String::new(),
        tags: Vec::new(),
    }
}

fn severity(level: Level) -> Severity {
    match level {
        Level::Informational => Severity::Info,
        Level::Low => Severity::Low,
        Level::Medium => Severity::Medium,
        Level::High => Severity::High,
        Level::Critical => Severity::Critical,
    }
}

fn verdict(outcome: Outcome<'_>) -> Verdict {
    Verdict {
        action: match outcome.action {
            ringfence_sigma::Action::Observe => Action::Observe,
            ringfence_sigma::Action::Deny => Action::Deny,
        },
        rule_id: outcome.rule.id.clone(),
        severity: severity(outcome.rule.level),
        message: outcome.message(),
        tags: outcome.rule.tags.clone(),
    }
}

fn fields(event: &Event) -> Option<EventFields<'_>> {
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
        // The same mapping as `ringfence_sigma::protocol::fields`, from the WIT types.
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

fn decide(state: &mut State, event: &Event) -> Verdict {
    let Some(fields) = fields(event) else {
        return allow();
    };
    let State { rules, scratch, .. } = state;
    rules.evaluate(&fields, scratch).map_or_else(allow, verdict)
}

impl Guest for Sigma {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let config = Config::from_pairs(config.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| e.to_string())?;
        STATE.with_borrow_mut(|state| state.config = config);
        Ok(())
    }

    fn load_content(content: Vec<u8>) -> Result<ContentInfo, ContentError> {
        STATE.with_borrow_mut(|state| {
            let loaded = ringfence_sigma::load(&content, &state.config).map_err(|e| ContentError {
                message: e.to_string(),
                line: Some(e.line()),
            })?;
            let info = ContentInfo {
                rules: u32::try_from(loaded.rules.rules().len()).unwrap_or(u32::MAX),
                version: String::new(),
                warnings: loaded.skipped.iter().map(ToString::to_string).collect(),
            };
            state.rules = loaded.rules;
            state.scratch = Scratch::default();
            Ok(info)
        })
    }

    fn on_event(event: Event) -> Verdict {
        STATE.with_borrow_mut(|state| decide(state, &event))
    }

    fn on_events(events: Vec<Event>) -> Vec<Verdict> {
        STATE.with_borrow_mut(|state| events.iter().map(|e| decide(state, e)).collect())
    }
}

export!(Sigma);
