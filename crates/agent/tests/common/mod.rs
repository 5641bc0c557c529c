//! Helpers shared by the agent's integration tests: engines, root checks, a private tmpfs to
//! mark, and a watchdog that aborts the whole test process rather than let it hang.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use ringfence_agent::{Agent, StatsSnapshot};
use ringfence_engine_host::{EngineSettings, LoadedEngine, QuarantineRule, Runtime};
use ringfence_protocol::FailurePolicy;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn engine(
    runtime: &Runtime,
    name: &str,
    policy: FailurePolicy,
    deadline: Duration,
    content: &[u8],
) -> Arc<LoadedEngine> {
    let wasm = ringfence_bundled_engines::get(name)
        .expect("bundled engine")
        .wasm;
    let settings = EngineSettings::new(name)
        .with_policy(policy)
        .with_deadline(deadline)
        .with_quarantine(QuarantineRule {
            failures: 1_000_000,
            window: Duration::from_secs(1),
        });
    LoadedEngine::load(runtime, settings, wasm, content).expect("engine loads")
}

/// True when live-kernel tests can run; otherwise says why they are skipped.
pub fn root_or_skip(test: &str) -> bool {
    ringfence_testkit::root_or_skip(test)
}

/// Aborts the process if `f` does not return within `limit`. Aborting closes our fanotify
/// groups, and the kernel then allows every event still waiting: nothing stays blocked.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            eprintln!("test exceeded its hard timeout of {limit:?}; aborting");
            std::process::abort()
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("test body panicked"),
    }
}

/// A tmpfs mounted on a temporary directory, unmounted on drop: marking it can never affect
/// anything but the binaries a test copies there.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount() -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=32m,mode=0755", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs");
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies a system binary into the tmpfs under `name`.
    pub fn binary(&self, name: &str) -> PathBuf {
        let to = self.path().join(name);
        std::fs::copy("/usr/bin/true", &to).expect("copy binary");
        to
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// `SCHED_RR` as `/proc/PID/task/TID/stat` reports it.
pub const SCHED_RR: u32 = 2;

/// The scheduling policy of each of this process's threads (`/proc/self/task/*/stat`, field
/// 41).
pub fn thread_policies() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // Fields after the command name (which may hold spaces) start after the last ')';
            // the policy is field 41 overall, the 39th after it.
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().nth(38)?.parse().ok()
        })
        .collect()
}

/// Every thread's policy once one runs under `SCHED_RR`, or after five seconds: the responder
/// takes its policy as its thread starts, which may be after `Agent::start` returns.
pub fn policies_once_realtime() -> Vec<u32> {
    let asked = std::time::Instant::now();
    let mut policies = thread_policies();
    while !policies.contains(&SCHED_RR) && asked.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
        policies = thread_policies();
    }
    policies
}

/// The agent's figures once `answered` answers are counted: a thread answers a ticket first and
/// counts it after, so a test that saw every ticket answered may read the figures in between.
pub fn stats_once_counted(agent: &Agent, answered: u64) -> StatsSnapshot {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = agent.stats();
        if stats.allowed + stats.denied >= answered || Instant::now() > until {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
