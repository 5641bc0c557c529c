//! Shared server state handed to every handler.

use crate::config::ServerConfig;
use crate::fleet::FleetCache;
use crate::heartbeats::HeartbeatBuffer;
use crate::metrics::Metrics;
use crate::signing::ReleaseAuthority;
use ringfence_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    /// Heartbeats waiting to be written in one batch.
    pub heartbeats: Arc<HeartbeatBuffer>,
    /// Active rollouts and releases, refreshed from the database, so heartbeats are answered
    /// without a query.
    pub fleet: Arc<FleetCache>,
    /// Credential hash → agent; agents authenticate on every heartbeat.
    pub agent_ids: Arc<RwLock<HashMap<String, crate::auth::KnownAgent>>>,
    pub metrics: Arc<Metrics>,
    pub authority: Arc<ReleaseAuthority>,
    /// Runs preflight; created once because compiling engines shares its caches.
    pub engines: ringfence_engine_host::Runtime,
    /// This replica's name in leases and the audit log.
    pub replica: String,
    /// The server's TLS identity; `None` when it serves plain HTTP on loopback.
    pub tls: Option<Arc<crate::tls::TlsMaterial>>,
    /// Rung after an upload queued alerts, so this replica's sink forwarders send at once.
    pub sink_wake: Arc<tokio::sync::Notify>,
}
