//! `ringfence crashes`: crash groups from the server, in plain words.

use super::agent_admin::{Output, OutputArgs, print_table};
use super::operator::OperatorArgs;
use clap::Subcommand;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum CrashesCommand {
    /// Every crash group, most reports first.
    #[command(
        after_help = "Examples:\n  ringfence crashes list\n  ringfence crashes list -o wide\n  ringfence crashes list -o json | jq '.groups[].summary'"
    )]
    List {
        #[command(flatten)]
        operator: OperatorArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// One group by its signature (or a unique prefix of it).
    #[command(
        after_help = "Examples:\n  ringfence crashes show faulty:trap\n  ringfence crashes show faulty:trap -o json"
    )]
    Show {
        #[command(flatten)]
        operator: OperatorArgs,
        /// The group's signature as `crashes list` shows it, or its start (`faulty:trap`).
        signature: String,
        #[command(flatten)]
        output: OutputArgs,
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
        CrashesCommand::List { operator, output } => {
            let groups = groups(&operator)?;
            let text = |g: &Value, key: &str| match &g[key] {
                Value::String(s) => s.clone(),
                Value::Null => "-".to_owned(),
                other => other.to_string(),
            };
            match output.format() {
                Some(Output::Json) => println!("{}", serde_json::json!({ "groups": groups })),
                _ if groups.is_empty() => println!("no crashes reported"),
                Some(Output::Table) => print_table(
                    &["REPORTS", "HOSTS", "SIGNATURE"],
                    &groups
                        .iter()
                        .map(|g| vec![text(g, "count"), text(g, "hosts"), text(g, "signature")])
                        .collect::<Vec<_>>(),
                ),
                Some(Output::Wide) => print_table(
                    &[
                        "REPORTS",
                        "HOSTS",
                        "RELEASE",
                        "ROLLOUT",
                        "SIGNATURE",
                        "SUMMARY",
                    ],
                    &groups
                        .iter()
                        .map(|g| {
                            [
                                "count",
                                "hosts",
                                "release",
                                "rollout",
                                "signature",
                                "summary",
                            ]
                            .iter()
                            .map(|key| text(g, key))
                            .collect()
                        })
                        .collect::<Vec<_>>(),
                ),
                None => {
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
            }
            Ok(ExitCode::SUCCESS)
        }
        CrashesCommand::Show {
            operator,
            signature,
            output,
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
            if output.format() == Some(Output::Json) {
                println!("{group}");
            } else {
                println!("{}", group["summary"].as_str().unwrap_or(""));
                for (label, key) in [
                    ("signature", "signature"),
                    ("engine", "engine"),
                    ("failure", "kind"),
                    ("trap code", "trap_code"),
                    ("function", "function"),
                    ("release", "release"),
                    ("rollout", "rollout"),
                    ("reports", "count"),
                    ("hosts", "hosts"),
                ] {
                    let value = match &group[key] {
                        Value::String(text) => text.clone(),
                        Value::Null => "-".to_owned(),
                        other => other.to_string(),
                    };
                    println!("  {label:<10} {value}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
