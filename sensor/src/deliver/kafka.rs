//! The Kafka sink: records produced with librdkafka's idempotent producer.
//!
//! Each record becomes one Kafka message on [`KafkaCfg::topic`]: the value is the
//! formatted event, the key is the sensor's host name (so that one host's events
//! land on one partition and stay in order there), and the headers `event_id` and
//! `event_type` let consumers route and de-duplicate without parsing the JSON.
//!
//! # Delivery semantics
//!
//! The producer always runs with `acks=all` and `enable.idempotence=true`:
//! a message is acknowledged only once every in-sync replica has it, and the
//! retries librdkafka makes by itself (lost responses, leader changes, reconnects)
//! are de-duplicated by the broker and keep their order, so *within one producer
//! session* each message is written to its partition exactly once and in order.
//!
//! [`Transport::deliver`] enqueues a batch and waits for a delivery report for
//! every message; it returns `Ok` only when all of them were acknowledged. When
//! any of them failed (broker down past `message_timeout_ms`, …) the whole batch
//! is reported failed and the worker sends it again later. Those resent records
//! are new messages to the broker, so records of the batch that had in fact been
//! written are written twice; a sensor restart (a new producer session, resending
//! its spool) has the same effect. Across retries of a batch and across restarts
//! delivery is therefore **at least once**: consumers de-duplicate on the
//! `event_id` header. Per host the *first* copy of each event still arrives in
//! order, since the idempotent producer never leaves gaps within a partition.

use std::{
    collections::BTreeMap,
    sync::{Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, ClientContext,
    error::{KafkaError, RDKafkaErrorCode},
    message::{DeliveryResult, Header, OwnedHeaders},
    producer::{BaseRecord, Producer as _, ProducerContext, PurgeConfig, ThreadedProducer},
};
use serde::{Deserialize, Serialize};

use super::{DeliveryError, Record, Transport};

/// How a Kafka sink connects and what it produces (`[[sinks]] type = "kafka"`).
///
/// ```toml
/// brokers = "kafka1:9092,kafka2:9092"   # required
/// topic = "telltale-events"             # default
/// compression = "lz4"                   # none | gzip | snappy | lz4 | zstd
/// message_timeout_ms = 30000            # default
/// [extra]                               # further librdkafka properties
/// "security.protocol" = "sasl_ssl"
/// "sasl.mechanism" = "SCRAM-SHA-512"
/// ```
///
/// `acks` is not configurable: it is always `all`, with the idempotent producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaCfg {
    /// Bootstrap brokers, `host:port,host:port` (required).
    pub brokers: String,
    /// The topic every record goes to. Default `telltale-events`.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Compression of message batches. Default `lz4`.
    #[serde(default)]
    pub compression: Compression,
    /// How long librdkafka keeps trying to deliver a message (reconnecting,
    /// retrying) before reporting it failed; a [`Transport::deliver`] call
    /// returns within about this time. Default 30000.
    #[serde(default = "default_message_timeout_ms")]
    pub message_timeout_ms: u32,
    /// Further librdkafka producer properties, passed as they are: TLS and SASL
    /// (`security.protocol`, `ssl.ca.location`, `sasl.username`, …), `client.id`,
    /// `linger.ms`. Properties that would break the delivery guarantees
    /// (`enable.idempotence`, `acks`, `transactional.id`, …) or that duplicate
    /// the fields above are refused. Default empty.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

fn default_topic() -> String {
    "telltale-events".to_owned()
}

fn default_message_timeout_ms() -> u32 {
    30_000
}

impl KafkaCfg {
    /// A configuration with the defaults for `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: default_topic(),
            compression: Compression::default(),
            message_timeout_ms: default_message_timeout_ms(),
            extra: BTreeMap::new(),
        }
    }

    /// Checks the configuration without connecting.
    pub fn validate(&self) -> Result<(), String> {
        let brokers = &self.brokers;
        if brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err("kafka: `brokers` is empty (want host:port,host:port)".to_owned());
        }
        for broker in brokers.split(',').map(str::trim) {
            if !valid_broker(broker) {
                return Err(format!(
                    "kafka {brokers}: broker `{broker}` is not host:port"
                ));
            }
        }
        if !valid_topic(&self.topic) {
            return Err(format!(
                "kafka {brokers}: topic `{}` is not a Kafka topic name (1-249 of [a-zA-Z0-9._-])",
                self.topic
            ));
        }
        if self.message_timeout_ms == 0 || self.message_timeout_ms > i32::MAX as u32 {
            return Err(format!(
                "kafka {brokers}: message_timeout_ms must be 1..={}",
                i32::MAX
            ));
        }
        for (key, value) in &self.extra {
            if let Some(why) = refused_property(key, value) {
                return Err(format!(
                    "kafka {brokers}: extra property `{key}` is refused: {why}"
                ));
            }
        }
        Ok(())
    }
}

