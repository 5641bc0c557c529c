//! `ringfence rollout`: start a rollout and steer it.

use super::operator::OperatorArgs;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start rolling a published release out through rings.
    // `--version` is the release's version here, not ringfence's.
    #[command(disable_version_flag = true)]
    Start {
        #[command(flatten)]
        operator: OperatorArgs,
        #[arg(long)]
        channel: String,
        #[arg(long)]
        version: String,
        /// Cumulative ring percentages; the first ring also takes hosts tagged `canary`.
        #[arg(long, default_value = "1,10,50,100")]
        rings: String,
        /// Bake time per ring, seconds.
        #[arg(long, default_value_t = 60.0)]
        bake_s: f64,
        #[arg(long)]
        json: bool,
    },
    /// Show one rollout (or all): rings, each gate's value against its threshold, history.
    Status {
        #[command(flatten)]
        operator: OperatorArgs,
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Stop promoting; rings keep what they have.
    Pause(ActionArgs),
    /// Continue a paused or halted rollout; the current ring's bake starts over.
    Resume(ActionArgs),
    /// Stop where it is, without rolling back.
    Halt(ActionArgs),
    /// Put every ring back on the previous release.
    Rollback(ActionArgs),
}

#[derive(Debug, clap::Args)]
pub struct ActionArgs {
    #[command(flatten)]
    operator: OperatorArgs,
    id: String,
    /// Why; recorded in the audit log.
    #[arg(long)]
    reason: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn print_rollout(rollout: &Value) {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    println!(
        "rollout {}  {}@{}  (from {})  phase {}",
        text(&rollout["id"]),
        text(&rollout["channel"]),
        text(&rollout["version"]),
        rollout["previous_version"].as_str().unwrap_or("nothing"),
        text(&rollout["phase"])
    );
    if let Some(rings) = rollout["rings"].as_array() {
        let line: Vec<String> = rings
            .iter()
            .map(|r| {
                format!(
                    "{} {}% [{}]",
                    text(&r["name"]),
                    r["percent"],
                    text(&r["status"])
                )
            })
            .collect();
        println!("  rings  {}", line.join(" → "));
    }
    if let Some(gates) = rollout["gates"].as_array() {
        for gate in gates {
            let mark = if gate["passed"].as_bool() == Some(true) {
                "pass"
            } else {
                "FAIL"
            };
            println!("  gate   {mark}  {}", text(&gate["explanation"]));
        }
    }
    if let Some(reason) = rollout["reason"].as_str() {
        println!("  why    {reason}");
    }
}

fn act(action: &str, args: ActionArgs) -> anyhow::Result<ExitCode> {
    let body = json!({ "reason": args.reason });
    let rollout: Value = args.operator.client()?.post_json(
        "rollout action",
        &format!("/api/v1/rollouts/{}/{action}", args.id),
        &body,
    )?;
    if args.json {
        println!("{rollout}");
    } else {
        print_rollout(&rollout);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(command: RolloutCommand) -> anyhow::Result<ExitCode> {
    match command {
        RolloutCommand::Start {
            operator,
            channel,
            version,
            rings,
            bake_s,
            json,
        } => {
            let body =
                json!({ "channel": channel, "version": version, "rings": rings, "bake_s": bake_s });
            let rollout: Value =
                operator
                    .client()?
                    .post_json("rollout start", "/api/v1/rollouts", &body)?;
            if json {
                println!("{rollout}");
            } else {
                print_rollout(&rollout);
            }
            Ok(ExitCode::SUCCESS)
        }
        RolloutCommand::Status { operator, id, json } => {
            let client = operator.client()?;
            let rollouts: Vec<Value> = match id {
                Some(id) => vec![client.get_json("rollout", &format!("/api/v1/rollouts/{id}"))?],
                None => {
                    let all: Value = client.get_json("rollouts", "/api/v1/rollouts")?;
                    all["rollouts"].as_array().cloned().unwrap_or_default()
                }
            };
            if json {
                println!("{}", json!({ "rollouts": rollouts }));
            } else if rollouts.is_empty() {
                println!("no rollouts");
            } else {
                rollouts.iter().for_each(print_rollout);
            }
            Ok(ExitCode::SUCCESS)
        }
        RolloutCommand::Pause(args) => act("pause", args),
        RolloutCommand::Resume(args) => act("resume", args),
        RolloutCommand::Halt(args) => act("halt", args),
        RolloutCommand::Rollback(args) => act("rollback", args),
    }
}
