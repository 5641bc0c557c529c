//! Server configuration, from the command line.

pub use crate::tls::Transport;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Holds the SQLite database (by default) and the release signing key.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; `None` means SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub listen: SocketAddr,
    /// HTTPS (generated or given certificate) or, on loopback only, plain HTTP.
    pub transport: Transport,
    /// Events preflight runs releases over; `None` uses a generated default corpus. A file that
    /// is missing, unreadable or empty refuses the start: preflight over nothing passes
    /// everything.
    pub preflight_corpus: Option<PathBuf>,
    /// How much higher a release's deny rate may be than the channel's current release.
    pub preflight_deny_margin: f64,
    /// The highest deny rate a channel's first release may have: with no baseline to compare
    /// with, a margin means nothing, and `default deny` would pass.
    pub preflight_first_release_max_deny_rate: f64,
    /// Initialise an existing but empty SQLite database (or move a corrupt one aside) instead
    /// of refusing to start on it (`ringfence server --init`).
    pub init: bool,
    /// How often the rollout controller looks at the fleet.
    pub controller_tick: Duration,
    /// Heartbeat interval agents are told to use.
    pub heartbeat_interval: Duration,
    /// Largest request body (release bundles are the biggest).
    pub max_body_bytes: usize,
    /// Agents must present the client certificate signed at their enrollment; a credential
    /// alone is refused. Needs `Transport::GeneratedTls`.
    pub require_agent_certs: bool,
    /// How long the client certificates signed for agents are valid; agents renew theirs when a
    /// third of it is left.
    pub agent_cert_validity: Duration,
    /// Where alerts are forwarded (Kafka, syslog), and the outbox in front of them.
    pub sinks: crate::sinks::SinkSettings,
    /// How long, and how many, alert reports are kept for `GET /api/v1/alerts`.
    pub alert_retention: crate::retention::AlertRetention,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            data_dir,
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            transport: Transport::GeneratedTls { names: Vec::new() },
            preflight_corpus: None,
            preflight_deny_margin: 0.02,
            preflight_first_release_max_deny_rate: 0.05,
            init: false,
            controller_tick: Duration::from_millis(500),
            heartbeat_interval: Duration::from_secs(5),
            max_body_bytes: 64 << 20,
            require_agent_certs: false,
            agent_cert_validity: Duration::from_secs(365 * 86_400),
            sinks: crate::sinks::SinkSettings::default(),
            alert_retention: crate::retention::AlertRetention::default(),
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("ringfence.db").display()),
        }
    }
}
