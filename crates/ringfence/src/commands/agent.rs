//! `ringfence agent`.

use std::process::ExitCode;

/// Run the host agent.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {}

pub fn run(_args: AgentArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ringfence agent` is being written")
}
