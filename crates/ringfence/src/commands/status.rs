//! `ringfence status`: the fleet in a few lines.

use super::operator::OperatorArgs;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    operator: OperatorArgs,
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let status: Value = args
        .operator
        .client()
        .get_json("status", "/api/v1/status")?;
    if args.json {
        println!("{status}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "agents {} ({} online, {} running their last known good release)",
        status["agents"], status["online"], status["on_lkg"]
    );
    if let Some(versions) = status["versions"].as_object() {
        for (channel, counts) in versions {
            let parts: Vec<String> = counts
                .as_object()
                .map(|c| c.iter().map(|(v, n)| format!("{v}: {n}")).collect())
                .unwrap_or_default();
            println!("channel {channel}: {}", parts.join(", "));
        }
    }
    if let Some(rollouts) = status["rollouts"].as_array() {
        for rollout in rollouts {
            println!(
                "rollout {} {}@{} {} (ring {}){}",
                rollout["id"].as_str().unwrap_or("-"),
                rollout["channel"].as_str().unwrap_or("-"),
                rollout["version"].as_str().unwrap_or("-"),
                rollout["phase"].as_str().unwrap_or("-"),
                rollout["ring"],
                rollout["reason"]
                    .as_str()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
