//! `ringfence alerts`: the alerts the server holds, for an operator without a SIEM at hand
//! (`alerts list`), and whether the sinks that should have them do (`alerts sinks`).

use super::agent_admin::{Output, age, print_table, when};
use super::operator::OperatorArgs;
use clap::Subcommand;
use ringfence_server::api::alerts::{AlertList, SinkList};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Alerts newest first (kept for the server's --alert-retention), filtered by time, host,
    /// rule and severity.
    #[command(
        after_help = "Examples:\n  ringfence alerts list --since 1h\n  ringfence alerts list --host web-1 --severity high\n  ringfence alerts list --rule ssh --limit 20 -o wide\n  ringfence alerts list --since 24h -o json | jq '.alerts[].body'"
    )]
    List {
        #[command(flatten)]
        operator: OperatorArgs,
        /// Only alerts the server received within this long: `90s`, `30m`, `1h`, `7d`.
        #[arg(long, value_parser = ringfence_protocol::duration::parse)]
        since: Option<Duration>,
        /// Only this host: its agent id or its hostname.
        #[arg(long)]
        host: Option<String>,
        /// Only alerts whose rule id (or an engine's) contains this, in any case.
        #[arg(long)]
        rule: Option<String>,
        /// Only this OCSF severity: a name (informational, low, medium, high, critical, fatal)
        /// or its id (1-6).
        #[arg(long)]
        severity: Option<String>,
        /// The most alerts to list (1-10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// How to print: `table` (aligned columns), `wide` (more columns) or `json` (the
        /// server's document).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Each alert sink: how far behind it is, what it sent, failed and lost, its last error.
    #[command(
        after_help = "Examples:\n  ringfence alerts sinks\n  ringfence alerts sinks -o json | jq '.sinks[] | {name, depth, last_error}'"
    )]
    Sinks {
        #[command(flatten)]
        operator: OperatorArgs,
        /// How to print: `table` (aligned columns), `wide` (more columns) or `json` (the
        /// server's document).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// Percent-encodes a query value: hostnames and rule ids are free text.
fn encode(value: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The `GET /api/v1/alerts` path for these filters.
fn alerts_path(
    since: Option<Duration>,
    host: Option<&str>,
    rule: Option<&str>,
    severity: Option<&str>,
    limit: u32,
) -> String {
    let mut query = vec![format!("limit={limit}")];
    if let Some(since) = since {
        let span = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
        let since_ms = ringfence_protocol::clock::unix_ms()
            .saturating_sub(span)
            .max(0);
        query.push(format!("since_ms={since_ms}"));
    }
    for (key, value) in [("host", host), ("rule", rule), ("severity", severity)] {
        if let Some(value) = value {
            query.push(format!("{key}={}", encode(value)));
        }
    }
    format!("/api/v1/alerts?{}", query.join("&"))
}

fn text(value: Option<&str>) -> String {
    value.map_or_else(|| "-".to_owned(), str::to_owned)
}

pub fn run(command: AlertsCommand) -> anyhow::Result<ExitCode> {
    match command {
        AlertsCommand::List {
            operator,
            since,
            host,
            rule,
            severity,
            limit,
            output,
        } => {
            let path = alerts_path(
                since,
                host.as_deref(),
                rule.as_deref(),
                severity.as_deref(),
                limit,
            );
            let list: AlertList = operator.client()?.get_json("alerts", &path)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&list)?),
                _ if list.alerts.is_empty() => println!("no alerts"),
                Output::Table => print_table(
                    &["AGE", "HOST", "SEVERITY", "RULE", "MESSAGE"],
                    &list
                        .alerts
                        .iter()
                        .map(|a| {
                            vec![
                                age(&a.received_at_ms.into()),
                                a.hostname.clone().unwrap_or_else(|| a.agent_id.clone()),
                                text(a.severity.as_deref()),
                                text(a.rule.as_deref()),
                                text(a.message.as_deref()),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
                Output::Wide => print_table(
                    &[
                        "RECEIVED", "ID", "AGENT", "HOST", "SEVERITY", "RULE", "MESSAGE",
                    ],
                    &list
                        .alerts
                        .iter()
                        .map(|a| {
                            vec![
                                when(&a.received_at_ms.into()),
                                a.id.clone(),
                                a.agent_id.clone(),
                                text(a.hostname.as_deref()),
                                text(a.severity.as_deref()),
                                text(a.rule.as_deref()),
                                text(a.message.as_deref()),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            if output != Output::Json && list.alerts.len() == list.limit {
                eprintln!(
                    "(the newest {}; older alerts may match: --limit)",
                    list.limit
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Sinks { operator, output } => {
            let list: SinkList = operator.client()?.get_json("sinks", "/api/v1/sinks")?;
            let lag = |ms: i64| format!("{}s", ms / 1000);
            match output {
                Output::Json => println!("{}", serde_json::to_string(&list)?),
                _ if list.sinks.is_empty() => {
                    println!("no alert sinks (ringfence server --alert-sink NAME=URL)")
                }
                Output::Table => print_table(
                    &[
                        "NAME",
                        "KIND",
                        "DEPTH",
                        "LAG",
                        "SENT",
                        "FAILED",
                        "DROPPED",
                        "LAST SUCCESS",
                    ],
                    &list
                        .sinks
                        .iter()
                        .map(|s| {
                            vec![
                                s.name.clone(),
                                s.kind.clone(),
                                s.depth.to_string(),
                                lag(s.lag_ms),
                                s.sent.to_string(),
                                s.failed.to_string(),
                                s.dropped.to_string(),
                                when(&s.last_success_at_ms.into()),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
                Output::Wide => print_table(
                    &[
                        "NAME",
                        "KIND",
                        "TARGET",
                        "CURSOR",
                        "DEPTH",
                        "LAG",
                        "SENT",
                        "FAILED",
                        "DROPPED",
                        "LAST SUCCESS",
                        "LAST ERROR",
                    ],
                    &list
                        .sinks
                        .iter()
                        .map(|s| {
                            vec![
                                s.name.clone(),
                                s.kind.clone(),
                                text(s.target.as_deref()),
                                s.cursor.to_string(),
                                s.depth.to_string(),
                                lag(s.lag_ms),
                                s.sent.to_string(),
                                s.failed.to_string(),
                                s.dropped.to_string(),
                                when(&s.last_success_at_ms.into()),
                                text(s.last_error.as_deref()),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            // An error is what an operator needs to see even in the narrow table.
            if output == Output::Table {
                for sink in &list.sinks {
                    if let Some(error) = &sink.last_error {
                        println!("{}: last error: {error}", sink.name);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_an_encoded_query() {
        let path = alerts_path(None, Some("web 1"), Some("a&b"), Some("high"), 5);
        assert_eq!(
            path,
            "/api/v1/alerts?limit=5&host=web%201&rule=a%26b&severity=high"
        );
        let since = alerts_path(Some(Duration::from_secs(3600)), None, None, None, 100);
        let ms: i64 = since
            .split("since_ms=")
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("since_ms");
        let expected = ringfence_protocol::clock::unix_ms() - 3_600_000;
        assert!((expected - ms).abs() < 60_000, "{since}");
    }
}
