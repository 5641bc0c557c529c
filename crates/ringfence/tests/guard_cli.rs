//! Black-box tests of `ringfence guard` with the real binary as guard and as test agent: crash
//! loop ⇒ LKG within 10 s, hang ⇒ kill and restart, boot loop across SIGKILLed guards, corrupt
//! state ⇒ clear error and LKG, SIGTERM ⇒ no agent left. Every wait has a deadline and every
//! guard is killed on drop (its agent dies with it by PDEATHSIG).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

struct Guard {
    child: Child,
    data: PathBuf,
    record: PathBuf,
}

impl Guard {
    fn start(data: &Path, guard_args: &[&str], agent_args: &[&str]) -> Self {
        let record = data.join("record");
        let child = Command::new(BIN)
            .arg("guard")
            .arg("--data-dir")
            .arg(data)
            .args(guard_args)
            .arg("--")
            .arg(BIN)
            .args(["guard", "test-child", "--record"])
            .arg(&record)
            .args(agent_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start guard");
        Self {
            child,
            data: data.to_path_buf(),
            record,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `(event, slot, pid, nanos)` from the test agent's record.
    fn events(&self) -> Vec<(String, String, u32, u128)> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                Some((
                    f.first()?.to_string(),
                    f.get(1)?.to_string(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                ))
            })
            .collect()
    }

    fn wait_event(
        &self,
        what: &str,
        limit: Duration,
        pick: impl Fn(&(String, String, u32, u128)) -> bool,
    ) -> (String, String, u32, u128) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pick(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status_json(&self) -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["guard", "status", "--json", "--data-dir"])
            .arg(&self.data)
            .output()
            .expect("guard status");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        assert!(ok.expect("kill").success());
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn stderr(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            use std::io::Read;
            let _ = err.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: u32) -> bool {
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

fn wait_dead(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn segfaulting_agent_is_restored_to_lkg_within_ten_seconds_of_the_third_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guard = Guard::start(dir.path(), &[], &["--mode", "segv"]);
    let served = guard.wait_event("agent serving on LKG", Duration::from_secs(30), |e| {
        e.0 == "serving" && e.1 == "lkg"
    });
    let crashes: Vec<u128> = guard
        .events()
        .iter()
        .filter(|e| e.0 == "crash")
        .map(|e| e.3)
        .collect();
    assert_eq!(crashes.len(), 3, "{:?}", guard.events());
    let took = Duration::from_nanos((served.3 - crashes[2]) as u64);
    assert!(took <= Duration::from_secs(10), "LKG after {took:?}");
    let status = guard.status_json();
    assert_eq!(status["slot"], "lkg");
    assert_eq!(status["last_restore"]["reason"], "crash-loop");
    assert!(
        status["last_restore"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("SIGSEGV"),
        "{status}"
    );
    // Each crash left a native crash report in the agent's spool for the uplink to send.
    let reports: Vec<serde_json::Value> = std::fs::read_dir(dir.path().join("spool"))
        .expect("spool directory")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).expect("read")).expect("json"))
        .collect();
    assert!(reports.len() >= 3, "{reports:?}");
    assert!(
        reports
            .iter()
            .all(|r| r["kind"] == "crash" && r["body"]["signal"] == "SIGSEGV"),
        "{reports:?}"
    );
    // `ringfence status --host` tells the same story.
    let out = Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args(["status", "--host", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("status");
    let host: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(host["guard"]["slot"], "lkg", "{host}");
    assert!(
        host["spool_pending"].as_u64().expect("pending") >= 3,
        "{host}"
    );
}

#[test]
fn hung_agent_is_killed_and_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guard = Guard::start(
        dir.path(),
        &["--heartbeat-timeout", "1s", "--failures", "10"],
        &["--mode", "hang"],
    );
    let first = guard.wait_event("a hung agent", Duration::from_secs(10), |e| e.0 == "hang");
    let second = guard.wait_event("a second agent", Duration::from_secs(10), |e| {
        e.0 == "hang" && e.2 != first.2
    });
    assert!(second.3 > first.3);
    wait_dead(first.2, Duration::from_secs(5));
    let status = guard.status_json();
    assert!(
        status["last_failure"]
            .as_str()
            .unwrap_or("")
            .contains("heartbeat"),
        "{status}"
    );
}

#[test]
fn boot_loop_across_sigkilled_guards_ends_on_lkg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--bless-after", "2m", "--boot-tries", "3"];
    for run in 0..3 {
        let mut guard = Guard::start(dir.path(), &args, &["--mode", "ok"]);
        let served = guard.wait_event("agent serving", Duration::from_secs(10), |e| {
            e.0 == "serving" && alive(e.2)
        });
        assert_eq!(served.1, "current", "run {run}");
        guard.signal("KILL");
        guard.wait_exit(Duration::from_secs(5)).expect("guard died");
        // PDEATHSIG: the agent does not outlive a SIGKILLed guard.
        wait_dead(served.2, Duration::from_secs(5));
    }
    let guard = Guard::start(dir.path(), &args, &["--mode", "ok"]);
    guard.wait_event("agent on LKG", Duration::from_secs(10), |e| {
        e.0 == "serving" && e.1 == "lkg"
    });
    let status = guard.status_json();
    assert_eq!(status["pinned_lkg"]["reason"], "boot-loop", "{status}");
    assert_eq!(status["boot_tries_left"], 0);
}

#[test]
fn corrupt_state_file_is_a_clear_error_and_starts_on_lkg() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("guard")).expect("mkdir");
    std::fs::write(dir.path().join("guard/state.json"), b"\0\0garbage").expect("write");
    let guard = Guard::start(dir.path(), &[], &["--mode", "ok"]);
    guard.wait_event("agent on LKG", Duration::from_secs(10), |e| {
        e.0 == "serving" && e.1 == "lkg"
    });
    let status = guard.status_json();
    assert_eq!(status["pinned_lkg"]["reason"], "corrupt-state", "{status}");
    let stderr = guard.stderr();
    assert!(
        stderr.contains("corrupt") && stderr.contains("last known good"),
        "{stderr}"
    );
}

#[test]
fn sigterm_stops_the_agent_politely_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A long grace: the guard must not need it, because the agent honours SIGTERM.
    let mut guard = Guard::start(dir.path(), &["--stop-grace", "30s"], &["--mode", "ok"]);
    let served = guard.wait_event("agent serving", Duration::from_secs(10), |e| {
        e.0 == "serving"
    });
    guard.signal("TERM");
    let status = guard
        .wait_exit(Duration::from_secs(5))
        .expect("guard stopped within 5 s");
    assert!(status.success(), "{status:?}");
    assert!(!alive(served.2), "agent {} outlived the guard", served.2);
    assert_eq!(guard.status_json()["phase"], "stopped");
}

#[test]
fn status_without_a_guard_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["guard", "status", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no guard status"), "{stderr}");
}

#[test]
fn under_systemd_the_guard_says_ready_and_pings_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let record = dir.path().join("record");
    let mut child = Command::new(BIN)
        .arg("guard")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--")
        .arg(BIN)
        .args(["guard", "test-child", "--record"])
        .arg(&record)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start guard");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut ready, mut watchdog) = (false, 0);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline && !(ready && watchdog >= 2) {
        if let Ok(n) = socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]);
            ready |= msg.contains("READY=1") && msg.contains(&format!("MAINPID={}", child.id()));
            watchdog += usize::from(msg.contains("WATCHDOG=1"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "no READY=1 with MAINPID");
    assert!(watchdog >= 2, "only {watchdog} watchdog pings");
}
