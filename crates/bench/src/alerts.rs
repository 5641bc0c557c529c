//! `ringfence bench alerts`: alerts per second end to end — uploaded by agents over HTTP into the
//! real server, committed to the outbox, forwarded by the syslog sink over TLS to a receiver in
//! this process — against the same uploads into a server with no sink, in one run; the p50/p99
//! from the agent's upload to the receiver; and, after the receiver was down for `--outage`
//! while agents kept uploading, how fast the sink catches up and how many alerts were lost.
//!
//! The receiver is ours (a TLS listener counting RFC 5425 frames) so that it can time every
//! alert and check every event id; it parses no more than the frame length, the `eventId` and the
//! upload time the bench wrote into the alert, so the figures are the server's.

use crate::stats::{Row, print};
use anyhow::Context;
use ringfence_protocol::api::{Report, ReportBatch};
use ringfence_protocol::report::ReportBody;
use ringfence_server::ServerConfig;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Options for `ringfence bench alerts`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Enrolled agents uploading alerts.
    #[arg(long, default_value_t = 100)]
    pub agents: usize,
    /// Alerts per upload.
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// Concurrent uploads.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Uploads per measurement. Past about 4 s of uploads at full speed on SQLite, delivery
    /// stalls until the uploads stop (bench/RESULTS.md); the default stays under it.
    #[arg(long = "duration", default_value = "2s", value_parser = crate::seconds)]
    pub seconds: f64,
    /// How long the receiver is down while agents keep uploading.
    #[arg(long = "outage", default_value = "3s", value_parser = crate::seconds)]
    pub outage_seconds: f64,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What the receiver saw: frames, distinct event ids, and each alert's upload-to-receipt time.
#[derive(Default)]
struct Received {
    frames: AtomicU64,
    ids: Mutex<HashSet<String>>,
    latencies: Mutex<Vec<Duration>>,
    last: Mutex<Option<Instant>>,
}

impl Received {
    fn distinct(&self) -> usize {
        self.ids.lock().map_or(0, |ids| ids.len())
    }

    fn take_latencies(&self) -> Vec<Duration> {
        self.latencies
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// The value after `key` in `text`, up to the next `"` (an SD parameter) or non-digit.
fn field<'a>(text: &'a str, key: &str, end: impl Fn(char) -> bool) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    let len = rest.find(end).unwrap_or(rest.len());
    Some(&rest[..len])
}

/// Reads octet-counted frames from one connection until it closes.
async fn receive(
    mut stream: impl tokio::io::AsyncRead + Unpin,
    received: Arc<Received>,
    epoch: Instant,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Some(space) = buf[used..].iter().position(|b| *b == b' ') {
            let Some(len) = std::str::from_utf8(&buf[used..used + space])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            else {
                return Err(std::io::Error::other("not an octet-counted frame"));
            };
            let start = used + space + 1;
            if buf.len() < start + len {
                break;
            }
            let text = String::from_utf8_lossy(&buf[start..start + len]);
            let now = Instant::now();
            received.frames.fetch_add(1, Ordering::Relaxed);
            if let Some(id) = field(&text, "eventId=\"", |c| c == '"')
                && let Ok(mut ids) = received.ids.lock()
            {
                ids.insert(id.to_owned());
            }
            if let Some(sent) = field(&text, "\"bench_sent_us\":", |c: char| !c.is_ascii_digit())
                .and_then(|s| s.parse::<u64>().ok())
                && let Ok(mut latencies) = received.latencies.lock()
            {
                let sent = epoch + Duration::from_micros(sent);
                latencies.push(now.saturating_duration_since(sent));
            }
            if let Ok(mut last) = received.last.lock() {
                *last = Some(now);
            }
            used = start + len;
        }
        buf.drain(..used);
    }
}

/// A TLS syslog receiver on `address`, until the returned task is aborted (which closes the
/// listener and every connection: an outage).
fn start_receiver(
    runtime: &tokio::runtime::Runtime,
    address: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    received: Arc<Received>,
    epoch: Instant,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = runtime.block_on(tokio::net::TcpListener::bind(address))?;
    Ok(runtime.spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let received = Arc::clone(&received);
            connections.spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await {
                    let _ = receive(stream, received, epoch).await;
                }
            });
        }
    }))
}

/// A CA and a certificate for 127.0.0.1 signed by it: the CA's PEM file (for the sink) and the
/// receiver's TLS configuration.
fn receiver_tls(dir: &Path) -> anyhow::Result<(PathBuf, Arc<rustls::ServerConfig>)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])?
        .signed_by(&key, &Issuer::new(ca_params, ca_key))?;
    let ca_path = dir.join("receiver-ca.pem");
    std::fs::write(&ca_path, ca.pem()).context("write the receiver's CA")?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| anyhow::anyhow!("receiver key: {e}"))?;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)?;
    Ok((ca_path, Arc::new(tls)))
}

