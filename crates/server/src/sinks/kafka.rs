//! Kafka sink through `rskafka` (pure Rust: no librdkafka C build in the server's build).
//!
//! The record key is the agent id, and the partition is chosen from it, so one host's alerts
//! land in one partition in the order the outbox holds them. A batch counts as sent only when
//! the broker acknowledged every record of it.
//!
//! rskafka has no idempotent producer: a produce that the broker wrote but whose answer was lost
//! is sent again, and the topic holds the alert twice. Both copies carry the same event id
//! (`metadata.uid`, and the `ringfence-event-id` header), which is how consumers drop it.

use super::{SinkError, query_pairs};
use ringfence_store::OutboxItem;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `HOST:PORT`.
    pub brokers: Vec<String>,
    pub topic: String,
    /// TLS to the brokers, trusting this CA (PEM); plaintext when absent.
    pub ca: Option<PathBuf>,
    /// SASL/PLAIN user, with the password read from `sasl_password_file`.
    pub sasl_user: Option<String>,
    pub sasl_password_file: Option<PathBuf>,
}

impl KafkaConfig {
    /// `HOST:PORT[,HOST:PORT...]/TOPIC[?ca=FILE&sasl-user=USER&sasl-password-file=FILE]`.
    pub(super) fn parse(rest: &str) -> Result<KafkaConfig, String> {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (brokers, topic) = path
            .split_once('/')
            .ok_or("kafka needs a topic: kafka://HOST:PORT/TOPIC")?;
        if topic.is_empty() || topic.contains('/') {
            return Err("kafka needs one topic: kafka://HOST:PORT/TOPIC".to_owned());
        }
        let brokers: Vec<String> = brokers
            .split(',')
            .filter(|b| !b.is_empty())
            .map(str::to_owned)
            .collect();
        if brokers.is_empty() || brokers.iter().any(|b| !b.contains(':')) {
            return Err("kafka brokers are HOST:PORT, separated by commas".to_owned());
        }
        let mut config = KafkaConfig {
            brokers,
            topic: topic.to_owned(),
            ca: None,
            sasl_user: None,
            sasl_password_file: None,
        };
        for (key, value) in query_pairs(query) {
            match key {
                "ca" => config.ca = Some(PathBuf::from(value)),
                "sasl-user" => config.sasl_user = Some(value.to_owned()),
                "sasl-password-file" => config.sasl_password_file = Some(PathBuf::from(value)),
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: ca, sasl-user, sasl-password-file"
                    ));
                }
            }
        }
        if config.sasl_user.is_some() != config.sasl_password_file.is_some() {
            return Err("sasl-user and sasl-password-file go together".to_owned());
        }
        Ok(config)
    }
}

pub struct Kafka {
    config: KafkaConfig,
    client: Option<Client>,
    partitions: HashMap<i32, PartitionClient>,
    /// The topic's partition count, read once per connection.
    partition_count: i32,
}

impl Kafka {
    pub fn new(config: KafkaConfig) -> Kafka {
        Kafka {
            config,
            client: None,
            partitions: HashMap::new(),
            partition_count: 0,
        }
    }

    pub fn reset(&mut self) {
        self.client = None;
        self.partitions.clear();
        self.partition_count = 0;
    }

