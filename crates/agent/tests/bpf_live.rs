//! The agent with the BPF sensor on the live kernel, as root: a blocking exec decision reaches
//! the engines with the argv the BPF program saw (which `/proc` cannot tell at that moment),
//! and a sensor the kernel cannot load (missing BTF) leaves the agent serving on fanotify,
//! reporting reduced visibility.

mod common;

use common::{Tmpfs, engine, root_or_skip, within};
use ringfence_agent::{Agent, AgentConfig, MuteSet, Sensor, Visibility};
use ringfence_bpf_sensor::BpfConfig;
use ringfence_engine_host::Runtime;
use ringfence_protocol::FailurePolicy;
use ringfence_sensor::FanotifyConfig;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

const RULE: &str = "title: ringfence argv marker
id: 0f4b7e1c-2a59-4c1e-9a41-6f0b2d8e5c11
status: experimental
level: high
logsource:
  product: linux
  category: process_creation
detection:
  selection:
    CommandLine|contains: ringfence-argv-marker
  condition: selection
";

fn config(mount: &Path, alerts: PathBuf, bpf: BpfConfig) -> AgentConfig {
    AgentConfig {
        sensors: vec![Sensor::Fanotify, Sensor::Bpf(bpf)],
        fanotify: FanotifyConfig {
            exec_mounts: vec![mount.to_owned()],
            ..FanotifyConfig::default()
        },
        alerts: Some(alerts),
        mute: MuteSet::defaults(),
        // The decision cache on, as the agent runs by default: it must not answer one command
        // line with another's verdict.
        ..AgentConfig::default()
    }
}

#[test]
fn blocking_exec_decision_gets_the_argv_bpf_saw() {
    if !root_or_skip("blocking_exec_decision_gets_the_argv_bpf_saw") {
        return;
    }
    ringfence_testkit::mount_tracefs();
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let probe = fs.binary("probe");
        let alerts = fs.path().join("alerts.jsonl");
        let rules = tempfile::tempdir().expect("tempdir");
        std::fs::write(rules.path().join("marker.yml"), RULE).expect("rule");
        let content = ringfence_protocol::content::read_content(rules.path()).expect("content");
        let runtime = Runtime::new().expect("runtime");
        let sigma = engine(
            &runtime,
            "sigma",
            FailurePolicy::FailOpen,
            Duration::from_millis(200),
            &content,
        );
        let agent = Agent::start(
            config(fs.path(), alerts.clone(), BpfConfig::default()),
            vec![sigma],
        )
        .expect("agent starts");
        match agent.visibility() {
            Some(Visibility::Full { attached, .. }) => {
                assert!(
                    attached.contains(&"sys_enter_execve".to_owned()),
                    "{attached:?}"
                );
            }
            other => {
                if matches!(other, Some(Visibility::Reduced { reason }) if reason.starts_with("not built"))
                {
                    ringfence_testkit::skip(
                        "blocking_exec_decision_gets_the_argv_bpf_saw",
                        "built without BPF support (no clang at build time)",
                    );
                    return;
                }
                panic!("BPF sensor not attached as root: {other:?}");
            }
        }
        // First a harmless run of the same file: its clean allow must not answer the next one,
        // whose argv the rule is about.
        assert!(
            Command::new(&probe)
                .arg("--version")
                .status()
                .expect("probe runs")
                .success()
        );
        let status = Command::new(&probe)
            .args(["ringfence-argv-marker", "--flag"])
            .status()
            .expect("probe runs");
        assert!(status.success());
        let stats = agent.shutdown();
        assert!(stats.bpf_argv_matched >= 1, "{stats:?}");
        assert!(stats.bpf_exec >= 1, "{stats:?}");
        assert_eq!(stats.bpf_lost, 0, "{stats:?}");
        let text = std::fs::read_to_string(&alerts).expect("alerts");
        let line = text
            .lines()
            .find(|l| l.contains("ringfence-argv-marker"))
            .unwrap_or_else(|| panic!("no alert with the argv: {text}"));
        assert!(
            line.contains(&format!(
                "\"cmd_line\":\"{} ringfence-argv-marker --flag\"",
                probe.display()
            )),
            "{line}"
        );
    });
}

#[test]
fn refused_bpf_load_leaves_fanotify_serving_with_reduced_visibility() {
    if !root_or_skip("refused_bpf_load_leaves_fanotify_serving_with_reduced_visibility") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let good = fs.binary("good");
        let bad = fs.binary("bad");
        let runtime = Runtime::new().expect("runtime");
        let content = format!("deny {}\nallow /**\n", bad.display());
        let allowlist = engine(
            &runtime,
            "exec-allowlist",
            FailurePolicy::FailClosed,
            Duration::from_millis(50),
            content.as_bytes(),
        );
        let bpf = BpfConfig {
            btf: PathBuf::from("/nonexistent/vmlinux"),
            ..BpfConfig::default()
        };
        let agent = Agent::start(
            config(fs.path(), fs.path().join("alerts.jsonl"), bpf),
            vec![allowlist],
        )
        .expect("the agent starts without its BPF sensor");
        let reason = agent
            .visibility()
            .and_then(Visibility::reduced)
            .expect("reduced visibility")
            .to_owned();
        assert!(
            reason.contains("/nonexistent/vmlinux") || reason.starts_with("not built"),
            "{reason}"
        );
        let denied = Command::new(&bad).status();
        assert!(
            matches!(&denied, Err(e) if e.raw_os_error() == Some(1)),
            "bad binary: {denied:?}"
        );
        assert!(Command::new(&good).status().expect("good runs").success());
        let stats = agent.shutdown();
        assert!(stats.denied >= 1, "{stats:?}");
        assert_eq!(stats.bpf_exec, 0, "{stats:?}");
    });
}
