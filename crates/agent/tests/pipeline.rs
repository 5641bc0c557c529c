//! The agent pipeline without the kernel: replay end to end (the kernel-observed kinds of a
//! recorded corpus included), queue-full answers, deadline answers by policy, engine swap
//! invalidating generations. Runs anywhere, root or not.

mod common;

use common::{engine, stats_once_counted, within};
use ringfence_agent::{Agent, AgentConfig, Enforcement, MuteSet, Sensor, Submitted};
use ringfence_engine_host::{EngineSettings, LoadedEngine, QuarantineRule, Runtime};
use ringfence_protocol::{Event, FailurePolicy};
use ringfence_sensor::Ticket;
use ringfence_testkit::events::exec;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(alerts: &std::path::Path) -> AgentConfig {
    AgentConfig {
        sensors: Vec::new(),
        alerts: Some(alerts.to_owned()),
        mute: MuteSet::default(),
        ..AgentConfig::default()
    }
}

#[test]
fn replay_end_to_end_writes_alerts() {
    within(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().expect("tempdir");
        let alerts = dir.path().join("alerts.jsonl");
        let runtime = Runtime::new().expect("runtime");
        let allowlist = engine(
            &runtime,
            "exec-allowlist",
            FailurePolicy::FailClosed,
            Duration::from_millis(50),
            b"deny /usr/bin/curl\nallow /**\n",
        );
        let events = ringfence_protocol::corpus::generate(1000, 7);
        let curls = events
            .iter()
            .filter(|e| matches!(e, Event::Exec(x) if x.exe == "/usr/bin/curl"))
            .count() as u64;
        let mut config = config(&alerts);
        config.sensors = vec![Sensor::Replay(events)];
        config.perm_deadline = Duration::from_secs(5);
        let agent = Agent::start(config, vec![allowlist]).expect("agent starts");
        assert!(
            agent.wait_replay(Duration::from_secs(60)),
            "replay finishes"
        );
        let stats = agent.shutdown();
        assert_eq!(stats.events, 1000);
        assert_eq!(stats.allowed + stats.denied, stats.permission_events);
        assert_eq!(stats.denied, curls, "{stats:?}");
        let text = std::fs::read_to_string(&alerts).expect("alerts written");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("alert is JSON"))
            .collect();
        let blocked = lines
            .iter()
            .filter(|a| a["disposition"] == "Blocked" && a["class_uid"] == 1007)
            .count() as u64;
        assert_eq!(blocked, curls);
    });
}

/// Audit mode decides the same replay exactly as enforce mode would, allows every event, and
/// reports each deny as a would-deny alert.
/// A recorded corpus with the kernel-observed kinds: a 0.2 engine alerts on them as
/// notifications, a 0.1 engine beside it is never handed them and still decides the exec.
#[test]
fn replayed_kernel_events_are_notifications_alerted_by_a_0_2_engine() {
    within(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().expect("tempdir");
        let alerts = dir.path().join("alerts.jsonl");
        let runtime = Runtime::new().expect("runtime");
        let rules = "title: into cron
id: 9f8e7d6c-0001-4000-8000-000000000001
level: medium
logsource: {product: linux, category: file_event}
detection:
  selection: {TargetFilename|startswith: /etc/cron.d/}
  condition: selection
";
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
            b"deny /usr/bin/curl\nallow /**\n",
        );
        let corpus = r#"{"kind":"network","process":{"pid":5,"uid":0,"gid":0,"user":"root","exe":"/usr/bin/curl"},"op":"connect","local_ip":"10.0.0.5","local_port":0,"remote_ip":"10.0.0.9","remote_port":443}
{"kind":"file_change","process":{"pid":6,"uid":0,"gid":0,"user":"root","exe":"/usr/bin/mv"},"op":"rename","path":"/tmp/job","target":"/etc/cron.d/job"}
{"kind":"privilege","process":{"pid":7,"uid":1000,"gid":1000},"op":"setuid","args":[0]}
{"kind":"exec","pid":8,"ppid":1,"uid":0,"gid":0,"exe":"/usr/bin/curl"}
"#;
        let events = ringfence_protocol::corpus::read(corpus.as_bytes(), "k.jsonl".as_ref())
            .expect("corpus reads");
        let mut config = config(&alerts);
        config.sensors = vec![Sensor::Replay(events)];
        config.perm_deadline = Duration::from_secs(5);
        let agent = Agent::start(config, vec![sigma, allowlist]).expect("agent starts");
        assert!(
            agent.wait_replay(Duration::from_secs(60)),
            "replay finishes"
        );
        let stats = agent.shutdown();
        assert_eq!((stats.notifications, stats.denied), (3, 1), "{stats:?}");
        assert_eq!(stats.engine_failures, 0, "{stats:?}");
        let text = std::fs::read_to_string(&alerts).expect("alerts written");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("alert is JSON"))
            .collect();
        let cron: Vec<_> = lines
            .iter()
            .filter(|a| a["unmapped"]["ringfence"]["reason"] == "notification")
            .collect();
        assert_eq!(cron.len(), 1, "{lines:#?}");
        assert_eq!(cron[0]["class_uid"], 1001);
        assert_eq!(cron[0]["activity_name"], "Rename");
        assert_eq!(cron[0]["file_result"]["path"], "/etc/cron.d/job");
        assert_eq!(cron[0]["actor"]["user"]["name"], "root");
    });
}

