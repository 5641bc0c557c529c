//! `ringfence server`: run the control plane, and make its tokens.

use anyhow::Context;
use clap::{Args, Subcommand};
use ringfence_server::ServerConfig;
use ringfence_server::tls::Transport;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    command: Option<ServerCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Data directory: the SQLite database (by default) and the release signing key.
    #[arg(
        long,
        env = "RINGFENCE_DATA_DIR",
        default_value = "/var/lib/ringfence/server"
    )]
    data_dir: PathBuf,
    /// `postgres://user@host/db` for PostgreSQL; SQLite in the data directory when absent.
    #[arg(long, env = "RINGFENCE_DATABASE")]
    database: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Settings file (TOML) whose keys are this command's long options, e.g. `listen =
    /// "0.0.0.0:7700"`, `heartbeat-interval = "5s"`, `require-agent-certs = true`. Flags and
    /// environment variables win over it [default: /etc/ringfence/server.toml if it exists].
    #[arg(long = "config", value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Address to listen on. Loopback by default.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Certificate chain (PEM) to serve instead of the generated one; needs --tls-key.
    #[arg(long, requires = "tls_key", conflicts_with_all = ["insecure_http", "tls_names"])]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Another name (DNS or IP) the generated certificate must carry besides localhost, the
    /// loopback addresses and the host name; repeat.
    #[arg(long = "tls-name", id = "tls_names")]
    tls_names: Vec<String>,
    /// Serve plain HTTP instead of HTTPS: loopback addresses only (tests, or behind a local
    /// TLS terminator). Agents and tokens travel in the clear.
    #[arg(long, conflicts_with_all = ["tls_key", "tls_names"])]
    insecure_http: bool,
    /// Refuse agents that do not present the client certificate signed at their enrollment
    /// (mutual TLS); a credential alone is no longer enough. Needs the generated CA: not with
    /// --tls-cert or --insecure-http. Agents enrolled without a certificate must re-enroll.
    #[arg(long)]
    require_agent_certs: bool,
    /// Event corpus for preflight (JSON lines); a generated corpus is built in.
    #[arg(long)]
    preflight_corpus: Option<PathBuf>,
    /// How far above the current release's deny rate a new release may go (0.02 = 2 points).
    #[arg(long, default_value_t = 0.02)]
    preflight_deny_margin: f64,
    /// The highest deny rate a channel's first release may have in preflight (0.05 = 5 %):
    /// with no current release to compare with, `default deny` would otherwise pass.
    #[arg(long, default_value_t = 0.05)]
    preflight_first_release_max_deny_rate: f64,
    /// Start even on an existing database that is empty (initialise it) or damaged (moved
    /// aside as `<file>.corrupt-<ms>`, a new one started), or where the database is missing
    /// from a data directory a server ran in. Without it such a start is refused: an empty
    /// database means every agent, release and rollout is gone. A new data directory needs no
    /// flag.
    #[arg(long)]
    init: bool,
    /// How often the rollout controller evaluates gates (at least 10ms).
    #[arg(long, default_value = "500ms", value_parser = ringfence_protocol::duration::parse)]
    controller_tick: Duration,
    /// Heartbeat interval agents are told to use (at least 1s).
    #[arg(long, default_value = "5s", value_parser = ringfence_protocol::duration::parse)]
    heartbeat_interval: Duration,
    /// Forward agents' alerts (OCSF) to a sink, as NAME=URL; repeat for several. URLs:
    /// `syslog+tls://HOST:PORT?ca=FILE` (RFC 5424 over TLS) and
    /// `kafka://HOST:PORT[,HOST:PORT]/TOPIC[?ca=FILE&sasl-user=U&sasl-password-file=F]`.
    /// Uploads are acknowledged once their alerts are in the outbox (docs/alerts.md).
    #[arg(long = "alert-sink", value_name = "NAME=URL", value_parser = parse_sink)]
    alert_sinks: Vec<ringfence_server::sinks::SinkConfig>,
    /// The most alerts the outbox holds for the sinks; past it the oldest are dropped, counted
    /// per sink (`ringfence_sink_dropped_total`) and raised as an alert.
    #[arg(long, default_value_t = 1_000_000)]
    alert_outbox_max: i64,
    /// How long the server keeps agents' alerts for `ringfence alerts list` (`GET
    /// /api/v1/alerts`) before deleting them; the sinks are where alerts are kept for long.
    /// Failure and crash reports are never deleted by it (rollout gates and crash groups read
    /// them).
    #[arg(long, default_value = "7d", value_parser = ringfence_protocol::duration::parse)]
    alert_retention: Duration,
    /// The most alerts the server keeps; past it the oldest are deleted first, counted in
    /// `ringfence_alerts_pruned_total`.
    #[arg(long, default_value_t = 1_000_000)]
    alert_retention_max: i64,
}