/// `host:port` with a numeric port; the host may be a bracketed IPv6 address.
fn valid_broker(broker: &str) -> bool {
    let Some((host, port)) = broker.rsplit_once(':') else {
        return false;
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|h| !h.is_empty())
    } else {
        !host.is_empty() && !host.contains(':') && !host.contains(char::is_whitespace)
    };
    host_ok && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// Kafka's own rule for topic names.
fn valid_topic(topic: &str) -> bool {
    (1..=249).contains(&topic.len())
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why an `extra` property is refused, or `None` when it may be passed on.
fn refused_property(key: &str, value: &str) -> Option<&'static str> {
    // librdkafka property names are lower case; compare the way an operator
    // might have spelt them so `Acks` cannot slip through.
    let key = key.trim().to_ascii_lowercase();
    let why = match key.as_str() {
        "enable.idempotence" => {
            "the producer is always idempotent (ordering, no duplicates from its own retries)"
        }
        "acks" | "request.required.acks" => {
            "acks is always `all`: a record counts as delivered only when every in-sync replica has it"
        }
        "transactional.id" => {
            "the sink does not use transactions; a transactional producer would refuse every message"
        }
        "delivery.report.only.error" => "the sink waits for a delivery report of every message",
        "bootstrap.servers" | "metadata.broker.list" => "set `brokers` instead",
        "compression.type" | "compression.codec" => "set `compression` instead",
        "message.timeout.ms" | "delivery.timeout.ms" => "set `message_timeout_ms` instead",
        // A random partitioner would scatter a host's events over partitions and
        // lose their order; the key-hashing ones are fine.
        "partitioner" if value.trim().eq_ignore_ascii_case("random") => {
            "a random partitioner loses each host's event order"
        }
        _ => return None,
    };
    Some(why)
}

/// Compression codecs; all of them are built into the sensor's librdkafka
/// (gzip with zlib, snappy and lz4 bundled, zstd through zstd-sys).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4: cheap on the sensor's CPU, the default.
    #[default]
    Lz4,
    /// Zstandard: smallest, a little more CPU.
    Zstd,
}

impl Compression {
    /// Every codec.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The name in the configuration and in librdkafka's `compression.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Delivery reports of the batch being delivered, filled from librdkafka's
/// polling thread and waited for by [`KafkaTransport::deliver`].
#[derive(Default)]
struct Reports {
    /// Tags the current batch; reports carrying another one belong to a batch
    /// that was given up (purged after a timeout) and are ignored.
    generation: usize,
    /// Reports still expected for the current batch.
    pending: usize,
    /// Messages of the current batch that failed.
    failed: usize,
    /// The first failure of the current batch.
    first_error: Option<KafkaError>,
}

/// The producer's context: collects delivery reports and the latest client
/// error (for messages that say why a batch timed out).
#[derive(Default)]
struct Context {
    reports: Mutex<Reports>,
    changed: Condvar,
    last_error: Mutex<Option<String>>,
}

impl Context {
    fn reports(&self) -> MutexGuard<'_, Reports> {
        // The guarded data stays consistent even if a holder panicked (plain
        // counters), so a poisoned lock is still usable.
        self.reports.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, generation: usize) {
        let mut reports = self.reports();
        if generation != reports.generation || reports.pending == 0 {
            return;
        }
        reports.pending -= 1;
        if let Err((error, _)) = result {
            reports.failed += 1;
            if reports.first_error.is_none() {
                reports.first_error = Some(error.clone());
            }
        }
        if reports.pending == 0 {
            self.changed.notify_all();
        }
    }
}

