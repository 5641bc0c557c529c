//! `ringfence sim`: compares rollout strategies on a simulated fleet (the `ringfence-sim`
//! library) and prints a table, JSON, and an SVG chart.

use anyhow::Context as _;
use ringfence_protocol::duration;
use ringfence_sim::{FaultKind, FaultModel, SimConfig, Strategy};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn fault(text: &str) -> Result<FaultKind, String> {
    text.parse()
        .map_err(|e: ringfence_sim::SimError| e.to_string())
}

fn share(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0 and 1"))
    }
}

/// Virtual time, the real rollout controller, a million endpoints: how far does a bad release
/// get under each strategy, and how fast does the fleet recover?
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  ringfence sim\n  ringfence sim --strategy fast=5,100 --strategy slow=0.1,1,10,100 --bake 30m\n  ringfence sim --fault-fraction 0.01 --svg blast-radius.svg\n  ringfence sim --endpoints 100000 --json | jq '.strategies[] | {name, hosts_reached}'"
)]
pub struct SimArgs {
    /// Fleet size.
    #[arg(long, default_value_t = 1_000_000)]
    endpoints: u32,
    /// Seed for every random draw; the same seed gives the same result.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// What the bad release does: crash (the agent crash-loops), slow (verdicts past the
    /// deadline), quarantine (the engine is quarantined: protection off), deny (denies half
    /// of what it sees).
    #[arg(long, default_value = "crash", value_parser = fault)]
    fault: FaultKind,
    /// Share of hosts the bad release hits (0–1).
    #[arg(long, alias = "crash-fraction", default_value = "0.2", value_parser = share)]
    fault_fraction: f64,
    /// Mean time from installing the bad release to the fault (exponential).
    #[arg(long, alias = "time-to-crash", default_value = "30s", value_parser = duration::parse_millis)]
    time_to_fault: u64,
    /// Agent heartbeat interval; agents learn the controller's target on a heartbeat, and the
    /// heartbeat gate's timeout is three intervals.
    #[arg(long, default_value = "30s", value_parser = duration::parse_millis)]
    heartbeat: u64,
    /// From a crash to its report being visible to the controller.
    #[arg(long, default_value = "10s", value_parser = duration::parse_millis)]
    report_delay: u64,
    /// Mean time to download and install a release (spread ±50%).
    #[arg(long, default_value = "60s", value_parser = duration::parse_millis)]
    download: u64,
    /// From the first crash to the guard running the last known good release.
    #[arg(long, default_value = "10s", value_parser = duration::parse_millis)]
    restore: u64,
    /// Share of crashed hosts whose local restore fails and need hands-on recovery (0–1).
    #[arg(long, default_value = "0.01", value_parser = share)]
    restore_failure: f64,
    /// Crash reports one crash loop files before the guard switches to the last known good.
    #[arg(long, default_value_t = 3)]
    crash_reports: u32,
    /// Every agent identical (no random spread of heartbeats, installs, crashes).
    #[arg(long)]
    no_jitter: bool,
    /// How often the controller evaluates the rollout.
    #[arg(long, default_value = "1s", value_parser = duration::parse_millis)]
    controller_tick: u64,
    /// Stop a strategy's run after this much virtual time even if it has not settled.
    #[arg(long, default_value = "48h", value_parser = duration::parse_millis)]
    max_time: u64,
    /// Bake time of every ring (all strategies).
    #[arg(long, default_value = "10m", value_parser = duration::parse_millis)]
    bake: u64,
    /// An extra strategy, NAME=PERCENT,...,100 (cumulative ring sizes); repeatable. Always
    /// compared with all-at-once, the default rings and exponential rings (0.1,1,10,50,100).
    #[arg(long = "strategy", value_name = "NAME=SPEC")]
    strategies: Vec<String>,
    /// Write a chart of hosts on the bad release over time, one line per strategy.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Print the results as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Peak resident memory of this process so far (VmHWM), for the benchmark figures.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let config = SimConfig {
        endpoints: args.endpoints,
        seed: args.seed,
        model: FaultModel {
            kind: args.fault,
            fault_fraction: args.fault_fraction,
            time_to_fault_ms: args.time_to_fault,
            heartbeat_ms: args.heartbeat,
            report_delay_ms: args.report_delay,
            download_ms: args.download,
            restore_ms: args.restore,
            restore_failure_fraction: args.restore_failure,
            crash_reports_per_loop: args.crash_reports,
            jitter: !args.no_jitter,
        },
        controller_tick_ms: args.controller_tick,
        max_time_ms: args.max_time,
    };
    let mut strategies = Strategy::defaults(args.bake);
    for text in &args.strategies {
        strategies.push(Strategy::parse(text, args.bake)?);
    }
    let report = ringfence_sim::simulate(&config, &strategies)?;
    if let Some(path) = &args.svg {
        std::fs::write(path, ringfence_sim::render_svg(&report))
            .with_context(|| format!("cannot write the chart to {}", path.display()))?;
    }
    let wall_s = started.elapsed().as_secs_f64();
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["wall_s"] = serde_json::json!(wall_s);
        value["peak_rss_bytes"] = serde_json::json!(peak_rss_bytes());
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    let m = &config.model;
    println!(
        "{} endpoints, seed {}: the bad release hits {:.1}% of hosts ({}) about {} after install; \
         heartbeat {}, reports after {}, installs take about {}, LKG restore {}, {:.1}% of \
         restores fail; bake {}",
        config.endpoints,
        config.seed,
        m.fault_fraction * 100.0,
        m.kind,
        ms(m.time_to_fault_ms),
        ms(m.heartbeat_ms),
        ms(m.report_delay_ms),
        ms(m.download_ms),
        ms(m.restore_ms),
        m.restore_failure_fraction * 100.0,
        ms(args.bake),
    );
    println!();
    print!("{}", ringfence_sim::render_table(&report));
    for strategy in &report.strategies {
        if let Some(reason) = &strategy.reason {
            println!("\n{}: {reason}", strategy.name);
        }
    }
    if let Some(path) = &args.svg {
        println!("\nchart written to {}", path.display());
    }
    println!(
        "\nsimulated in {wall_s:.1} s wall, peak memory {} MiB",
        peak_rss_bytes().map_or_else(|| "?".to_owned(), |b| (b >> 20).to_string())
    );
    Ok(ExitCode::SUCCESS)
}

fn ms(virtual_ms: u64) -> String {
    duration::format(std::time::Duration::from_millis(virtual_ms))
}
