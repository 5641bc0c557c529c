//! `ringfence bench server`: heartbeats per second through real HTTP into the real server,
//! with the load generator in this process, against the cost of an empty request measured the
//! same way in the same run; then the price of TLS: heartbeats over HTTPS against plain HTTP,
//! and new TLS connections (handshake included) against new plain connections, all served by
//! the same server state on the same cores.
//!
//! Two generators: the lean one ([`crate::http_load`], one thread) for the server's capacity,
//! and a general-purpose client (ureq, a thread per connection) for the TLS comparisons, where
//! it needs a TLS stack and its own cost is the same on both sides of the ratio.
//!
//! `--flood` measures instead whether operators are served under a flood: operator requests
//! (each on a new TLS connection, as a CLI makes them) and paced heartbeats against the idle
//! server, then the same while `--idle-connections` unauthenticated connections (silent, or
//! stopped halfway through a TLS record, replaced as the server closes them) sit on the port
//! and heartbeats arrive at `--flood-rate`; the ratios of the p99s say what the flood costs.

use crate::stats::{Percentiles, Row, print};
use anyhow::Context;
use ringfence_protocol::api::{HealthFigures, Heartbeat, InstalledRelease};
use ringfence_protocol::guard_link::Slot;
use ringfence_server::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Options for `ringfence bench server`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Enrolled agents sending heartbeats.
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// Load per measurement.
    #[arg(long = "duration", default_value = "5s", value_parser = crate::seconds)]
    pub seconds: f64,
    /// Concurrent HTTP connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// `postgres://...` to measure PostgreSQL; SQLite in a temporary directory otherwise.
    #[arg(long)]
    pub database: Option<String>,
    /// Measure operators and heartbeats under a flood of idle connections and heartbeats,
    /// against the idle server, instead of the capacity figures.
    #[arg(long)]
    pub flood: bool,
    /// With `--flood`: unauthenticated connections held open on the HTTPS port.
    #[arg(long, default_value_t = 1000)]
    pub idle_connections: usize,
    /// With `--flood`: heartbeats per second during the flood.
    #[arg(long, default_value_t = 2000.0)]
    pub flood_rate: f64,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

struct Load {
    requests: usize,
    seconds: f64,
    latency: Percentiles,
}

/// Fires requests from `connections` threads for `seconds`; each thread reuses one connection.
/// `tls` is the client configuration for an https:// `url`.
fn load(
    url: &str,
    connections: usize,
    seconds: f64,
    credentials: &Arc<Vec<String>>,
    heartbeat: bool,
    tls: &ureq::tls::TlsConfig,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|thread| {
            let stop = Arc::clone(&stop);
            let credentials = Arc::clone(credentials);
            let url = url.to_owned();
            let tls = tls.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(10)))
                    .http_status_as_error(false)
                    .tls_config(tls)
                    .build()
                    .into();
                let body = serde_json::to_vec(&heartbeat_body()).unwrap_or_default();
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

