//! Live-kernel tests: real fanotify permission events and the real process connector. They
//! run as root (as in CI) and otherwise say why they are skipped. Each marks only a tmpfs it
//! mounted itself (except the self-deadlock test, which must watch `/`), and each runs under a
//! hard timeout that aborts the process, which closes the fanotify group so the kernel allows
//! anything still waiting.

mod common;

use common::{Tmpfs, engine, root_or_skip, within};
use ringfence_agent::{Agent, AgentConfig, Enforcement, MuteSet, Sensor};
use ringfence_engine_host::Runtime;
use ringfence_protocol::{Event, FailurePolicy};
use ringfence_sensor::{FanotifyConfig, ProcConnector};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

fn fan_config(mount: &Path, alerts: PathBuf) -> AgentConfig {
    AgentConfig {
        sensors: vec![Sensor::Fanotify],
        fanotify: FanotifyConfig {
            exec_mounts: vec![mount.to_owned()],
            ..FanotifyConfig::default()
        },
        alerts: Some(alerts),
        mute: MuteSet::defaults(),
        ..AgentConfig::default()
    }
}

fn run(path: &Path) -> std::io::Result<std::process::ExitStatus> {
    Command::new(path).status()
}

fn is_eperm(result: &std::io::Result<std::process::ExitStatus>) -> bool {
    matches!(result, Err(e) if e.raw_os_error() == Some(EPERM))
}

/// What `execve` returns when fanotify denies it.
const EPERM: i32 = 1;

#[test]
fn allowlist_denies_one_binary_with_eperm_and_alerts() {
    if !root_or_skip("allowlist_denies_one_binary_with_eperm_and_alerts") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let good = fs.binary("good");
        let bad = fs.binary("bad");
        let alerts = fs.path().join("alerts.jsonl");
        let runtime = Runtime::new().expect("runtime");
        let content = format!("deny {}\nallow /**\n", bad.display());
        let allowlist = engine(
            &runtime,
            "exec-allowlist",
            FailurePolicy::FailClosed,
            Duration::from_millis(50),
            content.as_bytes(),
        );
        let agent = Agent::start(fan_config(fs.path(), alerts.clone()), vec![allowlist])
            .expect("agent starts");
        let denied = run(&bad);
        assert!(is_eperm(&denied), "bad binary: {denied:?}");
        assert!(run(&good).expect("good binary runs").success());
        assert!(
            run(Path::new("/usr/bin/true"))
                .expect("system true")
                .success()
        );
        let stats = agent.shutdown();
        assert!(stats.denied >= 1, "{stats:?}");
        let text = std::fs::read_to_string(&alerts).expect("alerts");
        assert!(
            text.lines()
                .any(|l| l.contains("\"Blocked\"") && l.contains(&*bad.to_string_lossy())),
            "{text}"
        );
    });
}

fn hung_engine(policy: FailurePolicy) {
    within(LIMIT, move || {
        let fs = Tmpfs::mount();
        let bin = fs.binary("bin");
        let runtime = Runtime::new().expect("runtime");
        // A 3 s engine deadline: only the agent's 20 ms responder can answer in time.
        let hung = engine(&runtime, "faulty", policy, Duration::from_secs(3), b"loop");
        let mut config = fan_config(fs.path(), fs.path().join("alerts.jsonl"));
        config.cache = false;
        let agent = Agent::start(config, vec![hung]).expect("agent starts");
        let started = Instant::now();
        let result = run(&bin);
        let took = started.elapsed();
        match policy {
            FailurePolicy::FailOpen => assert!(result.expect("runs").success()),
            FailurePolicy::FailClosed => assert!(is_eperm(&result), "{result:?}"),
        }
        // The 20 ms deadline plus fork/exec and scheduling slack on a loaded 2-core machine;
        // still far from the engine's 3 s, so only the responder can have answered.
        assert!(took < Duration::from_millis(1_500), "exec took {took:?}");
        let stats = agent.shutdown();
        assert!(stats.deadline_answers >= 1, "{stats:?}");
    });
}

#[test]
fn hung_engine_fail_open_exec_completes_within_deadline() {
    if root_or_skip("hung_engine_fail_open_exec_completes_within_deadline") {
        hung_engine(FailurePolicy::FailOpen);
    }
}

