//! Live test of a hardened agent, in a child process of its own (confinement cannot be undone,
//! and the test harness must keep its privileges to unmount): capabilities, seccomp per thread
//! role and Landlock applied as `ringfence agent` applies them, then real execs through
//! fanotify, a deliberate violation from a thread under the engine filter, and writes and execs
//! outside the Landlock view. Root only; it says why it skips otherwise.

mod common;

use common::{Tmpfs, engine, root_or_skip};
use ringfence_agent::{Agent, AgentConfig, MuteSet, Sensor};
use ringfence_engine_host::Runtime;
use ringfence_hardening::{FsView, Hardening, kept_mask};
use ringfence_protocol::FailurePolicy;
use ringfence_sensor::{Channels, Fanotify, FanotifyConfig};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CHILD: &str = "RINGFENCE_HARDENED_TEST_DIR";
const NAME: &str = "hardened_agent_answers_execs_and_contains_violations";
const EPERM: i32 = 1;

fn status_field(path: &str, field: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn exec(path: &Path) -> std::io::Result<std::process::ExitStatus> {
    Command::new(path).status()
}

fn denied_by_fanotify(path: &Path) -> bool {
    matches!(exec(path), Err(e) if e.raw_os_error() == Some(EPERM))
}

/// Filters stacked on each agent thread, by thread name.
fn filters_by_thread() -> Vec<(String, u32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let count = status_field(&format!("{}/status", dir.display()), "Seccomp_filters:");
        threads.push((name.trim().to_owned(), count.parse().unwrap_or(0)));
    }
    threads
}

