//! Real-process test of a hardened `ringfence agent` (root only; says why it skips otherwise):
//! `/proc/PID/status` shows the seccomp filter, `no_new_privs` and exactly the documented
//! capability sets; every thread that runs engines has the engine filter stacked on the
//! process filter; execs are still allowed and denied correctly; `--no-harden` leaves the agent
//! unconfined.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `CAP_SYS_PTRACE` (19), the one capability a hardened agent keeps (docs/hardening.md).
const KEPT: u64 = 1 << 19;
const EPERM: i32 = 1;

struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Tmpfs {
        let fs = Tmpfs(tempfile::tempdir().expect("tempdir"));
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs"])
            .arg(fs.0.path())
            .status()
            .expect("mount");
        assert!(mounted.success());
        fs
    }

    fn binary(&self, name: &str) -> PathBuf {
        let to = self.0.path().join(name);
        std::fs::copy("/usr/bin/true", &to).expect("copy");
        to
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// Kills the agent if a test fails half-way: its fanotify group closes and nothing stays blocked.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(fs: &Tmpfs, bad: &Path, extra: &[&str]) -> (Running, Vec<String>) {
    std::fs::create_dir_all(fs.0.path().join("data")).expect("data dir");
    let rules = fs.0.path().join("rules.txt");
    std::fs::write(&rules, format!("deny {}\nallow /**\n", bad.display())).expect("rules");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args([
            "agent",
            "--standalone",
            "--engine",
            "bundled:exec-allowlist",
            "--content",
        ])
        .arg(&rules)
        .args(["--sensor", "fanotify", "--sensor", "proc", "--mount"])
        .arg(fs.0.path())
        .arg("--alerts")
        .arg(fs.0.path().join("data/alerts.jsonl"))
        .arg("--data-dir")
        .arg(fs.0.path().join("data"))
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut said = Vec::new();
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.expect("stderr line");
        let ready = line.contains("ready");
        said.push(line);
        if ready {
            break;
        }
    }
    // Keep reading: an agent whose stderr is closed fails its next log line.
    std::thread::spawn(move || lines.for_each(drop));
    assert!(
        said.iter().any(|l| l.contains("ready")),
        "never ready: {said:?}"
    );
    (Running(child), said)
}

fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn mask(status: &str, name: &str) -> u64 {
    u64::from_str_radix(&field(status, name), 16).expect("capability mask")
}

fn denied(path: &Path) -> bool {
    matches!(Command::new(path).status(), Err(e) if e.raw_os_error() == Some(EPERM))
}

fn stop(mut agent: Running) {
    let pid = agent.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = agent.0.wait().expect("agent exits");
    assert!(status.success(), "agent exit: {status}");
}

#[test]
fn hardened_agent_shows_its_filters_and_capabilities_and_still_answers_execs() {
    if !ringfence_testkit::root_or_skip("hardened agent") {
        return;
    }
    let fs = Tmpfs::mount();
    let good = fs.binary("good");
    let bad = fs.binary("bad");
    let (agent, said) = start_agent(&fs, &bad, &[]);
    let hardened = said
        .iter()
        .find(|l| l.contains("hardened:"))
        .expect("summary line");
    assert!(hardened.contains("CAP_SYS_PTRACE"), "{hardened}");
    assert!(
        said.iter().any(|l| l.contains("under landlock ABI")),
        "{said:?}"
    );
    let pid = agent.0.id();

    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert_eq!(field(&status, "Seccomp:"), "2", "{status}");
    assert_eq!(field(&status, "NoNewPrivs:"), "1");
    for set in ["CapEff:", "CapPrm:", "CapBnd:", "CapInh:", "CapAmb:"] {
        assert_eq!(mask(&status, set), KEPT, "{set} {status}");
    }
    let process_filters: u32 = field(&status, "Seccomp_filters:").parse().expect("count");

    // Every thread: the same capabilities; engine threads one more filter than the process.
    let mut engine_threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let name = name.trim();
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        assert_eq!(mask(&status, "CapEff:"), KEPT, "{name}");
        assert_eq!(field(&status, "NoNewPrivs:"), "1", "{name}");
        let filters: u32 = field(&status, "Seccomp_filters:").parse().expect("count");
        if name.starts_with("rf-worker") || name == "rf-notify" {
            engine_threads += 1;
            assert_eq!(filters, process_filters + 1, "{name}");
        } else {
            assert_eq!(filters, process_filters, "{name}");
        }
    }
    assert_eq!(engine_threads, 3, "two workers and the notification thread");

    // Execs are still answered both ways, including a process of another user, whose /proc
    // entries the agent reads with the one capability it kept.
    for _ in 0..20 {
        assert!(Command::new(&good).status().expect("good").success());
        assert!(denied(&bad), "denied binary ran");
    }
    let nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&good)
        .status()
        .expect("setpriv");
    assert!(nobody.success());
    // The blocked exec names the process that tried it: Landlock on the agent's resolving
    // threads would have hidden /proc/PID/exe of every other process.
    let me = std::env::current_exe().expect("test binary");
    let alerts = std::fs::read_to_string(fs.0.path().join("data/alerts.jsonl")).expect("alerts");
    assert!(
        alerts
            .lines()
            .any(|l| l.contains("\"Blocked\"") && l.contains(&*me.to_string_lossy())),
        "{alerts}"
    );
    // The agent's own binary, which it protects from writers, still runs for everyone.
    let version = Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .arg("--version")
        .status();
    assert!(version.expect("ringfence --version").success());
    stop(agent);
}

#[test]
fn no_harden_leaves_the_agent_unconfined() {
    if !ringfence_testkit::root_or_skip("--no-harden") {
        return;
    }
    let fs = Tmpfs::mount();
    let good = fs.binary("good");
    let bad = fs.binary("bad");
    let (agent, said) = start_agent(&fs, &bad, &["--no-harden"]);
    assert!(said.iter().any(|l| l.contains("hardening off")), "{said:?}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.0.id())).expect("status");
    assert_eq!(field(&status, "Seccomp:"), "0");
    assert_eq!(field(&status, "NoNewPrivs:"), "0");
    assert!(Command::new(&good).status().expect("good").success());
    assert!(denied(&bad));
    stop(agent);
}

#[test]
fn print_policy_lists_every_syscall_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args(["agent", "--standalone", "--print-policy"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("CAP_SYS_PTRACE"), "{text}");
    assert!(text.contains("seccomp role agent") && text.contains("seccomp role engine"));
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("execve ")),
        "{text}"
    );
}