/// Produces records to Kafka; see the [module documentation](self) for the
/// delivery semantics.
pub struct KafkaTransport {
    cfg: KafkaCfg,
    /// `None` after a fatal producer error: the instance is unusable, and the next
    /// [`deliver`](Transport::deliver) starts a new producer session.
    producer: Option<ThreadedProducer<Context>>,
}

/// Opens a Kafka sink: checks `cfg` and creates the producer. librdkafka
/// connects in the background, so a broker that is down now is not an error
/// here; deliveries fail (retryably) until it is up.
pub fn open(cfg: &KafkaCfg) -> Result<KafkaTransport, String> {
    cfg.validate()?;
    let producer = create_producer(cfg)?;
    Ok(KafkaTransport {
        cfg: cfg.clone(),
        producer: Some(producer),
    })
}

fn create_producer(cfg: &KafkaCfg) -> Result<ThreadedProducer<Context>, String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cfg.brokers)
        .set("client.id", "telltale");
    // Operator settings first, so that the guarantees below always win (the
    // refused ones were already rejected by validate()).
    for (key, value) in &cfg.extra {
        config.set(key.trim(), value);
    }
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", cfg.compression.as_str())
        .set("message.timeout.ms", cfg.message_timeout_ms.to_string());
    config
        .create_with_context(Context::default())
        .map_err(|e| format!("kafka {}: cannot create the producer: {e}", cfg.brokers))
}

/// Errors retrying the same records cannot fix: the record, the topic or the
/// credentials are refused. Everything else (brokers down, timeouts, leader
/// elections, a topic not created yet) is worth retrying, since the worker keeps
/// the records spooled meanwhile.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidRecord
            | C::InvalidTopic
            | C::InvalidRequiredAcks
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::UnsupportedCompressionType
            | C::UnsupportedForMessageFormat
            | C::PolicyViolation
            | C::Authentication
            | C::SaslAuthenticationFailed
            | C::UnsupportedSASLMechanism
            | C::InvalidArgument
            | C::Fatal
    )
}

impl KafkaTransport {
    fn error(&self, what: impl std::fmt::Display) -> String {
        format!(
            "kafka {} topic {}: {what}",
            self.cfg.brokers, self.cfg.topic
        )
    }

    /// A failed batch: fatal when the producer itself failed fatally (then it
    /// is replaced for the next batch) or when the failure is permanent.
    fn failure(&mut self, failed: usize, total: usize, error: &KafkaError) -> DeliveryError {
        if let Some(fatal) = self.fatal_error() {
            return fatal;
        }
        let message = self.error(format_args!(
            "{failed} of {total} records not delivered: {error}"
        ));
        match error.rdkafka_error_code() {
            Some(code) if is_permanent(code) => DeliveryError::fatal(message),
            _ => DeliveryError::retry(message),
        }
    }

    /// librdkafka's fatal error (the idempotent producer lost its guarantees, e.g.
    /// an out-of-order sequence number), if any: the producer is dropped so that
    /// the next batch starts a new session.
    fn fatal_error(&mut self) -> Option<DeliveryError> {
        let (code, reason) = self.producer.as_ref()?.client().fatal_error()?;
        self.producer = None;
        Some(DeliveryError::fatal(self.error(format_args!(
            "fatal producer error {code:?}: {reason}"
        ))))
    }
}

impl Transport for KafkaTransport {
    fn describe(&self) -> String {
        format!("kafka {} topic {}", self.cfg.brokers, self.cfg.topic)
    }