#[test]
fn hung_engine_fail_closed_exec_denied_within_deadline() {
    if root_or_skip("hung_engine_fail_closed_exec_denied_within_deadline") {
        hung_engine(FailurePolicy::FailClosed);
    }
}

#[test]
fn cache_answers_repeat_execs_and_modification_invalidates() {
    if !root_or_skip("cache_answers_repeat_execs_and_modification_invalidates") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bin = fs.binary("cached");
        let runtime = Runtime::new().expect("runtime");
        let ok = engine(
            &runtime,
            "faulty",
            FailurePolicy::FailOpen,
            Duration::from_millis(50),
            b"ok",
        );
        let agent = Agent::start(fan_config(fs.path(), fs.path().join("a.jsonl")), vec![ok])
            .expect("agent starts");
        assert!(run(&bin).expect("first").success());
        let first = agent.stats();
        assert_eq!(first.engine_calls, 1, "{first:?}");
        assert!(run(&bin).expect("second").success());
        let second = agent.stats();
        assert_eq!(
            second.engine_calls, 1,
            "second exec called the engine: {second:?}"
        );
        assert_eq!(second.cache_hits, 1, "{second:?}");
        // Rewriting the binary changes its ctime: the cache must miss.
        let bytes = std::fs::read(&bin).expect("read");
        std::fs::write(&bin, bytes).expect("rewrite");
        assert!(run(&bin).expect("third").success());
        let third = agent.stats();
        assert_eq!(
            third.engine_calls, 2,
            "modified binary hit the cache: {third:?}"
        );
        agent.shutdown();
    });
}

#[test]
fn muted_path_is_never_blocked() {
    if !root_or_skip("muted_path_is_never_blocked") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        std::fs::create_dir(fs.path().join("data")).expect("mkdir");
        let muted = fs.path().join("data").join("helper");
        std::fs::copy("/usr/bin/true", &muted).expect("copy");
        let other = fs.binary("other");
        let runtime = Runtime::new().expect("runtime");
        let deny_all = engine(
            &runtime,
            "exec-allowlist",
            FailurePolicy::FailClosed,
            Duration::from_millis(50),
            b"deny /**\n",
        );
        let mut config = fan_config(fs.path(), fs.path().join("a.jsonl"));
        config.mute = MuteSet::defaults().with_path(fs.path().join("data"));
        let agent = Agent::start(config, vec![deny_all]).expect("agent starts");
        assert!(run(&muted).expect("muted path runs").success());
        assert!(is_eperm(&run(&other)));
        let stats = agent.shutdown();
        assert!(stats.muted >= 1, "{stats:?}");
    });
}

#[test]
fn no_self_deadlock_while_watching_root() {
    if !root_or_skip("no_self_deadlock_while_watching_root") {
        return;
    }
    within(LIMIT, || {
        let data = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::new().expect("runtime");
        let ok = engine(
            &runtime,
            "faulty",
            FailurePolicy::FailOpen,
            Duration::from_millis(50),
            b"ok",
        );
        let alerts = data.path().join("alerts.jsonl");
        let mut config = fan_config(Path::new("/"), alerts.clone());
        // Opens of the data directory need authorisation too; the agent writes there itself.
        config.fanotify.watch_open = vec![data.path().to_owned()];
        config.mute = MuteSet::defaults().with_path(data.path());
        let agent = Agent::start(config, vec![ok]).expect("agent starts");
        for _ in 0..5 {
            let out = Command::new("/bin/sh")
                .args(["-c", "echo helper"])
                .output()
                .expect("helper runs");
            assert!(out.status.success());
        }
        for i in 0..20 {
            std::fs::write(data.path().join(format!("f{i}")), b"x").expect("write in data dir");
            let _ = std::fs::read(data.path().join(format!("f{i}"))).expect("read back");
        }
        let stats = agent.shutdown();
        assert!(stats.events >= 5, "{stats:?}");
    });
}