fn scenario(dir: &Path) {
    let good = dir.join("good");
    let bad = dir.join("bad");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let alerts = data.join("alerts.jsonl");
    let mut config = AgentConfig {
        sensors: vec![Sensor::Fanotify],
        fanotify: FanotifyConfig {
            exec_mounts: vec![dir.to_owned()],
            ..FanotifyConfig::default()
        },
        alerts: Some(alerts),
        mute: MuteSet::defaults(),
        ..AgentConfig::default()
    };
    // As `ringfence agent` does it: the channel first, then confinement, then every thread.
    let channels = Channels {
        fanotify: Some(Fanotify::open(&config.fanotify).expect("fanotify")),
        ..Channels::default()
    };
    let hardening = Hardening::new(FsView {
        read_write: vec![data.clone()],
        execute: vec![dir.to_owned()],
    })
    .expect("policies compile");
    let report = hardening.confine_process(None).expect("confined");
    eprintln!("hardened: {report}");
    config.engine_threads = Some(hardening.engine_confinement());

    let status = "/proc/thread-self/status";
    assert_eq!(status_field(status, "NoNewPrivs:"), "1");
    assert_eq!(status_field(status, "Seccomp:"), "2");
    for set in ["CapEff:", "CapPrm:", "CapBnd:", "CapInh:", "CapAmb:"] {
        let mask = u64::from_str_radix(&status_field(status, set), 16).expect("mask");
        assert_eq!(mask, kept_mask(), "{set}");
    }
    let own_filters: u32 = status_field(status, "Seccomp_filters:")
        .parse()
        .expect("count");

    let runtime = Runtime::new().expect("runtime");
    let content = format!("deny {}\nallow /**\n", bad.display());
    let allowlist = engine(
        &runtime,
        "exec-allowlist",
        FailurePolicy::FailClosed,
        Duration::from_millis(50),
        content.as_bytes(),
    );
    let agent = Agent::start_with(config.clone(), vec![allowlist], channels).expect("agent starts");
    assert!(exec(&good).expect("good runs").success());
    assert!(denied_by_fanotify(&bad), "the denied binary ran");

    // Every thread that runs engines stacked the engine filter on the process filter.
    let threads = filters_by_thread();
    let engine_threads: Vec<_> = threads
        .iter()
        .filter(|(name, _)| name.starts_with("rf-worker") || name == "rf-notify")
        .collect();
    assert!(!engine_threads.is_empty(), "{threads:?}");
    for (name, count) in &engine_threads {
        assert_eq!(*count, own_filters + 1, "{name}: {threads:?}");
    }

    // A deliberate violation: a thread under the engine role tries what an escaped guest would.
    let confinement = config.engine_threads.clone().expect("engine role");
    let violation = std::thread::spawn(move || {
        confinement
            .confine_current_thread()
            .expect("engine role applies");
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect_err("socket is refused");
        assert_eq!(socket.raw_os_error(), Some(EPERM), "socket: {socket}");
        let spawn = Command::new("/usr/bin/true")
            .status()
            .expect_err("spawn is refused");
        assert_eq!(spawn.raw_os_error(), Some(EPERM), "spawn: {spawn}");
        let mkdir = std::fs::create_dir("/tmp/ringfence-engine-mkdir").expect_err("mkdir");
        assert_eq!(mkdir.raw_os_error(), Some(EPERM), "mkdir: {mkdir}");
        // What the role is for still works: resolving a process from /proc.
        std::fs::read_to_string("/proc/self/status").expect("read /proc");
    });
    violation
        .join()
        .expect("violating thread finished its checks");

    // The agent kept running and keeps answering, both ways.
    assert!(
        exec(&good)
            .expect("good runs after the violation")
            .success()
    );
    assert!(
        denied_by_fanotify(&bad),
        "denied binary ran after the violation"
    );

    // The workers still see who executed: a Landlock domain on them would hide /proc/PID/exe
    // of every process outside it, capabilities or not.
    let me = std::env::current_exe().expect("test binary");
    // The verdict goes to the kernel first, the alert after it: wait for the line.
    let blocked = |text: &str| {
        text.lines()
            .any(|l| l.contains("\"Blocked\"") && l.contains(&*me.to_string_lossy()))
    };
    let waited = std::time::Instant::now();
    let mut text = String::new();
    while waited.elapsed() < Duration::from_secs(10) {
        text = std::fs::read_to_string(data.join("alerts.jsonl")).expect("alerts");
        if blocked(&text) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        blocked(&text),
        "blocked exec without the executing process: {text}"
    );

    // Threads created under the Landlock view: no writes outside the data directory, no execs
    // outside the execute view (the shared libraries and `dir`).
    let outside = std::env::temp_dir().join(format!("ringfence-landlock-{}", std::process::id()));
    let inside = data.join("inside");
    let (outcome, report) = hardening
        .landlocked(|| {
            let write = std::fs::write(&outside, b"x").map_err(|e| e.kind());
            let write_inside = std::fs::write(&inside, b"x").map_err(|e| e.kind());
            let foreign = exec(Path::new("/usr/bin/true")).map_err(|e| e.kind());
            (write, write_inside, foreign)
        })
        .expect("landlock applies");
    eprintln!("{report}");
    assert_eq!(
        outcome.0,
        Err(ErrorKind::PermissionDenied),
        "write outside the view"
    );
    assert_eq!(outcome.1, Ok(()), "write inside the data directory");
    assert!(
        matches!(outcome.2, Err(ErrorKind::PermissionDenied)),
        "exec outside the view"
    );
    // The domain was the Landlock thread's alone: this thread still writes where it likes.
    std::fs::write(&outside, b"x").expect("unconfined thread writes");
    let _ = std::fs::remove_file(&outside);

    let stats = agent.shutdown();
    assert!(stats.denied >= 2 && stats.allowed >= 2, "{stats:?}");
}

#[test]
fn hardened_agent_answers_execs_and_contains_violations() {
    if let Some(dir) = std::env::var_os(CHILD) {
        scenario(&PathBuf::from(dir));
        return;
    }
    if !root_or_skip(NAME) {
        return;
    }
    let fs = Tmpfs::mount();
    fs.binary("good");
    fs.binary("bad");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, fs.path())
        .spawn()
        .expect("child test");
    // A hung child is killed: that closes its fanotify group and the kernel allows what waits.
    let until = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            panic!("hardened child did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "hardened scenario failed: {status}");
}
