//! The Kafka sink against a Kafka-protocol broker: librdkafka's mock cluster
//! (real Kafka wire protocol on loopback sockets, in this process; no root).
//!
//! 2000 records from five hosts go through [`KafkaTransport`] in batches, the way
//! the sink's worker drives it. Mid-stream every broker goes down: a delivery
//! must then fail retryably; once the brokers are back the same batch is retried
//! until it is acknowledged, and the stream goes on. The topic is then read back
//! with a consumer: every id arrived, ids of batches acknowledged on the first
//! try arrived exactly once (the idempotent producer), and each host's events
//! sit on one partition in order.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message as _, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer as _},
    message::Headers as _,
    mocking::MockCluster,
};
use telltale::deliver::{
    Level, Record, Transport as _,
    kafka::{self, Compression, KafkaCfg},
};

const TOPIC: &str = "telltale-events";
const PARTITIONS: i32 = 3;
const BROKERS: i32 = 3;
const RECORDS: usize = 2000;
const BATCH: usize = 100;
const HOSTS: [&str; 5] = ["web-1", "web-2", "db-1", "build-7", "laptop-3"];
/// The batch during which the brokers go down.
const OUTAGE_BATCH: usize = 8;

fn record(seq: usize) -> Record {
    let host = HOSTS[seq % HOSTS.len()];
    let id = format!("0190a1b2-0000-7000-8000-{seq:012}");
    let body = serde_json::json!({ "id": id, "seq": seq, "host": host, "event_type": "http" });
    Record {
        id: id.into(),
        event_type: "http".into(),
        time: "2025-06-01T12:00:00Z".into(),
        level: Level::Info,
        host: host.into(),
        body: body.to_string().into_bytes(),
    }
}

