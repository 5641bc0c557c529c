//! Real-process tests of the supervisor, embedded in the test process with bash agents: crash
//! loop ⇒ LKG, hang ⇒ kill and restart, boot counter across guard runs, corrupt state ⇒ LKG,
//! stop leaves no agent behind. Each test has a hard timeout and kills what it started.

use ringfence_guard::{
    AgentCommand, ArgSlotSwitch, Config, ExpBackoff, Guard, Notifier, Phase, Policy, RestoreReason,
    Slot, Status, stop_pipe,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A bash agent: on the `lkg` slot it runs `lkg`, otherwise `current`. `$REC` is a log file.
fn agent(rec: &Path, current: &str, lkg: &str) -> AgentCommand {
    let script = format!("if [ \"$RINGFENCE_SLOT\" = lkg ]; then {lkg}; else {current}; fi",);
    let mut cmd = AgentCommand::new("bash", ["-c", script.as_str()]);
    cmd.env.push(("REC".into(), rec.as_os_str().to_owned()));
    cmd
}

/// Heartbeats every 100 ms forever, logging its slot and pid first.
const SERVE: &str = "echo \"serve $RINGFENCE_SLOT $$\" >> \"$REC\"; echo ready >&$RINGFENCE_GUARD_FD; \
                     while :; do echo ok >&$RINGFENCE_GUARD_FD; sleep 0.1; done";
const CRASH: &str = "echo crash >> \"$REC\"; exit 3";
const HANG: &str = "echo \"hang $$\" >> \"$REC\"; echo ok >&$RINGFENCE_GUARD_FD; exec sleep 1000";

fn config(dir: &Path, agent: AgentCommand) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        agent,
        policy: Policy {
            failures: 3,
            window: Duration::from_secs(60),
            boot_tries: 3,
        },
        heartbeat_timeout: Some(Duration::from_millis(800)),
        bless_after: Duration::from_secs(30),
        backoff: ExpBackoff::new(Duration::from_millis(50), Duration::from_millis(500), 0.5)
            .expect("backoff"),
        stop_grace: Duration::from_secs(2),
        own_process: false,
    }
}

