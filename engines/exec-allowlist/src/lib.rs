//! `exec-allowlist`: decides execs (and watched opens) by path with first-match glob rules.
//!
//! The parsing and matching live in `ringfence-allowlist` so that benchmarks can run the same
//! code natively; this file only adapts it to the `ringfence:engine` world.

wit_bindgen::generate!({
    path: "../../wit/0.1",
    world: "engine",
});

use exports::ringfence::engine::detector::Guest;
use ringfence::engine::types::{
    Action, ContentError, ContentInfo, Event, Severity, Verdict,
};
use ringfence_allowlist::{RuleAction, RuleSet};
use std::cell::RefCell;

thread_local! {
    static RULES: RefCell<Option<RuleSet>> = const { RefCell::new(None) };
}

struct ExecAllowlist;

fn decide(rules: &RuleSet, path: &str, what: &str) -> Verdict {
    let decision = rules.evaluate(path);
    let rule_id = match decision.rule {
        Some(rule) => format!("exec-allowlist:{}", rule.line),
        None => "exec-allowlist:default".to_owned(),
    };
    match decision.action {
        RuleAction::Allow => Verdict {
            action: Action::Allow,
            rule_id,
            severity: Severity::Info,
            message: String::new(),
            tags: Vec::new(),
        },
        RuleAction::Deny => {
            let why = match decision.rule {
                Some(rule) => format!("rule on line {} (deny {})", rule.line, rule.glob.as_str()),
                None => "the default rule".to_owned(),
            };
            Verdict {
                action: Action::Deny,
                rule_id,
                severity: Severity::High,
                message: format!("{what} of {path} denied by {why}"),
                tags: vec!["attack.execution".to_owned()],
            }
        }
    }
}

fn on_event(event: &Event) -> Verdict {
    RULES.with_borrow(|rules| {
        let Some(rules) = rules else {
            return allow();
        };
        match event {
            Event::Exec(exec) => decide(rules, &exec.exe, "exec"),
            Event::Open(open) => decide(rules, &open.path, "open"),
            Event::Fork(_) | Event::Exit(_) => allow(),
        }
    })
}

fn allow() -> Verdict {
    Verdict {
        action: Action::Allow,
        rule_id: String::new(),
        severity: Severity::Info,
        message: String::new(),
        tags: Vec::new(),
    }
}

impl Guest for ExecAllowlist {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn load_content(content: Vec<u8>) -> Result<ContentInfo, ContentError> {
        let rules = RuleSet::parse(&content).map_err(|e| ContentError {
            message: e.reason,
            line: (e.line > 0).then_some(e.line),
        })?;
        let info = ContentInfo {
            rules: u32::try_from(rules.rules().len()).unwrap_or(u32::MAX),
            version: String::new(),
            warnings: Vec::new(),
        };
        RULES.set(Some(rules));
        Ok(info)
    }

    fn on_event(event: Event) -> Verdict {
        on_event(&event)
    }

    fn on_events(events: Vec<Event>) -> Vec<Verdict> {
        events.iter().map(on_event).collect()
    }
}

export!(ExecAllowlist);
