//! A slowloris flood against the real TLS listener: a thousand connections that stay silent,
//! stop halfway through a TLS record, or finish the handshake and send half a request head.
//! An operator's request still gets through at once, the flood evicts only itself, and every
//! flood connection is closed once its deadline passes. Its own test binary: it opens a few
//! thousand descriptors.

mod common;

use common::Harness;
use common::tls_client::{listen, operator_request};
use ringfence_server::tls::{ConnectionBudget, EdgeConfig};
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SILENT: usize = 500;
const HALF_RECORD: usize = 400;
const HALF_HEAD: usize = 100;
const DEADLINE: Duration = Duration::from_secs(8);

/// True once the server has closed `stream` (EOF or an error), waiting at most `wait`.
async fn closed(stream: &mut (impl AsyncRead + Unpin), wait: Duration) -> bool {
    let mut buffer = [0u8; 256];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // An alert or an error answer; the close follows.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_flood_neither_starves_operators_nor_holds_its_connections() {
    ringfence_server::tls::edge::raise_fd_limit().expect("rlimit");
    let h = Harness::sqlite().await;
    // Caps below the flood's size, as on a host with few descriptors: the flood must be
    // evicted, not queued, and the operator must not wait for a deadline.
    let budget = Arc::new(ConnectionBudget::new(EdgeConfig {
        handshake_timeout: DEADLINE,
        header_timeout: DEADLINE,
        stall_timeout: DEADLINE,
        max_connections: 1200,
        max_unauthenticated: 600,
        max_unauthenticated_per_ip: 600,
        shutdown_grace: Duration::from_secs(1),
    }));
    let (addr, tls, server) = listen(&h, Arc::clone(&budget)).await;

    let flood_started = Instant::now();
    let mut raw = Vec::new();
    for i in 0..SILENT + HALF_RECORD {
        let mut tcp = TcpStream::connect(addr).await.expect("flood connect");
        if i >= SILENT {
            // The start of a TLS handshake record, never finished.
            tcp.write_all(&[0x16, 0x03, 0x01, 0x02])
                .await
                .expect("half record");
        }
        raw.push(tcp);
    }
    let mut half_heads = Vec::new();
    for _ in 0..HALF_HEAD {
        let tcp = TcpStream::connect(addr).await.expect("flood connect");
        let name = ServerName::try_from("localhost").expect("name");
        let mut stream = tls.connect(name, tcp).await.expect("flood handshake");
        stream
            .write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .expect("half head");
        half_heads.push(stream);
    }
    let flooded_in = flood_started.elapsed();

    let asked = Instant::now();
    let status = operator_request(addr, &tls, &h.operator).await;
    let answered_in = asked.elapsed();
    let (unauthenticated, _) = budget.held();
    assert!(status.contains("200"), "operator answered {status:?}");
    assert!(
        unauthenticated > 0 && flood_started.elapsed() < DEADLINE,
        "the operator got through while the flood still held {unauthenticated} connections \
         (flood {flooded_in:?}, answer {answered_in:?}): no deadline had to pass"
    );
    assert!(
        budget.counters.evicted.load(Ordering::Relaxed)
            >= (SILENT + HALF_RECORD + HALF_HEAD - 600) as u64,
        "past the cap the quietest flood connections were closed"
    );

    // Every flood connection is closed by its deadline (or was evicted earlier).
    let wait = DEADLINE + Duration::from_secs(3);
    for (i, tcp) in raw.iter_mut().enumerate() {
        assert!(
            closed(tcp, wait).await,
            "raw flood connection {i} still open"
        );
    }
    for (i, stream) in half_heads.iter_mut().enumerate() {
        assert!(
            closed(stream, wait).await,
            "half-head connection {i} still open"
        );
    }
    let settled = Instant::now();
    while budget.held() != (0, 0) && settled.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(budget.held(), (0, 0), "no slot outlives its connection");
    // And the server still serves.
    let status = operator_request(addr, &tls, &h.operator).await;
    assert!(status.contains("200"), "after the flood: {status:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_connections_are_never_evicted_and_new_ones_are_shed_when_all_are() {
    let h = Harness::sqlite().await;
    let budget = Arc::new(ConnectionBudget::new(EdgeConfig {
        max_connections: 2,
        max_unauthenticated: 2,
        max_unauthenticated_per_ip: 2,
        ..EdgeConfig::default()
    }));
    let (addr, tls, server) = listen(&h, Arc::clone(&budget)).await;
    // Two kept-alive operator connections hold both slots.
    let mut operators = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let mut stream = tls.connect(name, tcp).await.expect("handshake");
        let request = format!(
            "GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
            h.operator
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut buffer = vec![0u8; 64 << 10];
        let n = stream.read(&mut buffer).await.expect("read");
        assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
        operators.push(stream);
    }
    assert_eq!(budget.held(), (0, 2));
    // A third connection finds no room: closed at once, not queued.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    assert!(closed(&mut third, Duration::from_secs(2)).await);
    assert!(budget.counters.shed.load(Ordering::Relaxed) >= 1);
    assert_eq!(budget.held(), (0, 2), "the operators kept theirs");
    drop(operators);
    let settled = Instant::now();
    while budget.held() != (0, 0) && settled.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = operator_request(addr, &tls, &h.operator).await;
    assert!(status.contains("200"), "{status:?}");
    server.abort();
}
