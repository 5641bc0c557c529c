//! The operator's connection settings shared by `rollout`, `status` and `release publish`.

use clap::Args;
use ringfence_uplink::ServerClient;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// Server URL.
    #[arg(
        long,
        env = "RINGFENCE_SERVER",
        default_value = "http://127.0.0.1:7700"
    )]
    pub server: String,
    /// Operator API token (`ringfence server token create`).
    #[arg(long, env = "RINGFENCE_TOKEN", hide_env_values = true)]
    pub token: String,
}

impl OperatorArgs {
    pub fn client(&self) -> ServerClient {
        ServerClient::new(&self.server, Duration::from_secs(120)).with_credential(&self.token)
    }
}
