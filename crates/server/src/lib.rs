//! The ringfence control plane: agents enroll and heartbeat, operators publish signed releases,
//! preflight runs them in the real engine host, and the rollout controller moves them through
//! rings, watching health gates and rolling back by itself.
//!
//! Architecture invariant: the server never trusts a body's claim about who sent it. Agent ids
//! come from the credential; release contents are verified against the release keys; every
//! write needs a credential of the right kind.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod controller;
pub mod crash_groups;
pub mod error;
pub mod fleet;
pub mod heartbeats;
pub mod metrics;
pub mod openapi;
pub mod preflight;
pub mod retention;
pub mod revocation;
pub mod signing;
pub mod sinks;
pub mod state;
pub mod stored_reports;
pub mod tls;

pub use config::ServerConfig;
pub use state::AppState;

use axum::Router;
use ringfence_protocol::api::limits;
use ringfence_store::{Store, TokenKind};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] ringfence_store::StoreError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("release keys: {0}")]
    Keys(#[from] ringfence_release::KeyError),
    #[error("wasm runtime: {0}")]
    Runtime(#[from] ringfence_engine_host::RuntimeError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("preflight corpus: {0}")]
    Corpus(#[from] preflight::CorpusRefused),
    #[error("{0}")]
    Refused(String),
}

/// Opens the data directory, the database and the keys; does not listen.
pub async fn open(config: ServerConfig) -> Result<AppState, ServerError> {
    // Refused before anything is created: only the server's own CA can sign agent certificates.
    if config.require_agent_certs
        && !matches!(config.transport, tls::Transport::GeneratedTls { .. })
    {
        return Err(tls::TlsError::AgentCertsUnavailable.into());
    }
    // Preflight over a missing or empty corpus would pass every release: refuse to start.
    let corpus = preflight::check_corpus(&config)?;
    tracing::info!(
        events = corpus.events,
        executables = corpus.executables,
        "preflight corpus {}",
        corpus.name
    );
    let new_data_dir = !config.data_dir.exists();
    {
        use std::os::unix::fs::DirBuilderExt;
        // Owner only: it holds the database, the release key and the CA key.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .map_err(|source| ServerError::Io {
                path: config.data_dir.display().to_string(),
                source,
            })?;
    }
    // A data directory a server already ran in (it has the release key) whose default
    // database is gone lost its agents, releases and rollouts: starting on a new one would
    // hide that. A brand-new directory starts with no flags.
    let default_db = config.data_dir.join("ringfence.db");
    if config.database_url.is_none()
        && !new_data_dir
        && !config.init
        && !default_db.exists()
        && config.data_dir.join("release.key").exists()
    {
        return Err(ServerError::Refused(format!(
            "{}: the database is missing from a data directory a server already ran in (it has \
             release.key). Refusing to start on a new, empty one: the agents, releases and \
             rollouts it held would be gone without a word. Restore it from a backup, or start \
             once with `ringfence server --init` to begin with an empty database here",
            default_db.display()
        )));
    }
    let store = Store::connect_with(
        &config.database_url(),
        &ringfence_store::OpenOptions { init: config.init },
    )
    .await?;
    let authority = signing::ReleaseAuthority::open(&config.data_dir)?;
    // When each key was first trusted: agents enrolled before then refuse what it signs.
    store.record_release_keys(&authority.keys()).await?;
    let tls = tls::TlsMaterial::for_transport(&config.transport, &config.data_dir)?;
    // Preflight compiles each published engine; a republish, a new content for the same engine
    // and every restart load the compiled engine from here instead.
    let engines = ringfence_engine_host::Runtime::new()?.with_cache(
        config.data_dir.join("engine-cache"),
        ringfence_engine_host::DEFAULT_CACHE_BYTES,
    );
    let state = AppState {
        store,
        config: Arc::new(config),
        heartbeats: Arc::default(),
        fleet: Arc::default(),
        agent_ids: Arc::default(),
        metrics: Arc::default(),
        authority: Arc::new(authority),
        engines,
        replica: format!("{}-{}", hostname(), std::process::id()),
        tls: tls.map(Arc::new),
        sink_wake: Arc::default(),
    };
    state.fleet.refresh(&state.store).await?;
    Ok(state)
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "server".to_owned())
}

/// Bodies of operator requests other than a release upload (rollouts, remediations, tokens).
pub const OPERATOR_BODY_BYTES: usize = 1 << 20;

/// The largest body `path` accepts: agent routes get what an honest agent can send
/// ([`limits`]), release uploads the configured maximum, anything else
/// [`OPERATOR_BODY_BYTES`]; never more than the configured maximum.
pub fn body_limit(path: &str, max_body_bytes: usize) -> usize {
    let route = match path {
        "/api/v1/agents/heartbeat" => limits::MAX_HEARTBEAT_BYTES,
        "/api/v1/agents/reports" => limits::MAX_REPORT_BATCH_BYTES,
        "/api/v1/enroll" | "/api/v1/agents/certificate" => limits::MAX_ENROLL_BYTES,
        "/api/v1/releases" => max_body_bytes,
        _ => OPERATOR_BODY_BYTES,
    };
    route.min(max_body_bytes)
}

