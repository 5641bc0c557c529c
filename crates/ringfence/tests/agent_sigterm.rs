//! Real-process test of `ringfence agent`: SIGTERM while an exec waits on a hung engine must
//! answer that exec at once (long before its deadline) and leave nothing blocked.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Tmpfs(tempfile::TempDir);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[test]
fn sigterm_leaves_no_exec_blocked() {
    if !ringfence_testkit::root_or_skip("sigterm_leaves_no_exec_blocked") {
        return;
    }
    let fs = Tmpfs(tempfile::tempdir().expect("tempdir"));
    assert!(
        Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(fs.0.path())
            .status()
            .expect("mount")
            .success()
    );
    let bin = fs.0.path().join("waits");
    std::fs::copy("/usr/bin/true", &bin).expect("copy");
    let loop_content = fs.0.path().join("loop.txt");
    std::fs::write(&loop_content, "loop").expect("content");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args([
            "agent",
            "--standalone",
            "--engine",
            "bundled:faulty",
            "--content",
        ])
        .arg(&loop_content)
        .args([
            "--perm-deadline",
            "20s",
            "--engine-deadline",
            "3s",
            "--no-cache",
        ])
        .arg("--mount")
        .arg(fs.0.path())
        .arg("--alerts")
        .arg(fs.0.path().join("alerts.jsonl"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let agent_pid = agent.id();
    let stderr = agent.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let ready = lines.by_ref().any(|l| l.is_ok_and(|l| l.contains("ready")));
    assert!(ready, "agent never said ready");
    // The exec now waits: the engine hangs and the deadline is 20 s.
    let exec = std::thread::spawn({
        let bin = bin.clone();
        move || {
            let started = Instant::now();
            let status = Command::new(&bin).status();
            (status, started.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &agent_pid.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let until = Instant::now() + Duration::from_secs(15);
    while !exec.is_finished() {
        if Instant::now() > until {
            // Killing the agent closes its group; the kernel then allows the exec.
            let _ = agent.kill();
            panic!("exec still blocked 15 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, took) = exec.join().expect("exec thread");
    assert!(
        status.expect("exec completes").success(),
        "fail-open allows"
    );
    assert!(took < Duration::from_secs(10), "exec took {took:?}");
    assert!(sent.elapsed() < Duration::from_secs(5));
    let exit = agent.wait().expect("agent exits");
    assert!(exit.success(), "{exit:?}");
    assert!(
        Command::new(Path::new(&bin))
            .status()
            .expect("exec after")
            .success()
    );
}
