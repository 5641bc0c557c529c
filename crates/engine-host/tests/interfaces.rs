//! Both versions of the engine interface in one host: a component built against
//! `ringfence:engine@0.1.0` keeps loading and deciding exec events next to one built against
//! 0.2.0, and never receives the kinds 0.2 added (network, file-change, privilege), while the
//! 0.2 engine decides them.

use ringfence_bundled_engines as bundled;
use ringfence_engine_host::{
    EngineSettings, EngineWorker, InterfaceVersion, LoadedEngine, Runtime, run_corpus,
};
use ringfence_protocol::{
    Action, Event, ExecEvent, FileChangeEvent, FileOp, NetworkEvent, NetworkOp, PrivilegeEvent,
    PrivilegeOp, Process,
};
use std::sync::Arc;
use std::time::Duration;

const RULES: &str = "title: shell port
id: 5d3c2b1a-0f9e-4d8c-b7a6-958473625140
level: high
logsource: {product: linux, category: network_connection}
detection:
  selection: {DestinationPort: 4444, Initiated: 'true', User: alice}
  condition: selection
---
title: dropped into cron
id: 6e4d3c2b-1a0f-4e9d-8c7b-a69584736251
level: medium
logsource: {product: linux, category: file_event}
detection:
  selection: {TargetFilename|startswith: /etc/cron.d/, Image|endswith: /mv}
  condition: selection
";

fn process() -> Process {
    Process {
        pid: 77,
        uid: 1000,
        gid: 1000,
        user: "alice".into(),
        group: "alice".into(),
        exe: "/usr/bin/mv".into(),
        ..Process::default()
    }
}

fn network() -> Event {
    Event::Network(Box::new(NetworkEvent {
        process: process(),
        op: NetworkOp::Connect,
        local_ip: "127.0.0.1".into(),
        local_port: 40_000,
        remote_ip: "127.0.0.1".into(),
        remote_port: 4444,
    }))
}

fn rename() -> Event {
    Event::FileChange(Box::new(FileChangeEvent {
        process: process(),
        op: FileOp::Rename,
        path: "/tmp/job".into(),
        target: Some("/etc/cron.d/job".into()),
        mode: None,
        owner_uid: None,
        owner_gid: None,
    }))
}

fn privilege() -> Event {
    Event::Privilege(Box::new(PrivilegeEvent {
        process: process(),
        op: PrivilegeOp::Setuid,
        args: vec![0],
    }))
}

fn exec(exe: &str) -> Event {
    Event::Exec(ExecEvent {
        pid: 78,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        exe: exe.into(),
        argv: vec![exe.into()],
        cwd: "/".into(),
        parent_exe: String::new(),
        user: "alice".into(),
        group: "alice".into(),
        ancestors: Vec::new(),
    })
}

fn load(runtime: &Runtime, name: &str, wasm: &[u8], content: &[u8]) -> Arc<LoadedEngine> {
    let settings = EngineSettings::new(name).with_deadline(Duration::from_millis(200));
    LoadedEngine::load(runtime, settings, wasm, content).expect("loads")
}

#[test]
fn a_0_1_engine_serves_next_to_a_0_2_engine_and_never_sees_the_new_kinds() {
    let runtime = Runtime::new().expect("runtime");
    let allowlist = load(
        &runtime,
        "exec-allowlist",
        bundled::exec_allowlist(),
        b"deny /usr/bin/evil\nallow /**\n",
    );
    let sigma = load(&runtime, "sigma", bundled::sigma(), RULES.as_bytes());
    assert_eq!(allowlist.interface(), InterfaceVersion::V0_1);
    assert_eq!(sigma.interface(), InterfaceVersion::V0_2);

    let batch = [
        network(),
        exec("/usr/bin/evil"),
        rename(),
        privilege(),
        exec("/bin/ls"),
    ];
    let mut old = EngineWorker::new(Arc::clone(&allowlist)).expect("instantiates");
    let decisions = old.decide_batch(&batch);
    let actions: Vec<Action> = decisions.iter().map(|d| d.verdict.action).collect();
    assert!(decisions.iter().all(|d| d.failure.is_none()));
    assert_eq!(
        actions,
        [
            Action::Allow,
            Action::Deny,
            Action::Allow,
            Action::Allow,
            Action::Allow
        ]
    );
    assert_eq!(
        old.decide(&exec("/usr/bin/evil")).verdict.action,
        Action::Deny
    );

    let mut new = EngineWorker::new(Arc::clone(&sigma)).expect("instantiates");
    let decisions = new.decide_batch(&batch);
    assert!(decisions.iter().all(|d| d.failure.is_none()));
    let rules: Vec<&str> = decisions
        .iter()
        .map(|d| d.verdict.rule_id.as_str())
        .collect();
    assert_eq!(
        rules,
        [
            "5d3c2b1a-0f9e-4d8c-b7a6-958473625140",
            "",
            "6e4d3c2b-1a0f-4e9d-8c7b-a69584736251",
            "",
            ""
        ]
    );
    assert_eq!(decisions[0].verdict.action, Action::Observe);
}

#[test]
fn a_batch_of_only_new_kinds_makes_no_call_into_a_0_1_engine() {
    let runtime = Runtime::new().expect("runtime");
    // `trap` traps on every call it gets: any call would be a failure.
    let faulty = load(&runtime, "faulty", bundled::faulty(), b"trap");
    assert_eq!(faulty.interface(), InterfaceVersion::V0_1);
    let mut worker = EngineWorker::new(Arc::clone(&faulty)).expect("instantiates");
    let decisions = worker.decide_batch(&[network(), rename(), privilege()]);
    assert_eq!(decisions.len(), 3);
    assert!(
        decisions.iter().all(|d| d.failure.is_none()),
        "{decisions:?}"
    );
    assert!(decisions.iter().all(|d| d.verdict.action == Action::Allow));
    // The same engine does trap on a kind it has, so the silence above was not luck.
    assert!(worker.decide(&exec("/bin/ls")).failure.is_some());
}

#[test]
fn preflight_runs_the_new_kinds_through_both_versions() {
    let runtime = Runtime::new().expect("runtime");
    let corpus = [network(), rename(), privilege(), exec("/usr/bin/evil")];
    let sigma = load(&runtime, "sigma", bundled::sigma(), RULES.as_bytes());
    let report = run_corpus(&sigma, &corpus).expect("runs");
    assert_eq!(report.events, 4);
    assert!(report.failure_records.is_empty(), "{report:?}");
    assert_eq!(report.rules.len(), 2, "{:?}", report.rules);
    // A 0.1 engine that traps on every call fails only on the kind it has.
    let faulty = load(&runtime, "faulty", bundled::faulty(), b"trap");
    let report = run_corpus(&faulty, &corpus).expect("runs");
    assert_eq!(report.failure_records.len(), 1, "{report:?}");
}
