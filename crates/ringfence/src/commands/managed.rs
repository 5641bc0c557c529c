//! The managed agent's flags (`ringfence agent --server URL …`): the lifecycle they configure is
//! `ringfence_host::managed`'s; this module only turns them into its options.

use ringfence_host::managed::ManagedOptions;
use ringfence_protocol::guard_link::{SLOT_ENV, Slot};
use ringfence_uplink::Fingerprint;
use std::path::PathBuf;
use std::time::Duration;

pub use ringfence_host::managed::HEALTH_FILE;

/// Arguments of the managed mode (given together with `--server`).
#[derive(Debug, Clone, clap::Args)]
pub struct ManagedArgs {
    /// Control plane URL; without it the agent runs standalone.
    #[arg(long, env = "RINGFENCE_SERVER")]
    pub server: Option<String>,
    /// The server's CA certificate (PEM), checked at enrollment and kept in the identity.
    #[arg(long, env = "RINGFENCE_SERVER_CA")]
    pub server_ca: Option<PathBuf>,
    /// The server's CA fingerprint (`sha256:…`, printed by `ringfence server`): at enrollment
    /// the CA is fetched, kept only if it matches, and verified against from then on.
    #[arg(long, env = "RINGFENCE_SERVER_CA_FINGERPRINT")]
    pub server_ca_fingerprint: Option<Fingerprint>,
    /// Single-use enrollment token, needed on the first start only. The agent also makes a key
    /// and, if the server has its own CA, gets a client certificate for it (mutual TLS), kept
    /// with the credential in `identity.json`.
    #[arg(long, env = "RINGFENCE_ENROLL_TOKEN", hide_env_values = true)]
    pub enroll_token: Option<String>,
    /// Tags for ring membership (e.g. `canary`); repeat.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to enroll with (default: the kernel's).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Which release slot to start on; the guard passes `lkg` after a crash loop.
    #[arg(long, env = SLOT_ENV, value_enum, default_value_t = Slot::Current)]
    pub slot: Slot,
    /// Replay this corpus in a loop as permission traffic (demos and load tests).
    #[arg(long)]
    pub traffic: Option<PathBuf>,
    /// Events per second of replayed traffic.
    #[arg(long, default_value_t = 200)]
    pub traffic_rate: u64,
    /// A release that ran this long without engine failures becomes the last known good.
    #[arg(long, default_value = "30s", value_parser = ringfence_protocol::duration::parse)]
    pub bless_after: Duration,
    /// Where to write the final counters on exit (JSON), for demos and tests.
    #[arg(long)]
    pub stats_out: Option<PathBuf>,
    /// Do not start the crash monitor (no minidumps if the agent crashes).
    #[arg(long)]
    pub no_crash_monitor: bool,
    /// Fault injection for tests: abort the agent this long after start.
    #[arg(long, hide = true, value_parser = ringfence_protocol::duration::parse)]
    pub crash_after: Option<Duration>,
}

impl ManagedArgs {
    /// The options of `ringfence_host::managed::run`; `None` without `--server` (standalone).
    pub fn options(
        self,
        data_dir: PathBuf,
        engine_cache_mib: u64,
        harden: bool,
    ) -> Option<ManagedOptions> {
        Some(ManagedOptions {
            server: self.server?,
            server_ca: self.server_ca,
            server_ca_fingerprint: self.server_ca_fingerprint,
            enroll_token: self.enroll_token,
            tags: self.tags,
            hostname: self.hostname,
            slot: self.slot,
            traffic: self.traffic,
            traffic_rate: self.traffic_rate,
            bless_after: self.bless_after,
            stats_out: self.stats_out,
            crash_monitor: !self.no_crash_monitor,
            crash_after: self.crash_after,
            data_dir,
            engine_cache_mib,
            harden,
        })
    }
}
