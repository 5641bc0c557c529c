//! The `ringfence` binary: parses the command line and hands each subcommand to the library that
//! owns it. Mostly glue; the one security decision taken in this crate is whether to exec a new
//! agent binary in place (`commands/self_upgrade.rs`), and only after the release crate has
//! verified its signature against the agent's trusted keys.

mod commands;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
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
