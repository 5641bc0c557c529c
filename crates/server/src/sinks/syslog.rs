//! Syslog over TLS: RFC 5424 messages, octet-counted (RFC 5425), what every SIEM ingests.
//!
//! RFC 5425 has no acknowledgements: a write that TCP accepted may still die in a receiver that
//! stops before reading it. Two checks narrow that window: before each batch the connection is
//! probed for an end-of-stream (a receiver that went away since the last batch closed it, and
//! writing into that socket would "succeed"), and a write error drops the connection so the
//! whole batch is sent again on a new one. What remains, a receiver killed between taking the
//! bytes into its socket buffer and reading them, only a protocol with acknowledgements (RELP,
//! Kafka) closes; docs/alerts.md says so.

use super::{SinkError, query_pairs};
use ringfence_store::OutboxItem;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Debug, Clone, PartialEq)]
pub struct SyslogConfig {
    pub host: String,
    pub port: u16,
    /// The CA that signed the receiver's certificate (PEM).
    pub ca: PathBuf,
    /// The name the receiver's certificate must carry; the host by default.
    pub server_name: String,
}

impl SyslogConfig {
    /// `HOST:PORT?ca=FILE[&server-name=NAME]`.
    pub(super) fn parse(rest: &str) -> Result<SyslogConfig, String> {
        let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, port) = address
            .rsplit_once(':')
            .ok_or("syslog+tls needs HOST:PORT (6514 is the registered port)")?;
        let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
        let mut ca = None;
        let mut server_name = None;
        for (key, value) in query_pairs(query) {
            match key {
                "ca" => ca = Some(PathBuf::from(value)),
                "server-name" => server_name = Some(value.to_owned()),
                other => return Err(format!("unknown parameter {other:?}: ca, server-name")),
            }
        }
        let ca =
            ca.ok_or("syslog+tls needs ?ca=FILE: the CA that signed the receiver's certificate")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(SyslogConfig {
            server_name: server_name.unwrap_or_else(|| host.clone()),
            host,
            port,
            ca,
        })
    }
}

pub struct Syslog {
    config: SyslogConfig,
    stream: Option<TlsStream<TcpStream>>,
    /// Reused between batches; the frames of one batch go out in one write.
    buffer: Vec<u8>,
}

impl Syslog {
    pub fn new(config: SyslogConfig) -> Syslog {
        Syslog {
            config,
            stream: None,
            buffer: Vec::new(),
        }
    }

    pub fn reset(&mut self) {
        self.stream = None;
    }

    async fn connect(&self) -> Result<TlsStream<TcpStream>, SinkError> {
        let pem = std::fs::read(&self.config.ca).map_err(|e| SinkError::Ca {
            path: self.config.ca.clone(),
            reason: e.to_string(),
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| SinkError::Ca {
                path: self.config.ca.clone(),
                reason: e.to_string(),
            })?;
            roots.add(cert).map_err(|e| SinkError::Ca {
                path: self.config.ca.clone(),
                reason: e.to_string(),
            })?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = ServerName::try_from(self.config.server_name.clone())
            .map_err(|e| SinkError::Tls(e.to_string()))?;
        let address = format!("{}:{}", self.config.host, self.config.port);
        let tcp = TcpStream::connect(&address)
            .await
            .map_err(|source| SinkError::Connect { address, source })?;
        tcp.set_nodelay(true)?;
        TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| SinkError::Tls(e.to_string()))
    }

    pub async fn send(&mut self, batch: &[OutboxItem]) -> Result<(), SinkError> {
        if let Some(stream) = &mut self.stream
            && !still_open(stream)
        {
            tracing::info!("the syslog receiver closed the connection; reconnecting");
            self.stream = None;
        }
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => self.connect().await?,
        };
        self.buffer.clear();
        for item in batch {
            frame(item, &mut self.buffer);
        }
        stream.write_all(&self.buffer).await?;
        stream.flush().await?;
        self.stream = Some(stream);
        Ok(())
    }
}

/// False when the receiver has closed its end: writing there would vanish.
///
/// Reads through TLS, without waiting, whatever the receiver sent since the last batch. A
/// receiver sends no syslog data, but a TLS 1.3 server sends session tickets after the
/// handshake: those must be taken by TLS, not mistaken for a closed connection. Leaving them
/// unread would also make the eventual close a reset, and a reset makes the receiver's kernel
/// discard the last batch it had not read yet.
fn still_open(stream: &mut TlsStream<TcpStream>) -> bool {
    use std::task::{Context, Poll, Waker};
    use tokio::io::{AsyncRead, ReadBuf};
    let mut context = Context::from_waker(Waker::noop());
    let mut scratch = [0u8; 256];
    loop {
        let mut buffer = ReadBuf::new(&mut scratch);
        match std::pin::Pin::new(&mut *stream).poll_read(&mut context, &mut buffer) {
            Poll::Pending => return true,
            // End of stream: the receiver closed (with or without a TLS close_notify).
            Poll::Ready(Ok(())) if buffer.filled().is_empty() => return false,
            // Data from a receiver that should send none: dropped, the connection still works.
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return false,
        }
    }
}