#[test]
fn replay_in_audit_mode_allows_everything_and_reports_would_deny() {
    within(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().expect("tempdir");
        let alerts = dir.path().join("alerts.jsonl");
        let runtime = Runtime::new().expect("runtime");
        let allowlist = engine(
            &runtime,
            "exec-allowlist",
            FailurePolicy::FailClosed,
            Duration::from_millis(50),
            b"deny /usr/bin/curl\nallow /**\n",
        );
        let events = ringfence_protocol::corpus::generate(1000, 7);
        let curls = events
            .iter()
            .filter(|e| matches!(e, Event::Exec(x) if x.exe == "/usr/bin/curl"))
            .count() as u64;
        assert!(curls > 0, "the corpus has curl execs");
        let mut config = config(&alerts);
        config.sensors = vec![Sensor::Replay(events)];
        config.perm_deadline = Duration::from_secs(5);
        config.enforcement = Enforcement::Audit;
        let agent = Agent::start(config, vec![allowlist]).expect("agent starts");
        assert!(agent.wait_replay(Duration::from_secs(60)));
        let stats = agent.shutdown();
        assert_eq!(stats.denied, 0, "{stats:?}");
        assert_eq!(stats.allowed, stats.permission_events, "{stats:?}");
        assert_eq!(stats.would_deny, curls, "{stats:?}");
        let text = std::fs::read_to_string(&alerts).expect("alerts written");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("alert is JSON"))
            .collect();
        assert!(lines.iter().all(|a| a["disposition"] != "Blocked"));
        let would_deny = lines
            .iter()
            .filter(|a| {
                a["unmapped"]["ringfence"]["would_deny"] == true
                    && a["unmapped"]["ringfence"]["mode"] == "audit"
                    && a["disposition"] == "Allowed"
            })
            .count() as u64;
        assert_eq!(would_deny, curls);
    });
}

