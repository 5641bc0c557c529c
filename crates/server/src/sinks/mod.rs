//! Alert sinks: the server forwards the alerts agents upload (OCSF, as the agents write them) to
//! where a security team already looks: syslog over TLS (RFC 5424 framed as RFC 5425) and
//! Kafka.
//!
//! Between the upload and a sink sits the store's outbox (`ringfence_store::outbox`): the upload
//! is acknowledged once its alerts are committed there. One forwarder task per sink reads the
//! outbox behind that sink's cursor, sends a batch, and moves the cursor only after the sink took
//! it; a failure keeps the cursor and waits with backoff, so an outage of minutes loses nothing
//! and catches up in order. Delivery is at least once: a resent alert carries the same event id
//! (`metadata.uid`), so consumers can drop the copy.
//!
//! Several replicas on one PostgreSQL run a forwarder per sink each, but only the holder of the
//! sink's lease (`sink:<name>` in the leases table) sends; a replica that dies mid-batch stops
//! renewing, its lease lapses, and another resends from the cursor.

mod forwarder;
pub mod kafka;
pub mod syslog;

pub use forwarder::{spawn, wake_all};

use ringfence_store::OutboxItem;
use std::path::PathBuf;
use std::time::Duration;

/// One configured sink: `NAME=URL` on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Names the sink in metrics, the API and its cursor; letters, digits, `-` and `_`.
    pub name: String,
    pub kind: SinkKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    Syslog(syslog::SyslogConfig),
    Kafka(kafka::KafkaConfig),
}

/// How the outbox and the forwarders behave; the same for every sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSettings {
    pub sinks: Vec<SinkConfig>,
    /// The most alerts the outbox holds; past it the oldest are dropped, counted and alerted.
    pub outbox_max: i64,
    /// The most alerts sent in one batch.
    pub batch: i64,
    /// How long a sink may take to accept a batch before the attempt counts as failed.
    pub send_timeout: Duration,
}

impl Default for SinkSettings {
    fn default() -> Self {
        SinkSettings {
            sinks: Vec::new(),
            outbox_max: 1_000_000,
            batch: 1_000,
            send_timeout: Duration::from_secs(10),
        }
    }
}

impl SinkSettings {
    /// The outbox policy, or `None` when no sink is configured: then nothing is queued.
    pub fn outbox(&self) -> Option<ringfence_store::OutboxPolicy> {
        (!self.sinks.is_empty()).then_some(ringfence_store::OutboxPolicy {
            max_rows: self.outbox_max,
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.sinks.iter().map(|s| s.name.clone()).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkSpecError {
    #[error(
        "{0:?}: a sink is NAME=URL, e.g. siem=syslog+tls://siem.example:6514?ca=/etc/ssl/siem-ca.pem"
    )]
    Shape(String),
    #[error("{0:?}: a sink name has letters, digits, '-' and '_' only")]
    Name(String),
    #[error("{url:?}: {reason}")]
    Url { url: String, reason: String },
}

/// Why a batch did not reach a sink. The alerts stay in the outbox and are sent again.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("send: {0}")]
    Send(#[from] std::io::Error),
    #[error("CA file {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("the sink did not take the batch within {0:?}")]
    Timeout(Duration),
}

impl SinkConfig {
    /// Parses `NAME=URL`. URLs: `syslog+tls://HOST:PORT?ca=FILE[&server-name=NAME]` and
    /// `kafka://HOST:PORT[,HOST:PORT...]/TOPIC`.
    pub fn parse(spec: &str) -> Result<SinkConfig, SinkSpecError> {
        let (name, url) = spec
            .split_once('=')
            .ok_or_else(|| SinkSpecError::Shape(spec.to_owned()))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(SinkSpecError::Name(name.to_owned()));
        }
        let bad = |reason: &str| SinkSpecError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let kind = if let Some(rest) = url.strip_prefix("syslog+tls://") {
            SinkKind::Syslog(syslog::SyslogConfig::parse(rest).map_err(|r| bad(&r))?)
        } else if let Some(rest) = url.strip_prefix("kafka://") {
            SinkKind::Kafka(kafka::KafkaConfig::parse(rest).map_err(|r| bad(&r))?)
        } else {
            return Err(bad(
                "unknown scheme: use syslog+tls://HOST:PORT?ca=FILE or kafka://HOST:PORT/TOPIC",
            ));
        };
        Ok(SinkConfig {
            name: name.to_owned(),
            kind,
        })
    }
}

/// Splits `a=1&b=2` into pairs; no percent-decoding (paths and names need none here).
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The OCSF object a sink receives: the agent's, with the event id (stable across resends) in
/// `metadata.uid` and the agent in `unmapped.ringfence.agent_id`.
pub fn event(item: &OutboxItem) -> serde_json::Value {
    let mut body = match &item.body {
        serde_json::Value::Object(_) => item.body.clone(),
        other => serde_json::json!({ "raw": other }),
    };
    if let Some(object) = body.as_object_mut() {
        let metadata = object
            .entry("metadata")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert("uid".into(), item.report_id.clone().into());
        }
        let unmapped = object
            .entry("unmapped")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(unmapped) = unmapped.as_object_mut() {
            let ringfence = unmapped
                .entry("ringfence")
                .or_insert_with(|| serde_json::json!({}));
            if let Some(ringfence) = ringfence.as_object_mut() {
                ringfence.insert("agent_id".into(), item.agent_id.clone().into());
                ringfence.insert("received_at_ms".into(), item.received_at.into());
            }
        }
    }
    body
}

