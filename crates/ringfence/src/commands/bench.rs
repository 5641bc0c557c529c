//! `ringfence bench`: each benchmark lives in `ringfence-bench`.

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Engine host: throughput, call cost, wasm vs native, trap recovery, deadline cost.
    Engine(ringfence_bench::engine::Options),
    /// Compiled-engine cache: compiling each bundled engine vs loading it from the cache.
    EngineCache(ringfence_bench::engine_cache::Options),
    /// Exec authorisation latency with and without the agent (needs root).
    Exec(ringfence_bench::exec::Options),
    /// A real fleet on this machine given each kind of bad release (trap, rare trap, slow,
    /// loop, oom, deny-all): how far each got, hosts reached, time to halt and to recover.
    FleetFaults(ringfence_bench::fleet_faults::Options),
    /// Live engine swap under a steady event stream: swap latency, dropped, duplicated.
    Hotswap(ringfence_bench::hotswap::Options),
    /// Sigma engine throughput by rule count, wasm vs native.
    Sigma(ringfence_bench::sigma::Options),
    /// Heartbeats per second into the server (SQLite or PostgreSQL), over HTTP and HTTPS, and
    /// TLS handshakes per second against new plain connections.
    Server(ringfence_bench::server::Options),
    /// In-place agent upgrade under exec load: the slowest exec during the handoff vs steady
    /// state (needs root).
    Upgrade(ringfence_bench::upgrade::Options),
}

pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Engine(options) => ringfence_bench::engine::run(&options)?,
        BenchCommand::EngineCache(options) => ringfence_bench::engine_cache::run(&options)?,
        BenchCommand::Exec(options) => ringfence_bench::exec::run(&options)?,
        BenchCommand::FleetFaults(options) => ringfence_bench::fleet_faults::run(&options)?,
        BenchCommand::Hotswap(options) => ringfence_bench::hotswap::run(&options)?,
        BenchCommand::Sigma(options) => ringfence_bench::sigma::run(&options)?,
        BenchCommand::Server(options) => ringfence_bench::server::run(&options)?,
        BenchCommand::Upgrade(options) => ringfence_bench::upgrade::run(&options)?,
    }
    Ok(ExitCode::SUCCESS)
}
