//! `ringfence crashes`: crash groups from the server, in plain words.

use super::operator::OperatorArgs;
use clap::Subcommand;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum CrashesCommand {
    /// Every crash group, most reports first.
    List {
        #[command(flatten)]
        operator: OperatorArgs,
        #[arg(long)]
        json: bool,
    },
    /// One group by its signature (or a unique prefix of it).
    Show {
        #[command(flatten)]
        operator: OperatorArgs,
        signature: String,
        #[arg(long)]
        json: bool,
    },
}

fn groups(operator: &OperatorArgs) -> anyhow::Result<Vec<Value>> {
    let reply: Value = operator
        .client()?
        .get_json("crash groups", "/api/v1/crash-groups")?;
    Ok(reply["groups"].as_array().cloned().unwrap_or_default())
}

pub fn run(command: CrashesCommand) -> anyhow::Result<ExitCode> {
    match command {
        CrashesCommand::List { operator, json } => {
            let groups = groups(&operator)?;
            if json {
                println!("{}", serde_json::json!({ "groups": groups }));
            } else if groups.is_empty() {
                println!("no crashes reported");
            } else {
                for group in &groups {
                    println!(
                        "{:>6} reports {:>4} hosts  {}",
                        group["count"],
                        group["hosts"],
                        group["summary"].as_str().unwrap_or("")
                    );
                    println!(
                        "       signature {}",
                        group["signature"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CrashesCommand::Show {
            operator,
            signature,
            json,
        } => {
            let matching: Vec<Value> = groups(&operator)?
                .into_iter()
                .filter(|g| {
                    g["signature"]
                        .as_str()
                        .is_some_and(|s| s.starts_with(&signature))
                })
                .collect();
            let group = match matching.as_slice() {
                [one] => one,
                [] => anyhow::bail!("no crash group with signature {signature:?}"),
                _ => anyhow::bail!(
                    "{} crash groups start with {signature:?}; give more of it",
                    matching.len()
                ),
            };
            if json {
                println!("{group}");
            } else {
                println!("{}", group["summary"].as_str().unwrap_or(""));
                for key in [
                    "signature",
                    "engine",
                    "kind",
                    "trap_code",
                    "function",
                    "release",
                    "rollout",
                    "count",
                    "hosts",
                ] {
                    println!("  {key:<10} {}", group[key]);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