/// Appends one octet-counted RFC 5424 message: `LEN SP <PRI>1 TIMESTAMP HOST APP - MSGID [SD] MSG`.
pub fn frame(item: &OutboxItem, out: &mut Vec<u8>) {
    let event = super::event(item);
    let severity = syslog_severity(event["severity_id"].as_u64().unwrap_or(0));
    // Facility 13, "log audit": what a security product's findings are.
    let pri = 13 * 8 + severity;
    let message = format!(
        "<{pri}>1 {} {} ringfence - alert [ringfence@32473 eventId=\"{}\" agent=\"{}\"] {}",
        rfc3339(item.received_at),
        header_field(&item.agent_id),
        sd_escape(&item.report_id),
        sd_escape(&item.agent_id),
        event
    );
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// OCSF `severity_id` to syslog severity: critical and fatal are `crit`/`alert`, unknown is
/// `notice`.
fn syslog_severity(ocsf: u64) -> u64 {
    match ocsf {
        1 => 6,
        2 => 5,
        3 => 4,
        4 => 3,
        5 => 2,
        6 => 1,
        _ => 5,
    }
}

/// A header field is printable ASCII without spaces, at most 255 bytes, or `-`.
fn header_field(value: &str) -> String {
    let field: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// RFC 5424 §6.3.3: `"`, `\` and `]` are escaped in parameter values.
fn sd_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `2026-12-04T12:00:00.123Z` from Unix milliseconds (the civil calendar from days, Howard
/// Hinnant's algorithm), so no date crate is needed for one format.
fn rfc3339(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_385_600_123), "2026-12-04T12:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    /// A receiver on loopback with the server's own generated TLS identity (TLS 1.3 there
    /// sends session tickets after each handshake, as rustls and GnuTLS do) that counts
    /// connections and the bytes it read; a connection is closed by the receiver after
    /// `close_after` bytes when set.
    struct Receiver {
        port: u16,
        ca: PathBuf,
        _dir: tempfile::TempDir,
        connections: Arc<std::sync::atomic::AtomicUsize>,
        bytes: Arc<std::sync::atomic::AtomicUsize>,
    }

    async fn receiver(close_after: Option<usize>) -> Receiver {
        use std::sync::atomic::Ordering;
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().expect("tls dir");
        let tls = crate::tls::TlsMaterial::generated(dir.path(), &[]).expect("tls identity");
        let ca = tls.ca_path.expect("a generated CA");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let bytes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (counted, read) = (Arc::clone(&connections), Arc::clone(&bytes));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let (acceptor, read) = (acceptor.clone(), Arc::clone(&read));
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buffer = [0u8; 4096];
                    let mut taken = 0;
                    while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                        read.fetch_add(n, Ordering::SeqCst);
                        taken += n;
                        if close_after.is_some_and(|limit| taken >= limit) {
                            break;
                        }
                    }
                });
            }
        });
        Receiver {
            port,
            ca,
            _dir: dir,
            connections,
            bytes,
        }
    }

    fn client(receiver: &Receiver) -> Syslog {
        Syslog::new(SyslogConfig {
            host: "127.0.0.1".into(),
            port: receiver.port,
            ca: receiver.ca.clone(),
            server_name: "127.0.0.1".into(),
        })
    }

    fn batch(from: i64, count: i64) -> (Vec<OutboxItem>, usize) {
        let items: Vec<OutboxItem> = (from..from + count)
            .map(|seq| OutboxItem {
                seq,
                report_id: format!("a:{seq}"),
                agent_id: "a".into(),
                received_at: 0,
                body: serde_json::json!({"severity_id": 4}),
            })
            .collect();
        let mut framed = Vec::new();
        for item in &items {
            frame(item, &mut framed);
        }
        (items, framed.len())
    }

    async fn wait_for(counter: &std::sync::atomic::AtomicUsize, want: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while counter.load(std::sync::atomic::Ordering::SeqCst) < want {
            assert!(std::time::Instant::now() < deadline, "waited for {want}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn session_tickets_are_not_taken_for_a_closed_receiver() {
        let receiver = receiver(None).await;
        let mut syslog = client(&receiver);
        let mut sent = 0;
        for round in 0..5 {
            let (items, bytes) = batch(round * 10, 10);
            syslog.send(&items).await.expect("send");
            sent += bytes;
            // The tickets have arrived by the time the receiver read the batch.
            wait_for(&receiver.bytes, sent).await;
        }
        assert_eq!(
            receiver
                .connections
                .load(std::sync::atomic::Ordering::SeqCst),
            1,
            "one connection for every batch"
        );
    }

    #[tokio::test]
    async fn a_receiver_that_closed_is_noticed_before_the_next_batch() {
        let (first, first_bytes) = batch(0, 10);
        let receiver = receiver(Some(first_bytes)).await;
        let mut syslog = client(&receiver);
        syslog.send(&first).await.expect("first batch");
        wait_for(&receiver.bytes, first_bytes).await;
        // The receiver has closed its end; the next batch must go on a new connection rather
        // than into the dead one (where the write would "succeed").
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (second, second_bytes) = batch(10, 10);
        syslog.send(&second).await.expect("second batch");
        wait_for(&receiver.bytes, first_bytes + second_bytes).await;
        assert_eq!(
            receiver
                .connections
                .load(std::sync::atomic::Ordering::SeqCst),
            2
        );
    }

    #[test]
    fn frames_are_octet_counted_rfc5424() {
        let item = OutboxItem {
            seq: 1,
            report_id: "a:\"1]".into(),
            agent_id: "a".into(),
            received_at: 0,
            body: serde_json::json!({"severity_id": 4, "message": "héllo"}),
        };
        let mut out = Vec::new();
        frame(&item, &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        let (len, message) = text.split_once(' ').expect("length");
        assert_eq!(len.parse::<usize>().expect("number"), message.len());
        assert!(
            message.starts_with(
                "<107>1 1970-01-01T00:00:00.000Z a ringfence - alert [ringfence@32473 eventId=\"a:\\\"1\\]\" agent=\"a\"] {"
            ),
            "{message}"
        );
    }
}
