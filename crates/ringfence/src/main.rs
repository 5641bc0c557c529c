//! The `ringfence` binary: parses the command line and hands each subcommand to the library that
//! owns it. Glue: no security decision is taken here (the agent process's lifecycle, in-place
//! upgrades included, is `ringfence-host`'s).
#![forbid(unsafe_code)]

mod commands;
mod settings;

use clap::{CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::process::ExitCode;

/// The command line, with the service's settings file (if any) under it; `Err` is the exit
/// code after the problem was printed.
fn parse() -> Result<commands::Cli, ExitCode> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let command = commands::Cli::command();
    let matches = command.clone().get_matches_from(&argv);
    let layered = match settings::layer(&command, &matches, &argv) {
        Ok(None) => {
            return Ok(commands::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()));
        }
        Ok(Some(layered)) => layered,
        Err(error) => {
            eprintln!("ringfence: error: {error}");
            return Err(ExitCode::from(2));
        }
    };
    command
        .try_get_matches_from(&layered.argv)
        .and_then(|matches| commands::Cli::from_arg_matches(&matches))
        .map_err(|error| {
            // clap's message names the option; say that the file, not the typist, set it.
            let _ = error.print();
            eprintln!(
                "ringfence: options set by {}: {}",
                layered.path.display(),
                layered.applied.join(", ")
            );
            ExitCode::from(2)
        })
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if cli.command.is_filter() {
        // Output piped into `head` should end the command quietly. Only for commands that
        // print and exit: daemons keep Rust's default, where a closed socket is an error value.
        ringfence_sys::signals::restore_default_sigpipe();
    }
    commands::init_logging(cli.verbose, cli.log_format);
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ringfence: error: {}", describe(&error));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, each said once: many error types already end their
/// message with their cause's, and anyhow's `{:#}` would print it again
/// ("No such file or directory (os error 2): No such file or directory (os error 2)").
fn describe(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.ends_with(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Read {
        path: String,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let read = Read {
            path: "/nonexistent".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let error = anyhow::Error::new(read).context("load the corpus");
        assert_eq!(
            describe(&error),
            "load the corpus: /nonexistent: entity not found"
        );
        let plain = anyhow::anyhow!("no such agent").context("agent show");
        assert_eq!(describe(&plain), "agent show: no such agent");
    }
}