/// The HTTP application: routes, per-route body limits, JSON errors everywhere (axum's own
/// rejections and the 404 fallback included), request tracing.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    api::routes()
        .fallback(error::no_such_route)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            error::limit_body,
        ))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Starts the background tasks (heartbeat flusher, rollout controller, alert retention) for
/// `state`.
pub fn spawn_background(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let flusher = {
        let state = state.clone();
        tokio::spawn(async move {
            state
                .heartbeats
                .run(state.store.clone(), Duration::from_millis(200))
                .await;
        })
    };
    let controller = tokio::spawn(controller::run(state.clone()));
    let revocations = tokio::spawn(revocation::run(state.clone()));
    let retention = tokio::spawn(retention::run(state.clone()));
    let mut tasks = vec![flusher, controller, revocations, retention];
    tasks.extend(sinks::spawn(state));
    tasks
}

/// Serves HTTPS (or, when configured and on loopback, plain HTTP) until `shutdown` resolves,
/// then flushes heartbeats and gives up the lease. Raises the open file limit first and sizes
/// the connection caps for it ([`tls::EdgeConfig::for_fd_limit`]).
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let fds = tls::edge::raise_fd_limit().map_err(|source| ServerError::Io {
        path: "RLIMIT_NOFILE".to_owned(),
        source,
    })?;
    let edge = tls::EdgeConfig::for_fd_limit(fds);
    tracing::info!(
        "open file limit {fds}: at most {} connections, {} unauthenticated ({} per address)",
        edge.max_connections,
        edge.max_unauthenticated,
        edge.max_unauthenticated_per_ip
    );
    let budget = tls::ConnectionBudget::counting_into(edge, Arc::clone(&state.metrics.edge));
    serve_with(state, listener, Arc::new(budget), shutdown).await
}

/// [`serve`] with the caller's connection budget (deadlines and caps), for tests and
/// benchmarks that need other numbers or want to watch its counters.
pub async fn serve_with(
    state: AppState,
    listener: tokio::net::TcpListener,
    budget: Arc<tls::ConnectionBudget>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let io = |source| ServerError::Io {
        path: "listener".to_owned(),
        source,
    };
    let tls = match &state.tls {
        Some(material) => Some(Arc::clone(&material.config)),
        None => {
            tls::check_insecure_listen(listener.local_addr().map_err(io)?)?;
            None
        }
    };
    let app = router(state.clone());
    let tasks = spawn_background(&state);
    tls::listener::serve(listener, tls, app, budget, shutdown).await;
    for task in tasks {
        task.abort();
    }
    if let Err(error) = state.heartbeats.flush(&state.store).await {
        tracing::warn!("could not write the last heartbeats: {error}");
    }
    let _ = state
        .store
        .release_lease("controller", &state.replica)
        .await;
    Ok(())
}

/// Creates an operator API token and returns it (shown once; only its hash is stored).
pub async fn create_operator_token(store: &Store, label: &str) -> Result<String, ServerError> {
    create_operator_token_with(store, label, None, "cli").await
}

/// Creates an operator API token that expires after `ttl` (never when `None`), audited as
/// `actor`'s; returns the token.
pub async fn create_operator_token_with(
    store: &Store,
    label: &str,
    ttl: Option<Duration>,
    actor: &str,
) -> Result<String, ServerError> {
    let token = auth::new_token(auth::OPERATOR_PREFIX);
    let expires = ttl.map(|ttl| {
        ringfence_store::now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
    });
    let hash = auth::hash_token(&token);
    store
        .insert_token(&hash, TokenKind::Operator, label, expires)
        .await?;
    let id = hash.get(..ringfence_store::TOKEN_ID_LEN).unwrap_or(&hash);
    let reason = match ttl {
        Some(ttl) => format!("token {id}, expires in {} s", ttl.as_secs()),
        None => format!("token {id}, no expiry"),
    };
    store
        .audit(actor, "create_operator_token", label, &reason)
        .await?;
    Ok(token)
}

/// Creates enrollment tokens valid for `ttl`.
pub async fn create_enroll_tokens(
    store: &Store,
    label: &str,
    count: usize,
    ttl: Duration,
) -> Result<Vec<String>, ServerError> {
    let expires =
        ringfence_store::now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let mut tokens = Vec::with_capacity(count);
    for _ in 0..count {
        let token = auth::new_token(auth::ENROLL_PREFIX);
        store
            .insert_token(
                &auth::hash_token(&token),
                TokenKind::Enroll,
                label,
                Some(expires),
            )
            .await?;
        tokens.push(token);
    }
    Ok(tokens)
}