/// A server on plain HTTP (loopback) with its own database under `dir`, and `agents` enrolled
/// in its store; returns its address and the agents' credentials.
fn start_server(
    runtime: &tokio::runtime::Runtime,
    config: ServerConfig,
    agents: usize,
) -> anyhow::Result<(SocketAddr, Vec<String>)> {
    runtime.block_on(async {
        let state = ringfence_server::open(config).await?;
        let credentials: Vec<String> = (0..agents).map(|i| format!("rfa_alerts_{i:08}")).collect();
        for (i, credential) in credentials.iter().enumerate() {
            let hash = ringfence_server::auth::hash_token(credential);
            state
                .store
                .insert_agent(&format!("bench-{i}"), &hash, &format!("host-{i}"), &[])
                .await?;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let mut plain = state.clone();
        plain.tls = None;
        tokio::spawn(async move {
            let _ = ringfence_server::serve(plain, listener, std::future::pending()).await;
        });
        anyhow::Ok((address, credentials))
    })
}

/// Uploads batches of alerts for `seconds` over `connections` connections; returns how many
/// alerts the server acknowledged. Each alert carries its upload time (µs since `epoch`).
fn upload(
    address: SocketAddr,
    credentials: &Arc<Vec<String>>,
    options: &Options,
    seconds: f64,
    epoch: Instant,
    next_id: &Arc<AtomicU64>,
) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let url = format!("http://{address}/api/v1/agents/reports");
    let threads: Vec<_> = (0..options.connections.max(1))
        .map(|thread| {
            let (stop, acked, next_id) =
                (Arc::clone(&stop), Arc::clone(&acked), Arc::clone(next_id));
            let (credentials, url, batch) = (Arc::clone(credentials), url.clone(), options.batch);
            std::thread::spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
                let mut round = thread;
                while !stop.load(Ordering::Relaxed) {
                    let credential = &credentials[round % credentials.len()];
                    round += stride(credentials.len());
                    let reports = (0..batch)
                        .map(|_| {
                            let id = next_id.fetch_add(1, Ordering::Relaxed);
                            let sent = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(0);
                            Report {
                                id: format!("a{id}"),
                                at_ms: ringfence_protocol::clock::unix_ms(),
                                body: ReportBody::Alert(serde_json::json!({
                                    "class_uid": 1007,
                                    "severity_id": 3,
                                    "message": "bench alert",
                                    "bench_sent_us": sent,
                                })),
                            }
                        })
                        .collect();
                    let Ok(body) = serde_json::to_vec(&ReportBatch { reports }) else {
                        break;
                    };
                    let response = agent
                        .post(&url)
                        .header("authorization", &format!("Bearer {credential}"))
                        .header("content-type", "application/json")
                        .send(&body[..]);
                    if response.is_ok() {
                        acked.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    acked.load(Ordering::Relaxed)
}

/// Each upload thread walks the agents with a stride coprime to their number, so threads do not
/// upload as the same agent at once.
fn stride(agents: usize) -> usize {
    if agents <= 1 { 1 } else { agents - 1 }
}

/// Waits until the receiver has `expected` distinct alerts or `limit` passes; returns when the
/// last one arrived.
fn wait_delivered(received: &Received, expected: usize, limit: Duration) -> Option<Instant> {
    let until = Instant::now() + limit;
    while received.distinct() < expected {
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    received.last.lock().ok().and_then(|last| *last)
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(options.agents > 0, "--agents must be at least 1");
    anyhow::ensure!(
        (1..=ringfence_protocol::api::limits::MAX_REPORTS_PER_BATCH).contains(&options.batch),
        "--batch must be 1-{}",
        ringfence_protocol::api::limits::MAX_REPORTS_PER_BATCH
    );
    let dir = tempfile::tempdir().context("temporary directory")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let epoch = Instant::now();
    let next_id = Arc::new(AtomicU64::new(0));

    // The baseline: the same uploads into a server with no sink (the outbox stays empty).
    let (plain, plain_credentials) = start_server(
        &runtime,
        ServerConfig::new(dir.path().join("no-sink")),
        options.agents,
    )?;
    let plain_credentials = Arc::new(plain_credentials);
    upload(plain, &plain_credentials, options, 1.0, epoch, &next_id);
    let baseline = upload(
        plain,
        &plain_credentials,
        options,
        options.seconds,
        epoch,
        &next_id,
    );

    // The same with a syslog sink to our receiver.
    let (ca, tls) = receiver_tls(dir.path())?;
    let receiver_address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let received = Arc::new(Received::default());
    let mut receiver = start_receiver(
        &runtime,
        receiver_address,
        Arc::clone(&tls),
        Arc::clone(&received),
        epoch,
    )?;
    let mut config = ServerConfig::new(dir.path().join("sink"));
    config.sinks.sinks = vec![
        ringfence_server::sinks::SinkConfig::parse(&format!(
            "bench=syslog+tls://{receiver_address}?ca={}",
            ca.display()
        ))
        .map_err(|e| anyhow::anyhow!("sink: {e}"))?,
    ];
    let (sink, sink_credentials) = start_server(&runtime, config, options.agents)?;
    let sink_credentials = Arc::new(sink_credentials);
    let warm = upload(sink, &sink_credentials, options, 1.0, epoch, &next_id);
    wait_delivered(&received, warm as usize, Duration::from_secs(60))
        .context("the warm-up alerts never reached the receiver")?;
    received.take_latencies();
    let before = received.distinct();
    let started = Instant::now();
    let with_sink = upload(
        sink,
        &sink_credentials,
        options,
        options.seconds,
        epoch,
        &next_id,
    );
    let expected = before + with_sink as usize;
    let last = wait_delivered(&received, expected, Duration::from_secs(300))
        .context("not every alert reached the receiver within 300 s")?;
    let delivered_rate = with_sink as f64 / last.duration_since(started).as_secs_f64();
    let mut latencies = received.take_latencies();
    let latency = crate::stats::Percentiles::of(&mut latencies);

    // The receiver goes down while agents keep uploading, then comes back.
    receiver.abort();
    let _ = runtime.block_on(&mut receiver);
    let before_outage = received.distinct();
    let during = upload(
        sink,
        &sink_credentials,
        options,
        options.outage_seconds,
        epoch,
        &next_id,
    );
    let restarted = Instant::now();
    receiver = start_receiver(
        &runtime,
        receiver_address,
        tls,
        Arc::clone(&received),
        epoch,
    )?;
    let caught_up = wait_delivered(
        &received,
        before_outage + during as usize,
        Duration::from_secs(600),
    );
    let lost = (before_outage + during as usize).saturating_sub(received.distinct());
    let catch_up_rate = caught_up.map_or(0.0, |at| {
        during as f64 / at.duration_since(restarted).as_secs_f64()
    });
    receiver.abort();
    let duplicates = received
        .frames
        .load(Ordering::Relaxed)
        .saturating_sub(received.distinct() as u64);

    let baseline_rate = baseline as f64 / options.seconds;
    let upload_rate = with_sink as f64 / options.seconds;
    let rows = vec![
        Row::new("uploads, no sink (alerts/s)", baseline_rate, "alerts/s"),
        Row::new(
            "uploads with the syslog sink (alerts/s)",
            upload_rate,
            "alerts/s",
        )
        .ratio(upload_rate / baseline_rate.max(f64::EPSILON), "of no sink"),
        Row::new(
            "delivered to the receiver (alerts/s)",
            delivered_rate,
            "alerts/s",
        )
        .ratio(
            delivered_rate / baseline_rate.max(f64::EPSILON),
            "of no sink",
        )
        .goal(">= 50000"),
        Row::new("upload to receiver p50", latency.p50_ns as f64 / 1e6, "ms"),
        Row::new("upload to receiver p99", latency.p99_ns as f64 / 1e6, "ms").goal("<= 2000"),
        Row::new(
            format!(
                "catch-up after a {:.0} s outage (alerts/s)",
                options.outage_seconds
            ),
            catch_up_rate,
            "alerts/s",
        )
        .ratio(
            catch_up_rate / delivered_rate.max(f64::EPSILON),
            "of steady delivery",
        ),
        Row::new("alerts lost", lost as f64, "alerts").goal("0"),
        Row::new(
            "frames resent (at-least-once copies)",
            duplicates as f64,
            "frames",
        ),
    ];
    print(
        &format!(
            "alerts end to end: {} agents, {} per upload, {} connections, SQLite",
            options.agents, options.batch, options.connections
        ),
        &rows,
        options.json,
    )?;
    anyhow::ensure!(lost == 0, "{lost} alerts were lost");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_receiver_counts_frames_ids_and_latencies_across_reads() {
        let epoch = Instant::now();
        let received = Arc::new(Received::default());
        let message = |id: &str, sent: u64| {
            let msg = format!(
                "<107>1 2026-12-04T00:00:00.000Z a ringfence - alert [ringfence@32473 eventId=\"{id}\" agent=\"a\"] {{\"bench_sent_us\":{sent}}}"
            );
            format!("{} {msg}", msg.len())
        };
        let stream = format!(
            "{}{}{}",
            message("x:1", 0),
            message("x:2", 5),
            message("x:1", 0)
        );
        // A pipe smaller than one frame: frames arrive split across reads.
        let (mut writer, reader) = tokio::io::duplex(16);
        let writing = tokio::spawn(async move {
            writer.write_all(stream.as_bytes()).await.expect("write");
        });
        receive(reader, Arc::clone(&received), epoch)
            .await
            .expect("frames");
        writing.await.expect("writer");
        assert_eq!(received.frames.load(Ordering::Relaxed), 3);
        assert_eq!(received.distinct(), 2);
        assert_eq!(received.take_latencies().len(), 3);
    }

    #[test]
    fn garbage_is_not_a_frame() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let received = Arc::new(Received::default());
        let result = runtime.block_on(receive(
            &b"hello world"[..],
            Arc::clone(&received),
            Instant::now(),
        ));
        assert!(result.is_err());
        assert_eq!(received.frames.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn strides_visit_every_agent() {
        for agents in [1usize, 2, 7, 100] {
            let mut seen = HashSet::new();
            let mut at = 0;
            for _ in 0..agents {
                seen.insert(at % agents);
                at += stride(agents);
            }
            assert_eq!(seen.len(), agents);
        }
    }
}