/// Runs a guard on a thread; the returned handle stops it (and joins) when dropped.
struct Running {
    trigger: ringfence_guard::StopTrigger,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl Running {
    fn start(config: Config) -> Self {
        let dir = config.data_dir.clone();
        let (trigger, stop) = stop_pipe().expect("stop pipe");
        let thread = std::thread::spawn(move || {
            let mut slots = ArgSlotSwitch::default();
            let mut guard = Guard::new(config, &mut slots, Notifier::disabled()).expect("guard");
            guard.run(&stop);
        });
        Self {
            trigger,
            thread: Some(thread),
            dir,
        }
    }

    fn status(&self) -> Option<Status> {
        ringfence_guard::status::read(&self.dir.join("guard/status.json")).ok()
    }

    fn wait_for(&self, what: &str, limit: Duration, mut ok: impl FnMut(&Status) -> bool) -> Status {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.status()
                && ok(&s)
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        self.trigger.stop();
        if let Some(t) = self.thread.take() {
            t.join().expect("guard thread");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state letter is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn crash_loop_restores_lkg_within_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let guard = Running::start(config(dir.path(), agent(&rec, CRASH, SERVE)));
    let s = guard.wait_for("agent on LKG", Duration::from_secs(10), |s| {
        s.slot == Slot::Lkg && s.agent_ready
    });
    let restore = s.last_restore.expect("restore recorded");
    assert_eq!(restore.reason, RestoreReason::CrashLoop);
    assert!(
        restore.detail.contains("exited with code 3"),
        "{}",
        restore.detail
    );
    let log = std::fs::read_to_string(&rec).expect("record");
    assert_eq!(log.matches("crash").count(), 3, "{log}");
    assert!(log.contains("serve lkg"), "{log}");
}

#[test]
fn hung_agent_is_killed_and_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let mut cfg = config(dir.path(), agent(&rec, HANG, SERVE));
    cfg.policy.failures = 10;
    cfg.policy.boot_tries = 10;
    let guard = Running::start(cfg);
    let s = guard.wait_for("a restart after a hang", Duration::from_secs(10), |s| {
        s.restarts >= 1
    });
    assert!(
        s.last_failure
            .as_deref()
            .unwrap_or("")
            .contains("heartbeat"),
        "{s:?}"
    );
    let log = std::fs::read_to_string(&rec).expect("record");
    let first: u32 = log
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("hang "))
        .and_then(|p| p.trim().parse().ok())
        .expect("first hung pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(first) {
        assert!(Instant::now() < deadline, "hung agent {first} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn corrupt_state_file_starts_on_lkg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    std::fs::create_dir_all(dir.path().join("guard")).expect("mkdir");
    std::fs::write(
        dir.path().join("guard/state.json"),
        b"{\"version\":1,\"boot_tr",
    )
    .expect("write");
    let guard = Running::start(config(dir.path(), agent(&rec, SERVE, SERVE)));
    let s = guard.wait_for("agent on LKG", Duration::from_secs(10), |s| s.agent_ready);
    assert_eq!(s.slot, Slot::Lkg);
    let pin = s.pinned_lkg.expect("pinned");
    assert_eq!(pin.reason, RestoreReason::CorruptState);
    assert!(pin.detail.contains("corrupt"), "{}", pin.detail);
    // The state was rewritten in good order.
    let state = ringfence_guard::state::load(&dir.path().join("guard/state.json")).expect("valid");
    assert!(state.expect("present").pinned_lkg.is_some());
}

#[test]
fn boot_counter_persists_across_guard_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let state = dir.path().join("guard/state.json");
    for run in 0..3 {
        let guard = Running::start(config(dir.path(), agent(&rec, SERVE, SERVE)));
        let s = guard.wait_for("agent serving", Duration::from_secs(10), |s| s.agent_ready);
        assert_eq!(s.slot, Slot::Current, "run {run}");
        assert_eq!(s.boot_tries_left, 2 - run, "run {run}");
        // A boot loop ends with a panic or a power cut, not a clean stop (which gives the try
        // back): the state left is the one written while the agent ran.
        let crashed = std::fs::read(&state).expect("state while running");
        drop(guard);
        std::fs::write(&state, crashed).expect("power cut");
    }
    let guard = Running::start(config(dir.path(), agent(&rec, SERVE, SERVE)));
    let s = guard.wait_for("agent serving", Duration::from_secs(10), |s| s.agent_ready);
    assert_eq!(s.slot, Slot::Lkg);
    assert_eq!(
        s.pinned_lkg.map(|r| r.reason),
        Some(RestoreReason::BootLoop)
    );
}

#[test]
fn healthy_agent_is_blessed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let mut cfg = config(dir.path(), agent(&rec, SERVE, SERVE));
    cfg.bless_after = Duration::from_millis(300);
    let guard = Running::start(cfg);
    let s = guard.wait_for("blessing", Duration::from_secs(10), |s| s.blessed);
    assert_eq!(s.boot_tries_left, 3);
    assert_eq!(s.slot, Slot::Current);
}

#[test]
fn stop_leaves_no_agent_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    // The agent ignores SIGTERM and has a helper child: both must be gone after stop.
    let stubborn = "trap '' TERM; sleep 1000 & echo \"helper $!\" >> \"$REC\"; \
                    while :; do echo ok >&$RINGFENCE_GUARD_FD; sleep 0.1; done";
    let mut cfg = config(dir.path(), agent(&rec, stubborn, stubborn));
    cfg.stop_grace = Duration::from_millis(500);
    let mut guard = Running::start(cfg);
    let s = guard.wait_for("agent running", Duration::from_secs(10), |s| {
        s.phase == Phase::Running && s.agent_pid.is_some()
    });
    let pid = s.agent_pid.expect("pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    let helper: u32 = loop {
        let log = std::fs::read_to_string(&rec).unwrap_or_default();
        if let Some(p) = log.lines().find_map(|l| l.strip_prefix("helper ")) {
            break p.trim().parse().expect("helper pid");
        }
        assert!(Instant::now() < deadline, "no helper");
        std::thread::sleep(Duration::from_millis(20));
    };
    guard.stop();
    assert_eq!(guard.status().map(|s| s.phase), Some(Phase::Stopped));
    assert!(!alive(pid), "agent {pid} outlived the guard");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(helper) {
        assert!(
            Instant::now() < deadline,
            "helper {helper} outlived the guard"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reports the guard spooled (`<data-dir>/spool/3-*.json`).
fn crash_reports(dir: &Path) -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir(dir.join("spool")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).expect("read")).expect("json"))
        .collect()
}

