//! The operator's connection settings shared by `rollout`, `status`, `crashes` and
//! `release publish`: where the server is, which CA vouches for it, and the operator token.

use anyhow::Context;
use clap::Args;
use ringfence_uplink::{Fingerprint, ServerClient, tls};
use std::path::PathBuf;
use std::time::Duration;

/// Which CA the server's certificate must chain to.
#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// The server's CA certificate (PEM); `ringfence server` prints where its generated one is.
    #[arg(long, env = "RINGFENCE_CA")]
    pub ca: Option<PathBuf>,
    /// The server's CA fingerprint (`sha256:…`, printed by `ringfence server`): the CA is
    /// fetched from the server and used only if it matches.
    #[arg(long, env = "RINGFENCE_CA_FINGERPRINT")]
    pub ca_fingerprint: Option<Fingerprint>,
}

impl TrustArgs {
    /// A client for `server` that verifies it against the given CA (none for http:// URLs).
    pub fn client(&self, server: &str, timeout: Duration) -> anyhow::Result<ServerClient> {
        let ca = tls::resolve(server, self.ca.as_deref(), self.ca_fingerprint, timeout)
            .context("cannot verify the server (--ca FILE or --ca-fingerprint sha256:…)")?;
        let client = ServerClient::new(server, timeout);
        Ok(match ca {
            Some(ca) => client.with_ca(&ca),
            None => client,
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// Server URL.
    #[arg(
        long,
        env = "RINGFENCE_SERVER",
        default_value = "https://127.0.0.1:7700"
    )]
    pub server: String,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Operator API token (`ringfence server token create`).
    #[arg(long, env = "RINGFENCE_TOKEN", hide_env_values = true)]
    pub token: String,
}

impl OperatorArgs {
    pub fn client(&self) -> anyhow::Result<ServerClient> {
        Ok(self
            .trust
            .client(&self.server, Duration::from_secs(120))?
            .with_credential(&self.token))
    }
}
