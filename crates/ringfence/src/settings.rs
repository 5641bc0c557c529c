//! Settings files for the three services: `/etc/ringfence/server.toml` for `ringfence server`,
//! `agent.toml` for `ringfence agent`, `guard.toml` for `ringfence guard`.
//!
//! A settings file holds the same options as the command line, under their long names
//! (`listen = "0.0.0.0:7700"`, `heartbeat-interval = "5s"`, `tag = ["canary"]`,
//! `insecure-http = true`), so there is one list of options, one set of checks and one help
//! text: each value from the file goes through clap exactly as if it had been typed. A flag or
//! an environment variable wins over the file; the file wins over the default. A key that is
//! not an option of that command is an error that names the file and the key, never ignored:
//! a misspelt `requre-agent-certs` must not quietly leave a server without mutual TLS.

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The directory packaged settings files live in.
const DIRECTORY: &str = "/etc/ringfence";

/// The commands that read a settings file: each is a service run by systemd.
const SERVICES: [&str; 3] = ["server", "agent", "guard"];

/// Why a settings file cannot be used; the service does not start on a file it cannot read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("read the settings file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the settings file {path} is not TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error(
        "the settings file {path} sets `{key}`, which is not an option of `ringfence {service}`; \
         its options: {known}"
    )]
    UnknownKey {
        path: PathBuf,
        key: String,
        service: String,
        known: String,
    },
    #[error(
        "the settings file {path} sets `{key}` to {kind}; use a string, number, boolean or a list of them"
    )]
    Unsupported {
        path: PathBuf,
        key: String,
        kind: &'static str,
    },
}

/// The command line with a settings file's values spliced in, and where they came from.
#[derive(Debug)]
pub struct Layered {
    pub argv: Vec<OsString>,
    pub path: PathBuf,
    /// The keys the file contributed (those not given as a flag or in the environment).
    pub applied: Vec<String>,
}

/// The settings file a service reads: `--config` when given, otherwise the packaged path if it
/// exists. The agent protects this file like its binary.
pub fn effective_path(service: &str, explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(path.to_path_buf()),
        None => {
            let default = default_path(service);
            default.exists().then_some(default)
        }
    }
}

fn default_path(service: &str) -> PathBuf {
    Path::new(DIRECTORY).join(format!("{service}.toml"))
}

/// Splices the settings file of the service `matches` runs (if any) into `argv`. `None` when
/// the command is not a service, or no file applies.
pub fn layer(
    command: &Command,
    matches: &ArgMatches,
    argv: &[OsString],
) -> Result<Option<Layered>, SettingsError> {
    let Some((service, leaf)) = matches.subcommand() else {
        return Ok(None);
    };
    if !SERVICES.contains(&service) || leaf.subcommand().is_some() {
        return Ok(None);
    }
    let Some(leaf_command) = command.find_subcommand(service) else {
        return Ok(None);
    };
    let explicit = leaf_command
        .get_arguments()
        .find(|arg| arg.get_long() == Some("config"))
        .and_then(|arg| leaf.get_one::<PathBuf>(arg.get_id().as_str()));
    let Some(path) = effective_path(service, explicit.map(PathBuf::as_path)) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::Read {
        path: path.clone(),
        source,
    })?;
    let flags = flags_from(&text, &path, service, leaf_command, leaf)?;
    let Some(at) = argv
        .iter()
        .skip(1)
        .position(|word| word == service)
        .map(|at| at + 2)
    else {
        return Ok(None);
    };
    let mut applied: Vec<String> = flags.iter().map(|(key, _)| key.clone()).collect();
    applied.dedup();
    let mut spliced = argv[..at].to_vec();
    spliced.extend(flags.into_iter().map(|(_, flag)| OsString::from(flag)));
    spliced.extend_from_slice(&argv[at..]);
    Ok(Some(Layered {
        argv: spliced,
        path,
        applied,
    }))
}

