//! The server's accept loop and connections, TLS or (on loopback, when asked) plain HTTP.
//! Each connection runs in its own task, so a slow or silent client never holds up the next
//! one; a connection that does not open with a TLS handshake (someone used http:// on the
//! HTTPS port) gets a plain `400` saying so instead of a hang. Each connection's verified
//! client certificate reaches the handlers as `ConnectInfo<ClientCert>`, and its place in the
//! [`ConnectionBudget`] as a [`ConnectionSlot`] (the credential check marks it authenticated).
//!
//! Every phase has a deadline ([`EdgeConfig`]): the handshake, the request head (also the
//! wait for the next request on a kept-alive connection), a stalled body, an answer the client
//! does not read. Running out of descriptors makes the loop close the quietest unauthenticated
//! connection and back off, instead of spinning on `accept`.

use super::ClientCert;
use super::edge::{ConnectionBudget, ConnectionSlot, EdgeConfig, Slot};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// The first pause after `accept` fails for want of descriptors; doubled up to
/// [`MAX_BACKOFF`] while it keeps failing.
const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The one-line body of the answer to plain HTTP, JSON like every other error of the API.
pub const PLAINTEXT_REFUSAL: &str = r#"{"error":"this port speaks HTTPS, not plain HTTP: use an https:// URL and the server's CA"}"#;

/// Serves `app` on `listener` until `shutdown` resolves: TLS with `tls`, plain HTTP without.
/// Then stops accepting, lets open requests finish for `shutdown_grace`, and returns.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    budget: Arc<ConnectionBudget>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let (stop, stopping) = watch::channel(false);
    // Every connection task holds a sender; when all are gone, recv() answers None.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let mut backoff = MIN_BACKOFF;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(connection) => {
                backoff = MIN_BACKOFF;
                connection
            }
            Err(error) if is_per_connection(&error) => continue,
            Err(error) => {
                // Out of descriptors (or memory): free one by closing the quietest
                // unauthenticated connection, and wait before trying again rather than spin.
                if error.raw_os_error().is_some_and(is_fd_exhaustion) {
                    budget.counters.fd_exhausted.fetch_add(1, Ordering::Relaxed);
                    budget.evict_quietest();
                }
                tracing::warn!("accept failed: {error}; retrying in {backoff:?}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let Some(slot) = budget.admit(peer.ip()) else {
            // Every slot is held by authenticated connections: close at once, queue nothing.
            tracing::debug!(%peer, "connection shed: no room");
            drop(tcp);
            continue;
        };
        // Heartbeats are small request/response pairs; Nagle would only add latency.
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            peer,
            slot,
            app: app.clone(),
            limits: budget.limits().clone(),
            stopping: stopping.clone(),
            _open: open.clone(),
        };
        tokio::spawn(connection.run(tcp, acceptor.clone()));
    }
    // Stop accepting at once; the connections finish what they are doing.
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    let grace = budget.limits().shutdown_grace;
    if tokio::time::timeout(grace, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {grace:?} of shutdown; closing them");
    }
}

/// Errors about one connection that already went away: accept the next at once.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

/// EMFILE (this process) or ENFILE (the whole system).
fn is_fd_exhaustion(errno: i32) -> bool {
    errno == nix::errno::Errno::EMFILE as i32 || errno == nix::errno::Errno::ENFILE as i32
}

struct Connection {
    peer: SocketAddr,
    slot: Slot,
    app: Router,
    limits: EdgeConfig,
    stopping: watch::Receiver<bool>,
    _open: mpsc::Sender<()>,
}

impl Connection {
    async fn run(self, tcp: TcpStream, acceptor: Option<TlsAcceptor>) {
        let peer = self.peer;
        let serve = async {
            match acceptor {
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        self.limits.handshake_timeout,
                        handshake(&acceptor, tcp, peer),
                    );
                    match handshake.await {
                        Ok(Some(stream)) => {
                            // Read once per connection; rustls verified the chain already.
                            let cert =
                                ClientCert::from_chain(stream.get_ref().1.peer_certificates());
                            self.http(stream, cert).await;
                        }
                        Ok(None) => {}
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => self.http(tcp, ClientCert::Absent).await,
            }
        };
        tokio::select! {
            () = serve => {}
            () = self.slot.evicted() => {
                tracing::debug!(%peer, "unauthenticated connection closed to make room");
            }
        }
    }

    /// HTTP/1.1 on an established stream until the client closes, a deadline passes, or the
    /// server shuts down.
    async fn http<IO>(&self, io: IO, cert: ClientCert)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let slot = self.slot.handle();
        let stall = self.limits.stall_timeout;
        let service = self
            .app
            .clone()
            .map_request(move |request: hyper::Request<Incoming>| {
                tag_request(request, &slot, &cert, stall)
            });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(true);
        let io = TokioIo::new(WriteStall::new(io, stall));
        let connection = builder.serve_connection(io, TowerToHyperService::new(service));
        tokio::pin!(connection);
        let mut stopping = self.stopping.clone();
        let peer = self.peer;
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, "connection ended: {error}");
                }
            }
            // The guard `wait_for` returns is not Send: drop it before awaiting again.
            stop = async { stopping.wait_for(|stop| *stop).await.is_ok() } => {
                let _ = stop;
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}

/// What every request carries from its connection: the client certificate, the budget slot,
/// and a body that fails if the client stalls.
fn tag_request(
    request: hyper::Request<Incoming>,
    slot: &ConnectionSlot,
    cert: &ClientCert,
    stall: Duration,
) -> axum::http::Request<Body> {
    slot.touch();
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(cert.clone()));
    parts.extensions.insert(slot.clone());
    axum::http::Request::from_parts(parts, Body::new(StallGuard::new(body, stall)))
}

/// A request body that fails when no frame arrives for `limit`: a client trickling a body
/// would otherwise hold its connection (and a handler) for as long as it likes.
struct StallGuard {
    inner: Incoming,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallGuard {
    fn new(inner: Incoming, limit: Duration) -> StallGuard {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }
}

impl HttpBody for StallGuard {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.stalled = None;
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let limit = this.limit;
                let timer = this
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                        "the request body stalled for {limit:?}"
                    )
                    .into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A stream whose writes fail once they have been blocked for `limit`: a client that stops
/// reading our answers would otherwise hold its connection forever.
struct WriteStall<IO> {
    io: IO,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> WriteStall<IO> {
    fn new(io: IO, limit: Duration) -> Self {
        WriteStall {
            io,
            limit,
            stalled: None,
        }
    }

    fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        poll: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Pending => self.blocked(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteStall<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteStall<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progress(poll, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.progress(poll, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_shutdown(cx);
        this.progress(poll, cx)
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
