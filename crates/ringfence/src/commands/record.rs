//! `ringfence record`.

use std::process::ExitCode;

/// Record live kernel events into a corpus.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {}

pub fn run(_args: RecordArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ringfence record` is being written")
}
