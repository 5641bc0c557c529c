//! `ringfence bench sigma`.

/// Options for `ringfence bench sigma`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {}

/// Runs the benchmark and prints its report.
pub fn run(_options: &Options) -> anyhow::Result<()> {
    anyhow::bail!("`ringfence bench sigma` is being written")
}
