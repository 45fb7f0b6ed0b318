//! The webhook sink against a real HTTPS collector (a Python stdlib server with
//! a certificate from a throw-away CA made by the openssl CLI): 2000 records in
//! each body format, the collector SIGKILLed between and during requests and
//! restarted on the same port, a 503 with Retry-After, a 413 that makes the
//! transport split, and a HEC token check. The test drives `deliver` as the
//! sink's worker would: a retryable error means "send the same batch again".
//! Needs no root: python3 and openssl only.

use std::{
    collections::BTreeMap,
    fs,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use telltale::deliver::{
    DeliveryError, Level, Record, Transport,
    webhook::{self, WebhookCfg, WebhookMode, WebhookTransport},
};

const RECORDS: usize = 2000;
const HEC_TOKEN: &str = "0b5f2b8e-test-token";

/// The collector process and its files.
struct Collector {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    token: Option<String>,
}

impl Collector {
    fn start(token: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        make_certs(dir.path());
        fs::create_dir(dir.path().join("flags")).expect("flags dir");
        // A free port, reused on every restart.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut collector = Self {
            child: None,
            port,
            dir,
            token: token.map(str::to_owned),
        };
        collector.restart();
        collector
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "collector already running");
        let d = self.dir.path();
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sink_webhook_server.py"))
            .arg(self.port.to_string())
            .arg(d.join("server.pem"))
            .arg(d.join("server.key"))
            .arg(d.join("requests.jsonl"))
            .arg(d.join("flags"));
        if let Some(token) = &self.token {
            cmd.arg(token);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start python3");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "collector did not listen");
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> libc::pid_t {
        let child = self.child.as_ref().expect("running");
        libc::pid_t::try_from(child.id()).expect("pid")
    }

    /// SIGKILL (not a graceful stop): in-flight requests get no answer.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Reaps a collector that another thread killed.
    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    fn flag(&self, name: &str, content: Option<&str>) {
        let path = self.dir.path().join("flags").join(name);
        match content {
            Some(content) => fs::write(path, content).expect("set flag"),
            None => fs::remove_file(path).expect("clear flag"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn requests(&self) -> Vec<Value> {
        fs::read_to_string(self.dir.path().join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("request log line"))
            .collect()
    }

    fn connections(&self) -> usize {
        fs::read_to_string(self.dir.path().join("flags/connections"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for localhost signed by it: the sink trusts the
/// CA through `ca_file`, as with a private CA in production.
fn make_certs(dir: &Path) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let args = |s: String| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let ca = args(format!("req -x509 {ec} -keyout ca.key -out ca.pem -days 2"));
    let ca: Vec<&str> = ca
        .iter()
        .map(String::as_str)
        .chain(["-subj", "/CN=telltale test CA"])
        .collect();
    openssl(dir, &ca);
    let csr = args(format!(
        "req {ec} -keyout server.key -out server.csr -subj /CN=localhost"
    ));
    openssl(dir, &csr.iter().map(String::as_str).collect::<Vec<_>>());
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

fn records(mode: &str) -> Vec<Record> {
    (0..RECORDS)
        .map(|i| {
            let id = format!("{mode}-{i:05}");
            let time = format!("2024-05-01T12:34:{:02}.{:09}Z", i % 60, i * 1000 + 7);
            let body = serde_json::json!({
                "id": id, "event_type": "alert", "time": time, "n": i,
                "rule": "test-rule", "detail": "x".repeat(100 + i % 200),
            });
            Record {
                id: Arc::from(id.as_str()),
                event_type: Arc::from("alert"),
                time: Arc::from(time.as_str()),
                level: Level::High,
                host: Arc::from("sensor-7"),
                body: serde_json::to_vec(&body).expect("json"),
            }
        })
        .collect()
}

/// What the test does to the collector before delivering a given batch.
enum Fault {
    /// SIGKILL between batches; the next deliver must fail and be retried.
    Kill,
    /// SIGKILL while a request is in flight (stored, not yet answered).
    KillInFlight,
    /// 503 with Retry-After.
    Unavailable,
    /// Bodies over this many bytes get 413 for this batch.
    TooLarge(usize),
}

/// Delivers `records` in batches of the transport's size, injecting `faults`
/// and retrying retryable errors as the worker would. Returns the retries.
fn stream(
    collector: &mut Collector,
    t: &mut WebhookTransport,
    records: &[Record],
    faults: &BTreeMap<usize, Fault>,
) -> usize {
    let mut retries = 0;
    for (n, batch) in records.chunks(t.max_batch()).enumerate() {
        match faults.get(&n) {
            None => {}
            Some(Fault::Kill) => {
                collector.kill();
                let e = t.deliver(batch).expect_err("collector is down");
                println!("batch {n}, collector killed: {e}");
                assert!(e.retryable, "{e:?}");
                assert!(
                    e.message.contains(&format!("localhost:{}", collector.port)),
                    "{e}"
                );
                collector.restart();
                retries += 1;
            }
            Some(Fault::KillInFlight) => {
                collector.flag("slow", Some(""));
                let pid = collector.pid();
                let killer = thread::spawn(move || {
                    thread::sleep(Duration::from_millis(800));
                    // SAFETY: kill has no memory preconditions; pid is our child,
                    // not yet reaped (the main thread reaps it after this joins).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                });
                let result = t.deliver(batch);
                killer.join().expect("killer thread");
                collector.reap();
                collector.flag("slow", None);
                let e = result.expect_err("collector died before answering");
                println!("batch {n}, collector killed in flight: {e}");
                assert!(e.retryable, "{e:?}");
                collector.restart();
                retries += 1;
            }
            Some(Fault::Unavailable) => {
                collector.flag("fail503", Some(""));
                let e = t.deliver(batch).expect_err("collector answers 503");
                println!("batch {n}, 503: {e}");
                assert!(e.retryable, "{e:?}");
                assert!(
                    e.message.contains("503") && e.message.contains("Retry-After"),
                    "{e}"
                );
                assert!(e.message.contains("retry after 1 s"), "{e}");
                collector.flag("fail503", None);
                retries += 1;
            }
            Some(Fault::TooLarge(max)) => {
                collector.flag("max_bytes", Some(&max.to_string()));
            }
        }
        retries += deliver_as_worker(t, batch);
        if let Some(Fault::TooLarge(_)) = faults.get(&n) {
            collector.flag("max_bytes", None);
        }
    }
    retries
}

/// Retries a batch until it is delivered, as the worker does; a fatal error or
/// too many failures fail the test.
fn deliver_as_worker(t: &mut WebhookTransport, batch: &[Record]) -> usize {
    for attempt in 0..50 {
        match t.deliver(batch) {
            Ok(()) => return attempt,
            Err(DeliveryError {
                retryable: true,
                message,
            }) => {
                println!("retrying after: {message}");
                thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("fatal: {e}"),
        }
    }
    panic!("batch never delivered");
}

/// The records' ids in the collector's log, per the body format, and checks
/// each request's headers.
fn received(collector: &Collector, mode: WebhookMode, gzip: bool) -> (Vec<Value>, usize) {
    let mut events = Vec::new();
    let requests = collector.requests();
    for request in &requests {
        let body = request["body"].as_str().expect("body");
        assert_eq!(
            request["content_encoding"].as_str(),
            gzip.then_some("gzip"),
            "Content-Encoding"
        );
        let content_type = request["content_type"].as_str().expect("content type");
        match mode {
            WebhookMode::Ndjson => {
                assert_eq!(content_type, "application/x-ndjson");
                assert!(body.ends_with('\n'));
                events.extend(
                    body.lines()
                        .map(|l| serde_json::from_str(l).expect("ndjson line")),
                );
            }
            WebhookMode::JsonArray => {
                assert_eq!(content_type, "application/json");
                match serde_json::from_str(body).expect("array") {
                    Value::Array(items) => events.extend(items),
                    other => panic!("not an array: {other}"),
                }
            }
            WebhookMode::SplunkHec => {
                assert_eq!(content_type, "application/json");
                assert_eq!(request["path"], "/services/collector/event");
                for envelope in serde_json::Deserializer::from_str(body).into_iter::<Value>() {
                    events.push(envelope.expect("HEC envelope"));
                }
            }
        }
    }
    (events, requests.len())
}

/// Every record arrived at least once; returns the duplicates (printed).
fn check_ids(label: &str, ids: &[String]) -> usize {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let missing: Vec<_> = (0..RECORDS)
        .map(|i| format!("{label}-{i:05}"))
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} missing, first {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(counts.len(), RECORDS, "unexpected ids");
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let extra: usize = duplicated.iter().map(|(_, n)| *n - 1).sum();
    println!(
        "{label}: {} records received for {RECORDS} sent; {} ids duplicated ({extra} extra copies){}",
        ids.len(),
        duplicated.len(),
        match (duplicated.first(), duplicated.last()) {
            (Some(first), Some(last)) => format!(", {} .. {}", first.0, last.0),
            _ => String::new(),
        }
    );
    if !duplicated.is_empty() {
        let list: Vec<String> = duplicated
            .iter()
            .map(|(id, n)| format!("{id} x{n}"))
            .collect();
        println!("{label} duplicates: {}", list.join(", "));
    }
    extra
}

#[test]
fn ndjson_gzip_survives_kills_and_503() {
    let mut collector = Collector::start(None);
    let cfg = WebhookCfg {
        gzip: true,
        max_batch: 100,
        // About 60 records per request: every batch takes several requests.
        max_batch_bytes: 16 << 10,
        timeout_ms: 5000,
        ca_file: Some(collector.ca()),
        ..WebhookCfg::new(collector.url("/ingest?token=not-in-messages"))
    };
    let mut t = webhook::open(&cfg).expect("open");
    assert!(!t.describe().contains("not-in-messages"));
    let faults = BTreeMap::from([
        (5, Fault::Kill),
        (9, Fault::KillInFlight),
        (13, Fault::Unavailable),
    ]);
    let records = records("ndjson");
    let retries = stream(&mut collector, &mut t, &records, &faults);
    let (events, requests) = received(&collector, WebhookMode::Ndjson, true);
    let ids: Vec<String> = events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    let extra = check_ids("ndjson", &ids);
    println!(
        "ndjson: {requests} requests, {retries} retries, {} connections",
        collector.connections()
    );
    // The in-flight kill stored a request that was never acknowledged.
    assert!(extra > 0, "the in-flight kill should duplicate its request");
    // Gzip did shrink the bodies.
    let wire: u64 = collector
        .requests()
        .iter()
        .map(|r| r["wire_bytes"].as_u64().unwrap_or(0))
        .sum();
    let plain: usize = collector
        .requests()
        .iter()
        .map(|r| r["body"].as_str().map_or(0, str::len))
        .sum();
    assert!(
        wire * 2 < plain as u64,
        "gzip: {wire} on the wire for {plain}"
    );
}

#[test]
fn splunk_hec_envelopes_token_and_kill() {
    let mut collector = Collector::start(Some(HEC_TOKEN));
    let cfg = WebhookCfg {
        mode: WebhookMode::SplunkHec,
        hec_token: Some(HEC_TOKEN.to_owned()),
        index: Some("soc".to_owned()),
        max_batch: 250,
        ca_file: Some(collector.ca()),
        ..WebhookCfg::new(collector.url("/services/collector/event"))
    };

    // A wrong token is refused for good, and the message does not show it.
    let mut wrong = webhook::open(&WebhookCfg {
        hec_token: Some("wrong-token-value".to_owned()),
        ..cfg.clone()
    })
    .expect("open");
    let e = wrong.deliver(&records("wrong")[..3]).expect_err("401");
    println!("wrong token: {e}");
    assert!(!e.retryable && e.message.contains("401"), "{e:?}");
    assert!(!e.message.contains("wrong-token-value") && !e.message.contains(HEC_TOKEN));

    let mut t = webhook::open(&cfg).expect("open");
    let faults = BTreeMap::from([(3, Fault::Kill), (5, Fault::KillInFlight)]);
    let records = records("hec");
    let retries = stream(&mut collector, &mut t, &records, &faults);
    let (envelopes, requests) = received(&collector, WebhookMode::SplunkHec, false);
    println!(
        "hec: {requests} requests, {retries} retries, {} connections",
        collector.connections()
    );
    let by_id: BTreeMap<&str, &Record> = records.iter().map(|r| (&*r.id, r)).collect();
    let mut ids = Vec::new();
    for envelope in &envelopes {
        let id = envelope["event"]["id"].as_str().expect("event.id");
        let record = by_id[id];
        assert_eq!(envelope["host"], "sensor-7");
        assert_eq!(envelope["source"], "telltale");
        assert_eq!(envelope["sourcetype"], "telltale:event");
        assert_eq!(envelope["index"], "soc");
        assert_eq!(envelope["event"]["time"].as_str(), Some(&*record.time));
        // 2024-05-01T12:34:SS.NNNNNNNNNZ: the epoch seconds keep the fraction.
        let n = envelope["event"]["n"].as_u64().expect("n");
        let expected = 1_714_566_840.0 + (n % 60) as f64 + (n * 1000 + 7) as f64 * 1e-9;
        let time = envelope["time"].as_f64().expect("time is a number");
        assert!((time - expected).abs() < 1e-6, "{id}: {time} vs {expected}");
        ids.push(id.to_owned());
    }
    check_ids("hec", &ids);
}

#[test]
fn json_array_splits_on_413_and_keeps_alive() {
    let mut collector = Collector::start(None);
    let cfg = WebhookCfg {
        mode: WebhookMode::JsonArray,
        max_batch: 200,
        ca_file: Some(collector.ca()),
        ..WebhookCfg::new(collector.url("/events"))
    };
    let mut t = webhook::open(&cfg).expect("open");
    // Batch 4 meets a collector that takes at most 12000 bytes: about 40 of the
    // records, so the transport must halve the request a few times.
    let faults = BTreeMap::from([(4, Fault::TooLarge(12_000))]);
    let records = records("array");
    let retries = stream(&mut collector, &mut t, &records, &faults);
    assert_eq!(retries, 0, "413 is handled inside deliver");
    let (events, requests) = received(&collector, WebhookMode::JsonArray, false);
    let ids: Vec<String> = events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(check_ids("array", &ids), 0, "no fault here repeats records");
    let connections = collector.connections();
    println!("array: {requests} requests over {connections} connections");
    assert!(requests > 10, "413 split batch 4: {requests} requests");
    // Keep-alive: far fewer TLS connections than requests.
    assert!(
        connections * 3 <= requests,
        "{connections} connections for {requests} requests"
    );
}
