//! `ringfence remediation create|list|retire`: plans that override rollouts on a channel (pin a
//! version, disable the engine, or audit: decide without blocking), for hosts a rollout cannot help. A pin obeys the rules a
//! rollout does (preflight passed, a key agents trust, not below the rollback floor) unless
//! `--force`, which is audited.

use super::agent_admin::{Output, path_segment, print_table};
use super::operator::OperatorArgs;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum RemediationCommand {
    /// Write a plan; hosts in scope apply it with their next heartbeat.
    // `--version` is the pinned release's version here, not ringfence's.
    #[command(
        disable_version_flag = true,
        after_help = "Examples:\n  # Canaries stop running detection content while it is investigated\n  ringfence remediation create --scope tag:canary --channel detection --action disable \\\n      --reason \"investigating 2.0.0\"\n  # One host back on a known release\n  ringfence remediation create --scope agent:ag-5d2e --channel detection --action pin \\\n      --version 1.3.0 --reason \"boot loop on 1.4.0\" -o json"
    )]
    Create {
        #[command(flatten)]
        operator: OperatorArgs,
        /// `fleet`, `agent:<id>` or `tag:<tag>`.
        #[arg(long, default_value = "fleet")]
        scope: String,
        /// The release channel the plan is about, e.g. `detection`.
        #[arg(long)]
        channel: String,
        /// `pin` (run --version, ignore rollouts), `disable` (run no engine on the channel) or
        /// `audit` (follow rollouts, but decide and report "would deny" without blocking: the
        /// channel's engine audits while the plan stands).
        #[arg(long, value_parser = ["pin", "disable", "audit"])]
        action: String,
        /// The release to pin (with `--action pin`).
        #[arg(long)]
        version: Option<String>,
        /// Why; recorded with the plan and in the audit log.
        #[arg(long)]
        reason: String,
        /// Pin even a release that failed or skipped preflight, is signed by a key agents do
        /// not trust, or is below the channel's rollback floor. Audited as forced.
        #[arg(long)]
        force: bool,
        /// How to print: `table` (aligned columns), `wide` (more columns) or `json` (the
        /// server's document).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Active plans.
    #[command(
        after_help = "Examples:\n  ringfence remediation list\n  ringfence remediation list -o wide\n  ringfence remediation list -o json"
    )]
    List {
        #[command(flatten)]
        operator: OperatorArgs,
        /// How to print: `table` (aligned columns), `wide` (more columns) or `json` (the
        /// server's document).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Retire a plan: its hosts follow rollouts again.
    #[command(after_help = "Examples:\n  ringfence remediation retire rp-7c1f09a2")]
    Retire {
        #[command(flatten)]
        operator: OperatorArgs,
        /// The plan's id, as `remediation list` shows it.
        id: String,
    },
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_owned()
}

fn row(plan: &Value, wide: bool) -> Vec<String> {
    let mut row = vec![
        text(&plan["id"]),
        text(&plan["scope"]),
        text(&plan["channel"]),
        text(&plan["action"]),
        text(&plan["version"]),
    ];
    if wide {
        row.push(text(&plan["created_by"]));
        row.push(text(&plan["reason"]));
    }
    row
}

fn print_plans(plans: &[Value], output: Output) {
    match output {
        Output::Json => println!("{}", json!({ "remediations": plans })),
        Output::Table => print_table(
            &["ID", "SCOPE", "CHANNEL", "ACTION", "VERSION"],
            &plans.iter().map(|p| row(p, false)).collect::<Vec<_>>(),
        ),
        Output::Wide => print_table(
            &[
                "ID", "SCOPE", "CHANNEL", "ACTION", "VERSION", "BY", "REASON",
            ],
            &plans.iter().map(|p| row(p, true)).collect::<Vec<_>>(),
        ),
    }
}

pub fn run(command: RemediationCommand) -> anyhow::Result<ExitCode> {
    match command {
        RemediationCommand::Create {
            operator,
            scope,
            channel,
            action,
            version,
            reason,
            force,
            output,
        } => {
            let body = json!({
                "scope": scope, "channel": channel, "action": action,
                "version": version, "reason": reason, "force": force,
            });
            let plan: Value =
                operator
                    .client()?
                    .post_json("remediation", "/api/v1/remediations", &body)?;
            print_plans(std::slice::from_ref(&plan), output);
            if text(&plan["reason"]).starts_with("FORCED") {
                eprintln!("warning: {}", text(&plan["reason"]));
            }
        }
        RemediationCommand::List { operator, output } => {
            let reply: Value = operator
                .client()?
                .get_json("remediations", "/api/v1/remediations")?;
            let plans = reply["remediations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            print_plans(&plans, output);
        }
        RemediationCommand::Retire { operator, id } => {
            let _: Value = operator.client()?.post_json(
                "retire remediation",
                &format!("/api/v1/remediations/{}/retire", path_segment(&id)?),
                &json!({}),
            )?;
            println!("retired {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