/// One pre-rendered heartbeat request per agent, for the lean generator.
fn heartbeat_requests(credentials: &[String]) -> Vec<Vec<u8>> {
    let body = serde_json::to_vec(&heartbeat_body()).unwrap_or_default();
    credentials
        .iter()
        .map(|credential| {
            let mut request = format!(
                "POST /api/v1/agents/heartbeat HTTP/1.1\r\nHost: bench\r\n\
                 Authorization: Bearer {credential}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            request.extend_from_slice(&body);
            request
        })
        .collect()
}

/// What every benchmark agent reports.
fn heartbeat_body() -> Heartbeat {
    Heartbeat {
        agent_version: "0.1.0".into(),
        releases: vec![InstalledRelease {
            channel: "detection".into(),
            current: Some("1.0.0".into()),
            lkg: Some("1.0.0".into()),
            running: Slot::Current,
        }],
        health: HealthFigures {
            events: 1000,
            p99_us: 40.0,
            cpu_pct: 1.5,
            rss_bytes: 28 << 20,
            ..HealthFigures::default()
        },
    }
}

/// Opens a new connection per request for `seconds` from `connections` threads: connect,
/// (with `tls`) a full handshake, `GET /livez`, close. Returns connections per second.
fn fresh_connections(
    address: std::net::SocketAddr,
    connections: usize,
    seconds: f64,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let tls = tls.clone();
            std::thread::spawn(move || {
                let mut done = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    if one_connection(address, tls.as_ref()).is_ok() {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let total: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

fn one_connection(
    address: std::net::SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<()> {
    let request = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut tcp = std::net::TcpStream::connect(address)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut answer = Vec::with_capacity(256);
    match tls {
        Some(config) => {
            let name = ServerName::try_from("127.0.0.1")?;
            let mut connection = rustls::ClientConnection::new(Arc::clone(config), name)?;
            let mut stream = rustls::Stream::new(&mut connection, &mut tcp);
            stream.write_all(request)?;
            read_answer(&mut stream, &mut answer)?;
        }
        None => {
            tcp.write_all(request)?;
            read_answer(&mut tcp, &mut answer)?;
        }
    }
    anyhow::ensure!(answer.starts_with(b"HTTP/1.1 200"), "not a 200");
    Ok(())
}

/// Reads until the `ok` body of `/livez` has arrived; the server may close without a TLS
/// close_notify, which is not a failure here.
fn read_answer(stream: &mut impl Read, answer: &mut Vec<u8>) -> std::io::Result<()> {
    let mut buffer = [0u8; 1024];
    while !(answer.ends_with(b"\r\n\r\nok")) {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    Ok(())
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
    // One server state (HTTPS with its generated CA) served twice: over TLS, and over plain
    // HTTP on loopback through a copy of the state without TLS. Each serve runs its own
    // background tasks; they share the heartbeat buffer and the lease, so the work is the same.
    let (plain_address, tls_address, state) = runtime.block_on(async {
        let state = ringfence_server::open(config).await?;
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let plain_address = plain.local_addr()?;
        let mut plain_state = state.clone();
        plain_state.tls = None;
        tokio::spawn(async move {
            let _ = ringfence_server::serve(plain_state, plain, std::future::pending()).await;
        });
        let secure = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let tls_address = secure.local_addr()?;
        let served = state.clone();
        tokio::spawn(async move {
            let _ = ringfence_server::serve(served, secure, std::future::pending()).await;
        });
        anyhow::Ok((plain_address, tls_address, state))
    })?;
    let url = format!("http://{plain_address}");
    let tls_url = format!("https://{tls_address}");
    let ca =
        CertificateDer::from_pem_file(dir.path().join("tls/ca.pem")).context("the server's CA")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ureq_tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::clone(&provider))
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![
            ureq::tls::Certificate::from_der(&ca).to_owned(),
        ])))
        .build();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone())?;
    let rustls_config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
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
    if options.flood {
        let operator = runtime.block_on(ringfence_server::create_operator_token(
            &state.store,
            "bench",
        ))?;
        let target = Target {
            address: tls_address,
            url: tls_url,
            ureq_tls,
            rustls: rustls_config,
            operator,
            credentials,
        };
        return flood(options, &target);
    }
    // Warm the credential cache and the connection pool, then measure.
    load(
        &url,
        options.connections,
        1.0,
        &credentials,
        true,
        &ureq_tls,
    );
    let empty = load(
        &url,
        options.connections,
        options.seconds,
        &credentials,
        false,
        &ureq_tls,
    );
    let beats = load(
        &url,
        options.connections,
        options.seconds,
        &credentials,
        true,
        &ureq_tls,
    );
    load(
        &tls_url,
        options.connections,
        1.0,
        &credentials,
        true,
        &ureq_tls,
    );
    let tls_beats = load(
        &tls_url,
        options.connections,
        options.seconds,
        &credentials,
        true,
        &ureq_tls,
    );
    let plain_connections =
        fresh_connections(plain_address, options.connections, options.seconds, None);
    let handshakes = fresh_connections(
        tls_address,
        options.connections,
        options.seconds,
        Some(rustls_config),
    );
    runtime.block_on(state.heartbeats.flush(&state.store))?;
    // The server's capacity, with a generator that leaves it most of the machine.
    let lean_empty = crate::http_load::run(
        plain_address,
        Arc::new(vec![b"GET /livez HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec()]),
        options.connections,
        options.seconds,
    )?;
    let lean_beats = crate::http_load::run(
        plain_address,
        Arc::new(heartbeat_requests(&credentials)),
        options.connections,
        options.seconds,
    )?;
    let empty_rate = empty.requests as f64 / empty.seconds;
    let rate = beats.requests as f64 / beats.seconds;
    let tls_rate = tls_beats.requests as f64 / tls_beats.seconds;
    let lean_empty_rate = lean_empty.ok as f64 / lean_empty.seconds;
    let lean_rate = lean_beats.ok as f64 / lean_beats.seconds;
    let mut rows = vec![
        Row::new(
            "empty request (GET /livez), lean generator",
            lean_empty_rate,
            "req/s",
        ),
        Row::new(
            format!("heartbeats, {backend}, lean generator"),
            lean_rate,
            "beats/s",
        )
        .ratio(
            lean_rate / lean_empty_rate.max(1.0),
            "of the empty-request rate",
        )
        .goal("≥ 20k/s with SQLite on 2 cores"),
        Row::new(
            "heartbeat latency p50, lean generator",
            lean_beats.latency.p50_ns as f64 / 1000.0,
            "µs",
        ),
        Row::new(
            "heartbeat latency p99, lean generator",
            lean_beats.latency.p99_ns as f64 / 1000.0,
            "µs",
        ),
        Row::new(
            "failed requests, lean generator",
            (lean_empty.failed + lean_beats.failed) as f64,
            "requests",
        ),
        Row::new("empty request (GET /livez), ureq", empty_rate, "req/s"),
        Row::new(format!("heartbeats, {backend}, ureq"), rate, "beats/s")
            .ratio(rate / empty_rate.max(1.0), "of the empty-request rate"),
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
    rows.extend([
        Row::new(
            format!("heartbeats over HTTPS, {backend}"),
            tls_rate,
            "beats/s",
        )
        .ratio(tls_rate / rate.max(1.0), "of the plain-HTTP heartbeat rate"),
        Row::new(
            "heartbeat latency p99 over HTTPS",
            tls_beats.latency.p99_ns as f64 / 1000.0,
            "µs",
        ),
        Row::new(
            "new plain connections (connect, GET, close)",
            plain_connections,
            "conn/s",
        ),
        Row::new(
            "new TLS connections (with handshake)",
            handshakes,
            "handshakes/s",
        )
        .ratio(
            handshakes / plain_connections.max(1.0),
            "of the new plain-connection rate",
        ),
    ]);
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

/// Where and as whom the flood benchmark talks to the server.
struct Target {
    address: std::net::SocketAddr,
    url: String,
    ureq_tls: ureq::tls::TlsConfig,
    rustls: Arc<rustls::ClientConfig>,
    operator: String,
    credentials: Arc<Vec<String>>,
}

/// Latencies of successful requests and the count of failed ones.
#[derive(Default)]
struct Sampled {
    latencies: Vec<Duration>,
    failed: usize,
}

/// An operator request as the CLI makes one: a new TLS connection, `GET /api/v1/status`.
fn operator_request(target: &Target) -> anyhow::Result<()> {
    let request = format!(
        "GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Connection: close\r\n\r\n",
        target.operator
    );
    let mut tcp = std::net::TcpStream::connect(target.address)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("127.0.0.1")?;
    let mut connection = rustls::ClientConnection::new(Arc::clone(&target.rustls), name)?;
    let mut stream = rustls::Stream::new(&mut connection, &mut tcp);
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    // The server closes after answering; a missing close_notify is not a failure here.
    let _ = stream.read_to_end(&mut answer);
    anyhow::ensure!(
        answer.starts_with(b"HTTP/1.1 200"),
        "operator request not answered 200"
    );
    Ok(())
}

/// Operator requests one after another, `pause` apart, until `stop`.
fn operators(target: &Target, stop: &AtomicBool, pause: Duration) -> Sampled {
    let mut sampled = Sampled::default();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match operator_request(target) {
            Ok(()) => sampled.latencies.push(started.elapsed()),
            Err(_) => sampled.failed += 1,
        }
        std::thread::sleep(pause);
    }
    sampled
}

/// Heartbeats at `rate` per second over kept-alive HTTPS connections from `threads` threads,
/// each on its own schedule (a late one goes at once, it does not skip), until `stop`.
fn paced_heartbeats(target: &Target, rate: f64, threads: usize, stop: &Arc<AtomicBool>) -> Sampled {
    let interval = Duration::from_secs_f64(threads as f64 / rate.max(1.0));
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let stop = Arc::clone(stop);
            let credentials = Arc::clone(&target.credentials);
            let url = format!("{}/api/v1/agents/heartbeat", target.url);
            let tls = target.ureq_tls.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(10)))
                    .http_status_as_error(false)
                    .tls_config(tls)
                    .build()
                    .into();
                let body = serde_json::to_vec(&heartbeat_body()).unwrap_or_default();
                let mut sampled = Sampled::default();
                let mut index = thread;
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next += interval;
                    let credential = &credentials[index % credentials.len()];
                    index += threads;
                    let started = Instant::now();
                    let ok = agent
                        .post(&url)
                        .header("Authorization", format!("Bearer {credential}"))
                        .header("Content-Type", "application/json")
                        .send(&body[..])
                        .map(|mut r| r.status().is_success() && r.body_mut().read_to_vec().is_ok());
                    match ok {
                        Ok(true) => sampled.latencies.push(started.elapsed()),
                        _ => sampled.failed += 1,
                    }
                }
                sampled
            })
        })
        .collect();
    let mut all = Sampled::default();
    for worker in workers {
        let sampled = worker.join().unwrap_or_default();
        all.latencies.extend(sampled.latencies);
        all.failed += sampled.failed;
    }
    all
}

