//! `ringfence crash-monitor` (hidden): the small process a managed agent starts to write a
//! minidump of it, from outside, if it crashes.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CrashMonitorArgs {
    /// Unix socket the agent connects to.
    #[arg(long)]
    socket: PathBuf,
    /// Where minidumps are written.
    #[arg(long)]
    dumps: PathBuf,
    /// The agent's spool, for the report.
    #[arg(long)]
    spool: PathBuf,
}

pub fn run(args: CrashMonitorArgs) -> anyhow::Result<ExitCode> {
    ringfence_crash::run_monitor(&args.socket, &args.dumps, &args.spool)?;
    Ok(ExitCode::SUCCESS)
}
