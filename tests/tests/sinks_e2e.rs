//! Delivery end to end: the real sensor writes every event to stdout, a file
//! sink and a webhook sink whose collector is SIGKILLed and restarted while
//! traffic flows. Every event printed must be in the file and reach the
//! collector at least once — from the spool, after the outage — and the final
//! `sensor.status` must show the outage (failures, records spooled) and no loss.
//!
//! The collector speaks plain HTTP: a collector on this host that used OpenSSL
//! would itself be captured, and every delivery would make new events.

use std::{
    collections::{BTreeMap, HashSet},
    fs,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use telltale_tests::{Nginx, Sensor, can_load_probes, exclusive};

/// The webhook test's collector (tests/sink_webhook_server.py), restartable.
struct Collector {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Collector {
    fn start(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("flags")).expect("flags");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let mut c = Self {
            child: None,
            port,
            dir: dir.to_path_buf(),
        };
        c.restart();
        c
    }

    fn restart(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sink_webhook_server.py");
        let child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(self.port.to_string())
            .args(["-", "-"])
            .arg(self.dir.join("requests.jsonl"))
            .arg(self.dir.join("flags"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("python3");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "collector did not listen");
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Event ids in every request the collector stored.
    fn ids(&self) -> Vec<String> {
        let text = fs::read_to_string(self.dir.join("requests.jsonl")).unwrap_or_default();
        let mut ids = Vec::new();
        for line in text.lines() {
            let Ok(req) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            for ev in req["body"].as_str().unwrap_or("").lines() {
                if let Ok(v) = serde_json::from_str::<Value>(ev)
                    && let Some(id) = v["event_id"].as_str()
                {
                    ids.push(id.to_owned());
                }
            }
        }
        ids
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn a_webhook_outage_loses_no_event() {
    if !can_load_probes("a_webhook_outage_loses_no_event") {
        return;
    }
    let _g = exclusive();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut collector = Collector::start(&tmp.path().join("collector"));
    let events_file = tmp.path().join("events.json");
    let config = tmp.path().join("telltale.toml");
    fs::write(
        &config,
        format!(
            r#"
[state]
dir = "{state}"
[metrics]
listen = ""
[[sinks]]
name = "stdout"
stdout = {{}}
[[sinks]]
name = "reference"
file = {{ path = "{file}" }}
[[sinks]]
name = "collector"
max_backoff_secs = 1
# A small memory queue, so that the outage outlasts it and the spool is used.
queue = 4
queue_bytes = 65536
webhook = {{ url = "http://127.0.0.1:{port}/ingest", max_batch = 50 }}
"#,
            state = tmp.path().join("state").display(),
            file = events_file.display(),
            port = collector.port,
        ),
    )
    .expect("config");
    let nginx = Nginx::start();
    let sensor = Sensor::spawn(&["--emit", "data,http,errors,alerts"], Some(&config));

    // Traffic for the whole outage: curl requests in a loop.
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("https://127.0.0.1:{}/static/100", nginx.port_tls13);
    let cert = nginx.cert();
    let s2 = Arc::clone(&stop);
    let traffic = thread::spawn(move || {
        let mut n = 0;
        while !s2.load(Ordering::Relaxed) {
            let _ = Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "--cacert"])
                .arg(&cert)
                .arg(&url)
                .status();
            n += 1;
        }
        n
    });
    thread::sleep(Duration::from_secs(2));
    collector.kill();
    thread::sleep(Duration::from_secs(3));
    collector.restart();
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let requests = traffic.join().expect("traffic");
    // Let the spool drain to the collector before stopping.
    thread::sleep(Duration::from_secs(3));
    let (events, stderr) = sensor.stop();

    let reference: Vec<String> = fs::read_to_string(&events_file)
        .expect("file sink")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["event_id"].as_str().map(str::to_owned))
        .collect();
    assert!(
        requests > 10 && reference.len() > 40,
        "{requests} requests, {} events",
        reference.len()
    );
    // The file holds what stdout printed.
    let printed: HashSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert!(reference.iter().all(|id| printed.contains(id.as_str())));

    let got = collector.ids();
    assert!(
        got.len() <= 2 * reference.len(),
        "the collector got events nobody printed"
    );
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &got {
        *counts.entry(id).or_default() += 1;
    }
    // The final status is printed while the sinks close, so it may be the one
    // event that only the file got.
    let missing: Vec<&String> = reference
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.len() <= 1,
        "{} of {} events never reached the collector: {:?}; stderr: {stderr}",
        missing.len(),
        reference.len(),
        &missing[..missing.len().min(5)]
    );
    let dups = counts.values().filter(|c| **c > 1).count();
    eprintln!(
        "{} events, {} delivered to the collector, {dups} delivered twice (at least once)",
        reference.len(),
        got.len()
    );
    let last = events
        .iter()
        .rev()
        .find(|e| e["event_type"] == "sensor.status")
        .expect("final status");
    let sink = last["sinks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "collector"))
        .expect("collector sink stats");
    assert!(
        sink["failures"].as_u64().unwrap_or(0) > 0,
        "the outage was seen: {sink}"
    );
    assert!(
        sink["spooled"].as_u64().unwrap_or(0) > 0,
        "records waited in the spool: {sink}"
    );
    assert_eq!(sink["dropped_spool_full"], 0, "{sink}");
    assert_eq!(sink["dropped_rejected"], 0, "{sink}");
}
