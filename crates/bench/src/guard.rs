//! `ringfence guard bench`: the guard's own numbers, measured on real processes — time from an
//! agent's third crash to the agent serving on LKG, and the guard's idle RSS and CPU. The agent
//! the guard supervises is [`crate::stand_in`], run as `ringfence guard test-child`.

use anyhow::{Context, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Options for `ringfence guard bench`.
#[derive(Debug, Args)]
pub struct Options {
    /// Crash-loop restores to time.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// How long to watch the idle guard.
    #[arg(long, default_value = "10s", value_parser = ringfence_protocol::duration::parse)]
    idle: Duration,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// A guard process that is stopped (SIGTERM, then SIGKILL) however the bench ends.
struct GuardProcess(Child);

impl GuardProcess {
    fn start(data: &Path, agent_args: &[&str], record: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let child = Command::new(&exe)
            .arg("guard")
            .arg("--data-dir")
            .arg(data)
            .arg("--")
            .arg(&exe)
            .args(["guard", "test-child", "--record"])
            .arg(record)
            .args(agent_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start the guard")?;
        Ok(Self(child))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for GuardProcess {
    fn drop(&mut self) {
        // No signal API in the binary: `kill` is everywhere and this is a bench, not the guard.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory removed when dropped; the binary has no tempfile dependency for this.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let nanos = ringfence_protocol::clock::unix_ns();
        let path = std::env::temp_dir().join(format!(
            "ringfence-guard-bench-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `(event, slot, nanos)` lines written by the test child.
fn events(record: &Path) -> Vec<(String, String, u128)> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.to_string(),
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

fn crash_to_lkg(mode: &str) -> anyhow::Result<Duration> {
    let dir = Scratch::new()?;
    let record = dir.path().join("record");
    let _guard = GuardProcess::start(dir.path(), &["--mode", mode], &record)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ev = events(&record);
        if let Some((_, _, served)) = ev.iter().find(|(e, s, _)| e == "serving" && s == "lkg") {
            let crashes: Vec<u128> = ev
                .iter()
                .filter(|(e, _, _)| e == "crash")
                .map(|(_, _, t)| *t)
                .collect();
            let third = crashes.get(2).context("LKG before three crashes")?;
            return Ok(Duration::from_nanos(served.saturating_sub(*third) as u64));
        }
        if Instant::now() > deadline {
            bail!("no agent on LKG within 60 s: {ev:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Resident memory in KiB: total, anonymous (the guard's own heap and stacks) and file-backed
/// (pages of the shared `ringfence` binary and libraries that it touched).
fn rss_kib(pid: u32) -> anyhow::Result<[u64; 3]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok([field("VmRSS:")?, field("RssAnon:")?, field("RssFile:")?])
}

/// CPU time in nanoseconds: the first field of schedstat, with no clock-tick guesswork.
fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("bad schedstat")
}

fn idle(watch: Duration) -> anyhow::Result<([u64; 3], f64)> {
    let dir = Scratch::new()?;
    let record: PathBuf = dir.path().join("record");
    let guard = GuardProcess::start(dir.path(), &["--mode", "ok"], &record)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !events(&record).iter().any(|(e, _, _)| e == "serving") {
        if Instant::now() > deadline {
            bail!("agent never served");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (cpu0, t0) = (cpu_ns(guard.pid())?, Instant::now());
    std::thread::sleep(watch);
    let (cpu1, wall) = (cpu_ns(guard.pid())?, t0.elapsed());
    let percent = (cpu1.saturating_sub(cpu0)) as f64 / wall.as_nanos() as f64 * 100.0;
    Ok((rss_kib(guard.pid())?, percent))
}

pub fn run(args: &Options) -> anyhow::Result<()> {
    let mut restores = Vec::new();
    for i in 0..args.runs {
        let mode = if i % 2 == 0 { "crash" } else { "segv" };
        restores.push((mode, crash_to_lkg(mode)?));
    }
    let (rss, cpu) = idle(args.idle)?;
    let worst = restores.iter().map(|(_, d)| *d).max().unwrap_or_default();
    if args.json {
        let json = serde_json::json!({
            "third_crash_to_serving_on_lkg_ms": restores.iter().map(|(m, d)| serde_json::json!({"mode": m, "ms": d.as_secs_f64() * 1000.0})).collect::<Vec<_>>(),
            "worst_ms": worst.as_secs_f64() * 1000.0,
            "goal_ms": 10_000,
            "idle_rss_kib": rss[0],
            "idle_rss_anon_kib": rss[1],
            "idle_rss_file_kib": rss[2],
            "idle_cpu_percent": cpu,
            "idle_secs": args.idle.as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for (mode, d) in &restores {
            println!(
                "third crash ({mode}) to agent serving on LKG: {:.0} ms",
                d.as_secs_f64() * 1000.0
            );
        }
        println!(
            "worst: {:.0} ms (goal <= 10000 ms, {:.1}% of the budget)",
            worst.as_secs_f64() * 1000.0,
            worst.as_secs_f64() * 10.0
        );
        println!(
            "guard idle: RSS {} KiB ({} KiB anonymous, {} KiB file-backed), CPU {cpu:.3}% over {}",
            rss[0],
            rss[1],
            rss[2],
            ringfence_protocol::duration::format(args.idle)
        );
    }
    Ok(())
}