    fn deliver(&mut self, batch: &[Record]) -> Result<(), DeliveryError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.producer.is_none() {
            let producer = create_producer(&self.cfg).map_err(DeliveryError::fatal)?;
            self.producer = Some(producer);
        }
        let Some(producer) = self.producer.as_ref() else {
            return Err(DeliveryError::fatal(self.error("no producer")));
        };
        let context = producer.context();
        // librdkafka reports every message by message.timeout.ms; the slack
        // covers its timer granularity and the polling thread.
        let deadline = Instant::now()
            + Duration::from_millis(u64::from(self.cfg.message_timeout_ms))
            + Duration::from_secs(5);

        let generation = {
            let mut reports = context.reports();
            reports.generation = reports.generation.wrapping_add(1);
            reports.pending = batch.len();
            reports.failed = 0;
            reports.first_error = None;
            reports.generation
        };

        for (i, record) in batch.iter().enumerate() {
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: "event_id",
                    value: Some(&*record.id),
                })
                .insert(Header {
                    key: "event_type",
                    value: Some(&*record.event_type),
                });
            let mut message = BaseRecord::with_opaque_to(&self.cfg.topic, generation)
                .key(&*record.host)
                .payload(&record.body[..])
                .headers(headers);
            loop {
                match producer.send(message) {
                    Ok(()) => break,
                    // The local queue is full (a backlog of an earlier batch):
                    // wait for the polling thread to drain it.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        message = back;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err((error, _)) => {
                        // Records enqueued before this one may still be sent; they
                        // are duplicates at worst once the batch is retried.
                        context.reports().pending = 0;
                        return Err(self.failure(batch.len() - i, batch.len(), &error));
                    }
                }
            }
        }

        let mut reports = context.reports();
        while reports.pending > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            reports = context
                .changed
                .wait_timeout(reports, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let (pending, failed, first_error) =
            (reports.pending, reports.failed, reports.first_error.take());
        // Late reports of this batch are ignored from here on.
        reports.pending = 0;
        drop(reports);

        if pending > 0 {
            // Should not happen (librdkafka reports every message by its
            // timeout); drop what is left so it cannot interleave with the retry.
            producer.purge(PurgeConfig::default().queue().inflight());
            let why = context
                .last_error()
                .unwrap_or_else(|| "no delivery report".to_owned());
            if let Some(fatal) = self.fatal_error() {
                return Err(fatal);
            }
            return Err(DeliveryError::retry(self.error(format_args!(
                "{pending} of {} records not acknowledged in time ({why})",
                batch.len()
            ))));
        }
        match first_error {
            None => Ok(()),
            Some(error) => Err(self.failure(failed, batch.len(), &error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> KafkaCfg {
        KafkaCfg::new("127.0.0.1:9092,kafka-2.example:9093")
    }

    #[test]
    fn defaults_come_from_a_minimal_config() {
        let cfg: KafkaCfg = toml::from_str(r#"brokers = "k1:9092,k2:9092""#).expect("parses");
        assert_eq!(cfg, KafkaCfg::new("k1:9092,k2:9092"));
        assert_eq!(cfg.topic, "telltale-events");
        assert_eq!(cfg.compression, Compression::Lz4);
        assert_eq!(cfg.message_timeout_ms, 30_000);
        assert!(cfg.extra.is_empty());
        cfg.validate().expect("valid");
    }

    #[test]
    fn brokers_are_required_and_unknown_fields_refused() {
        assert!(toml::from_str::<KafkaCfg>(r#"topic = "t""#).is_err());
        // `acks` is not a field: it is always `all`.
        let err = toml::from_str::<KafkaCfg>("brokers = \"k:9092\"\nacks = \"1\"")
            .expect_err("acks refused");
        assert!(err.to_string().contains("acks"), "{err}");
    }

    #[test]
    fn guarantee_breaking_extra_properties_are_refused() {
        for (key, value) in [
            ("enable.idempotence", "false"),
            ("Enable.Idempotence", "true"),
            ("acks", "1"),
            ("request.required.acks", "0"),
            ("transactional.id", "x"),
            ("delivery.report.only.error", "true"),
            ("bootstrap.servers", "other:9092"),
            ("compression.codec", "gzip"),
            ("message.timeout.ms", "1"),
            ("delivery.timeout.ms", "1"),
            ("partitioner", "random"),
        ] {
            let mut cfg = cfg();
            cfg.extra.insert(key.to_owned(), value.to_owned());
            let err = cfg.validate().expect_err(key);
            assert!(err.contains(key), "{err}");
            assert!(
                err.contains("127.0.0.1:9092,kafka-2.example:9093"),
                "names the brokers: {err}"
            );
            assert!(open(&cfg).is_err());
        }
    }

    #[test]
    fn harmless_extra_properties_are_passed_on() {
        let mut cfg = cfg();
        for (key, value) in [
            ("client.id", "sensor-7"),
            ("linger.ms", "20"),
            ("partitioner", "murmur2_random"),
            ("security.protocol", "ssl"),
        ] {
            cfg.extra.insert(key.to_owned(), value.to_owned());
        }
        cfg.validate().expect("valid");
        open(&cfg).expect("librdkafka accepts them");
        // librdkafka's own checks surface as errors naming the brokers.
        cfg.extra
            .insert("no.such.property".to_owned(), "1".to_owned());
        let err = open(&cfg).err().expect("unknown property");
        assert!(err.contains("kafka 127.0.0.1:9092"), "{err}");
    }

    #[test]
    fn compression_names_round_trip_and_librdkafka_has_every_codec() {
        for codec in Compression::ALL {
            let text = format!("brokers = \"k:9092\"\ncompression = \"{}\"", codec.as_str());
            let cfg: KafkaCfg = toml::from_str(&text).expect("parses");
            assert_eq!(cfg.compression, codec);
            // Refused at creation when librdkafka was built without the codec.
            open(&cfg).unwrap_or_else(|e| panic!("{}: {e}", codec.as_str()));
        }
        assert!(
            toml::from_str::<KafkaCfg>("brokers = \"k:9092\"\ncompression = \"brotli\"").is_err()
        );
    }

    #[test]
    fn brokers_and_topics_are_checked() {
        for bad in [
            "",
            " , ",
            "kafka",
            "kafka:",
            "kafka:port",
            ":9092",
            "k:0",
            "k:9092,",
            "::1:9092",
        ] {
            assert!(KafkaCfg::new(bad).validate().is_err(), "{bad:?}");
        }
        for good in ["k:9092", "10.0.0.1:9092, 10.0.0.2:9092", "[::1]:9092"] {
            KafkaCfg::new(good)
                .validate()
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", "has space", "a/b", ".."] {
            let mut cfg = cfg();
            cfg.topic = bad.to_owned();
            assert!(cfg.validate().is_err(), "{bad:?}");
        }
        let mut cfg = cfg();
        cfg.message_timeout_ms = 0;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn an_unreachable_broker_is_a_retryable_failure_naming_it() {
        let mut cfg = KafkaCfg::new("127.0.0.1:1");
        cfg.message_timeout_ms = 1_000;
        let mut transport = open(&cfg).expect("opens without connecting");
        assert_eq!(
            transport.describe(),
            "kafka 127.0.0.1:1 topic telltale-events"
        );
        let record = Record {
            id: "0190-id".into(),
            event_type: "alert".into(),
            time: "2025-01-01T00:00:00Z".into(),
            level: super::super::Level::High,
            host: "h1".into(),
            body: b"{}".to_vec(),
        };
        let err = transport.deliver(&[record]).expect_err("nothing listens");
        assert!(err.retryable, "{err:?}");
        assert!(err.message.contains("127.0.0.1:1"), "{err}");
        assert!(transport.deliver(&[]).is_ok());
    }
}
