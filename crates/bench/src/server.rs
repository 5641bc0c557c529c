//! `ringfence bench server`: heartbeats per second through real HTTP into the real server,
//! with the load generator in this process, against the cost of an empty request measured the
//! same way in the same run.

use crate::stats::{Percentiles, Row, print};
use anyhow::Context;
use ringfence_protocol::api::{HealthFigures, Heartbeat, InstalledRelease};
use ringfence_server::ServerConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Options for `ringfence bench server`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Enrolled agents sending heartbeats.
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Concurrent HTTP connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// `postgres://...` to measure PostgreSQL; SQLite in a temporary directory otherwise.
    #[arg(long)]
    pub database: Option<String>,
    #[arg(long)]
    pub json: bool,
}

struct Load {
    requests: usize,
    seconds: f64,
    latency: Percentiles,
}

/// Fires requests from `connections` threads for `seconds`; each thread reuses one connection.
fn load(
    url: &str,
    connections: usize,
    seconds: f64,
    credentials: &Arc<Vec<String>>,
    heartbeat: bool,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|thread| {
            let stop = Arc::clone(&stop);
            let credentials = Arc::clone(credentials);
            let url = url.to_owned();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(10)))
                    .http_status_as_error(false)
                    .build()
                    .into();
                let body = serde_json::to_vec(&Heartbeat {
                    agent_version: "0.1.0".into(),
                    releases: vec![InstalledRelease {
                        channel: "detection".into(),
                        current: Some("1.0.0".into()),
                        lkg: Some("1.0.0".into()),
                        running: "current".into(),
                    }],
                    health: HealthFigures {
                        events: 1000,
                        p99_us: 40.0,
                        cpu_pct: 1.5,
                        rss_bytes: 28 << 20,
                        ..HealthFigures::default()
                    },
                })
                .unwrap_or_default();
                let mut latencies = Vec::new();
                let mut index = thread;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = if heartbeat {
                        let credential = &credentials[index % credentials.len()];
                        index += connections;
                        agent
                            .post(format!("{url}/api/v1/agents/heartbeat"))
                            .header("Authorization", format!("Bearer {credential}"))
                            .header("Content-Type", "application/json")
                            .send(&body[..])
                            .map(|mut r| {
                                r.status().is_success() && r.body_mut().read_to_vec().is_ok()
                            })
                    } else {
                        agent.get(format!("{url}/livez")).call().map(|mut r| {
                            r.status().is_success() && r.body_mut().read_to_vec().is_ok()
                        })
                    };
                    if matches!(ok, Ok(true)) {
                        latencies.push(t.elapsed());
                    }
                }
                latencies
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for thread in threads {
        all.extend(thread.join().unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    Load {
        requests: all.len(),
        seconds: elapsed,
        latency: Percentiles::of(&mut all),
    }
}

fn database_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("ringfence.db"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Runs the benchmark and prints its report.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut config = ServerConfig::new(dir.path().to_owned());
    config.database_url = options.database.clone();
    let backend = if options.database.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let (url, state) = runtime.block_on(async {
        let state = ringfence_server::open(config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let served = state.clone();
        tokio::spawn(async move {
            let _ = ringfence_server::serve(served, listener, std::future::pending()).await;
        });
        anyhow::Ok((url, state))
    })?;
    // Enrollment through the API would measure enrollment; the bench enrolls in the store.
    let credentials: Vec<String> = (0..options.agents)
        .map(|i| format!("rfa_bench_{i:08}"))
        .collect();
    runtime.block_on(async {
        for (i, credential) in credentials.iter().enumerate() {
            let hash = ringfence_server::auth::hash_token(credential);
            state
                .store
                .insert_agent(&format!("bench-{i}"), &hash, &format!("host-{i}"), &[])
                .await?;
        }
        anyhow::Ok(())
    })?;
    let credentials = Arc::new(credentials);
    // Warm the credential cache and the connection pool, then measure.
    load(&url, options.connections, 1.0, &credentials, true);
    let empty = load(
        &url,
        options.connections,
        options.seconds,
        &credentials,
        false,
    );
    let beats = load(
        &url,
        options.connections,
        options.seconds,
        &credentials,
        true,
    );
    runtime.block_on(state.heartbeats.flush(&state.store))?;
    let empty_rate = empty.requests as f64 / empty.seconds;
    let rate = beats.requests as f64 / beats.seconds;
    let mut rows = vec![
        Row::new("empty request (GET /livez)", empty_rate, "req/s"),
        Row::new(format!("heartbeats, {backend}"), rate, "beats/s")
            .ratio(rate / empty_rate.max(1.0), "of the empty-request rate")
            .goal("≥ 20k/s with SQLite on 2 cores"),
        Row::new(
            "heartbeat latency p50",
            beats.latency.p50_ns as f64 / 1000.0,
            "µs",
        ),
        Row::new(
            "heartbeat latency p99",
            beats.latency.p99_ns as f64 / 1000.0,
            "µs",
        ),
    ];
    if options.database.is_none() {
        let bytes = database_bytes(dir.path());
        rows.push(Row::new(
            "database size per 10k agents",
            bytes as f64 / options.agents.max(1) as f64 * 10_000.0 / (1 << 20) as f64,
            "MiB",
        ));
    }
    print(
        &format!(
            "ringfence bench server ({} agents, {} connections, load generator in-process)",
            options.agents, options.connections
        ),
        &rows,
        options.json,
    )
}