/// Serves like SERVE, and on SIGTERM says `stopping` and exits 0, as the real agent does.
const SERVE_UNTIL_TERM: &str = "trap 'echo stopping >&$RINGFENCE_GUARD_FD; exit 0' TERM; \
                                echo \"serve $RINGFENCE_SLOT $$\" >> \"$REC\"; echo ready >&$RINGFENCE_GUARD_FD; \
                                while :; do echo ok >&$RINGFENCE_GUARD_FD; sleep 0.1; done";

fn kill(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

#[test]
fn sigterm_to_the_agent_is_a_requested_stop_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let guard = Running::start(config(
        dir.path(),
        agent(&rec, SERVE_UNTIL_TERM, SERVE_UNTIL_TERM),
    ));
    // More stops than the crash loop (3) and the boot counter (3) allow for failures.
    let mut last = 0;
    for round in 0..5 {
        let s = guard.wait_for("a new agent serving", Duration::from_secs(10), |s| {
            s.agent_ready && s.agent_pid.is_some_and(|p| p != last)
        });
        assert_eq!(s.slot, Slot::Current, "round {round}: {s:?}");
        assert_eq!(s.boot_tries_left, 2, "round {round}: a stop spent a try");
        last = s.agent_pid.expect("pid");
        kill(last, "TERM");
    }
    let s = guard.wait_for("the sixth agent", Duration::from_secs(10), |s| {
        s.agent_ready && s.agent_pid.is_some_and(|p| p != last)
    });
    assert_eq!(s.slot, Slot::Current);
    assert!(s.last_restore.is_none(), "{s:?}");
    assert!(s.last_failure.is_none(), "{s:?}");
    assert_eq!(s.restarts, 0, "{s:?}");
    assert!(
        s.last_stop
            .as_deref()
            .is_some_and(|w| w.contains("stop request")),
        "{s:?}"
    );
    assert!(crash_reports(dir.path()).is_empty(), "no crash reports");
}

#[test]
fn sigsegv_is_a_crash_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let segv = "echo ready >&$RINGFENCE_GUARD_FD; kill -SEGV $$; sleep 1000";
    let guard = Running::start(config(dir.path(), agent(&rec, segv, SERVE)));
    let s = guard.wait_for("agent on LKG", Duration::from_secs(10), |s| {
        s.slot == Slot::Lkg && s.agent_ready
    });
    assert!(
        s.last_restore
            .is_some_and(|r| r.reason == RestoreReason::CrashLoop && r.detail.contains("SIGSEGV"))
    );
    let reports = crash_reports(dir.path());
    assert_eq!(reports.len(), 3, "{reports:?}");
    for report in &reports {
        assert_eq!(report["kind"], "crash");
        assert_eq!(report["body"]["signal"], "SIGSEGV");
    }
}

#[test]
fn exit_zero_nobody_asked_for_is_a_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let guard = Running::start(config(dir.path(), agent(&rec, "exit 0", SERVE)));
    let s = guard.wait_for("agent on LKG", Duration::from_secs(10), |s| {
        s.slot == Slot::Lkg && s.agent_ready
    });
    assert_eq!(
        s.last_restore.map(|r| r.reason),
        Some(RestoreReason::CrashLoop)
    );
    let reports = crash_reports(dir.path());
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert!(
        reports[0]["body"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("without a stop request")),
        "{reports:?}"
    );
}

#[test]
fn clean_guard_stops_spend_no_boot_tries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    // The agent dies of the guard's SIGTERM (no trap): still a stop the guard asked for.
    for run in 0..5 {
        let mut guard = Running::start(config(dir.path(), agent(&rec, SERVE, SERVE)));
        let s = guard.wait_for("agent serving", Duration::from_secs(10), |s| s.agent_ready);
        assert_eq!(s.slot, Slot::Current, "run {run}");
        assert_eq!(s.boot_tries_left, 2, "run {run}");
        guard.stop();
        let s = guard.status().expect("status");
        assert_eq!(s.phase, Phase::Stopped);
        assert_eq!(s.boot_tries_left, 3, "run {run}: the try is back");
    }
    assert!(crash_reports(dir.path()).is_empty());
}