/// `--key=value` words for every key of the file the command line and environment left unset.
fn flags_from(
    text: &str,
    path: &Path,
    service: &str,
    command: &Command,
    matches: &ArgMatches,
) -> Result<Vec<(String, String)>, SettingsError> {
    let table: toml::Table =
        text.parse()
            .map_err(|error: toml::de::Error| SettingsError::Syntax {
                path: path.to_path_buf(),
                message: error.message().to_owned(),
            })?;
    let options: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set() && arg.get_long().is_some_and(|long| long != "config"))
        .collect();
    let mut flags = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let Some(arg) = options.iter().find(|arg| arg.get_long() == Some(&long)) else {
            let mut known: Vec<&str> = options.iter().filter_map(|arg| arg.get_long()).collect();
            known.sort_unstable();
            return Err(SettingsError::UnknownKey {
                path: path.to_path_buf(),
                key,
                service: service.to_owned(),
                known: known.join(", "),
            });
        };
        if matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        let unsupported = |kind| SettingsError::Unsupported {
            path: path.to_path_buf(),
            key: key.clone(),
            kind,
        };
        let values = match value {
            toml::Value::Array(items) => items,
            scalar => vec![scalar],
        };
        for value in values {
            let text = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(number) => number.to_string(),
                toml::Value::Float(number) => number.to_string(),
                toml::Value::Boolean(on) if !takes_value => {
                    if on {
                        flags.push((key.clone(), format!("--{long}")));
                    }
                    continue;
                }
                toml::Value::Boolean(on) => on.to_string(),
                toml::Value::Datetime(_) => return Err(unsupported("a date")),
                toml::Value::Array(_) => return Err(unsupported("a list of lists")),
                toml::Value::Table(_) => return Err(unsupported("a table")),
            };
            flags.push((key.clone(), format!("--{long}={text}")));
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    /// A stand-in for the real command line: a service with a value, a list, a switch and an
    /// option that reads the environment (`PATH` is set wherever tests run).
    fn cli() -> Command {
        Command::new("ringfence")
            .subcommand(
                Command::new("server")
                    .arg(
                        Arg::new("config")
                            .long("config")
                            .value_parser(clap::value_parser!(PathBuf)),
                    )
                    .arg(
                        Arg::new("listen")
                            .long("listen")
                            .default_value("127.0.0.1:7700"),
                    )
                    .arg(Arg::new("tag").long("tag").action(ArgAction::Append))
                    .arg(
                        Arg::new("insecure_http")
                            .long("insecure-http")
                            .action(ArgAction::SetTrue),
                    )
                    .arg(Arg::new("search").long("search").env("PATH"))
                    .arg(Arg::new("secret").long("secret").hide(true))
                    .subcommand(Command::new("token")),
            )
            .subcommand(Command::new("status").arg(Arg::new("config").long("config")))
    }

    fn layered(file: &str, words: &[&str]) -> Result<Option<Layered>, SettingsError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.toml");
        std::fs::write(&path, file).expect("write");
        let mut argv: Vec<OsString> = words.iter().map(OsString::from).collect();
        argv.splice(2..2, [OsString::from("--config"), path.into_os_string()]);
        let command = cli();
        let matches = command.clone().try_get_matches_from(&argv).expect("parse");
        layer(&command, &matches, &argv)
    }

    fn words(layered: &Layered) -> Vec<String> {
        layered
            .argv
            .iter()
            .map(|word| word.to_string_lossy().into_owned())
            .filter(|word| !word.ends_with("server.toml"))
            .collect()
    }

    #[test]
    fn values_from_the_file_come_in_as_flags_after_the_command() {
        let layered = layered(
            "listen = \"0.0.0.0:7700\"\ntag = [\"canary\", \"eu\"]\ninsecure_http = true\n",
            &["ringfence", "server"],
        )
        .expect("layer")
        .expect("a file applies");
        assert_eq!(
            words(&layered),
            [
                "ringfence",
                "server",
                "--insecure-http",
                "--listen=0.0.0.0:7700",
                "--tag=canary",
                "--tag=eu",
                "--config"
            ]
        );
        assert_eq!(layered.applied, ["insecure_http", "listen", "tag"]);
        let matches = cli().try_get_matches_from(&layered.argv).expect("parses");
        let server = matches.subcommand_matches("server").expect("server");
        assert_eq!(
            server.get_one::<String>("listen").map(String::as_str),
            Some("0.0.0.0:7700")
        );
        assert!(server.get_flag("insecure_http"));
    }

    #[test]
    fn flags_and_environment_win_over_the_file() {
        let layered = layered(
            "listen = \"0.0.0.0:7700\"\nsearch = \"/nowhere\"\ninsecure-http = false\n",
            &["ringfence", "server", "--listen", "127.0.0.1:9"],
        )
        .expect("layer")
        .expect("a file applies");
        assert_eq!(layered.applied, Vec::<String>::new(), "{layered:?}");
    }

    #[test]
    fn an_unknown_or_hidden_key_is_an_error_naming_file_and_key() {
        for key in ["requre-agent-certs", "secret", "config"] {
            let error = layered(&format!("{key} = true\n"), &["ringfence", "server"])
                .expect_err("unknown key");
            let message = error.to_string();
            assert!(
                message.contains(key)
                    && message.contains("server.toml")
                    && message.contains("listen"),
                "{message}"
            );
        }
    }

    #[test]
    fn tables_and_bad_syntax_are_errors() {
        let error = layered("[listen]\nport = 1\n", &["ringfence", "server"]).expect_err("table");
        assert!(error.to_string().contains("a table"), "{error}");
        let error = layered("listen = \n", &["ringfence", "server"]).expect_err("syntax");
        assert!(error.to_string().contains("not TOML"), "{error}");
    }

    #[test]
    fn only_a_service_reads_a_file() {
        let command = cli();
        for argv in [
            vec!["ringfence", "server", "token"],
            vec!["ringfence", "status"],
        ] {
            let matches = command.clone().try_get_matches_from(&argv).expect("parse");
            let argv: Vec<OsString> = argv.into_iter().map(OsString::from).collect();
            assert!(layer(&command, &matches, &argv).expect("layer").is_none());
        }
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error() {
        let command = cli();
        let argv: Vec<OsString> = [
            "ringfence",
            "server",
            "--config",
            "/nonexistent/server.toml",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let matches = command.clone().try_get_matches_from(&argv).expect("parse");
        let error = layer(&command, &matches, &argv).expect_err("missing");
        assert!(matches!(error, SettingsError::Read { .. }), "{error}");
    }
}
