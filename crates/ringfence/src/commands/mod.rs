//! Subcommands: one module each, with its clap arguments next to the code that runs it.

mod agent;
mod agent_admin;
mod alerts;
mod bench;
mod corpus;
mod crash_monitor;
mod crashes;
mod demo;
mod engine;
mod generate_assets;
mod guard;
mod harden;
mod managed;
mod operator;
mod record;
mod release;
mod remediation;
mod rollout;
mod server;
mod sim;
mod status;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// ringfence: user-mode security for Linux fleets, deployed in rings, recovered without hands.
#[derive(Debug, Parser)]
#[command(name = "ringfence", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log lines as text (colour only on a terminal) or as JSON objects, one per line, for
    /// journald and log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RINGFENCE_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with detection engines: test one against a corpus, list the bundled ones.
    #[command(subcommand)]
    Engine(engine::EngineCommand),
    /// Make and inspect event corpora (JSON lines).
    #[command(subcommand)]
    Corpus(corpus::CorpusCommand),
    /// Run the host agent, or list, show and decommission enrolled agents.
    Agent(Box<agent_admin::AgentCli>),
    /// Record live kernel events into a corpus.
    Record(record::RecordArgs),
    /// Replay a poisoned content update against a fleet on this machine.
    Demo(demo::DemoArgs),
    /// Run the control plane, or make its tokens.
    Server(server::ServerArgs),
    /// Build, sign, verify and inspect release bundles; sign rollback directives.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// Start and steer rollouts.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Remediation plans: pin a channel to a release, or disable its engine.
    #[command(subcommand)]
    Remediation(remediation::RemediationCommand),
    /// Crash groups from the server, in plain words.
    #[command(subcommand)]
    Crashes(crashes::CrashesCommand),
    /// Alerts the server holds, by time, host, rule and severity; and how each sink keeps up.
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// Fleet summary from the server.
    Status(status::StatusArgs),
    /// Supervise the agent and restore the last known good release locally (`guard status`).
    Guard(guard::GuardArgs),
    /// Compare rollout strategies on a simulated fleet in virtual time.
    Sim(sim::SimArgs),
    /// Write a minidump of a crashed agent (started by the agent itself).
    #[command(hide = true)]
    CrashMonitor(crash_monitor::CrashMonitorArgs),
    /// Measure ringfence on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(generate_assets::CompletionsArgs),
    /// Print the man page of ringfence or one of its commands.
    Man(generate_assets::ManArgs),
    /// Write man pages and shell completions from this command line (used by packaging).
    #[command(hide = true)]
    GenerateAssets(generate_assets::GenerateAssetsArgs),
}

impl Command {
    /// Commands that print a result and exit (as opposed to services and orchestrators).
    pub fn is_filter(&self) -> bool {
        matches!(
            self,
            Command::Engine(_)
                | Command::Corpus(_)
                | Command::Rollout(_)
                | Command::Remediation(_)
                | Command::Status(_)
                | Command::Crashes(_)
                | Command::Alerts(_)
                | Command::Sim(_)
                | Command::Completions(_)
                | Command::Man(_)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs go to standard error: a terminal gets colour, a file or journald gets plain text (or
/// JSON), never escape codes. `NO_COLOR` turns colour off everywhere.
pub fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => {
            use std::io::IsTerminal;
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init()
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Engine(command) => engine::run(command),
        Command::Corpus(command) => corpus::run(command),
        Command::Agent(args) => match args.command {
            Some(command) => agent_admin::run(command),
            None => agent::run(args.run),
        },
        Command::Record(args) => record::run(args),
        Command::Bench(command) => bench::run(command),
        Command::CrashMonitor(args) => crash_monitor::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Completions(args) => generate_assets::completions(args),
        Command::Man(args) => generate_assets::man(args),
        Command::Demo(args) => demo::run(args),
        Command::Server(args) => server::run(args),
        Command::Release(command) => release::run(command),
        Command::Rollout(command) => rollout::run(command),
        Command::Remediation(command) => remediation::run(command),
        Command::Status(args) => status::run(args),
        Command::Crashes(command) => crashes::run(command),
        Command::Alerts(command) => alerts::run(command),
        Command::Guard(args) => guard::run(args),
        Command::GenerateAssets(args) => generate_assets::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks argument definitions lazily, per subcommand; check them all at once.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// Every option and argument a person can see says what it is for, and every command a
    /// person runs shows examples.
    #[test]
    fn every_visible_option_is_described_and_every_command_has_examples() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if arg.is_hide_set() || ["help", "version"].contains(&arg.get_id().as_str()) {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path}: {} has no description", arg.get_id()));
                }
            }
            let visible: Vec<&clap::Command> = command
                .get_subcommands()
                .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
                .collect();
            let examples = [command.get_after_help(), command.get_after_long_help()]
                .into_iter()
                .flatten()
                .any(|text| text.to_string().contains("Examples:"));
            if visible.is_empty() && !examples {
                missing.push(format!("{path}: no Examples: section"));
            }
            for sub in visible {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut command = super::Cli::command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "ringfence", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