    async fn connect(&mut self) -> Result<(), SinkError> {
        let kafka = |e: rskafka::client::error::Error| SinkError::Kafka(e.to_string());
        let mut builder = ClientBuilder::new(self.config.brokers.clone())
            .client_id("ringfence-server")
            // The forwarder owns retries (with its own backoff and the outbox cursor); rskafka's
            // would otherwise retry for minutes inside one attempt.
            .backoff_config(rskafka::BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
                deadline: Some(Duration::from_secs(5)),
            });
        if let Some(ca) = &self.config.ca {
            builder = builder.tls_config(Arc::new(tls_config(ca)?));
        }
        if let (Some(username), Some(file)) =
            (&self.config.sasl_user, &self.config.sasl_password_file)
        {
            let password = std::fs::read_to_string(file).map_err(|e| {
                SinkError::Kafka(format!("SASL password file {}: {e}", file.display()))
            })?;
            builder = builder.sasl_config(SaslConfig::Plain(Credentials {
                username: username.clone(),
                password: password.trim_end().to_owned(),
            }));
        }
        let client = builder.build().await.map_err(kafka)?;
        let topics = client.list_topics().await.map_err(kafka)?;
        let count = topics
            .iter()
            .find(|t| t.name == self.config.topic)
            .map_or(0, |t| t.partitions.len());
        if count == 0 {
            return Err(SinkError::Kafka(format!(
                "topic {:?} does not exist on the brokers",
                self.config.topic
            )));
        }
        self.partition_count = i32::try_from(count).unwrap_or(i32::MAX);
        self.client = Some(client);
        Ok(())
    }

    pub async fn send(&mut self, batch: &[OutboxItem]) -> Result<(), SinkError> {
        if self.client.is_none() {
            self.connect().await?;
        }
        let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for item in batch {
            let partition = partition_of(&item.agent_id, self.partition_count);
            by_partition
                .entry(partition)
                .or_default()
                .push(record(item));
        }
        for (partition, records) in by_partition {
            if !self.partitions.contains_key(&partition) {
                let Some(client) = &self.client else {
                    return Err(SinkError::Kafka("not connected".to_owned()));
                };
                let partition_client = client
                    .partition_client(
                        self.config.topic.clone(),
                        partition,
                        UnknownTopicHandling::Error,
                    )
                    .await
                    .map_err(|e| SinkError::Kafka(e.to_string()))?;
                self.partitions.insert(partition, partition_client);
            }
            if let Some(client) = self.partitions.get(&partition) {
                client
                    .produce(records, Compression::NoCompression)
                    .await
                    .map_err(|e| SinkError::Kafka(e.to_string()))?;
            }
        }
        Ok(())
    }
}

fn tls_config(ca: &PathBuf) -> Result<rustls::ClientConfig, SinkError> {
    let bad = |reason: String| SinkError::Ca {
        path: ca.clone(),
        reason,
    };
    let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SinkError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// The record for one alert: key = agent id, value = the OCSF JSON, the event id as a header.
fn record(item: &OutboxItem) -> Record {
    let mut headers = BTreeMap::new();
    headers.insert(
        "ringfence-event-id".to_owned(),
        item.report_id.clone().into_bytes(),
    );
    Record {
        key: Some(item.agent_id.clone().into_bytes()),
        value: Some(super::event(item).to_string().into_bytes()),
        headers,
        timestamp: rskafka::chrono::DateTime::from_timestamp_millis(item.received_at)
            .unwrap_or_default(),
    }
}

/// The partition for an agent: FNV-1a of its id, so it never changes between servers or
/// restarts (std's hasher is seeded per process).
pub fn partition_of(agent_id: &str, partitions: i32) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in agent_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let partitions = u64::try_from(partitions.max(1)).unwrap_or(1);
    i32::try_from(hash % partitions).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent_always_lands_in_one_partition() {
        assert_eq!(partition_of("agent-1", 8), partition_of("agent-1", 8));
        assert!((0..8).contains(&partition_of("agent-2", 8)));
        assert_eq!(partition_of("x", 1), 0);
        assert_eq!(partition_of("x", 0), 0);
        let spread: std::collections::BTreeSet<i32> = (0..100)
            .map(|n| partition_of(&format!("agent-{n}"), 4))
            .collect();
        assert_eq!(spread.len(), 4);
    }

    #[test]
    fn options_parse() {
        let config =
            KafkaConfig::parse("b:9093/alerts?ca=/ca.pem&sasl-user=rf&sasl-password-file=/pw")
                .expect("parse");
        assert_eq!(config.ca, Some(PathBuf::from("/ca.pem")));
        assert_eq!(config.sasl_user.as_deref(), Some("rf"));
        assert!(KafkaConfig::parse("b:9093/alerts?sasl-user=rf").is_err());
    }
}
