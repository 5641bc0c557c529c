//! `ringfence bench`: each benchmark lives in `ringfence-bench`.

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Alerts end to end: agents' uploads through the server and its syslog sink (TLS) to a
    /// receiver, against uploads with no sink; upload-to-receiver latency; catch-up after an
    /// outage of the receiver; alerts lost.
    #[command(
        after_help = "Examples:\n  ringfence bench alerts\n  ringfence bench alerts --agents 1000 --batch 500 --duration 3s --outage 10s --json"
    )]
    Alerts(ringfence_bench::alerts::Options),
    /// Engine host: throughput, call cost, wasm vs native, trap recovery, deadline cost.
    #[command(
        after_help = "Examples:\n  ringfence bench engine\n  ringfence bench engine --events 200000 --json"
    )]
    Engine(ringfence_bench::engine::Options),
    /// Compiled-engine cache: compiling each bundled engine vs loading it from the cache.
    #[command(
        after_help = "Examples:\n  ringfence bench engine-cache\n  ringfence bench engine-cache --engines sigma,allowlist --rounds 5 --json"
    )]
    EngineCache(ringfence_bench::engine_cache::Options),
    /// Exec authorisation latency with and without the agent (needs root).
    #[command(
        after_help = "Examples:\n  sudo ringfence bench exec\n  sudo ringfence bench exec --iterations 2000 --json"
    )]
    Exec(ringfence_bench::exec::Options),
    /// A real fleet on this machine given each kind of bad release (trap, rare trap, slow,
    /// loop, oom, deny-all): how far each got, hosts reached, time to halt and to recover.
    #[command(
        after_help = "Examples:\n  ringfence bench fleet-faults\n  ringfence bench fleet-faults --faults trap,loop --bake 10s --json"
    )]
    FleetFaults(ringfence_bench::fleet_faults::Options),
    /// Live engine swap under a steady event stream: swap latency, dropped, duplicated.
    #[command(
        after_help = "Examples:\n  ringfence bench hotswap\n  ringfence bench hotswap --rate 20000 --duration 10s --json"
    )]
    Hotswap(ringfence_bench::hotswap::Options),
    /// Resident memory of real agents: a one-rule allow-list against the Sigma engine with
    /// generated rules, compiled at start and loaded from the compiled-engine cache.
    #[command(
        after_help = "Examples:\n  ringfence bench memory\n  ringfence bench memory --rules 1000 --json"
    )]
    Memory(ringfence_bench::memory::Options),
    /// Sigma engine throughput by rule count, wasm vs native.
    #[command(
        after_help = "Examples:\n  ringfence bench sigma\n  ringfence bench sigma --events 50000 --rules 10,100 --json"
    )]
    Sigma(ringfence_bench::sigma::Options),
    /// Heartbeats per second into the server (SQLite or PostgreSQL), over HTTP and HTTPS, and
    /// TLS handshakes per second against new plain connections.
    #[command(
        after_help = "Examples:\n  ringfence bench server --agents 10000 --duration 5s\n  ringfence bench server --flood --duration 10s\n  ringfence bench server --database postgres://postgres@127.0.0.1/bench --json"
    )]
    Server(ringfence_bench::server::Options),
    /// In-place agent upgrade under exec load: the slowest exec during the handoff vs steady
    /// state (needs root).
    #[command(
        after_help = "Examples:\n  sudo ringfence bench upgrade\n  sudo ringfence bench upgrade --upgrades 5 --steady 1s --json"
    )]
    Upgrade(ringfence_bench::upgrade::Options),
}

pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Alerts(options) => ringfence_bench::alerts::run(&options)?,
        BenchCommand::Engine(options) => ringfence_bench::engine::run(&options)?,
        BenchCommand::EngineCache(options) => ringfence_bench::engine_cache::run(&options)?,
        BenchCommand::Exec(options) => ringfence_bench::exec::run(&options)?,
        BenchCommand::FleetFaults(options) => ringfence_bench::fleet_faults::run(&options)?,
        BenchCommand::Hotswap(options) => ringfence_bench::hotswap::run(&options)?,
        BenchCommand::Memory(options) => ringfence_bench::memory::run(&options)?,
        BenchCommand::Sigma(options) => ringfence_bench::sigma::run(&options)?,
        BenchCommand::Server(options) => ringfence_bench::server::run(&options)?,
        BenchCommand::Upgrade(options) => ringfence_bench::upgrade::run(&options)?,
    }
    Ok(ExitCode::SUCCESS)
}
