//! `ringfence agent list|show|decommission`: the fleet's agents as the server knows them, and
//! taking one out for good. `ringfence agent` with no subcommand runs the host agent
//! (`agent.rs`); these talk to the server with an operator token.

use super::operator::OperatorArgs;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::process::ExitCode;

/// `ringfence agent`: run the host agent, or (with a subcommand) manage enrolled agents.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentCli {
    #[command(subcommand)]
    pub command: Option<AgentAdminCommand>,
    #[command(flatten)]
    pub run: super::agent::AgentArgs,
}

#[derive(Debug, Subcommand)]
pub enum AgentAdminCommand {
    /// Enrolled agents, from the server.
    #[command(
        after_help = "Examples:\n  ringfence agent list\n  ringfence agent list -o wide\n  ringfence agent list -o json | jq '.agents[] | select(.degraded)'"
    )]
    List {
        #[command(flatten)]
        operator: OperatorArgs,
        /// How to print: `table` (aligned columns), `wide` (more columns) or `json` (the
        /// server's document).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// One agent: enrollment, last heartbeat, certificate, decommission.
    #[command(
        after_help = "Examples:\n  ringfence agent show ag-5d2e\n  ringfence agent show ag-5d2e -o json"
    )]
    Show {
        #[command(flatten)]
        operator: OperatorArgs,
        /// The agent's id, as `agent list` shows it.
        id: String,
        /// How to print: `table` (aligned columns), `wide` (more columns) or `json` (the
        /// server's document).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Take an agent out for good: its credential and certificate stop working on every
    /// server replica, rollout gates leave it out; its history stays. Audited.
    #[command(
        after_help = "Examples:\n  ringfence agent decommission ag-5d2e --reason \"host retired\""
    )]
    Decommission {
        #[command(flatten)]
        operator: OperatorArgs,
        /// The agent's id, as `agent list` shows it.
        id: String,
        /// Why; recorded in the audit log.
        #[arg(long)]
        reason: String,
        /// How to print: `table` (aligned columns), `wide` (more columns) or `json` (the
        /// server's document).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// How list commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// More columns.
    Wide,
    /// The server's JSON, one document.
    Json,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Milliseconds since the epoch as "N s/min/h/d ago" (or "-").
fn ago(value: &Value) -> String {
    match age(value).as_str() {
        "-" => "-".to_owned(),
        age => format!("{age} ago"),
    }
}

/// How long ago a time in milliseconds since the epoch was, as `42s`, `5m`, `3h`, `2d` (or
/// "-"): the AGE column of tables.
pub fn age(value: &Value) -> String {
    let Some(ms) = value.as_i64() else {
        return "-".to_owned();
    };
    span(ringfence_protocol::clock::unix_ms().saturating_sub(ms))
}

/// When a timestamp in milliseconds comes, in words: `never` (none), `in 29d`, `2h ago`.
pub fn when(value: &Value) -> String {
    let Some(ms) = value.as_i64() else {
        return "never".to_owned();
    };
    let delta = ms.saturating_sub(ringfence_protocol::clock::unix_ms());
    if delta > 0 {
        format!("in {}", span(delta))
    } else {
        format!("{} ago", span(-delta))
    }
}

/// A duration in milliseconds in the largest whole unit: `45s`, `12m`, `3h`, `29d`.
fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn state(agent: &Value) -> &'static str {
    if agent["decommissioned_at_ms"].is_number() {
        "decommissioned"
    } else if agent["last_seen_at_ms"].is_number() {
        "enrolled"
    } else {
        "never seen"
    }
}

/// Prints rows under a header with each column as wide as its widest cell.
/// `-o` for commands that print one document or a list of them, with the older `--json` kept
/// working for scripts written before it.
#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// `table`: one line each; `wide`: more columns; `json`: the server's document. Without
    /// it, each in detail.
    #[arg(short = 'o', long, value_enum)]
    output: Option<Output>,
    /// Same as `-o json`.
    #[arg(long, hide = true, conflicts_with = "output")]
    json: bool,
}