/// Delivers `batch` as the worker would: retry retryable failures (bounded),
/// fail the test on a fatal one. Returns how many attempts it took.
fn deliver_until_ok(transport: &mut kafka::KafkaTransport, batch: &[Record]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match transport.deliver(batch) {
            Ok(()) => return attempts,
            Err(e) => {
                assert!(e.retryable, "fatal delivery error: {e}");
                assert!(
                    Instant::now() < deadline,
                    "still failing after {attempts} attempts: {e}"
                );
                eprintln!("attempt {attempts}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

#[test]
fn kafka_sink_survives_an_outage_and_delivers_every_record() {
    let cluster = MockCluster::new(BROKERS).expect("mock cluster");
    cluster
        .create_topic(TOPIC, PARTITIONS, BROKERS)
        .expect("create topic");
    let bootstrap = cluster.bootstrap_servers();

    let mut cfg = KafkaCfg::new(bootstrap.clone());
    cfg.compression = Compression::Zstd;
    // Short, so the outage fails a delivery within seconds.
    cfg.message_timeout_ms = 3_000;
    cfg.extra
        .insert("reconnect.backoff.max.ms".to_owned(), "500".to_owned());
    let mut transport = kafka::open(&cfg).expect("open kafka sink");
    assert!(transport.describe().contains(&bootstrap));

    let records: Vec<Record> = (0..RECORDS).map(record).collect();
    // Ids whose batch was acknowledged on its first attempt: exactly once.
    let mut once: HashSet<Arc<str>> = HashSet::new();
    let mut retried_batches = 0;
    let mut retryable_failures = 0;
    for (n, batch) in records.chunks(BATCH).enumerate() {
        if n == OUTAGE_BATCH {
            // Brokers go down while a batch is in flight: the delivery runs on
            // another thread (the transport is Send, like the worker's).
            let (t, result) = std::thread::scope(|scope| {
                let in_flight = scope.spawn(move || {
                    let result = transport.deliver(batch);
                    (transport, result)
                });
                std::thread::sleep(Duration::from_millis(2));
                for id in 1..=BROKERS {
                    cluster.broker_down(id).expect("broker down");
                }
                in_flight.join().expect("delivery thread")
            });
            transport = t;
            eprintln!("batch {n}, brokers went down mid-delivery: {result:?}");
            if let Err(e) = &result {
                assert!(e.retryable, "an outage must be retryable: {e}");
                assert!(e.message.contains(&bootstrap), "names the brokers: {e}");
                retryable_failures += 1;
            }
            // While they are down, a delivery fails, retryably, in about
            // message_timeout_ms.
            let started = Instant::now();
            let e = transport
                .deliver(batch)
                .expect_err("brokers are down: the batch cannot be acknowledged");
            eprintln!("batch {n} while down ({:?}): {e}", started.elapsed());
            assert!(e.retryable, "an outage must be retryable: {e}");
            assert!(e.message.contains(&bootstrap), "names the brokers: {e}");
            assert!(started.elapsed() < Duration::from_secs(15));
            retryable_failures += 1;

            for id in 1..=BROKERS {
                cluster.broker_up(id).expect("broker up");
            }
            let attempts = deliver_until_ok(&mut transport, batch);
            eprintln!("batch {n} delivered after the outage in {attempts} attempt(s)");
            retried_batches += 1;
            continue;
        }
        let attempts = deliver_until_ok(&mut transport, batch);
        if attempts == 1 {
            once.extend(batch.iter().map(|r| r.id.clone()));
        } else {
            retried_batches += 1;
        }
    }
    assert!(retryable_failures >= 1, "the outage was seen");
    drop(transport);

    // Read the whole topic back, every partition from the start.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "telltale-sink-kafka-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut high = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (_, hi) = consumer
            .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
            .expect("watermarks");
        high.insert(p, hi);
        assignment
            .add_partition_offset(TOPIC, p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");

    // Per partition, in offset order: (host, seq, id).
    let mut read: BTreeMap<i32, Vec<(String, usize, String)>> = BTreeMap::new();
    let mut next: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while next.iter().any(|(p, o)| *o < high[p]) {
        assert!(Instant::now() < deadline, "read {next:?} of {high:?}");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("consume");
        let body: serde_json::Value =
            serde_json::from_slice(message.payload().expect("payload")).expect("json");
        let id = body["id"].as_str().expect("id").to_owned();
        let host = body["host"].as_str().expect("host").to_owned();
        let seq = body["seq"].as_u64().expect("seq") as usize;
        assert_eq!(message.key(), Some(host.as_bytes()), "key is the host");
        let headers = message.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(header("event_id").as_deref(), Some(id.as_str()));
        assert_eq!(header("event_type").as_deref(), Some("http"));
        read.entry(message.partition())
            .or_default()
            .push((host, seq, id));
        next.insert(message.partition(), message.offset() + 1);
    }

    let mut count: HashMap<&str, usize> = HashMap::new();
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    for (p, messages) in &read {
        let mut last_new: HashMap<&str, usize> = HashMap::new();
        for (host, seq, id) in messages {
            let seen = count.entry(id).or_default();
            *seen += 1;
            let home = *partition_of.entry(host).or_insert(*p);
            assert_eq!(home, *p, "{host}'s events are on one partition");
            if *seen == 1 {
                // First copies of a host's events arrive in the order sent.
                if let Some(prev) = last_new.insert(host, *seq) {
                    assert!(
                        prev < *seq,
                        "{host}: seq {seq} after {prev} on partition {p}"
                    );
                }
            }
        }
    }
    let missing: Vec<usize> = (0..RECORDS)
        .filter(|&s| !count.contains_key(&*record(s).id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} records missing: {missing:?}",
        missing.len()
    );
    let duplicates: BTreeMap<&str, usize> = count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (*id, *n))
        .collect();
    let once_violations: Vec<&&str> = duplicates.keys().filter(|id| once.contains(**id)).collect();
    assert!(
        once_violations.is_empty(),
        "records of batches acknowledged on the first try arrived more than once: {once_violations:?}"
    );
    let total: usize = read.values().map(Vec::len).sum();
    eprintln!(
        "{total} messages read for {RECORDS} records on {} partitions; {} retried batch(es); \
         {} duplicate id(s) (at least once across retries): {duplicates:?}",
        read.len(),
        retried_batches,
        duplicates.len()
    );
}
