//! Real-process tests of the agent's in-place upgrade (SIGUSR2) and self-protection, as root:
//! execs keep running through the upgrade and none fails or hangs, the pid stays the one the
//! guard supervises, a binary that cannot start is refused while the old image keeps serving,
//! a stranger cannot open the agent's files for writing, and renaming over or deleting them is
//! reported, before and after an upgrade.
//!
//! The agent binary itself lives on the marked tmpfs, so its own `execve` raises exec
//! permission events on the group it hands over: the case the upgrade must not deadlock on.

mod common;

use common::Server;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

/// One test at a time: a copy of the agent binary still open for writing in one test is
/// inherited by a child another test forks, and exec of it then fails with ETXTBSY.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A child killed and reaped when the test ends, pass or fail: no agent outlives its test.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A tmpfs the test marks, with the agent binary, two programs and the engine content on it.
struct Stage {
    dir: tempfile::TempDir,
}

impl Stage {
    fn new() -> Stage {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1g,mode=0755", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(mounted.success(), "mount tmpfs");
        let stage = Stage { dir };
        std::fs::create_dir(stage.path().join("bin")).expect("mkdir bin");
        std::fs::create_dir(stage.path().join("data")).expect("mkdir data");
        std::fs::write(stage.path().join("data/state"), b"agent state").expect("state");
        stage.install(env!("CARGO_BIN_EXE_ringfence"));
        for name in ["good", "bad"] {
            std::fs::copy("/usr/bin/true", stage.path().join(name)).expect("copy true");
        }
        let content = format!("deny {}\nallow /**\n", stage.path().join("bad").display());
        std::fs::write(stage.content(), content).expect("content");
        stage
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn binary(&self) -> PathBuf {
        self.path().join("bin/ringfence")
    }

    fn content(&self) -> PathBuf {
        self.path().join("allow.txt")
    }

    /// Replaces the agent binary the way a package manager does: a new file, renamed over.
    fn install(&self, from: impl AsRef<Path>) {
        let staged = self.path().join("bin/ringfence.new");
        std::fs::copy(from, &staged).expect("stage binary");
        std::fs::rename(&staged, self.binary()).expect("rename over");
    }

    /// Runs the staged binary with the arguments `configure` adds: the child and its standard
    /// error lines.
    fn run(
        &self,
        configure: impl FnOnce(&mut Command) -> &mut Command,
    ) -> (Running, mpsc::Receiver<String>) {
        let mut command = Command::new(self.binary());
        configure(&mut command).stderr(Stdio::piped());
        let mut child = Running(command.spawn().expect("the staged binary starts"));
        let lines = lines_of(&mut child.0);
        (child, lines)
    }

    fn agent_args(&self) -> Vec<String> {
        let p = |p: PathBuf| p.to_string_lossy().into_owned();
        vec![
            "--standalone".into(),
            "--engine".into(),
            "bundled:exec-allowlist".into(),
            "--content".into(),
            p(self.content()),
            "--mount".into(),
            p(self.path().to_owned()),
            "--alerts".into(),
            p(self.path().join("alerts.jsonl")),
            "--data-dir".into(),
            p(self.path().join("data")),
            "--perm-deadline".into(),
            "5s".into(),
        ]
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The stage for one test, holding the lock that runs these tests one at a time; `None`, saying
/// why, without root.
fn staged(test: &str) -> Option<(MutexGuard<'static, ()>, Stage)> {
    if !ringfence_testkit::root_or_skip(test) {
        return None;
    }
    let serial = serial();
    Some((serial, Stage::new()))
}

/// Standard error lines of a child, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn wait_for(lines: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> String {
    let until = Instant::now() + limit;
    let mut seen = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!(
        "no line with {needle:?} within {limit:?}; saw:\n{}",
        seen.join("\n")
    );
}

/// `Seccomp_filters` of the main thread of `pid`: how many filters are stacked on it.
fn seccomp_filters(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("agent alive")
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Seccomp_filters in status")
}

fn exe_inode(pid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/exe"))
        .expect("agent alive")
        .ino()
}

/// Execs `good` and `bad` in a loop until stopped; counts what went wrong.
struct ExecLoop {
    stop: Arc<AtomicBool>,
    runs: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl ExecLoop {
    fn start(stage: &Stage) -> ExecLoop {
        ExecLoop::with_denials(stage, true)
    }

    /// `bad_denied`: whether an engine denies `bad` (a managed agent with no release allows it).
    fn with_denials(stage: &Stage, bad_denied: bool) -> ExecLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(AtomicU64::new(0));
        let (good, bad) = (stage.path().join("good"), stage.path().join("bad"));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            let runs = Arc::clone(&runs);
            move || {
                let mut problems = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match Command::new(&good).status() {
                        Ok(status) if status.success() => {}
                        other => problems.push(format!("good: {other:?}")),
                    }
                    match Command::new(&bad).status() {
                        Err(e) if bad_denied && e.raw_os_error() == Some(libc::EPERM) => {}
                        Ok(status) if !bad_denied && status.success() => {}
                        other => problems.push(format!("bad: {other:?}")),
                    }
                    let took = started.elapsed();
                    if took > Duration::from_secs(5) {
                        problems.push(format!("two execs took {took:?}"));
                    }
                    runs.fetch_add(1, Ordering::Relaxed);
                }
                problems
            }
        });
        ExecLoop { stop, runs, thread }
    }

    fn wait_runs(&self, more: u64) {
        let target = self.runs.load(Ordering::Relaxed) + more;
        let until = Instant::now() + Duration::from_secs(30);
        while self.runs.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < until, "exec loop stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let problems = self.thread.join().expect("exec loop");
        (self.runs.load(Ordering::Relaxed), problems)
    }
}