impl OutputArgs {
    /// The format asked for; `None` is each item in detail.
    pub fn format(&self) -> Option<Output> {
        if self.json {
            Some(Output::Json)
        } else {
            self.output
        }
    }
}

pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn print_agents(agents: &[Value], output: Output) {
    match output {
        Output::Json => println!("{}", json!({ "agents": agents })),
        Output::Table => print_table(
            &["ID", "HOSTNAME", "STATE", "LAST SEEN"],
            &agents
                .iter()
                .map(|a| {
                    vec![
                        text(&a["id"]),
                        text(&a["hostname"]),
                        state(a).to_owned(),
                        ago(&a["last_seen_at_ms"]),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
        Output::Wide => print_table(
            &[
                "ID",
                "HOSTNAME",
                "STATE",
                "LAST SEEN",
                "ENROLLED",
                "TAGS",
                "AGENT VERSION",
            ],
            &agents
                .iter()
                .map(|a| {
                    let tags: Vec<String> = a["tags"]
                        .as_array()
                        .map(|t| t.iter().map(text).collect())
                        .unwrap_or_default();
                    vec![
                        text(&a["id"]),
                        text(&a["hostname"]),
                        state(a).to_owned(),
                        ago(&a["last_seen_at_ms"]),
                        ago(&a["enrolled_at_ms"]),
                        if tags.is_empty() {
                            "-".to_owned()
                        } else {
                            tags.join(",")
                        },
                        text(&a["status"]["agent_version"]),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}

fn print_agent(agent: &Value, output: Output) {
    if output == Output::Json {
        println!("{agent}");
        return;
    }
    println!("agent {}  ({})", text(&agent["id"]), state(agent));
    println!("  hostname      {}", text(&agent["hostname"]));
    println!("  enrolled      {}", ago(&agent["enrolled_at_ms"]));
    println!("  last seen     {}", ago(&agent["last_seen_at_ms"]));
    println!(
        "  certificate   {}",
        if agent["client_cert_issued_at_ms"].is_number() {
            format!("issued {}", ago(&agent["client_cert_issued_at_ms"]))
        } else {
            "none".to_owned()
        }
    );
    if agent["decommissioned_at_ms"].is_number() {
        println!("  decommissioned {}", ago(&agent["decommissioned_at_ms"]));
    }
    if let Some(releases) = agent["status"]["releases"].as_array() {
        for release in releases {
            println!(
                "  channel       {}: {}",
                text(&release["channel"]),
                text(&release["current"])
            );
        }
    }
}

pub fn run(command: AgentAdminCommand) -> anyhow::Result<ExitCode> {
    match command {
        AgentAdminCommand::List { operator, output } => {
            let reply: Value = operator
                .client()?
                .get_json("agent list", "/api/v1/agents")?;
            let agents = reply["agents"].as_array().cloned().unwrap_or_default();
            print_agents(&agents, output);
        }
        AgentAdminCommand::Show {
            operator,
            id,
            output,
        } => {
            let agent: Value = operator.client()?.get_json(
                "agent show",
                &format!("/api/v1/agents/{}", path_segment(&id)?),
            )?;
            print_agent(&agent, output);
        }
        AgentAdminCommand::Decommission {
            operator,
            id,
            reason,
            output,
        } => {
            let agent: Value = operator.client()?.post_json(
                "decommission",
                &format!("/api/v1/agents/{}/decommission", path_segment(&id)?),
                &json!({ "reason": reason }),
            )?;
            if output == Output::Json {
                println!("{agent}");
            } else {
                println!(
                    "decommissioned agent {} ({}): its credential and certificate no longer work",
                    text(&agent["id"]),
                    text(&agent["hostname"])
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An id that goes into a URL path as one segment: ids are letters, digits, `-`, `_` and `.`.
pub fn path_segment(id: &str) -> anyhow::Result<&str> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && id != "."
        && id != "..";
    anyhow::ensure!(
        ok,
        "{id:?} is not an id (letters, digits, '-', '_' and '.')"
    );
    Ok(id)
}
