//! The agent with the BPF sensor on the live kernel, as root: a blocking exec decision reaches
//! the engines with the argv the BPF program saw (which `/proc` cannot tell at that moment);
//! a real loopback `connect`, `mv` and `chmod` reach a 0.2 engine as network and file-change
//! events with the documented fields while a 0.1 engine beside it keeps deciding execs; and a
//! sensor the kernel cannot load (missing BTF) leaves the agent serving on fanotify, reporting
//! reduced visibility.

mod common;

use common::{Tmpfs, engine, root_or_skip, within};
use ringfence_agent::{Agent, AgentConfig, MuteSet, Sensor, Visibility};
use ringfence_bpf_sensor::BpfConfig;
use ringfence_engine_host::Runtime;
use ringfence_protocol::FailurePolicy;
use ringfence_sensor::FanotifyConfig;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// One agent with a sensor at a time, as on a real host: the harness runs tests in parallel,
/// and each agent's BPF reader sees every exec on the machine. With three at once on two busy
/// cores, a full run here once saw the argv test's reader take one exec record in ten seconds
/// and both of its argv waits miss (`bpf_argv_missed: 2`).
fn one_agent_at_a_time() -> MutexGuard<'static, ()> {
    static HOST: Mutex<()> = Mutex::new(());
    HOST.lock().unwrap_or_else(PoisonError::into_inner)
}

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
    let _host = one_agent_at_a_time();
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

/// Rules for what the test below does; `{port}` is the listener's.
const KERNEL_RULES: &str = "title: ringfence test connect
id: 1a2b3c4d-0001-4000-8000-000000000001
level: high
logsource: {product: linux, category: network_connection}
detection:
  selection: {DestinationPort: '{port}', DestinationIp: 127.0.0.1, Initiated: 'true', User: root, Image|endswith: /bash}
  condition: selection
---
title: ringfence test rename
id: 1a2b3c4d-0002-4000-8000-000000000002
level: medium
logsource: {product: linux, category: file_rename}
detection:
  selection: {TargetFilename|endswith: /ringfence-moved-marker, SourceFilename|endswith: /ringfence-payload, Image|endswith: /mv}
  condition: selection
---
title: ringfence test chmod
id: 1a2b3c4d-0003-4000-8000-000000000003
level: medium
logsource: {product: linux, category: file_change}
detection:
  selection: {TargetFilename|endswith: /ringfence-moved-marker, Image|endswith: /chmod, User: root}
  condition: selection
---
title: ringfence test exec by name
id: 1a2b3c4d-0004-4000-8000-000000000004
level: low
logsource: {product: linux, category: process_creation}
detection:
  selection: {Image|endswith: /ringfence-bad, User: root}
  condition: selection
";