fn parse_sink(spec: &str) -> Result<ringfence_server::sinks::SinkConfig, String> {
    ringfence_server::sinks::SinkConfig::parse(spec).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
enum ServerCommand {
    /// Operator API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Single-use enrollment tokens for agents.
    #[command(subcommand)]
    EnrollToken(EnrollTokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an operator token and print it (only its hash is stored).
    #[command(
        after_help = "Examples:\n  ringfence server token create --label alice --ttl 30d\n  # For the dashboard: paste it on the page, or open https://<server>/#token=<token>\n  ringfence server token create --label dashboard --ttl 12h"
    )]
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// Who or what the token is for; shown in `token list` and the audit log.
        #[arg(long, default_value = "operator")]
        label: String,
        /// Lifetime: `90s`, `30m`, `12h`, `30d`; no expiry when absent.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
    },
    /// Operator tokens: id, label, state (active, expired, revoked), expiry. Never the token.
    #[command(
        after_help = "Examples:\n  ringfence server token list\n  ringfence server token list -o wide\n  ringfence server token list -o json"
    )]
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        output: super::agent_admin::OutputArgs,
    },
    /// Revoke an operator token by the id `token list` shows; it stops working at once on
    /// every server replica. Audited.
    #[command(
        after_help = "Examples:\n  ringfence server token revoke tk-91ab2c --reason \"laptop lost\""
    )]
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The token's id, as `token list` shows it (never the token itself).
        id: String,
        /// Why; recorded in the audit log.
        #[arg(long, default_value = "revoked on the server host")]
        reason: String,
    },
}

/// `90s`, `30m`, `12h`, `30d`: positive, and never forever by accident.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    match ringfence_protocol::duration::parse(text) {
        Ok(Duration::ZERO) => Err("a token's lifetime must be positive".to_owned()),
        Ok(ttl) => Ok(ttl),
        Err(error) => Err(format!(
            "{error}; omit --ttl for a token that does not expire"
        )),
    }
}

/// The database of a data directory, for commands run on the server host.
async fn open_store(store: &StoreArgs) -> anyhow::Result<ringfence_store::Store> {
    std::fs::create_dir_all(&store.data_dir)
        .with_context(|| format!("create {}", store.data_dir.display()))?;
    Ok(ringfence_store::Store::connect(&config(store).database_url()).await?)
}

#[derive(Debug, Subcommand)]
enum EnrollTokenCommand {
    /// Create enrollment tokens, one per line.
    #[command(
        after_help = "Examples:\n  ringfence server enroll-token create\n  # One token per new host, valid for a week\n  ringfence server enroll-token create --count 50 --ttl 7d --label rack-12"
    )]
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// How many tokens; each enrolls one agent once.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// How long each token can be used: `30m`, `24h`, `7d`.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
        /// What the tokens are for; shown in the audit log.
        #[arg(long, default_value = "agents")]
        label: String,
    },
}

