//! `ringfence bench memory`: where a real agent's memory goes. A fleet runs the agent on every
//! host, so its resident size is paid a hundred thousand times. This starts real `ringfence
//! agent` processes (no sensor: only what the engines cost is measured) and reads their
//! `/proc/PID/status` once they serve: an agent with a one-rule allow-list (the baseline), then
//! the Sigma engine with generated rules, first compiling its engine (an empty compiled-engine
//! cache) and then loading it from the cache as every later start and upgrade does.

use crate::stats::{Row, print};
use anyhow::Context;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Options for `ringfence bench memory`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Generated Sigma rules the engine loads.
    #[arg(long, default_value_t = 100)]
    pub rules: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The memory figures of one process, in KiB, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default)]
struct Resident {
    total: u64,
    anonymous: u64,
    file: u64,
    peak: u64,
}

impl Resident {
    fn of(pid: u32) -> Option<Resident> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
        };
        Some(Resident {
            total: field("VmRSS:")?,
            anonymous: field("RssAnon:")?,
            file: field("RssFile:")?,
            peak: field("VmHWM:")?,
        })
    }
}

/// A running agent, stopped (SIGTERM, then SIGKILL) when dropped.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ringfence agent --standalone` on one engine, waits until it serves, lets it settle
/// and reads its memory.
fn measure(exe: &Path, data_dir: &Path, engine: &str, content: &Path) -> anyhow::Result<Resident> {
    std::fs::create_dir_all(data_dir)?;
    let mut child = Command::new(exe)
        .args([
            "agent",
            "--standalone",
            "--sensor",
            "none",
            "--engine",
            engine,
        ])
        .arg("--content")
        .arg(content)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--alerts")
        .arg(data_dir.join("alerts.jsonl"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start an agent")?;
    let stderr = child.stderr.take().context("agent stderr")?;
    let agent = Agent(child);
    let ready = BufReader::new(stderr)
        .lines()
        .any(|line| line.is_ok_and(|line| line.contains("ready")));
    anyhow::ensure!(ready, "the agent with {engine} never became ready");
    // Lazily built instances and the first allocations settle within a moment.
    std::thread::sleep(Duration::from_secs(1));
    Resident::of(agent.0.id()).context("read the agent's /proc status")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs the benchmark and prints its report.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    anyhow::ensure!(
        exe.file_stem().and_then(|s| s.to_str()) == Some("ringfence"),
        "`bench memory` starts agents from the ringfence binary; run it as `ringfence bench memory`"
    );
    let dir = tempfile::tempdir()?;
    let allow = dir.path().join("allow.rules");
    std::fs::write(&allow, "allow /**\n")?;
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, ringfence_sigma::testgen::rules(options.rules, 7))?;

    let baseline = measure(
        &exe,
        &dir.path().join("allowlist"),
        "bundled:exec-allowlist",
        &allow,
    )?;
    // One data directory for both Sigma runs: the first fills its compiled-engine cache.
    let sigma_dir = dir.path().join("sigma");
    let compiled = measure(&exe, &sigma_dir, "bundled:sigma", &rules)?;
    let cached = measure(&exe, &sigma_dir, "bundled:sigma", &rules)?;

    let mut rows = Vec::new();
    let base = mib(baseline.total);
    rows.push(Row::new("agent, allow-list of 1 rule: RSS", base, "MiB"));
    rows.push(Row::new(
        "agent, allow-list of 1 rule: anonymous",
        mib(baseline.anonymous),
        "MiB",
    ));
    for (label, figures) in [
        ("engine compiled at start", compiled),
        ("engine from the compiled-engine cache", cached),
    ] {
        let name = |what: &str| format!("agent, Sigma {} rules, {label}: {what}", options.rules);
        let row = Row::new(name("RSS"), mib(figures.total), "MiB")
            .ratio(mib(figures.total) / base.max(0.001), "the allow-list agent");
        rows.push(if label.contains("cache") {
            row.goal("<= 40 MiB (issue #18)")
        } else {
            row
        });
        rows.push(Row::new(name("anonymous"), mib(figures.anonymous), "MiB"));
        rows.push(Row::new(name("file-backed"), mib(figures.file), "MiB"));
        rows.push(Row::new(name("peak RSS"), mib(figures.peak), "MiB"));
    }
    print("agent memory", &rows, options.json)
}