/// A full outbox dropped `dropped` alerts that some sink had not sent: count it, log it, and
/// raise an alert about it that travels the same way (stored, listed, forwarded), so the loss is
/// seen where the alerts are read.
pub async fn outbox_overflowed(state: &crate::AppState, dropped: u64) {
    use std::sync::atomic::Ordering;
    state
        .metrics
        .outbox_dropped
        .fetch_add(dropped, Ordering::Relaxed);
    tracing::error!(
        dropped,
        max = state.config.sinks.outbox_max,
        "the alert outbox is full: dropped the oldest alerts before every sink had them"
    );
    let now = ringfence_store::now_ms();
    let message = format!(
        "alert outbox full ({} alerts): {dropped} alerts dropped before reaching every sink",
        state.config.sinks.outbox_max
    );
    let alert = ringfence_store::ReportRecord {
        id: format!("server:{}:outbox-overflow:{now}", state.replica),
        agent_id: "server".to_owned(),
        kind: ringfence_protocol::report::ReportKind::Alert
            .as_str()
            .to_owned(),
        at: now,
        received_at: now,
        body: serde_json::json!({
            "class_uid": 6003,
            "class_name": "API Activity",
            "category_uid": 6,
            "category_name": "Application Activity",
            "time": now,
            "severity_id": 4,
            "severity": "High",
            "message": message,
            "unmapped": {"ringfence": {"rule": "outbox-overflow", "dropped": dropped}},
        }),
    };
    // The alert about dropping may itself push one more out; it is not dropped in a loop.
    match state
        .store
        .insert_reports_queued(std::slice::from_ref(&alert), state.config.sinks.outbox())
        .await
    {
        Ok(_) => wake_all(state),
        Err(error) => tracing::warn!("could not record the outbox overflow alert: {error}"),
    }
}

/// A connected (or connectable) sink.
pub(crate) enum Client {
    // Boxed: the TLS stream is large, and the enum lives in each forwarder's loop.
    Syslog(Box<syslog::Syslog>),
    Kafka(kafka::Kafka),
}

impl Client {
    pub(crate) fn new(config: &SinkConfig) -> Client {
        match &config.kind {
            SinkKind::Syslog(c) => Client::Syslog(Box::new(syslog::Syslog::new(c.clone()))),
            SinkKind::Kafka(c) => Client::Kafka(kafka::Kafka::new(c.clone())),
        }
    }

    /// Sends `batch` in order; `Ok` only once the sink has all of it.
    pub(crate) async fn send(&mut self, batch: &[OutboxItem]) -> Result<(), SinkError> {
        match self {
            Client::Syslog(s) => s.send(batch).await,
            Client::Kafka(k) => k.send(batch).await,
        }
    }

    /// Forgets the connection after a failure, so the next attempt starts clean.
    pub(crate) fn reset(&mut self) {
        match self {
            Client::Syslog(s) => s.reset(),
            Client::Kafka(k) => k.reset(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_specs_parse_or_say_why_not() {
        let syslog =
            SinkConfig::parse("siem=syslog+tls://127.0.0.1:6514?ca=/tmp/ca.pem").expect("syslog");
        assert_eq!(syslog.name, "siem");
        let SinkKind::Syslog(config) = syslog.kind else {
            panic!("syslog expected");
        };
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.1", 6514));
        let kafka = SinkConfig::parse("lake=kafka://b1:9092,b2:9092/alerts").expect("kafka");
        let SinkKind::Kafka(config) = kafka.kind else {
            panic!("kafka expected");
        };
        assert_eq!(config.brokers, ["b1:9092", "b2:9092"]);
        assert_eq!(config.topic, "alerts");
        for bad in [
            "no-equals",
            "bad name=kafka://b:1/t",
            "x=http://a",
            "x=syslog+tls://host",
            "x=syslog+tls://host:6514",
            "x=kafka://b:9092",
        ] {
            assert!(SinkConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_event_id_is_the_report_id_on_every_send() {
        let item = OutboxItem {
            seq: 7,
            report_id: "agent-1:42".into(),
            agent_id: "agent-1".into(),
            received_at: 5,
            body: serde_json::json!({"class_uid": 1007, "metadata": {"version": "1.1.0"}}),
        };
        let event = event(&item);
        assert_eq!(event["metadata"]["uid"], "agent-1:42");
        assert_eq!(event["metadata"]["version"], "1.1.0");
        assert_eq!(event["unmapped"]["ringfence"]["agent_id"], "agent-1");
        assert_eq!(event, super::event(&item));
    }
}
