//! `ringfence bench fleet-faults`: a real fleet on this machine (server, guards, managed agents
//! replaying a corpus) given each kind of bad release with preflight skipped. Per fault: how
//! far it got, how many hosts it reached (against the whole fleet, which an all-at-once push
//! would reach), how long the gates took to halt it (against the first ring's bake time, which
//! is when it would have been promoted) and how long every host took to come back.

use anyhow::Context;
use ringfence_demo::faults::{Fault, FaultFleet, FaultFleetOptions, FaultOutcome, table};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Hosts in the fleet.
    #[arg(long, default_value_t = 12)]
    pub hosts: usize,
    /// Hosts tagged `canary` (the first ring).
    #[arg(long, default_value_t = 2)]
    pub canaries: usize,
    /// Permission events per second each host replays.
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// Bake time per ring of each bad rollout.
    #[arg(long = "bake", default_value = "8s", value_parser = crate::seconds)]
    pub bake_s: f64,
    /// Faults to inject, comma-separated (default: all of trap, rare-trap, slow, loop, oom,
    /// deny-all).
    #[arg(long, value_delimiter = ',')]
    pub faults: Vec<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let faults = if options.faults.is_empty() {
        Fault::ALL.to_vec()
    } else {
        options
            .faults
            .iter()
            .map(|name| {
                Fault::parse(name).with_context(|| {
                    format!(
                        "unknown fault {name:?}: use trap, rare-trap, slow, loop, oom or deny-all"
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let exe = std::env::current_exe().context("find this executable")?;
    if !options.json {
        eprintln!(
            "starting {} hosts ({} canary) and rolling out a good release…",
            options.hosts, options.canaries
        );
    }
    let mut fleet = FaultFleet::start(FaultFleetOptions {
        exe,
        hosts: options.hosts,
        canaries: options.canaries,
        rate: options.rate,
        bake_s: options.bake_s,
    })?;
    let mut outcomes: Vec<FaultOutcome> = Vec::new();
    for fault in faults {
        if !options.json {
            eprintln!(
                "injecting {}: a release that {}",
                fault.name(),
                fault.describe()
            );
        }
        outcomes.push(fleet.inject(fault)?);
    }
    if options.json {
        let rows: Vec<_> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "outcome": o,
                    "contained": o.contained(),
                    "reach_share": o.hosts_reached as f64 / o.hosts_total.max(1) as f64,
                    "halt_in_bakes": o.time_to_halt_s / options.bake_s.max(0.001),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"hosts": options.hosts, "bake_s": options.bake_s, "faults": rows})
        );
        return Ok(());
    }
    println!("{}", table(&outcomes));
    for o in &outcomes {
        println!(
            "{:<10} reached {:.1} % of the fleet (all-at-once: 100 %); halted after {:.2}× the \
             first ring's bake; {}",
            o.fault.name(),
            100.0 * o.hosts_reached as f64 / o.hosts_total.max(1) as f64,
            o.time_to_halt_s / options.bake_s.max(0.001),
            if o.contained() {
                "contained"
            } else {
                "NOT CONTAINED"
            }
        );
    }
    Ok(())
}
