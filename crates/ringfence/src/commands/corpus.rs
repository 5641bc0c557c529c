//! `ringfence corpus`: generate reproducible corpora, check existing ones.

use anyhow::Context;
use clap::Subcommand;
use ringfence_protocol::corpus;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum CorpusCommand {
    /// Write a realistic, reproducible corpus of events as JSON lines.
    #[command(
        after_help = "Examples:\n  ringfence corpus generate --events 2000 --out events.jsonl\n  ringfence corpus generate --seed 7 | head -3"
    )]
    Generate {
        /// How many events.
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        /// Same seed, same corpus.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file; standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check that a corpus parses; report counts by event kind.
    #[command(
        after_help = "Examples:\n  ringfence corpus check events.jsonl\n  ringfence corpus check events.jsonl --json"
    )]
    Check {
        /// The corpus file (JSON lines, one event each).
        corpus: PathBuf,
        /// Print the counts as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: CorpusCommand) -> anyhow::Result<ExitCode> {
    match command {
        CorpusCommand::Generate { events, seed, out } => {
            let generated = corpus::generate(events, seed);
            match out {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("create {}", path.display()))?;
                    corpus::write(std::io::BufWriter::new(file), &generated)
                        .with_context(|| format!("write {}", path.display()))?;
                }
                None => {
                    let stdout = std::io::stdout().lock();
                    corpus::write(std::io::BufWriter::new(stdout), &generated)
                        .context("write to standard output")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CorpusCommand::Check { corpus: path, json } => {
            let events = corpus::read_file(&path)?;
            let mut kinds = std::collections::BTreeMap::<&str, u64>::new();
            for event in &events {
                *kinds.entry(event.kind()).or_insert(0) += 1;
            }
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({
                        "events": events.len(),
                        "kinds": kinds,
                    }),
                )?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}: {} events", path.display(), events.len())?;
                for (kind, count) in kinds {
                    writeln!(out, "  {kind:<5} {count}")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