#[test]
fn full_queue_and_hung_engine_are_answered_by_policy() {
    within(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::new().expect("runtime");
        // The engine hangs for 2 s per call: only the responder and the queue can answer.
        let hung = engine(
            &runtime,
            "faulty",
            FailurePolicy::FailClosed,
            Duration::from_secs(2),
            b"loop",
        );
        let mut config = config(&dir.path().join("alerts.jsonl"));
        config.workers = 1;
        config.queue_capacity = 1;
        config.perm_deadline = Duration::from_millis(20);
        let agent = Agent::start(config, vec![hung]).expect("agent starts");
        let tickets: Vec<Arc<Ticket>> = (0..6).map(|_| Arc::new(Ticket::detached())).collect();
        let started = Instant::now();
        let outcomes: Vec<Submitted> = tickets
            .iter()
            .map(|t| agent.submit(exec("/usr/bin/ls"), Arc::clone(t)))
            .collect();
        assert!(
            outcomes.contains(&Submitted::AnsweredByPolicy),
            "{outcomes:?}"
        );
        while tickets.iter().any(|t| t.answer().is_none()) {
            // Well under the engine's 2 s: only the responder or the queue can have answered.
            assert!(
                started.elapsed() < Duration::from_millis(1_000),
                "answered late"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Fail-closed: every one denied.
        assert!(tickets.iter().all(|t| t.answer() == Some(false)));
        let stats = stats_once_counted(&agent, 6);
        assert!(stats.queue_full >= 1, "{stats:?}");
        assert!(stats.deadline_answers >= 1, "{stats:?}");
        // Policy answers are verdicts too: each one's wait is in the latency figures.
        let latency = agent.take_latency();
        assert_eq!(latency.count, 6, "{latency:?}");
        assert!(latency.max_us < 1_000_000.0, "{latency:?}");
        let stats = agent.shutdown();
        assert_eq!(stats.allowed + stats.denied, 6, "{stats:?}");
    });
}

/// Every engine failure, on the permission path and the notification path alike, goes to the
/// failure channel once: as many records as the agent counted failures (a record sent twice
/// would make more).
#[test]
fn every_engine_failure_goes_to_the_failure_channel_once() {
    within(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::new().expect("runtime");
        let trapping = engine(
            &runtime,
            "faulty",
            FailurePolicy::FailOpen,
            Duration::from_secs(1),
            b"trap",
        );
        let events = ringfence_protocol::corpus::generate(200, 11);
        let (failures, received) = ringfence_agent::failure_channel(10_000);
        let mut config = config(&dir.path().join("alerts.jsonl"));
        config.sensors = vec![Sensor::Replay(events)];
        config.perm_deadline = Duration::from_secs(5);
        config.failures = Some(failures);
        let agent = Agent::start(config, vec![trapping]).expect("agent starts");
        assert!(
            agent.wait_replay(Duration::from_secs(60)),
            "replay finishes"
        );
        let stats = agent.shutdown();
        let mut records = Vec::new();
        while let Ok(record) = received.recv_timeout(Duration::from_millis(100)) {
            records.push(record);
        }
        assert!(stats.engine_failures > 0, "{stats:?}");
        assert_eq!(records.len() as u64, stats.engine_failures, "{stats:?}");
        assert_eq!(received.take_dropped(), 0);
    });
}

/// Submits `exec` events one at a time, each answered before the next.
fn decide_one_by_one(agent: &Agent, count: usize) {
    for _ in 0..count {
        let ticket = Arc::new(Ticket::detached());
        agent.submit(exec("/usr/bin/ls"), Arc::clone(&ticket));
        let until = Instant::now() + Duration::from_secs(10);
        while ticket.answer().is_none() {
            assert!(Instant::now() < until, "unanswered");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn a_quarantined_engine_is_listed_counted_and_alerted_once() {
    within(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().expect("tempdir");
        let alerts = dir.path().join("alerts.jsonl");
        let runtime = Runtime::new().expect("runtime");
        let settings = EngineSettings::new("faulty")
            .with_deadline(Duration::from_millis(50))
            .with_quarantine(QuarantineRule {
                failures: 3,
                window: Duration::from_secs(60),
            });
        let trap = LoadedEngine::load(
            &runtime,
            settings,
            ringfence_bundled_engines::faulty(),
            b"trap",
        )
        .expect("loads");
        let mut config = config(&alerts);
        config.workers = 1;
        config.perm_deadline = Duration::from_secs(5);
        let agent = Agent::start(config, vec![trap]).expect("agent starts");
        assert!(agent.quarantined().is_empty());
        decide_one_by_one(&agent, 10);
        assert_eq!(agent.quarantined(), vec!["faulty".to_owned()]);
        let stats = agent.shutdown();
        assert_eq!(stats.failures_trap, 3, "{stats:?}");
        assert_eq!(stats.failures_quarantine, 7, "{stats:?}");
        assert_eq!(stats.engine_failures, 10, "{stats:?}");
        assert_eq!(stats.failure_answers, 3, "{stats:?}");
        assert_eq!(stats.quarantine_answers, 7, "{stats:?}");
        assert_eq!(stats.quarantines, 1, "{stats:?}");
        let text = std::fs::read_to_string(&alerts).expect("alerts written");
        let off: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("alert is JSON"))
            .filter(|a| a["unmapped"]["ringfence"]["reason"] == "quarantine")
            .collect();
        assert_eq!(off.len(), 1, "one alert per quarantine: {off:?}");
        let message = off[0]["message"].as_str().expect("message");
        assert!(
            message.contains("protection is off for engine faulty"),
            "{message}"
        );
        assert_eq!(off[0]["severity"], "Critical");
    });
}

#[test]
fn swap_bumps_the_generation() {
    within(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::new().expect("runtime");
        let ok = engine(
            &runtime,
            "faulty",
            FailurePolicy::FailOpen,
            Duration::from_millis(50),
            b"ok",
        );
        let agent = Agent::start(config(&dir.path().join("a")), vec![Arc::clone(&ok)])
            .expect("agent starts");
        assert_eq!(agent.generation(), 1);
        assert_eq!(agent.swap_engines(vec![ok]), 2);
        let ticket = Arc::new(Ticket::detached());
        agent.submit(exec("/usr/bin/ls"), Arc::clone(&ticket));
        let until = Instant::now() + Duration::from_secs(5);
        while ticket.answer().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(ticket.answer(), Some(true));
        agent.shutdown();
    });
}

