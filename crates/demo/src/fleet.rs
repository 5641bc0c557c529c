//! The demo's processes: one server and a guard (with its agent) per host, all children of the
//! demo, all stopped and removed when the fleet is dropped — also after an error or Ctrl-C.

use crate::{DemoError, io};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Host {
    pub name: String,
    pub dir: PathBuf,
    child: Child,
}

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub exe: PathBuf,
    pub url: String,
    /// The server's CA fingerprint as it printed it; agents pin it at enrollment.
    pub ca_fingerprint: String,
    pub operator: String,
    server: Option<Child>,
    pub hosts: Vec<Host>,
}

/// SIGTERM, then SIGKILL if the process has not gone within `grace`.
fn stop(child: &mut Child, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    reap(child, grace);
}

/// Waits up to `grace` for the process to exit, then kills it.
fn reap(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn cli(exe: &Path, args: &[&str]) -> Result<String, DemoError> {
    let output = Command::new(exe)
        .args(args)
        .output()
        .map_err(io(format!("run ringfence {}", args.join(" "))))?;
    if !output.status.success() {
        return Err(DemoError::Failed(format!(
            "ringfence {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Fleet {
    /// Starts the server on an ephemeral loopback port with a fresh SQLite database, serving
    /// HTTPS with the CA it makes, as in production.
    pub fn start_server(exe: &Path) -> Result<Fleet, DemoError> {
        let dir = tempfile::Builder::new()
            .prefix("ringfence-demo.")
            .tempdir()
            .map_err(io("create a temporary directory"))?;
        let server_dir = dir.path().join("server");
        let data_dir = server_dir.display().to_string();
        let mut child = Command::new(exe)
            .args(["server", "--data-dir", &data_dir, "--listen", "127.0.0.1:0"])
            .args(["--controller-tick", "200ms", "--heartbeat-interval", "1s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("start the server"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| DemoError::Failed("server has no stdout".into()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                stop(&mut child, Duration::from_secs(1));
                return Err(DemoError::Failed(
                    "the server did not start within 60 s".into(),
                ));
            }
        };
        let word = |prefix: &str| {
            line.split_whitespace()
                .find(|word| word.starts_with(prefix))
                .map(str::to_owned)
                .ok_or_else(|| DemoError::Failed(format!("unexpected server output: {line}")))
        };
        let url = word("https://")?;
        let ca_fingerprint = word("sha256:")?;
        let operator = cli(
            exe,
            &[
                "server",
                "token",
                "create",
                "--data-dir",
                &data_dir,
                "--label",
                "demo",
            ],
        )?
        .trim()
        .to_owned();
        Ok(Fleet {
            dir,
            exe: exe.to_owned(),
            url,
            ca_fingerprint,
            operator,
            server: Some(child),
            hosts: Vec::new(),
        })
    }

    pub fn server_dir(&self) -> PathBuf {
        self.dir.path().join("server")
    }

    /// The CA file the server made; the demo's own operator calls use it, as an operator on
    /// the server's host would.
    pub fn ca_file(&self) -> PathBuf {
        self.server_dir().join("tls").join("ca.pem")
    }

    /// Single-use enrollment tokens, one per host.
    pub fn enroll_tokens(&self, count: usize) -> Result<Vec<String>, DemoError> {
        let data_dir = self.server_dir().display().to_string();
        let count = count.to_string();
        let out = cli(
            &self.exe,
            &[
                "server",
                "enroll-token",
                "create",
                "--data-dir",
                &data_dir,
                "--count",
                &count,
            ],
        )?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// Starts one guard per host, each supervising a managed agent fed by `traffic` (or, for
    /// the live host, by fanotify on this machine).
    pub fn start_hosts(
        &mut self,
        tokens: &[String],
        canaries: usize,
        live: bool,
        traffic: &Path,
        rate: u64,
    ) -> Result<(), DemoError> {
        for (index, token) in tokens.iter().enumerate() {
            let live = live && index + 1 == tokens.len();
            let name = if live {
                format!("host-{index:02}-live")
            } else {
                format!("host-{index:02}")
            };
            let dir = self.dir.path().join(&name);
            std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
            let canary = index < canaries;
            let exe = self.exe.display().to_string();
            let data_dir = dir.display().to_string();
            let mut agent: Vec<String> = vec![
                exe.clone(),
                "agent".into(),
                "--server".into(),
                self.url.clone(),
                "--server-ca-fingerprint".into(),
                self.ca_fingerprint.clone(),
                "--enroll-token".into(),
                token.clone(),
                "--data-dir".into(),
                data_dir.clone(),
                "--hostname".into(),
                name.clone(),
                "--bless-after".into(),
                "3s".into(),
                "--stats-out".into(),
                dir.join("stats.json").display().to_string(),
            ];
            if live {
                agent.extend(["--sensor".into(), "fanotify".into()]);
            } else {
                agent.extend([
                    "--sensor".into(),
                    "none".into(),
                    "--traffic".into(),
                    traffic.display().to_string(),
                    "--traffic-rate".into(),
                    rate.to_string(),
                ]);
            }
            if canary {
                agent.extend(["--tag".into(), "canary".into()]);
            }
            let log =
                std::fs::File::create(dir.join("guard.log")).map_err(io("create a log file"))?;
            let child = Command::new(&self.exe)
                .args([
                    "guard",
                    "--data-dir",
                    &data_dir,
                    "--heartbeat-timeout",
                    "15s",
                    "--stop-grace",
                    "15s",
                    "--",
                ])
                .args(&agent)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(io(format!("start the guard of {name}")))?;
            self.hosts.push(Host { name, dir, child });
        }
        Ok(())
    }

    /// Stops one host for good, as a machine switched off would be: its guard and agent go.
    pub fn stop_host(&mut self, name: &str) {
        if let Some(host) = self.hosts.iter_mut().find(|host| host.name == name) {
            stop(&mut host.child, Duration::from_secs(20));
        }
    }

    /// Stops every host (their agents write their final counters). One SIGTERM each, all at
    /// once; a guard takes a second one as "stop now".
    pub fn stop_hosts(&mut self) {
        for host in &mut self.hosts {
            if matches!(host.child.try_wait(), Ok(None))
                && let Ok(pid) = i32::try_from(host.child.id())
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        for host in &mut self.hosts {
            reap(&mut host.child, Duration::from_secs(20));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop_hosts();
        if let Some(mut server) = self.server.take() {
            stop(&mut server, Duration::from_secs(5));
        }
    }
}
