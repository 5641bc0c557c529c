//! `ringfence record`: writes live process events (netlink process connector: fork, exec with
//! argv, exit) as a corpus, so production traffic can be replayed in preflight and tests.

use anyhow::Context;
use ringfence_sensor::ProcConnector;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Record live kernel events into a corpus.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  # A minute of this host's process activity, for `engine test` and preflight\n  sudo ringfence record --out host.jsonl --duration 1m\n  sudo ringfence record --out execs.jsonl --exec-only"
)]
pub struct RecordArgs {
    /// Corpus to write (JSON lines).
    #[arg(long)]
    out: PathBuf,
    /// Stop after this long: `30s`, `10m` (default: until SIGTERM or Ctrl-C).
    #[arg(long, value_parser = ringfence_protocol::duration::parse)]
    duration: Option<Duration>,
    /// Leave out fork and exit events.
    #[arg(long)]
    exec_only: bool,
}

pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    ringfence_sys::signals::block_termination_signals().context("block SIGTERM")?;
    let mut connector = ProcConnector::open()?;
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("create {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let until = args.duration.map(|span| Instant::now() + span);
    let me = std::process::id();
    let mut written = 0u64;
    eprintln!("ringfence record: recording to {}", args.out.display());
    loop {
        if until.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        if ringfence_sys::signals::wait_termination(Duration::ZERO).is_some() {
            break;
        }
        for event in connector.read(Duration::from_millis(50))? {
            if event.pid() == me
                || (args.exec_only && !matches!(event, ringfence_protocol::Event::Exec(_)))
            {
                continue;
            }
            serde_json::to_writer(&mut out, &event)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        out.flush()?;
    }
    out.flush()?;
    eprintln!(
        "ringfence record: {written} events written, {} overflows",
        connector.overflows
    );
    Ok(ExitCode::SUCCESS)
}
