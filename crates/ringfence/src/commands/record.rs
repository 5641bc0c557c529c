//! `ringfence record`: writes live process events (netlink process connector: fork, exec with
//! argv, exit) and, with `--bpf`, the BPF sensor's network, file-change and privilege events
//! (enriched as the agent enriches them) as a corpus, so production traffic can be replayed in
//! preflight and tests.

use anyhow::Context;
use ringfence_agent::enrich::Enricher;
use ringfence_bpf_sensor::{BpfConfig, BpfSensor};
use ringfence_sensor::ProcConnector;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Record live kernel events into a corpus.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  # A minute of this host's process activity, for `engine test` and preflight\n  sudo ringfence record --out host.jsonl --duration 1m\n  sudo ringfence record --out execs.jsonl --exec-only\n  # Also network, file-change and privilege events, seen by the BPF sensor\n  sudo ringfence record --out kernel.jsonl --duration 5m --bpf"
)]
pub struct RecordArgs {
    /// Corpus to write (JSON lines).
    #[arg(long)]
    out: PathBuf,
    /// Stop after this long: `30s`, `10m` (default: until SIGTERM or Ctrl-C).
    #[arg(long, value_parser = ringfence_protocol::duration::parse)]
    duration: Option<Duration>,
    /// Leave out fork and exit events.
    #[arg(long, conflicts_with = "bpf")]
    exec_only: bool,
    /// Also record the network, file-change and privilege events the BPF sensor sees, with
    /// user names, exe and cgroup resolved on this host as the agent does.
    #[arg(long)]
    bpf: bool,
}

pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    ringfence_sys::signals::block_termination_signals().context("block SIGTERM")?;
    let mut connector = ProcConnector::open()?;
    let mut bpf = if args.bpf {
        Some(BpfSensor::load(&BpfConfig::default()).context("load the BPF sensor")?)
    } else {
        None
    };
    let mut enricher = Enricher::default();
    let mut records = Vec::new();
    let mut lost = 0u64;
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
        if let Some(sensor) = &mut bpf {
            records.clear();
            lost += sensor.read(Duration::from_millis(1), &mut records)?.lost;
            for record in &records {
                // Execs are recorded from the connector, with the argv the process ran with.
                if let ringfence_bpf_sensor::BpfEvent::Exec {
                    process, filename, ..
                } = record
                {
                    enricher.exec(process.tgid, filename);
                }
                if let Some(event) = ringfence_agent::bpf::to_event(record, &mut enricher) {
                    serde_json::to_writer(&mut out, &event)?;
                    out.write_all(b"\n")?;
                    written += 1;
                }
            }
        }
        out.flush()?;
    }
    out.flush()?;
    eprintln!(
        "ringfence record: {written} events written, {} overflows, {lost} BPF records lost",
        connector.overflows
    );
    Ok(ExitCode::SUCCESS)
}