/// Runs `script` in a shell with `$1` = `path`: success, and what it said on stderr.
fn stranger(script: &str, path: &Path) -> (bool, String) {
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(path)
        .output()
        .expect("run sh");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn signal(pid: u32, name: &str) {
    let sent = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -{name} {pid}");
}

#[test]
fn upgrade_in_place_while_execs_loop_then_refuse_a_broken_binary() {
    let Some((_serial, stage)) =
        staged("upgrade_in_place_while_execs_loop_then_refuse_a_broken_binary")
    else {
        return;
    };
    let (mut agent, lines) = stage.run(|command| command.arg("agent").args(stage.agent_args()));
    let pid = agent.0.id();
    wait_for(
        &lines,
        "engine exec-allowlist code compiled",
        Duration::from_secs(60),
    );
    wait_for(&lines, "ready", Duration::from_secs(60));
    let execs = ExecLoop::start(&stage);
    execs.wait_runs(20);

    // The package manager installs a new build; the agent is asked to upgrade.
    let before = exe_inode(pid);
    let filters = seccomp_filters(pid);
    assert!(filters >= 1, "the agent is confined");
    stage.install(env!("CARGO_BIN_EXE_ringfence"));
    let installed = std::fs::metadata(stage.binary()).expect("stat").ino();
    signal(pid, "USR2");
    wait_for(
        &lines,
        "all threads, in force since the previous image",
        Duration::from_secs(60),
    );
    // The new image finds the engine the old one compiled in the same data directory.
    wait_for(
        &lines,
        "engine exec-allowlist code from the engine cache",
        Duration::from_secs(60),
    );
    wait_for(&lines, "upgraded in place", Duration::from_secs(60));
    assert_eq!(
        seccomp_filters(pid),
        filters,
        "the same filter is not stacked again"
    );
    assert!(
        agent.0.try_wait().expect("wait").is_none(),
        "same process, still running"
    );
    assert_ne!(exe_inode(pid), before, "the new image runs");
    assert_eq!(exe_inode(pid), installed, "and it is the installed binary");
    execs.wait_runs(20);

    // A broken build: refused by the probe; the running image keeps serving.
    let broken = stage.path().join("broken");
    std::fs::write(&broken, b"\x7fELF this is not a program").expect("write broken");
    stage.install(&broken);
    Command::new("chmod")
        .arg("+x")
        .arg(stage.binary())
        .status()
        .expect("chmod");
    signal(pid, "USR2");
    wait_for(
        &lines,
        "ringfence agent: upgrade refused",
        Duration::from_secs(30),
    );
    assert_eq!(exe_inode(pid), installed, "still the good image");
    execs.wait_runs(20);

    let (runs, problems) = execs.finish();
    assert!(problems.is_empty(), "after {runs} rounds: {problems:#?}");
    signal(pid, "TERM");
    let status = agent.0.wait().expect("agent exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn strangers_cannot_write_the_agent_files_and_renames_or_deletions_are_reported() {
    let Some((_serial, stage)) =
        staged("strangers_cannot_write_the_agent_files_and_renames_or_deletions_are_reported")
    else {
        return;
    };
    let doomed = stage.path().join("data/doomed");
    std::fs::write(&doomed, b"to be deleted").expect("doomed");
    let (mut agent, lines) = stage.run(|command| command.arg("agent").args(stage.agent_args()));
    wait_for(&lines, "ready", Duration::from_secs(60));

    // The test process is the agent's parent, which the agent never blocks (as it never
    // blocks its guard); strangers are children of a shell.
    let binary = stage.binary();
    let state = stage.path().join("data/state");
    let planted = stage.path().join("data/planted");
    // The running binary is the kernel's to guard: opening it for writing fails (ETXTBSY).
    let (ok, why) = stranger("echo evil >> \"$1\"", &binary);
    assert!(!ok && why.contains("busy"), "{why}");
    for target in [&state, &planted] {
        let (ok, why) = stranger("echo evil >> \"$1\"", target);
        assert!(
            !ok && why.contains("not permitted"),
            "{}: {why}",
            target.display()
        );
    }
    // O_CREAT makes the inode before fanotify asks, so an empty file may appear; no byte of
    // the stranger's gets into it.
    assert!(
        std::fs::metadata(&planted).map_or(true, |m| m.len() == 0),
        "nothing was planted"
    );
    // Reading is not tampering, nor is running the agent's own binary (the CLI).
    assert!(stranger("cat \"$1\" >/dev/null", &state).0);
    assert!(stranger("head -c 4 \"$1\" >/dev/null", &binary).0);
    assert!(stranger("\"$1\" --version >/dev/null", &binary).0);
    assert_eq!(std::fs::read(&state).expect("state"), b"agent state");

    // No fanotify event can refuse a rename or an unlink: they are reported. The file renamed
    // over the binary is a copy of it, so the upgrade below runs; the deletion after it is
    // seen by the new image, on the watch handed over.
    assert!(
        stranger("cp \"$1\" \"$1.evil\" && mv \"$1.evil\" \"$1\"", &binary).0,
        "rename over the binary"
    );
    signal(agent.0.id(), "USR2");
    wait_for(&lines, "upgraded in place", Duration::from_secs(60));
    // Deleted, then planted again under the same name (the open for writing is refused, but
    // O_CREAT has made the file by then): both are reported.
    assert!(
        stranger("rm \"$1\"; (: > \"$1\"); true", &doomed).0,
        "delete a data file and plant another"
    );

    signal(agent.0.id(), "TERM");
    assert!(agent.0.wait().expect("agent exits").success());
    let alerts = std::fs::read_to_string(stage.path().join("alerts.jsonl")).expect("alerts");
    for (what, how) in [
        ("data/state", "denied"),
        ("data/planted", "denied"),
        ("bin/ringfence", "renamed another file over"),
        ("data/doomed", "deleted"),
        ("data/doomed", "created"),
    ] {
        assert!(
            alerts
                .lines()
                .any(|l| l.contains("ringfence-self-protection")
                    && l.contains(what)
                    && l.contains(how)),
            "no tamper alert for {what} ({how}): {alerts}"
        );
    }
    // Once the agent is gone nothing is protected any more.
    assert!(stranger("echo ok >> \"$1\"", &state).0);
}

fn guard_status(data: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(data.join("guard/status.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

#[test]
fn upgrade_under_the_guard_keeps_the_pid_it_supervises() {
    let Some((_serial, stage)) = staged("upgrade_under_the_guard_keeps_the_pid_it_supervises")
    else {
        return;
    };
    let data = stage.path().join("guard-data");
    let (mut guard, lines) = stage.run(|command| {
        command
            .arg("guard")
            .arg("--data-dir")
            .arg(&data)
            .args(["--heartbeat-timeout", "30s", "--"])
            .args(stage.agent_args())
    });
    wait_for(&lines, "ringfence agent: ready", Duration::from_secs(60));
    let until = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        let status = guard_status(&data);
        if status["agent_ready"] == true
            && let Some(pid) = status["agent_pid"].as_u64()
        {
            break u32::try_from(pid).expect("pid");
        }
        assert!(
            Instant::now() < until,
            "guard never saw the agent ready: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let execs = ExecLoop::start(&stage);
    execs.wait_runs(10);

    stage.install(env!("CARGO_BIN_EXE_ringfence"));
    let installed = std::fs::metadata(stage.binary()).expect("stat").ino();
    // What `systemctl reload ringfence-guard` sends.
    signal(guard.0.id(), "USR2");
    wait_for(&lines, "upgraded in place", Duration::from_secs(60));
    assert_eq!(exe_inode(pid), installed, "the agent runs the new binary");
    execs.wait_runs(10);
    let status = guard_status(&data);
    assert_eq!(
        status["agent_pid"].as_u64(),
        Some(u64::from(pid)),
        "{status}"
    );
    assert_eq!(status["restarts"].as_u64(), Some(0), "no restart: {status}");

    let (runs, problems) = execs.finish();
    assert!(problems.is_empty(), "after {runs} rounds: {problems:#?}");
    signal(guard.0.id(), "TERM");
    assert!(guard.0.wait().expect("guard exits").success());
}

fn ringfence(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args(args)
        .output()
        .expect("run ringfence")
}

#[test]
fn with_upgrade_keys_only_a_signed_binary_is_executed() {
    let Some((_serial, stage)) = staged("with_upgrade_keys_only_a_signed_binary_is_executed")
    else {
        return;
    };
    let keys = stage.path().join("keys");
    let out = ringfence(&[
        "release".as_ref(),
        "keygen".as_ref(),
        "--out".as_ref(),
        keys.as_os_str(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let (mut agent, lines) = stage.run(|command| {
        command
            .arg("agent")
            .args(stage.agent_args())
            .arg("--upgrade-pub")
            .arg(keys.join("release.pub"))
    });
    let pid = agent.0.id();
    wait_for(&lines, "ready", Duration::from_secs(60));
    let first = exe_inode(pid);
    let sign = |file: &Path| {
        let out = ringfence(&[
            "release".as_ref(),
            "sign-binary".as_ref(),
            "--key".as_ref(),
            keys.join("release.key").as_os_str(),
            file.as_os_str(),
        ]);
        assert!(out.status.success(), "{out:?}");
    };

    // Unsigned: refused.
    stage.install(env!("CARGO_BIN_EXE_ringfence"));
    signal(pid, "USR2");
    let refused = wait_for(
        &lines,
        "ringfence agent: upgrade refused",
        Duration::from_secs(30),
    );
    assert!(refused.contains("not signed"), "{refused}");
    assert_eq!(exe_inode(pid), first);

    // Signed, then changed by one byte (an ELF still runs with a byte appended): refused.
    sign(&stage.binary());
    let mut tampered = std::fs::OpenOptions::new()
        .append(true)
        .open(stage.binary())
        .expect("open the staged binary");
    std::io::Write::write_all(&mut tampered, b"\0").expect("append");
    drop(tampered);
    signal(pid, "USR2");
    let refused = wait_for(
        &lines,
        "ringfence agent: upgrade refused",
        Duration::from_secs(30),
    );
    assert!(refused.contains("does not verify"), "{refused}");
    assert_eq!(exe_inode(pid), first);

    // Signed as it is: executed.
    sign(&stage.binary());
    let installed = std::fs::metadata(stage.binary()).expect("stat").ino();
    signal(pid, "USR2");
    wait_for(&lines, "upgraded in place", Duration::from_secs(60));
    assert_eq!(exe_inode(pid), installed);
    signal(pid, "TERM");
    assert!(agent.0.wait().expect("agent exits").success());
}

#[test]
fn a_managed_agent_upgrades_in_place_and_stays_enrolled() {
    let Some((_serial, stage)) = staged("a_managed_agent_upgrades_in_place_and_stays_enrolled")
    else {
        return;
    };
    let server = Server::start();
    let enroll = ringfence(&[
        "server".as_ref(),
        "enroll-token".as_ref(),
        "create".as_ref(),
        "--data-dir".as_ref(),
        server.dir.path().as_os_str(),
    ]);
    assert!(enroll.status.success(), "{enroll:?}");
    let enroll = String::from_utf8_lossy(&enroll.stdout).trim().to_owned();
    let data = stage.path().join("managed");
    let (mut agent, lines) = stage.run(|command| {
        command
            .args(["agent", "--server", &server.url])
            .args(["--server-ca-fingerprint", &server.fingerprint])
            .args(["--enroll-token", &enroll, "--sensor", "fanotify", "--mount"])
            .arg(stage.path())
            .arg("--data-dir")
            .arg(&data)
    });
    let pid = agent.0.id();
    wait_for(
        &lines,
        "ringfence agent: ready, managed by",
        Duration::from_secs(60),
    );
    let identity = std::fs::read_to_string(data.join("identity.json")).expect("enrolled");
    let execs = ExecLoop::with_denials(&stage, false);
    execs.wait_runs(10);

    stage.install(env!("CARGO_BIN_EXE_ringfence"));
    let installed = std::fs::metadata(stage.binary()).expect("stat").ino();
    signal(pid, "USR2");
    wait_for(&lines, "upgraded in place", Duration::from_secs(60));
    assert_eq!(exe_inode(pid), installed, "the new image runs");
    execs.wait_runs(10);
    assert_eq!(
        std::fs::read_to_string(data.join("identity.json")).expect("identity"),
        identity,
        "the same enrollment, not a new one"
    );
    let (runs, problems) = execs.finish();
    assert!(problems.is_empty(), "after {runs} rounds: {problems:#?}");
    signal(pid, "TERM");
    assert!(agent.0.wait().expect("agent exits").success());
}

#[test]
fn a_kernel_cached_agent_upgrades_in_place_and_its_new_image_caches_again() {
    let Some((_serial, stage)) =
        staged("a_kernel_cached_agent_upgrades_in_place_and_its_new_image_caches_again")
    else {
        return;
    };
    // An engine declared to judge execs by content (`faulty` with `ok` allows every exec):
    // the hardened agent lets the kernel answer the loop's execs after their second run.
    let content = stage.path().join("ok.txt");
    std::fs::write(&content, b"ok").expect("content");
    let engines = stage.path().join("engines.json");
    let config = serde_json::json!({"engines": [{
        "engine": "bundled:faulty",
        "content": content,
        "exec_by_content": true,
    }]});
    std::fs::write(&engines, config.to_string()).expect("engine config");
    let p = |p: &Path| p.to_string_lossy().into_owned();
    let args = [
        "--standalone".to_owned(),
        "--engine-config".into(),
        p(&engines),
        "--mount".into(),
        p(stage.path()),
        "--kernel-cache-fs".into(),
        p(stage.path()),
        "--alerts".into(),
        p(&stage.path().join("alerts.jsonl")),
        "--data-dir".into(),
        p(&stage.path().join("data")),
        "--perm-deadline".into(),
        "5s".into(),
    ];
    let (mut agent, lines) = stage.run(|command| command.arg("agent").args(&args));
    let pid = agent.0.id();
    wait_for(&lines, "ready", Duration::from_secs(60));
    // The new build goes in before the loop starts: a child the loop forks while this process
    // still has the copy open for writing would hold it until its exec, and the upgrade's
    // probe of the binary would fail with ETXTBSY (a race of this test, not of the agent; the
    // agent refuses such an upgrade and keeps serving).
    stage.install(env!("CARGO_BIN_EXE_ringfence"));
    let execs = ExecLoop::with_denials(&stage, false);
    execs.wait_runs(20);
    signal(pid, "USR2");
    wait_for(&lines, "upgraded in place", Duration::from_secs(60));
    execs.wait_runs(20);
    let (runs, problems) = execs.finish();
    assert!(problems.is_empty(), "after {runs} rounds: {problems:#?}");
    signal(pid, "TERM");
    // The new image's summary: it put the loop's two files in the kernel again (the old image
    // removed its entries before the handoff).
    wait_for(
        &lines,
        "files whose execs the kernel answered from then on",
        Duration::from_secs(30),
    );
    let status = agent.0.wait().expect("agent exits");
    assert!(status.success(), "{status:?}");
}
