//! A lean HTTP/1.1 load generator for `bench server`: one thread, one single-threaded tokio
//! runtime, keep-alive connections that send pre-rendered requests and read each response by its
//! `Content-Length`.
//!
//! A general-purpose client (one OS thread per connection, URL parsing and header maps per
//! request) spends more CPU per request than the server does answering a heartbeat; on two
//! shared cores it measures itself. This one uses at most one core and does almost nothing per
//! request, so what it measures is the server. It speaks just enough HTTP for our own server's
//! answers and treats anything else as a failed request.

use crate::stats::Percentiles;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one run achieved.
#[derive(Debug)]
pub struct LeanLoad {
    pub ok: usize,
    pub failed: usize,
    pub seconds: f64,
    pub latency: Percentiles,
}

/// Sends `requests` (complete HTTP/1.1 requests, used round-robin, each connection starting at
/// its own offset) over `connections` keep-alive connections for `seconds`.
pub fn run(
    address: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    connections: usize,
    seconds: f64,
) -> std::io::Result<LeanLoad> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for connection in 0..connections {
            let requests = Arc::clone(&requests);
            tasks.push(tokio::spawn(async move {
                one_connection(address, &requests, connection, connections, until).await
            }));
        }
        let (mut latencies, mut failed) = (Vec::new(), 0);
        for task in tasks {
            let (ok, bad) = task.await.map_err(std::io::Error::other)?;
            latencies.extend(ok);
            failed += bad;
        }
        Ok(LeanLoad {
            ok: latencies.len(),
            failed,
            seconds: started.elapsed().as_secs_f64(),
            latency: Percentiles::of(&mut latencies),
        })
    })
}

async fn one_connection(
    address: SocketAddr,
    requests: &[Vec<u8>],
    first: usize,
    stride: usize,
    until: Instant,
) -> (Vec<Duration>, usize) {
    let (mut latencies, mut failed) = (Vec::new(), 0);
    let mut buffer = Vec::with_capacity(4096);
    let mut index = first;
    let mut stream = None;
    while Instant::now() < until && !requests.is_empty() {
        let connected = match stream.take() {
            Some(stream) => stream,
            None => match tokio::net::TcpStream::connect(address).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    stream
                }
                Err(_) => {
                    failed += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let mut connected = connected;
        let request = &requests[index % requests.len()];
        index += stride;
        let sent = Instant::now();
        let answered = match connected.write_all(request).await {
            Ok(()) => read_response(&mut connected, &mut buffer).await,
            Err(_) => None,
        };
        match answered {
            Some(200) => {
                latencies.push(sent.elapsed());
                stream = Some(connected);
            }
            // Any other status is a failure, but the connection is still good.
            Some(_) => {
                failed += 1;
                stream = Some(connected);
            }
            None => failed += 1,
        }
    }
    (latencies, failed)
}

/// Reads one response; returns its status, or `None` when the connection is unusable.
async fn read_response(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> Option<u16> {
    buffer.clear();
    let head_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > 64 * 1024 || read_more(stream, buffer).await? == 0 {
            return None;
        }
    };
    let head = std::str::from_utf8(&buffer[..head_end]).ok()?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        if read_more(stream, buffer).await? == 0 {
            return None;
        }
    }
    Some(status)
}

async fn read_more(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.ok()?;
    buffer.extend_from_slice(&chunk[..n]);
    Some(n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_answers_by_status_and_reads_bodies_by_length() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let address = listener.local_addr().expect("address");
        // A server that answers 200 with a body split across two writes, then 404, for ever.
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let (mut socket, _) = listener.accept().await.expect("accept");
                let mut request = [0u8; 1024];
                for turn in 0.. {
                    if socket.read(&mut request).await.unwrap_or(0) == 0 {
                        break;
                    }
                    let answer: &[&[u8]] = if turn % 2 == 0 {
                        &[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe", b"llo"]
                    } else {
                        &[b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"]
                    };
                    for part in answer {
                        if socket.write_all(part).await.is_err() {
                            return;
                        }
                    }
                }
            });
        });
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let load = run(address, Arc::new(vec![request]), 1, 0.2).expect("load");
        assert!(load.ok > 0, "{load:?}");
        // Strictly alternating answers: as many failures as successes, give or take the last.
        assert!(load.failed.abs_diff(load.ok) <= 1, "{load:?}");
    }
}