/// The alerts written so far, parsed.
fn alerts_in(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn rule_of(alert: &serde_json::Value) -> &str {
    alert["unmapped"]["ringfence"]["rule_id"]
        .as_str()
        .unwrap_or_default()
}

#[test]
fn kernel_network_and_file_events_reach_a_0_2_engine_next_to_a_0_1_engine() {
    const TEST: &str = "kernel_network_and_file_events_reach_a_0_2_engine_next_to_a_0_1_engine";
    if !root_or_skip(TEST) {
        return;
    }
    ringfence_testkit::mount_tracefs();
    let _host = one_agent_at_a_time();
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bad = fs.binary("ringfence-bad");
        let alerts = fs.path().join("alerts.jsonl");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let rules = KERNEL_RULES.replace("{port}", &port.to_string());
        let runtime = Runtime::new().expect("runtime");
        let sigma = engine(
            &runtime,
            "sigma",
            FailurePolicy::FailOpen,
            Duration::from_millis(200),
            rules.as_bytes(),
        );
        let allowlist = engine(
            &runtime,
            "exec-allowlist",
            FailurePolicy::FailClosed,
            Duration::from_millis(200),
            format!("deny {}\nallow /**\n", bad.display()).as_bytes(),
        );
        assert_eq!(sigma.interface().as_str(), "0.2.0");
        assert_eq!(allowlist.interface().as_str(), "0.1.0");
        let agent = Agent::start(
            config(fs.path(), alerts.clone(), BpfConfig::default()),
            vec![sigma, allowlist],
        )
        .expect("agent starts");
        match agent.visibility() {
            Some(Visibility::Full { .. }) => {}
            Some(Visibility::Reduced { reason }) if reason.starts_with("not built") => {
                ringfence_testkit::skip(TEST, "built without BPF support (no clang at build time)");
                return;
            }
            other => panic!("BPF sensor not attached as root: {other:?}"),
        }
        // The 0.1 engine still decides execs with the 0.2 engine beside it.
        let denied = Command::new(&bad).status();
        assert!(
            matches!(&denied, Err(e) if e.raw_os_error() == Some(1)),
            "bad binary: {denied:?}"
        );
        // Other processes than the agent's own (whose calls the programs leave out).
        let bash = Command::new("bash")
            // Alive a while after its connect, so its cgroup can still be read from /proc.
            .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; sleep 1")])
            .status()
            .expect("bash runs");
        assert!(bash.success());
        drop(listener.accept().expect("accept"));
        // Absolute names: a relative one is resolved against the working directory only while
        // `/proc` still shows it, which a process as short as `chmod` wins or loses by chance
        // (unit tests in `enrich` cover the resolution).
        let payload = fs.path().join("ringfence-payload");
        let moved = fs.path().join("ringfence-moved-marker");
        std::fs::write(&payload, "x").expect("payload");
        for (program, args) in [
            ("mv", [payload.as_os_str(), moved.as_os_str()]),
            ("chmod", ["4755".as_ref(), moved.as_os_str()]),
        ] {
            let status = Command::new(program).args(args).status().expect("runs");
            assert!(status.success(), "{program}");
        }
        // Notifications are judged when their batch comes round; nobody waits on them.
        let wanted = [
            "1a2b3c4d-0001-4000-8000-000000000001",
            "1a2b3c4d-0002-4000-8000-000000000002",
            "1a2b3c4d-0003-4000-8000-000000000003",
        ];
        let until = Instant::now() + Duration::from_secs(30);
        let mut seen = alerts_in(&alerts);
        while !wanted
            .iter()
            .all(|id| seen.iter().any(|a| rule_of(a) == *id))
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(50));
            seen = alerts_in(&alerts);
        }
        let stats = agent.shutdown();
        let find = |id: &str| {
            seen.iter().find(|a| rule_of(a) == id).unwrap_or_else(|| {
                panic!("no alert of rule {id}; stats {stats:?}; alerts {seen:#?}")
            })
        };
        let connect = find(wanted[0]);
        assert_eq!(connect["class_name"], "Network Activity");
        assert_eq!(connect["dst_endpoint"]["port"], port);
        assert_eq!(connect["dst_endpoint"]["ip"], "127.0.0.1");
        assert_eq!(connect["connection_info"]["direction"], "Outbound");
        assert_eq!(connect["actor"]["user"]["name"], "root");
        assert_eq!(connect["actor"]["group"]["name"], "root");
        assert!(
            connect["actor"]["process"]["file"]["path"]
                .as_str()
                .is_some_and(|exe| exe.ends_with("/bash")),
            "{connect}"
        );
        assert!(
            connect["actor"]["process"]["cgroup"]
                .as_str()
                .is_some_and(|cgroup| cgroup.starts_with('/')),
            "{connect}"
        );
        assert_eq!(connect["unmapped"]["ringfence"]["reason"], "notification");
        let rename = find(wanted[1]);
        assert_eq!(rename["activity_name"], "Rename");
        assert_eq!(rename["file"]["path"], payload.display().to_string());
        assert!(
            rename["actor"]["process"]["file"]["path"]
                .as_str()
                .is_some_and(|exe| exe.ends_with("/mv")),
            "{rename}"
        );
        assert_eq!(rename["file_result"]["path"], moved.display().to_string());
        let chmod = find(wanted[2]);
        assert_eq!(chmod["file"]["path"], moved.display().to_string());
        // The blocked exec: denied by the 0.1 engine, and seen by the 0.2 engine's rule on the
        // user's name.
        let exec = seen
            .iter()
            .find(|a| a["action"] == "Denied")
            .unwrap_or_else(|| panic!("no denied exec: {seen:#?}"));
        assert_eq!(exec["process"]["user"]["name"], "root", "{exec}");
        // Its parent is this test: the ancestry the agent read names it.
        assert_eq!(
            exec["actor"]["process"]["pid"],
            std::process::id(),
            "{exec}"
        );
        assert!(
            exec["actor"]["process"]["cmd_line"]
                .as_str()
                .is_some_and(|line| line.contains("bpf_live")),
            "{exec}"
        );
        let engines = exec["unmapped"]["ringfence"]["engines"].to_string();
        assert!(
            engines.contains("exec-allowlist")
                && engines.contains("1a2b3c4d-0004-4000-8000-000000000004"),
            "{engines}"
        );
        assert!(stats.denied >= 1, "{stats:?}");
        assert!(stats.bpf_notifications >= 3, "{stats:?}");
        assert_eq!((stats.bpf_dropped, stats.bpf_lost), (0, 0), "{stats:?}");
    });
}

#[test]
fn refused_bpf_load_leaves_fanotify_serving_with_reduced_visibility() {
    if !root_or_skip("refused_bpf_load_leaves_fanotify_serving_with_reduced_visibility") {
        return;
    }
    let _host = one_agent_at_a_time();
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
