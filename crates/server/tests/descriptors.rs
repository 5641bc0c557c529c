//! The listener out of file descriptors (EMFILE), injected: this test binary lowers its own
//! open-file limit so that the server's `accept` fails, as it would on a host whose limit a
//! flood or a leak used up. The server must count it, free a descriptor by closing the quietest
//! unauthenticated connection, back off instead of spinning, and keep serving operators. Its own
//! test binary: the limit is the whole process's.

mod common;

use common::Harness;
use common::tls_client::{listen, operator_request};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use ringfence_server::tls::{ConnectionBudget, EdgeConfig};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Descriptors open in this process now, from `/proc/self/fd`.
fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |entries| entries.count() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_out_of_descriptors_frees_one_and_keeps_serving_operators() {
    let h = Harness::sqlite().await;
    // A budget far above what the descriptors allow: the kernel runs out before the budget
    // says no, which is the case the accept loop must survive.
    let budget = Arc::new(ConnectionBudget::new(EdgeConfig {
        max_connections: 10_000,
        max_unauthenticated: 10_000,
        max_unauthenticated_per_ip: 10_000,
        ..EdgeConfig::default()
    }));
    let (addr, tls, server) = listen(&h, Arc::clone(&budget)).await;
    let status = operator_request(addr, &tls, &h.operator).await;
    assert!(status.contains("200"), "before: {status:?}");

    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, open_descriptors() + 64, hard).expect("lower the limit");

    // Idle clients until this process can open no more: each holds one descriptor here and
    // one in the server.
    let mut idle = Vec::new();
    while idle.len() < 1_000 {
        match TcpStream::connect(addr).await {
            Ok(stream) => idle.push(stream),
            Err(error) if error.raw_os_error() == Some(nix::errno::Errno::EMFILE as i32) => break,
            Err(error) => panic!("connect: {error}"),
        }
    }
    // Every descriptor is taken. One client leaves and another takes its descriptor at once:
    // the kernel completes that connection, and the server's accept finds nothing free.
    for _ in 0..5 {
        idle.remove(0);
        if let Ok(stream) = TcpStream::connect(addr).await {
            idle.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited = Instant::now();
    while budget.counters.fd_exhausted.load(Ordering::Relaxed) == 0
        && waited.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        budget.counters.fd_exhausted.load(Ordering::Relaxed) > 0,
        "the server's accept never ran out of descriptors ({} idle clients)",
        idle.len()
    );
    assert!(
        budget.counters.evicted.load(Ordering::Relaxed) > 0,
        "a quiet connection was closed to free a descriptor"
    );

    // The operator gets through while the flood still holds almost every descriptor: a few
    // clients go, the server closes their other ends, and the request finds room.
    idle.truncate(idle.len().saturating_sub(8));
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        operator_request(addr, &tls, &h.operator),
    )
    .await
    .expect("the operator request finished");
    assert!(status.contains("200"), "during: {status:?}");
    assert!(!server.is_finished(), "the listener is still running");

    drop(idle);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("restore the limit");
    let status = operator_request(addr, &tls, &h.operator).await;
    assert!(status.contains("200"), "after: {status:?}");
    server.abort();
}
