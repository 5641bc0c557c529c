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
        if let Some(stream) = &self.stream
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

/// False when the receiver has closed its end (or sent anything, which a syslog receiver never
/// does but a TLS alert would): writing there would vanish.
fn still_open(stream: &TlsStream<TcpStream>) -> bool {
    let mut byte = [0u8; 1];
    match stream.get_ref().0.try_read(&mut byte) {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        Ok(_) => false,
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
