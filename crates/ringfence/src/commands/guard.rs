//! `ringfence guard`: clap glue around `ringfence-guard`, the supervisor that starts the agent,
//! restarts it and restores the last known good slot locally; plus `guard status`.

use anyhow::Context;
use clap::{Args, Subcommand};
use ringfence_guard::{
    AgentCommand, ArgSlotSwitch, Config, ExpBackoff, Guard, Notifier, Policy, ShutdownSignals,
};
use ringfence_protocol::duration;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Supervise the agent: restart it with backoff, kill it when it stops heartbeating, and fall back
/// to the last known good slot on a crash loop or boot loop, locally and at once.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GuardArgs {
    #[command(subcommand)]
    command: Option<GuardCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum GuardCommand {
    /// What the guard on this host is doing (reads <data-dir>/guard/status.json).
    #[command(
        after_help = "Examples:\n  ringfence guard status\n  ringfence guard status --data-dir /var/lib/ringfence --json"
    )]
    Status(StatusArgs),
    /// An agent stand-in for tests and benchmarks.
    #[command(hide = true)]
    TestChild(ringfence_bench::stand_in::Options),
    /// Measure the guard: idle RSS and CPU, time from the third crash to serving on LKG.
    #[command(hide = true)]
    Bench(ringfence_bench::guard::Options),
}

#[derive(Debug, Args)]
struct DataDir {
    /// The data directory; the guard keeps state.json and status.json in its guard/ folder.
    #[arg(long, env = "RINGFENCE_DATA_DIR", default_value = "/var/lib/ringfence")]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    data: DataDir,
    /// Settings file (TOML) whose keys are this command's long options, e.g. `window = "60s"`,
    /// `boot-tries = 3`. Flags and environment variables win over it [default:
    /// /etc/ringfence/guard.toml if it exists]. The agent reads its own, agent.toml.
    #[arg(long = "config", value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Failures within --window that make a crash loop and switch to the last known good slot.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    failures: u32,
    /// The crash-loop window.
    #[arg(long, default_value = "60s", value_parser = duration::parse)]
    window: Duration,
    /// Kill and restart the agent when it has not written to its heartbeat pipe for this long;
    /// 0 turns the heartbeat off (for an agent that does not speak it).
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    heartbeat_timeout: Duration,
    /// Healthy this long blesses the release: the boot counter is reset.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    bless_after: Duration,
    /// Starts of a release that may fail to become healthy before the guard starts on LKG.
    #[arg(long, default_value_t = 3)]
    boot_tries: u32,
    /// First restart delay; it doubles on every failure, with jitter.
    #[arg(long, default_value = "500ms", value_parser = duration::parse)]
    backoff_min: Duration,
    /// Longest restart delay.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    backoff_max: Duration,
    /// Between SIGTERM and SIGKILL when the guard stops.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    stop_grace: Duration,
    /// Arguments appended to start the last known good slot; `{slot}` becomes `lkg`. Repeat for
    /// several. Default: `--slot {slot}`.
    #[arg(long = "lkg-arg", value_name = "ARG", allow_hyphen_values = true)]
    lkg_args: Vec<String>,
    /// Arguments appended to start the current slot; `{slot}` becomes `current`.
    #[arg(long = "current-arg", value_name = "ARG", allow_hyphen_values = true)]
    current_args: Vec<String>,
    /// A file or symlink naming the current release: when it changes, the boot counter resets
    /// and an LKG pin is lifted.
    #[arg(long)]
    release_marker: Option<PathBuf>,
    /// The agent command. Empty: this executable with `agent`. Starting with `-`: this
    /// executable with `agent` and these arguments. Otherwise: the whole command line.
    #[arg(last = true, value_name = "AGENT COMMAND")]
    agent: Vec<OsString>,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    data: DataDir,
    /// Print the status file as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: GuardArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        None => supervise(args.run),
        Some(GuardCommand::Status(args)) => status(args),
        Some(GuardCommand::TestChild(args)) => ringfence_bench::stand_in::run(args),
        Some(GuardCommand::Bench(args)) => {
            ringfence_bench::guard::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn agent_command(args: Vec<OsString>) -> anyhow::Result<AgentCommand> {
    let starts_with_dash = args
        .first()
        .is_some_and(|a| a.as_encoded_bytes().starts_with(b"-"));
    if args.is_empty() || starts_with_dash {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let mut full = vec![OsString::from("agent")];
        full.extend(args);
        return Ok(AgentCommand::new(exe, full));
    }
    let mut args = args.into_iter();
    let program = args.next().context("empty agent command")?;
    Ok(AgentCommand::new(program, args))
}

fn supervise(args: RunArgs) -> anyhow::Result<ExitCode> {
    // First, before anything could start a thread: SIGTERM/SIGINT/SIGHUP arrive by signalfd.
    let shutdown = ShutdownSignals::install().context("cannot set up signal handling")?;
    if let Some(path) = crate::settings::effective_path("guard", args.settings.as_deref()) {
        tracing::info!(path = %path.display(), "settings file read");
    }
    let heartbeat_timeout = (!args.heartbeat_timeout.is_zero()).then_some(args.heartbeat_timeout);
    let config = Config {
        data_dir: args.data.data_dir,
        agent: agent_command(args.agent)?,
        policy: Policy {
            failures: args.failures,
            window: args.window,
            boot_tries: args.boot_tries,
        },
        heartbeat_timeout,
        bless_after: args.bless_after,
        backoff: ExpBackoff::new(args.backoff_min, args.backoff_max, 0.5)?,
        stop_grace: args.stop_grace,
        own_process: true,
    };
    let mut slots = ArgSlotSwitch {
        current_args: args.current_args,
        release_marker: args.release_marker,
        ..ArgSlotSwitch::default()
    };
    if !args.lkg_args.is_empty() {
        slots.lkg_args = args.lkg_args;
    }
    let mut guard = Guard::new(config, &mut slots, Notifier::from_env())?;
    guard.run(&shutdown);
    Ok(ExitCode::SUCCESS)
}

fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let path = ringfence_guard::supervisor::status_path(&args.data.data_dir);
    let status = ringfence_guard::status::read(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    let running = std::path::Path::new(&format!("/proc/{}", status.guard_pid)).exists();
    if running {
        println!("guard {}: {}", status.guard_pid, status.summary());
    } else {
        println!(
            "guard {} is not running; it last said: {}",
            status.guard_pid,
            status.summary()
        );
    }
    if let Some(failure) = &status.last_failure {
        println!("last failure: {failure}");
    }
    if let Some(stop) = &status.last_stop {
        println!("last requested stop (not a failure): {stop}");
    }
    if let Some(restore) = &status.last_restore {
        println!(
            "last restore of LKG: {} ({}), at unix time {}",
            restore.reason, restore.detail, restore.at_unix
        );
    }
    if let Some(release) = &status.release {
        println!("current release: {release}");
    }
    Ok(ExitCode::SUCCESS)
}
