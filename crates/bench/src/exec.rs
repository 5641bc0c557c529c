//! `ringfence bench exec`.

/// Options for `ringfence bench exec`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {}

/// Runs the benchmark and prints its report.
pub fn run(_options: &Options) -> anyhow::Result<()> {
    anyhow::bail!("`ringfence bench exec` is being written")
}