#[test]
fn process_connector_sees_short_lived_exec_with_argv() {
    if !root_or_skip("process_connector_sees_short_lived_exec_with_argv") {
        return;
    }
    within(LIMIT, || {
        let mut connector = ProcConnector::open().expect("connector");
        // A marker `sleep` accepts (it sums its arguments), so the child lives its 0.3 s: the
        // connector reads exe and argv from /proc after the notification, and a child that
        // exited at once on a bad argument raced that read.
        let marker = format!("0.000{}", std::process::id());
        let mut child = Command::new("/usr/bin/sleep")
            .arg("0.3")
            .arg(&marker)
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let until = Instant::now() + Duration::from_secs(10);
        let mut found = None;
        while found.is_none() && Instant::now() < until {
            for event in connector.read(Duration::from_millis(100)).expect("read") {
                if let Event::Exec(exec) = event
                    && exec.pid == pid
                {
                    found = Some(exec);
                }
            }
        }
        let _ = child.wait();
        let exec = found.expect("exec notification seen");
        assert_eq!(exec.exe, "/usr/bin/sleep");
        assert_eq!(exec.argv.last(), Some(&marker), "{exec:?}");
    });
}

#[test]
fn missing_mount_and_non_mount_point_are_clear_errors() {
    if !root_or_skip("missing_mount_and_non_mount_point_are_clear_errors") {
        return;
    }
    let missing = ringfence_sensor::Fanotify::open(&FanotifyConfig {
        exec_mounts: vec!["/no/such/mount".into()],
        ..FanotifyConfig::default()
    })
    .expect_err("missing mount");
    assert!(missing.to_string().contains("does not exist"), "{missing}");
    let dir = tempfile::tempdir().expect("tempdir");
    let not_mount = ringfence_sensor::Fanotify::open(&FanotifyConfig {
        exec_mounts: vec![dir.path().to_owned()],
        ..FanotifyConfig::default()
    })
    .expect_err("not a mount point");
    assert!(
        not_mount.to_string().contains("not a mount point"),
        "{not_mount}"
    );
}

/// What a failed self-upgrade exec falls back to: the channels handed off are served again by a
/// new agent, and an exec that started while nobody read waits in the kernel queue and is
/// decided by the new agent's engines (here: denied), not lost and not allowed by default.
#[test]
fn handed_off_channels_are_served_again_and_execs_queued_meanwhile_are_decided() {
    if !root_or_skip("handed_off_channels_are_served_again_and_execs_queued_meanwhile_are_decided")
    {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bad = fs.binary("bad");
        let good = fs.binary("good");
        let runtime = Runtime::new().expect("runtime");
        let content = format!("deny {}\nallow /**\n", bad.display());
        let allowlist = || {
            engine(
                &runtime,
                "exec-allowlist",
                FailurePolicy::FailOpen,
                Duration::from_millis(50),
                content.as_bytes(),
            )
        };
        let config = fan_config(fs.path(), fs.path().join("alerts.jsonl"));
        let agent = Agent::start(config.clone(), vec![allowlist()]).expect("agent starts");
        assert!(run(&good).expect("good runs").success());
        let (channels, _) = agent.handoff();
        assert!(channels.fanotify.is_some(), "the group comes back");
        // Nobody reads now: this exec waits in the kernel queue.
        let waiting = std::thread::spawn(move || run(&bad));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!waiting.is_finished(), "the exec waits for a reader");
        let again = Agent::start_with(config, vec![allowlist()], channels).expect("serves again");
        let queued = waiting.join().expect("exec thread");
        assert!(is_eperm(&queued), "decided by the engines: {queued:?}");
        assert!(run(&good).expect("good runs again").success());
        let stats = again.shutdown();
        assert!(stats.denied >= 1, "{stats:?}");
    });
}

/// Alert lines that report `binary` as a would-deny.
fn would_deny_alerts(alerts: &Path, binary: &Path) -> usize {
    let text = std::fs::read_to_string(alerts).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|alert| {
            alert["unmapped"]["ringfence"]["would_deny"] == true
                && alert["unmapped"]["ringfence"]["mode"] == "audit"
                && alert["disposition"] == "Allowed"
                && alert["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("would deny"))
                && alert["process"]["file"]["path"] == *binary.to_string_lossy()
        })
        .count()
}

