//! The `ringfence` binary: parses the command line and hands each subcommand to the library that
//! owns it. Mostly glue; the one security decision taken in this crate is whether to exec a new
//! agent binary in place (`commands/self_upgrade.rs`), and only after the release crate has
//! verified its signature against the agent's trusted keys.

mod commands;
mod settings;

use clap::{CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::process::ExitCode;

/// The command line, with the service's settings file (if any) under it.
fn parse() -> commands::Cli {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let command = commands::Cli::command();
    let matches = command.clone().get_matches_from(&argv);
    let layered = match settings::layer(&command, &matches, &argv) {
        Ok(None) => {
            return commands::Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
        }
        Ok(Some(layered)) => layered,
        Err(error) => {
            eprintln!("ringfence: error: {error}");
            std::process::exit(2);
        }
    };
    let parsed = command
        .try_get_matches_from(&layered.argv)
        .and_then(|matches| commands::Cli::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => cli,
        Err(error) => {
            // clap's message names the option; say that the file, not the typist, set it.
            let _ = error.print();
            eprintln!(
                "ringfence: options set by {}: {}",
                layered.path.display(),
                layered.applied.join(", ")
            );
            std::process::exit(2);
        }
    }
}

fn main() -> ExitCode {
    let cli = parse();
    if cli.command.is_filter() {
        // Output piped into `head` should end the command quietly. Only for commands that
        // print and exit: daemons keep Rust's default, where a closed socket is an error value.
        ringfence_sensor::sys::restore_default_sigpipe();
    }
    commands::init_logging(cli.verbose, cli.log_format);
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ringfence: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