/// An allow-list engine under its own name, so that two of them can be told apart.
fn named_allowlist(runtime: &Runtime, name: &str, content: &[u8]) -> Arc<LoadedEngine> {
    let wasm = ringfence_bundled_engines::get("exec-allowlist")
        .expect("bundled engine")
        .wasm;
    let settings = EngineSettings::new(name)
        .with_policy(FailurePolicy::FailOpen)
        .with_deadline(Duration::from_millis(50));
    LoadedEngine::load(runtime, settings, wasm, content).expect("engine loads")
}

/// Decides one exec and returns the answer.
fn answer(agent: &Agent, exe: &str) -> bool {
    let ticket = Arc::new(Ticket::detached());
    agent.submit(exec(exe), Arc::clone(&ticket));
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(answer) = ticket.answer() {
            return answer;
        }
        assert!(Instant::now() < until, "unanswered");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One engine audited (a channel in an audit rollout), the other enforced: only the enforced
/// engine's denies deny; the audited engine's are allowed and reported as would-deny, and the
/// audit ends without a restart.
#[test]
fn an_audited_engine_reports_would_deny_while_the_other_engine_enforces() {
    within(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().expect("tempdir");
        let alerts = dir.path().join("alerts.jsonl");
        let runtime = Runtime::new().expect("runtime");
        let audited = named_allowlist(&runtime, "new-rules", b"deny /usr/bin/curl\nallow /**\n");
        let enforced = named_allowlist(&runtime, "old-rules", b"deny /usr/bin/wget\nallow /**\n");
        let mut config = config(&alerts);
        config.perm_deadline = Duration::from_secs(5);
        let agent = Agent::start(config, vec![audited, enforced]).expect("agent starts");
        assert_eq!(agent.enforcement(), Enforcement::Enforce);
        let before = agent.generation();
        let generation = agent
            .set_audited_engines(["new-rules".to_owned()].into())
            .expect("audited");
        assert!(generation > before, "the serving set is installed again");
        assert_eq!(agent.audited_engines(), vec!["new-rules".to_owned()]);
        assert!(answer(&agent, "/usr/bin/curl"), "audited deny is allowed");
        assert!(!answer(&agent, "/usr/bin/wget"), "enforced deny denies");
        assert!(answer(&agent, "/usr/bin/ls"));
        let stats = agent.stats();
        assert_eq!((stats.would_deny, stats.denied), (1, 1), "{stats:?}");
        // The same set again changes nothing; an empty one enforces everything.
        let again = agent
            .set_audited_engines(["new-rules".to_owned()].into())
            .expect("audited");
        assert_eq!(again, generation);
        agent
            .set_audited_engines(Default::default())
            .expect("enforced");
        assert!(!answer(&agent, "/usr/bin/curl"), "enforced again");
        let stats = agent.shutdown();
        assert_eq!((stats.would_deny, stats.denied), (1, 2), "{stats:?}");
        let text = std::fs::read_to_string(&alerts).expect("alerts");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("alert is JSON"))
            .collect();
        let curl_would_deny = lines.iter().any(|a| {
            a["unmapped"]["ringfence"]["would_deny"] == true
                && a["disposition"] == "Allowed"
                && a["process"]["file"]["path"] == "/usr/bin/curl"
        });
        assert!(curl_would_deny, "{text}");
        let wget_blocked = lines.iter().any(|a| {
            a["disposition"] == "Blocked" && a["process"]["file"]["path"] == "/usr/bin/wget"
        });
        assert!(wget_blocked, "{text}");
    });
}
