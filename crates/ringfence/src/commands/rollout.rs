//! `ringfence rollout`: start a rollout and steer it, with the verbs and conventions fleet
//! engineers know from argo-rollouts and kubectl (`promote`, `abort`, `retry`, `status --watch`,
//! `-o table|wide|json`), so nobody has to learn a second vocabulary under pressure.

use super::agent_admin::{Output, OutputArgs, age, path_segment, print_table};
use super::operator::OperatorArgs;
use clap::Subcommand;
use ringfence_protocol::Enforcement;
use ringfence_uplink::ServerClient;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::Duration;

const START_EXAMPLES: &str = "\
Examples:
  # Canaries and 1% first, then 10%, 50% and everyone, each ring baking 10 minutes
  ringfence rollout start --channel detection --version 1.4.0 --bake 10m

  # Two rings, a short bake, and the new rollout as one JSON document
  ringfence rollout start --channel detection --version 1.4.0 --rings 5,100 --bake 90s -o json

  # A deliberate downgrade (refused without --force)
  ringfence rollout start --channel detection --version 1.3.2 --force

  # Audit first: hosts decide and report \"would deny\" but block nothing; the
  # would_deny_rate gate halts it if the release would deny far more than today
  ringfence rollout start --channel detection --version 1.4.0 --mode audit";

const STATUS_EXAMPLES: &str = "\
Examples:
  # Every rollout, one line each
  ringfence rollout status -o table

  # One rollout in detail: rings, each gate against its threshold, why it stopped
  ringfence rollout status ro-3f9c2a1b7d4e

  # Follow it until it ends, every 2 seconds; the exit code says how it ended
  ringfence rollout status ro-3f9c2a1b7d4e --watch --interval 2s && echo shipped