/// Holds `count` unauthenticated connections open: half silent, half stopped after the first
/// bytes of a TLS record. Those the server closes (deadline or eviction) are replaced, so the
/// flood stays whole. Returns how many were opened in all.
fn idle_flood(address: std::net::SocketAddr, count: usize, stop: &AtomicBool) -> usize {
    let open = |i: usize| -> Option<std::net::TcpStream> {
        let mut tcp = std::net::TcpStream::connect(address).ok()?;
        if i % 2 == 1 {
            tcp.write_all(&[0x16, 0x03, 0x01, 0x02]).ok()?;
        }
        tcp.set_nonblocking(true).ok()?;
        Some(tcp)
    };
    let mut opened = 0;
    let mut held: Vec<Option<std::net::TcpStream>> = (0..count).map(|_| None).collect();
    while !stop.load(Ordering::Relaxed) {
        for (i, slot) in held.iter_mut().enumerate() {
            let gone = match slot {
                Some(tcp) => {
                    let mut byte = [0u8; 64];
                    match tcp.read(&mut byte) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    }
                }
                None => true,
            };
            if gone {
                *slot = open(i);
                opened += usize::from(slot.is_some());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    opened
}

/// Operators and heartbeats against the idle server, then under the flood, in one run.
fn flood(options: &Options, target: &Target) -> anyhow::Result<()> {
    let seconds = Duration::from_secs_f64(options.seconds);
    let pause = Duration::from_millis(20);
    let baseline_rate = 100.0;
    // Warm the credential cache and the server's TLS session state.
    let stop = Arc::new(AtomicBool::new(false));
    let measure = |rate: f64, flood: bool| -> (Sampled, Sampled, usize) {
        stop.store(false, Ordering::Relaxed);
        std::thread::scope(|scope| {
            let flooding = flood.then(|| {
                scope.spawn(|| idle_flood(target.address, options.idle_connections, &stop))
            });
            if flood {
                // Let the flood fill up before measuring.
                std::thread::sleep(Duration::from_secs(1));
            }
            let beats = scope.spawn(|| paced_heartbeats(target, rate, 8, &stop));
            let ops = scope.spawn(|| operators(target, &stop, pause));
            std::thread::sleep(seconds);
            stop.store(true, Ordering::Relaxed);
            let ops = ops.join().unwrap_or_default();
            let beats = beats.join().unwrap_or_default();
            let opened = flooding.map_or(0, |f| f.join().unwrap_or(0));
            (ops, beats, opened)
        })
    };
    let _ = measure(baseline_rate, false);
    let (mut idle_ops, mut idle_beats, _) = measure(baseline_rate, false);
    let (mut flood_ops, mut flood_beats, opened) = measure(options.flood_rate, true);
    let beat_rate = flood_beats.latencies.len() as f64 / options.seconds;
    let idle_op = Percentiles::of(&mut idle_ops.latencies);
    let flood_op = Percentiles::of(&mut flood_ops.latencies);
    let idle_beat = Percentiles::of(&mut idle_beats.latencies);
    let flood_beat = Percentiles::of(&mut flood_beats.latencies);
    let us = |ns: u64| ns as f64 / 1000.0;
    let rows = vec![
        Row::new(
            "operator request p99, idle server",
            us(idle_op.p99_ns),
            "µs",
        ),
        Row::new(
            "operator request p99, under the flood",
            us(flood_op.p99_ns),
            "µs",
        )
        .ratio(
            flood_op.p99_ns as f64 / idle_op.p99_ns.max(1) as f64,
            "of the idle server's",
        )
        .goal("≤ 3× the idle server's"),
        Row::new(
            "operator requests, under the flood",
            flood_ops.latencies.len() as f64,
            "requests",
        ),
        Row::new(
            "failed operator requests (idle + flood)",
            (idle_ops.failed + flood_ops.failed) as f64,
            "requests",
        )
        .goal("0"),
        Row::new(
            format!("heartbeat p99, idle server ({baseline_rate}/s)"),
            us(idle_beat.p99_ns),
            "µs",
        ),
        Row::new(
            "heartbeat p99, under the flood",
            us(flood_beat.p99_ns),
            "µs",
        )
        .ratio(
            flood_beat.p99_ns as f64 / idle_beat.p99_ns.max(1) as f64,
            "of the idle server's",
        )
        .goal("≤ 3× the idle server's"),
        Row::new("heartbeats served under the flood", beat_rate, "beats/s"),
        Row::new(
            "failed heartbeats (idle + flood)",
            (idle_beats.failed + flood_beats.failed) as f64,
            "requests",
        ),
        Row::new(
            "unauthenticated connections opened by the flood",
            opened as f64,
            "connections",
        ),
    ];
    print(
        &format!(
            "ringfence bench server --flood ({} idle connections, {} heartbeats/s, HTTPS)",
            options.idle_connections, options.flood_rate
        ),
        &rows,
        options.json,
    )
}