fn config(store: &StoreArgs) -> ServerConfig {
    let mut config = ServerConfig::new(store.data_dir.clone());
    config.database_url = store.database.clone();
    config
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        None => serve(args.run),
        Some(ServerCommand::Token(TokenCommand::Create { store, label, ttl })) => runtime()?
            .block_on(async {
                let db = open_store(&store).await?;
                println!(
                    "{}",
                    ringfence_server::create_operator_token_with(&db, &label, ttl, "cli").await?
                );
                Ok(ExitCode::SUCCESS)
            }),
        Some(ServerCommand::Token(TokenCommand::List { store, output })) => {
            use super::agent_admin::{Output, age, print_table, when};
            runtime()?.block_on(async {
                let db = open_store(&store).await?;
                let tokens: Vec<_> = db
                    .operator_tokens()
                    .await?
                    .iter()
                    .map(ringfence_server::api::tokens::token_json)
                    .collect();
                let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
                match output.format() {
                    Some(Output::Json) => {
                        println!("{}", serde_json::json!({ "tokens": tokens }));
                    }
                    Some(Output::Wide) => print_table(
                        &["ID", "STATE", "EXPIRES", "CREATED", "REVOKED", "LABEL"],
                        &tokens
                            .iter()
                            .map(|t| {
                                vec![
                                    text(&t["id"]),
                                    text(&t["state"]),
                                    when(&t["expires_at_ms"]),
                                    format!("{} ago", age(&t["created_at_ms"])),
                                    if t["revoked_at_ms"].is_null() {
                                        "-".to_owned()
                                    } else {
                                        format!("{} ago", age(&t["revoked_at_ms"]))
                                    },
                                    text(&t["label"]),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    ),
                    Some(Output::Table) | None => print_table(
                        &["ID", "STATE", "EXPIRES", "LABEL"],
                        &tokens
                            .iter()
                            .map(|t| {
                                vec![
                                    text(&t["id"]),
                                    text(&t["state"]),
                                    when(&t["expires_at_ms"]),
                                    text(&t["label"]),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    ),
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        Some(ServerCommand::Token(TokenCommand::Revoke { store, id, reason })) => runtime()?
            .block_on(async {
                let db = open_store(&store).await?;
                match db.revoke_operator_token(&id, "cli", &reason).await? {
                    ringfence_store::Revocation::Done(token) => {
                        println!("revoked token {} ({})", token.id(), token.label);
                        Ok(ExitCode::SUCCESS)
                    }
                    ringfence_store::Revocation::Already(token) => {
                        anyhow::bail!("token {} was already revoked", token.id())
                    }
                    ringfence_store::Revocation::Unknown => anyhow::bail!(
                        "no operator token {id} (`ringfence server token list` shows the ids)"
                    ),
                }
            }),
        Some(ServerCommand::EnrollToken(EnrollTokenCommand::Create {
            store,
            count,
            ttl,
            label,
        })) => runtime()?.block_on(async {
            std::fs::create_dir_all(&store.data_dir)
                .with_context(|| format!("create {}", store.data_dir.display()))?;
            let db = ringfence_store::Store::connect(&config(&store).database_url()).await?;
            for token in ringfence_server::create_enroll_tokens(&db, &label, count, ttl).await? {
                println!("{token}");
            }
            Ok(ExitCode::SUCCESS)
        }),
    }
}

fn serve(args: RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = crate::settings::effective_path("server", args.settings.as_deref()) {
        tracing::info!(path = %path.display(), "settings file read");
    }
    let mut config = config(&args.store);
    config.listen = args.listen;
    config.transport = match (args.insecure_http, args.tls_cert, args.tls_key) {
        (true, _, _) => {
            // Refuse before opening anything: the flag is a mistake anywhere but loopback.
            ringfence_server::tls::check_insecure_listen(args.listen)?;
            Transport::InsecureHttp
        }
        (false, Some(cert), Some(key)) => Transport::GivenTls { cert, key },
        _ => Transport::GeneratedTls {
            names: args.tls_names,
        },
    };
    config.require_agent_certs = args.require_agent_certs;
    config.preflight_corpus = args.preflight_corpus;
    config.preflight_deny_margin = args.preflight_deny_margin;
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.preflight_first_release_max_deny_rate),
        "--preflight-first-release-max-deny-rate is a share between 0 and 1 (0.05 = 5 %)"
    );
    config.preflight_first_release_max_deny_rate = args.preflight_first_release_max_deny_rate;
    config.init = args.init;
    config.controller_tick = args.controller_tick.max(Duration::from_millis(10));
    config.heartbeat_interval = args.heartbeat_interval.max(Duration::from_secs(1));
    anyhow::ensure!(
        args.alert_outbox_max >= 1,
        "--alert-outbox-max must be at least 1"
    );
    config.sinks.sinks = args.alert_sinks;
    config.sinks.outbox_max = args.alert_outbox_max;
    anyhow::ensure!(
        args.alert_retention >= Duration::from_secs(1),
        "--alert-retention must be at least 1s"
    );
    anyhow::ensure!(
        args.alert_retention_max >= 1,
        "--alert-retention-max must be at least 1"
    );
    config.alert_retention.max_age = args.alert_retention;
    config.alert_retention.max_count = args.alert_retention_max;
    let require_agent_certs = config.require_agent_certs;
    runtime()?.block_on(async move {
        let listen = config.listen;
        let state = ringfence_server::open(config).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let bound = listener.local_addr()?;
        let database = state.store.backend();
        // Scripts wait for this one line to know where we are and which CA to pin; they may
        // stop reading after it, so everything else goes to stderr.
        match state.tls.as_deref() {
            None => println!(
                "ringfence server listening on http://{bound} (database: {database:?}; plain HTTP, loopback only)"
            ),
            Some(ringfence_server::tls::TlsMaterial {
                ca_fingerprint: Some(fingerprint),
                ca_path,
                ..
            }) => {
                let ca_path = ca_path.as_deref().unwrap_or(std::path::Path::new("?")).display();
                println!(
                    "ringfence server listening on https://{bound} (database: {database:?}) CA fingerprint {fingerprint} file {ca_path}"
                );
                eprintln!(
                    "agents: ringfence agent --server https://{bound} --server-ca-fingerprint {fingerprint} --enroll-token …"
                );
                eprintln!("operators: --server https://{bound} --ca {ca_path} (or RINGFENCE_CA)");
                eprintln!(
                    "agents get a client certificate from this CA at enrollment (mutual TLS); {}",
                    if require_agent_certs {
                        "required for every agent request (--require-agent-certs)"
                    } else {
                        "agents without one still connect with their credential"
                    }
                );
            }
            Some(_) => println!(
                "ringfence server listening on https://{bound} (database: {database:?}; the operator's certificate)"
            ),
        }
        ringfence_server::serve(state, listener, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {},
        _ = terminate.recv() => {},
    }
}