Exit codes:
  0  the rollout completed (with --watch), or the status was shown
  1  with --watch: the rollout was rolled back, halted, or stopped and the channel disabled
     (a channel's first release has nothing to roll back to)
  2  an error: an unknown rollout, a refused token, an unreachable server, bad arguments";

const PAUSE_EXAMPLES: &str = "\
Examples:
  ringfence rollout pause ro-3f9c2a1b7d4e --reason \"change freeze until 14:00\"";

const RESUME_EXAMPLES: &str = "\
Examples:
  # The current ring's bake starts over: time spent paused does not count
  ringfence rollout resume ro-3f9c2a1b7d4e --reason \"freeze over\"";

const HALT_EXAMPLES: &str = "\
Examples:
  # Hosts keep what they run; nothing rolls back until `rollback` or `abort`
  ringfence rollout halt ro-3f9c2a1b7d4e --reason \"investigating a crash group\"";

const ROLLBACK_EXAMPLES: &str = "\
Examples:
  ringfence rollout rollback ro-3f9c2a1b7d4e --reason \"deny rate doubled on build hosts\"";

const PROMOTE_EXAMPLES: &str = "\
Examples:
  # Ring 0 looks healthy and waiting is costly: go to the next ring now
  ringfence rollout promote ro-3f9c2a1b7d4e --reason \"canaries clean for 20 minutes\"

A promote ends the bake only: it is refused (exit code 2, the failing gates named) while any
gate of the rollout fails or the current ring has not installed the release. From the last ring
it completes the rollout; a paused rollout runs again; a halted one needs `resume`.";

const ENFORCE_EXAMPLES: &str = "\
Examples:
  # The audit rollout completed and its would-deny rate stayed low: start blocking
  ringfence rollout enforce ro-3f9c2a1b7d4e --reason \"would-deny alerts reviewed\"

  # The same, spelt as a promote
  ringfence rollout promote ro-3f9c2a1b7d4e --enforce

Starts a new rollout of the audit rollout's release in enforce mode, through the same rings,
bake and gates; hosts not reached yet keep running it in audit mode. Hosts whose agent was
started with --mode audit stay in audit. Refused (exit code 2) for an unknown rollout, an audit
rollout that has not completed, a rollout that enforces already, or a channel that has moved on.";

const ABORT_EXAMPLES: &str = "\
Examples:
  ringfence rollout abort ro-3f9c2a1b7d4e --reason \"bad content\"

`abort` is argo-rollouts' name for `rollback`: it stops the rollout and puts every touched ring
back on the previous release (a channel's first release is disabled on the touched hosts
instead). `retry` starts it over afterwards.";

const RETRY_EXAMPLES: &str = "\
Examples:
  # The fix was outside the release (a host, a config): try the same release again
  ringfence rollout retry ro-3f9c2a1b7d4e --reason \"build hosts patched\"

The new rollout has the old one's channel, version, rings, bake and gates and starts from the
first ring. A halted rollout is rolled back first; a running, paused or completed one is
refused. The server's rules for a start still hold (a version older than the fleet's needs
--force).";

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start rolling a published release out through rings.
    // `--version` is the release's version here, not ringfence's.
    #[command(disable_version_flag = true, after_help = START_EXAMPLES)]
    Start {
        #[command(flatten)]
        operator: OperatorArgs,
        /// The release channel, e.g. `detection`.
        #[arg(long)]
        channel: String,
        #[arg(long)]
        version: String,
        /// Cumulative ring percentages; the first ring also takes hosts tagged `canary`.
        #[arg(long, default_value = "1,10,50,100")]
        rings: String,
        /// Bake time per ring: `90s`, `10m`, `1h`, `500ms`.
        #[arg(long, default_value = "60s", value_parser = ringfence_protocol::duration::parse, conflicts_with = "bake_s")]
        bake: Duration,
        /// Deprecated spelling of `--bake` in seconds.
        #[arg(long, hide = true)]
        bake_s: Option<f64>,
        /// Roll out a version older than the one the channel's fleet runs (a downgrade).
        #[arg(long)]
        force: bool,
        /// `audit`: hosts given the release decide, log and report "would deny" but block
        /// nothing; `ringfence rollout enforce` enforces it once it completes.
        #[arg(long, default_value_t = Enforcement::Enforce)]
        mode: Enforcement,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one rollout (or all): rings, each gate's value against its threshold, history.
    #[command(after_help = STATUS_EXAMPLES)]
    Status {
        #[command(flatten)]
        operator: OperatorArgs,
        /// The rollout's id (`ro-…`); every rollout when absent.
        id: Option<String>,
        /// Follow the rollout, printing it again whenever it changes, until it leaves running
        /// and paused; the exit code says how it ended (below).
        #[arg(long, short = 'w', requires = "id")]
        watch: bool,
        /// How often `--watch` asks the server: `1s`, `2s`, `500ms`.
        #[arg(long, default_value = "1s", value_parser = interval, requires = "watch")]
        interval: Duration,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Stop promoting; rings keep what they have.
    #[command(after_help = PAUSE_EXAMPLES)]
    Pause(ActionArgs),
    /// Continue a paused or halted rollout; the current ring's bake starts over.
    #[command(after_help = RESUME_EXAMPLES)]
    Resume(ActionArgs),
    /// Stop where it is, without rolling back.
    #[command(after_help = HALT_EXAMPLES)]
    Halt(ActionArgs),
    /// Put every ring back on the previous release.
    #[command(after_help = ROLLBACK_EXAMPLES)]
    Rollback(ActionArgs),
    /// End the current ring's bake now and move to the next ring (argo's `promote`), only if
    /// every gate passes.
    #[command(after_help = PROMOTE_EXAMPLES)]
    Promote {
        #[command(flatten)]
        action: ActionArgs,
        /// Enforce a completed audit rollout's release instead (the same as `enforce`).
        #[arg(long)]
        enforce: bool,
    },
    /// Enforce the release a completed audit rollout brought: a new rollout of it in enforce
    /// mode through the same rings.
    #[command(after_help = ENFORCE_EXAMPLES)]
    Enforce(ActionArgs),
    /// Halt and roll back every touched ring: argo's name for `rollback`.
    #[command(after_help = ABORT_EXAMPLES)]
    Abort(ActionArgs),
    /// Start a new rollout of a halted or rolled-back rollout's release, rings and bake.
    #[command(after_help = RETRY_EXAMPLES)]
    Retry {
        #[command(flatten)]
        action: ActionArgs,
        /// Needed when the release is now older than what the channel's fleet runs.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ActionArgs {
    #[command(flatten)]
    operator: OperatorArgs,
    /// The rollout's id, as `rollout status` shows it (`ro-…`).
    id: String,
    /// Why; recorded in the audit log.
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// A poll interval: anything shorter than 100 ms only loads the server.
fn interval(text: &str) -> Result<Duration, String> {
    let interval = ringfence_protocol::duration::parse(text).map_err(|e| e.to_string())?;
    if interval < Duration::from_millis(100) {
        return Err(format!("{text:?} is shorter than 100ms"));
    }
    Ok(interval)
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_owned()
}

pub fn print_rollout(rollout: &Value) {
    println!(
        "rollout {}  {}@{}  (from {})  phase {}  mode {}",
        text(&rollout["id"]),
        text(&rollout["channel"]),
        text(&rollout["version"]),
        rollout["previous_version"].as_str().unwrap_or("nothing"),
        text(&rollout["phase"]),
        rollout["mode"].as_str().unwrap_or("enforce")
    );
    if let Some(audit) = rollout["enforces"].as_str() {
        println!("  enforces what audit rollout {audit} brought");
    }
    if let Some(rings) = rollout["rings"].as_array() {
        let line: Vec<String> = rings
            .iter()
            .map(|r| {
                // Adoption (hosts of the ring on the release) when the server counted it.
                let adoption = match (r["on_release"].as_u64(), r["hosts"].as_u64()) {
                    (Some(on), Some(hosts)) => format!(", {on}/{hosts} hosts"),
                    _ => String::new(),
                };
                format!(
                    "{} {}% [{}{adoption}]",
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

/// `canary (1/4)`: the current ring's name and position.
fn ring_cell(rollout: &Value) -> String {
    let total = rollout["rings"].as_array().map_or(0, Vec::len);
    match rollout["ring"].as_u64() {
        Some(ring) => format!("{} ({}/{total})", text(&rollout["ring_name"]), ring + 1),
        None => "-".to_owned(),
    }
}

/// `8/8 pass`, or the failing gates by name.
fn gates_cell(rollout: &Value) -> String {
    let Some(gates) = rollout["gates"].as_array().filter(|g| !g.is_empty()) else {
        return "-".to_owned();
    };
    let failed: Vec<String> = gates
        .iter()
        .filter(|g| g["passed"].as_bool() != Some(true))
        .map(|g| text(&g["gate"]))
        .collect();
    if failed.is_empty() {
        format!("{}/{} pass", gates.len(), gates.len())
    } else {
        format!("FAIL {}", failed.join(","))
    }
}

fn print_rollouts(rollouts: &[Value], format: Option<Output>) {
    let row = |r: &Value| {
        vec![
            text(&r["id"]),
            format!("{}@{}", text(&r["channel"]), text(&r["version"])),
            text(&r["phase"]),
            ring_cell(r),
            age(&r["started_ms"]),
        ]
    };
    match format {
        Some(Output::Json) => println!("{}", json!({ "rollouts": rollouts })),
        Some(Output::Table) => print_table(
            &["ID", "RELEASE", "PHASE", "RING", "AGE"],
            &rollouts.iter().map(row).collect::<Vec<_>>(),
        ),
        Some(Output::Wide) => print_table(
            &["ID", "RELEASE", "PHASE", "RING", "AGE", "GATES", "REASON"],
            &rollouts
                .iter()
                .map(|r| {
                    let mut cells = row(r);
                    cells.push(gates_cell(r));
                    cells.push(text(&r["reason"]));
                    cells
                })
                .collect::<Vec<_>>(),
        ),
        None if rollouts.is_empty() => println!("no rollouts"),
        None => rollouts.iter().for_each(print_rollout),
    }
}

/// One rollout as the server answered it: `-o json` prints the document itself, as before.
fn print_one(rollout: &Value, format: Option<Output>) {
    match format {
        Some(Output::Json) => println!("{rollout}"),
        _ => print_rollouts(std::slice::from_ref(rollout), format),
    }
}

fn act(action: &str, body: Value, args: ActionArgs) -> anyhow::Result<ExitCode> {
    let id = path_segment(&args.id)?;
    let rollout: Value = args.operator.client()?.post_json(
        "rollout action",
        &format!("/api/v1/rollouts/{id}/{action}"),
        &body,
    )?;
    print_one(&rollout, args.output.format());
    Ok(ExitCode::SUCCESS)
}

/// What `--watch` reprints on: phase, ring, ring states, reason and which gates pass, not the
/// revision, which moves with every controller tick.
fn watched(rollout: &Value) -> Value {
    json!([
        rollout["phase"],
        rollout["ring"],
        rollout["reason"],
        rollout["rings"].as_array().map(|rings| rings
            .iter()
            .map(|r| r["status"].clone())
            .collect::<Vec<_>>()),
        rollout["gates"].as_array().map(|gates| gates
            .iter()
            .map(|g| json!([g["gate"], g["passed"]]))
            .collect::<Vec<_>>()),
    ])
}

/// Follows one rollout until it leaves running and paused: 0 when it completed, 1 when it
/// stopped any other way. Brief network trouble is waited out: a watch outlives a server
/// restart; a refusal (an unknown id, a bad token) ends it.
fn watch(
    client: &ServerClient,
    id: &str,
    every: Duration,
    format: Option<Output>,
) -> anyhow::Result<ExitCode> {
    let path = format!("/api/v1/rollouts/{id}");
    let mut shown = None;
    loop {
        let rollout: Value = match client.get_json("rollout", &path) {
            Ok(rollout) => rollout,
            Err(error) if error.is_transient() => {
                eprintln!("ringfence: {error}; trying again");
                std::thread::sleep(every);
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let now = watched(&rollout);
        if shown.as_ref() != Some(&now) {
            print_one(&rollout, format);
            shown = Some(now);
        }
        match rollout["phase"].as_str() {
            Some("running" | "paused") => std::thread::sleep(every),
            Some("completed") => return Ok(ExitCode::SUCCESS),
            Some(_) => return Ok(ExitCode::from(1)),
            None => anyhow::bail!("the server's answer for rollout {id} has no phase"),
        }
    }
}

pub fn run(command: RolloutCommand) -> anyhow::Result<ExitCode> {
    match command {
        RolloutCommand::Start {
            operator,
            channel,
            version,
            rings,
            bake,
            bake_s,
            force,
            mode,
            output,
        } => {
            let bake_s = match bake_s {
                Some(seconds) => {
                    eprintln!("ringfence: --bake-s is deprecated; use --bake {seconds}s");
                    seconds
                }
                None => bake.as_secs_f64(),
            };
            let body = json!({
                "channel": channel, "version": version, "rings": rings, "bake_s": bake_s,
                "force": force, "mode": mode,
            });
            let rollout: Value =
                operator
                    .client()?
                    .post_json("rollout start", "/api/v1/rollouts", &body)?;
            print_one(&rollout, output.format());
            Ok(ExitCode::SUCCESS)
        }
        RolloutCommand::Status {
            operator,
            id,
            watch: follow,
            interval,
            output,
        } => {
            let client = operator.client()?;
            let rollouts: Vec<Value> = match id {
                Some(id) if follow => {
                    return watch(&client, path_segment(&id)?, interval, output.format());
                }
                Some(id) => vec![client.get_json(
                    "rollout",
                    &format!("/api/v1/rollouts/{}", path_segment(&id)?),
                )?],
                None => {
                    let all: Value = client.get_json("rollouts", "/api/v1/rollouts")?;
                    all["rollouts"].as_array().cloned().unwrap_or_default()
                }
            };
            print_rollouts(&rollouts, output.format());
            Ok(ExitCode::SUCCESS)
        }
        RolloutCommand::Pause(args) => act("pause", reason_body(&args), args),
        RolloutCommand::Resume(args) => act("resume", reason_body(&args), args),
        RolloutCommand::Halt(args) => act("halt", reason_body(&args), args),
        RolloutCommand::Rollback(args) | RolloutCommand::Abort(args) => {
            act("rollback", reason_body(&args), args)
        }
        RolloutCommand::Promote {
            action,
            enforce: true,
        }
        | RolloutCommand::Enforce(action) => act("enforce", reason_body(&action), action),
        RolloutCommand::Promote {
            action,
            enforce: false,
        } => act("promote", reason_body(&action), action),
        RolloutCommand::Retry { action, force } => {
            let body = json!({ "reason": action.reason, "force": force });
            act("retry", body, action)
        }
    }
}

fn reason_body(args: &ActionArgs) -> Value {
    json!({ "reason": args.reason })
}