/// Audit mode end to end on the live agent: an engine that denies everything lets the exec
/// run (twice: once decided, once from the cache) and writes a would-deny alert each time;
/// switched to enforce at runtime, the same agent denies the same exec with `EPERM` from the
/// cached verdict, and a fresh enforcing agent denies it too.
#[test]
fn audit_mode_allows_a_denied_exec_and_alerts_would_deny() {
    if !root_or_skip("audit_mode_allows_a_denied_exec_and_alerts_would_deny") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bin = fs.binary("audited");
        let alerts = fs.path().join("alerts.jsonl");
        let runtime = Runtime::new().expect("runtime");
        let deny_all = || {
            engine(
                &runtime,
                "exec-allowlist",
                FailurePolicy::FailClosed,
                Duration::from_millis(50),
                b"deny /**\n",
            )
        };
        let mut config = fan_config(fs.path(), alerts.clone());
        config.enforcement = Enforcement::Audit;
        let agent = Agent::start(config, vec![deny_all()]).expect("agent starts");
        assert_eq!(agent.enforcement(), Enforcement::Audit);
        for attempt in ["decided", "cached"] {
            let result = run(&bin);
            assert!(
                result.as_ref().is_ok_and(|s| s.success()),
                "{attempt} exec in audit mode: {result:?}"
            );
        }
        // Counters and alerts come right after the answer, so a moment after the exec ran.
        let until = Instant::now() + Duration::from_secs(10);
        while (agent.stats().would_deny < 2 || would_deny_alerts(&alerts, &bin) < 2)
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stats = agent.stats();
        assert_eq!(stats.denied, 0, "{stats:?}");
        assert!(stats.would_deny >= 2, "{stats:?}");
        assert!(stats.cache_hits >= 1, "{stats:?}");
        assert!(
            would_deny_alerts(&alerts, &bin) >= 2,
            "{}",
            std::fs::read_to_string(&alerts).unwrap_or_default()
        );
        // Switched without a restart: the cached deny verdict is carried out now.
        assert_eq!(
            agent.set_enforcement(Enforcement::Enforce),
            Enforcement::Audit
        );
        let denied = run(&bin);
        assert!(is_eperm(&denied), "enforce after audit: {denied:?}");
        let stats = agent.shutdown();
        assert!(stats.denied >= 1, "{stats:?}");

        let fresh = Agent::start(fan_config(fs.path(), alerts.clone()), vec![deny_all()])
            .expect("agent starts");
        assert_eq!(fresh.enforcement(), Enforcement::Enforce);
        let denied = run(&bin);
        assert!(is_eperm(&denied), "enforce: {denied:?}");
        let stats = fresh.shutdown();
        assert_eq!(stats.would_deny, 0, "{stats:?}");
    });
}

/// A fail-closed engine that misses its deadline is answered deny by policy; in audit mode
/// that policy deny is allowed and reported as a would-deny too.
#[test]
fn audit_mode_allows_a_fail_closed_deadline_answer() {
    if !root_or_skip("audit_mode_allows_a_fail_closed_deadline_answer") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bin = fs.binary("slow");
        let alerts = fs.path().join("alerts.jsonl");
        let runtime = Runtime::new().expect("runtime");
        let hung = engine(
            &runtime,
            "faulty",
            FailurePolicy::FailClosed,
            Duration::from_secs(3),
            b"loop",
        );
        let mut config = fan_config(fs.path(), alerts.clone());
        config.cache = false;
        config.enforcement = Enforcement::Audit;
        let agent = Agent::start(config, vec![hung]).expect("agent starts");
        assert!(run(&bin).expect("runs in audit mode").success());
        let stats = agent.shutdown();
        assert!(stats.deadline_answers >= 1, "{stats:?}");
        assert!(stats.would_deny >= 1, "{stats:?}");
        assert_eq!(stats.denied, 0, "{stats:?}");
        let text = std::fs::read_to_string(&alerts).unwrap_or_default();
        assert!(
            text.lines()
                .any(|l| l.contains("\"would_deny\":true") && l.contains("\"reason\":\"deadline\"")),
            "{text}"
        );
    });
}
