//! `ringfence bench engine`.

/// Options for `ringfence bench engine`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {}

/// Runs the benchmark and prints its report.
pub fn run(_options: &Options) -> anyhow::Result<()> {
    anyhow::bail!("`ringfence bench engine` is being written")
}
