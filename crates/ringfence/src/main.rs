//! The `ringfence` binary: parses the command line and hands each subcommand to the library that
//! owns it. Nothing here decides anything about security; it is glue.

mod commands;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    commands::init_logging(cli.verbose);
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ringfence: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
