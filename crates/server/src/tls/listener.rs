//! The TLS listener axum serves from. Handshakes run in their own tasks, so a slow or silent
//! client never holds up the next one; a connection that does not open with a TLS handshake
//! (someone used http:// on the HTTPS port) gets a plain `400` saying so instead of a hang.
//! Each connection's verified client certificate reaches the handlers as
//! `ConnectInfo<ClientCert>`.

use super::ClientCert;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client has this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// Handshaken connections waiting for axum; beyond this, handshake tasks wait their turn.
const QUEUE: usize = 1024;

/// The one-line body of the answer to plain HTTP, JSON like every other error of the API.
pub const PLAINTEXT_REFUSAL: &str = r#"{"error":"this port speaks HTTPS, not plain HTTP: use an https:// URL and the server's CA"}"#;

/// Accepts TCP connections, completes TLS handshakes concurrently, hands finished ones to axum.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(QUEUE);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // axum drops the listener on shutdown: stop accepting at once.
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientCert {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> ClientCert {
        // Read once per connection; rustls verified the chain during the handshake.
        ClientCert::from_chain(stream.io().get_ref().1.peer_certificates())
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(connection) => connection,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Heartbeats are small request/response pairs; Nagle would only add latency.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&acceptor, tcp, peer)).await {
                Ok(Some(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(None) => {}
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) | Err(_) => return None,
        Ok(_) => {}
    }
    if first[0] != TLS_HANDSHAKE {
        tracing::debug!(%peer, "plain HTTP on the HTTPS port; answered 400");
        refuse_plaintext(tcp).await;
        return None;
    }
    match acceptor.accept(tcp).into_fallible().await {
        Ok(stream) => Some(stream),
        Err((error, tcp)) => {
            // Usually a client that does not trust our CA, which says so on its side, or a
            // client certificate we refused. In TLS 1.3 that client already sent its request
            // after its half of the handshake; close gently so it reads our alert (why it was
            // refused) instead of a reset.
            tracing::debug!(%peer, "TLS handshake failed: {error}");
            close_gently(tcp).await;
            None
        }
    }
}

/// Answers a plain HTTP request with a `400` that says what went wrong, then closes.
async fn refuse_plaintext(mut tcp: TcpStream) {
    // Read the request head first: closing with unread bytes resets the connection, and the
    // client would see "connection reset" instead of our answer.
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while request.len() < 16 << 10 && !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buffer[..n]),
            _ => break,
        }
    }
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PLAINTEXT_REFUSAL}\n",
        PLAINTEXT_REFUSAL.len() + 1
    );
    if tcp.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    close_gently(tcp).await;
}

/// Closes our side, then drains what the client still sends for a moment: closing with unread
/// bytes would reset the connection and destroy the answer already sent.
async fn close_gently(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let mut buffer = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while matches!(tcp.read(&mut buffer).await, Ok(n) if n > 0) {}
    })
    .await;
}