/// A stop request that is pending (as systemd's SIGTERM to the whole unit is, the instant the
/// agent has already exited) but has not woken the guard yet; the pipe stops it for real.
struct PendingStop {
    pipe: ringfence_guard::StopPipe,
    pending: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::os::fd::AsFd for PendingStop {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pipe.as_fd()
    }
}

impl ringfence_guard::Shutdown for PendingStop {
    fn take(&self) -> bool {
        true
    }

    fn pending(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn exit_zero_while_the_guard_has_a_stop_pending_is_a_requested_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    // Exits 0 without announcing anything, like an agent killed with its whole unit.
    let quits = "echo \"run $$\" >> \"$REC\"; echo ready >&$RINGFENCE_GUARD_FD; \
                 while [ ! -e \"$REC.quit\" ]; do echo ok >&$RINGFENCE_GUARD_FD; sleep 0.05; done; exit 0";
    let (mut trigger, pipe) = stop_pipe().expect("stop pipe");
    let pending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shutdown = PendingStop {
        pipe,
        pending: std::sync::Arc::clone(&pending),
    };
    let cfg = config(dir.path(), agent(&rec, quits, quits));
    let data = dir.path().to_path_buf();
    let thread = std::thread::spawn(move || {
        let mut slots = ArgSlotSwitch::default();
        let mut guard = Guard::new(cfg, &mut slots, Notifier::disabled()).expect("guard");
        guard.run(&shutdown);
    });
    let status = || ringfence_guard::status::read(&data.join("guard/status.json")).ok();
    let wait = |what: &str, ok: &dyn Fn(&Status) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = status()
                && ok(&s)
            {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("agent serving", &|s| s.agent_ready);
    pending.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut quit = rec.clone().into_os_string();
    quit.push(".quit");
    std::fs::write(&quit, b"").expect("quit");
    let s = wait("the requested stop", &|s| s.last_stop.is_some());
    assert!(s.last_failure.is_none(), "{s:?}");
    assert_eq!(s.restarts, 0);
    assert!(crash_reports(dir.path()).is_empty());
    // The pending stop is served first: no agent is started only to be killed.
    std::thread::sleep(Duration::from_millis(400));
    let log = std::fs::read_to_string(&rec).expect("record");
    assert_eq!(log.matches("run ").count(), 1, "{log}");
    trigger.stop();
    thread.join().expect("guard thread");
    assert_eq!(status().map(|s| s.phase), Some(Phase::Stopped));
}

/// Like [`SERVE`], logging whether the guard switched the agent's BPF sensor off, and why.
const SERVE_BPF: &str = "echo \"serve $RINGFENCE_SLOT bpf=${RINGFENCE_BPF_OFF:-on}\" >> \"$REC\"; \
                         echo ready >&$RINGFENCE_GUARD_FD; \
                         while :; do echo ok >&$RINGFENCE_GUARD_FD; sleep 0.1; done";

#[test]
fn a_host_that_boot_loops_after_loading_the_bpf_sensor_comes_back_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let state = dir.path().join("guard/state.json");
    for run in 0..3 {
        let guard = Running::start(config(dir.path(), agent(&rec, SERVE_BPF, SERVE_BPF)));
        guard.wait_for("agent serving", Duration::from_secs(10), |s| s.agent_ready);
        // The "panic": the state left is the one written while the agent (and sensor) ran.
        let crashed = std::fs::read(&state).expect("state while running");
        drop(guard);
        std::fs::write(&state, crashed).expect("power cut");
        let log = std::fs::read_to_string(&rec).expect("rec");
        assert!(
            log.lines().last().is_some_and(|l| l.ends_with("bpf=on")),
            "run {run}: {log}"
        );
    }
    let guard = Running::start(config(dir.path(), agent(&rec, SERVE_BPF, SERVE_BPF)));
    let s = guard.wait_for("agent serving", Duration::from_secs(10), |s| s.agent_ready);
    assert_eq!(s.slot, Slot::Lkg);
    let log = std::fs::read_to_string(&rec).expect("rec");
    let last = log.lines().last().expect("a start");
    assert!(
        last.starts_with("serve lkg bpf=switched off by the guard after a boot loop"),
        "{log}"
    );
}
