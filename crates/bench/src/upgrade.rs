//! `ringfence bench upgrade`: what an in-place agent upgrade (SIGUSR2, re-exec with the
//! fanotify group handed over) costs the host. Execs run in a loop on a marked tmpfs while the
//! agent upgrades; the slowest exec during the upgrade is the gap the handoff leaves, compared
//! with the steady-state p99 of the same run. Needs root.

use crate::exec::Tmpfs;
use crate::stats::{Percentiles, Row, print};
use anyhow::Context;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Options for `ringfence bench upgrade`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Upgrades to run, one after another.
    #[arg(long, default_value_t = 5)]
    pub upgrades: usize,
    /// Steady-state execs measured before each upgrade, for this long.
    #[arg(long = "steady", default_value = "500ms", value_parser = ringfence_protocol::duration::parse_millis)]
    pub steady_ms: u64,
    /// Run the agent without its compiled-engine cache (every image compiles its engine): the
    /// baseline for what the cache saves an upgrade.
    #[arg(long)]
    pub no_engine_cache: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The agent under test; killed if the benchmark fails half-way.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One exec: when it started (from the benchmark's start) and how long it took.
type Sample = (Duration, Duration);

pub fn run(options: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(
        ringfence_sensor::procfs::has_capability(ringfence_sensor::procfs::CAP_SYS_ADMIN),
        "bench upgrade needs root (CAP_SYS_ADMIN) for fanotify"
    );
    let fs = Tmpfs::sized("upgrade", "2g")?;
    let bin = fs.dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let agent_binary = bin.join("ringfence");
    let this = std::env::current_exe().context("find this executable")?;
    install(&this, &agent_binary)?;
    let program = fs.dir.join("true");
    std::fs::copy("/usr/bin/true", &program)?;
    let content = fs.dir.join("allow.txt");
    std::fs::write(&content, "allow /**\n")?;
    std::fs::create_dir_all(fs.dir.join("data"))?;

    let mut agent = AgentProcess(
        Command::new(&agent_binary)
            .arg("agent")
            .arg("--standalone")
            .args(["--engine", "bundled:exec-allowlist", "--content"])
            .arg(&content)
            .arg("--mount")
            .arg(&fs.dir)
            .arg("--alerts")
            .arg(fs.dir.join("alerts.jsonl"))
            // As a deployed agent: the next image loads the compiled engine from the cache.
            .arg("--data-dir")
            .arg(fs.dir.join("data"))
            .args([
                "--engine-cache-mib",
                if options.no_engine_cache { "0" } else { "512" },
            ])
            .stderr(Stdio::piped())
            .spawn()
            .context("start the agent")?,
    );
    let pid = agent.0.id();
    let lines = stderr_lines(&mut agent.0)?;
    wait_line(&lines, "ready", Duration::from_secs(60))?;

    let origin = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let looper = std::thread::spawn({
        let (samples, failures, stop) = (
            Arc::clone(&samples),
            Arc::clone(&failures),
            Arc::clone(&stop),
        );
        move || exec_loop(&program, origin, &samples, &failures, &stop)
    });

    let mut windows = Vec::new();
    for _ in 0..options.upgrades {
        std::thread::sleep(Duration::from_millis(options.steady_ms));
        install(&this, &agent_binary)?;
        let sent = origin.elapsed();
        signal_upgrade(pid)?;
        wait_line(&lines, "upgraded in place", Duration::from_secs(60))?;
        windows.push((sent, origin.elapsed()));
    }
    std::thread::sleep(Duration::from_millis(options.steady_ms));
    stop.store(true, Ordering::Relaxed);
    looper
        .join()
        .map_err(|_| anyhow::anyhow!("exec loop panicked"))?;

    let samples = samples.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let overlaps = |(start, took): &Sample, (from, to): &(Duration, Duration)| {
        *start <= *to && *start + *took >= *from
    };
    let mut steady: Vec<Duration> = samples
        .iter()
        .filter(|s| !windows.iter().any(|w| overlaps(s, w)))
        .map(|s| s.1)
        .collect();
    let during: Vec<Duration> = samples
        .iter()
        .filter(|s| windows.iter().any(|w| overlaps(s, w)))
        .map(|s| s.1)
        .collect();
    let steady = Percentiles::of(&mut steady);
    let worst = during.iter().max().copied().unwrap_or_default();
    let mut upgrade_times: Vec<Duration> = windows.iter().map(|(a, b)| *b - *a).collect();
    let upgrade = Percentiles::of(&mut upgrade_times);
    let failed = failures
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .len();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ns_ms = |ns: u64| ns as f64 / 1e6;
    let rows = vec![
        Row::new("execs measured", samples.len() as f64, "execs"),
        Row::new("execs that failed", failed as f64, "execs").goal("0"),
        Row::new("exec p99, steady", ns_ms(steady.p99_ns), "ms"),
        Row::new("worst exec during an upgrade", ms(worst), "ms")
            .ratio(ms(worst) / ns_ms(steady.p99_ns).max(1e-6), "steady p99"),
        Row::new(
            "upgrade, signal to serving (p50)",
            ns_ms(upgrade.p50_ns),
            "ms",
        ),
        Row::new(
            "upgrade, signal to serving (max)",
            ns_ms(upgrade.max_ns),
            "ms",
        ),
    ];
    print(
        &format!("in-place agent upgrade ({} upgrades)", options.upgrades),
        &rows,
        options.json,
    )?;
    anyhow::ensure!(failed == 0, "{failed} execs failed during upgrades");
    Ok(())
}

fn exec_loop(
    program: &Path,
    origin: Instant,
    samples: &Mutex<Vec<Sample>>,
    failures: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let started = origin.elapsed();
        let clock = Instant::now();
        let result = Command::new(program).status();
        let took = clock.elapsed();
        if let Ok(mut samples) = samples.lock() {
            samples.push((started, took));
        }
        if !result.as_ref().is_ok_and(|s| s.success())
            && let Ok(mut failures) = failures.lock()
        {
            failures.push(format!("{result:?}"));
        }
    }
}

/// Installs a copy of `from` at `to` the way a package manager does: a new file renamed over.
fn install(from: &Path, to: &Path) -> anyhow::Result<()> {
    let staged = PathBuf::from(format!("{}.new", to.display()));
    std::fs::copy(from, &staged).with_context(|| format!("copy to {}", staged.display()))?;
    std::fs::rename(&staged, to).with_context(|| format!("rename over {}", to.display()))?;
    Ok(())
}

fn signal_upgrade(pid: u32) -> anyhow::Result<()> {
    let ok = Command::new("kill")
        .args(["-USR2", &pid.to_string()])
        .status()
        .context("run kill")?
        .success();
    anyhow::ensure!(ok, "could not signal the agent");
    Ok(())
}

fn stderr_lines(child: &mut Child) -> anyhow::Result<mpsc::Receiver<String>> {
    let stderr = child.stderr.take().context("agent stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

fn wait_line(lines: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + limit;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Ok(()),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    anyhow::bail!("the agent never said {needle:?} within {limit:?}")
}
