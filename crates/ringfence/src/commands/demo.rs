//! `ringfence demo`: the story from the README, on this machine, in about a minute.

use anyhow::Context;
use std::process::ExitCode;

/// Replay a poisoned content update against a fleet on this machine.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  ringfence demo\n  # A smaller fleet, then keep it running for the dashboard and the CLI until Ctrl-C\n  ringfence demo --hosts 6 --canaries 1 --keep\n  ringfence demo --json | jq .time_to_halt_s"
)]
pub struct DemoArgs {
    /// Hosts that replay recorded traffic (plus one live fanotify host when root).
    #[arg(long, default_value_t = 20)]
    hosts: usize,
    /// Hosts tagged `canary` (they are in the first ring).
    #[arg(long, default_value_t = 2)]
    canaries: usize,
    /// Do not add the live fanotify host even when running as root.
    #[arg(long)]
    no_live: bool,
    /// Permission events per second each replaying host decides.
    #[arg(long, default_value_t = 50)]
    rate: u64,
    /// Bake time per ring for the good release.
    #[arg(long, default_value = "2s", value_parser = ringfence_protocol::duration::parse)]
    bake: std::time::Duration,
    /// Print only the summary, as one JSON object.
    #[arg(long)]
    json: bool,
    /// Keep the fleet running after the story until Ctrl-C (the dashboard and CLI work against
    /// it); the summary follows.
    #[arg(long)]
    keep: bool,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.hosts >= 1, "--hosts must be at least 1");
    anyhow::ensure!(
        args.canaries <= args.hosts,
        "--canaries cannot exceed --hosts"
    );
    let exe = std::env::current_exe().context("find the ringfence binary")?;
    let summary = ringfence_demo::run(ringfence_demo::DemoOptions {
        exe,
        hosts: args.hosts,
        canaries: args.canaries,
        live: !args.no_live,
        rate: args.rate,
        bake_s: args.bake.as_secs_f64(),
        quiet: args.json,
        keep: args.keep,
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("\nSummary\n{}", summary.table());
    }
    let contained = summary.bad_release_max_ring == 0
        && summary.events_lost == 0
        && summary.wrong_denies == 0
        && summary.preflight_blocked
        && summary.stall_halted
        && summary.stall_max_ring == 0;
    Ok(if contained {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
