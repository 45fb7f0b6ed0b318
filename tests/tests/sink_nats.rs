//! The NATS JetStream sink against a real `nats-server`: 2000 records in
//! batches, the server SIGKILLed mid-stream and restarted on the same store,
//! failed batches retried as the worker would; the stream must then hold every
//! record exactly once, in order (the `Nats-Msg-Id` de-duplication at work).
//!
//! Needs `nats-server` (Debian package, `./x setup`); no root.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use telltale::deliver::nats::{NatsCfg, NatsTransport};
use telltale::deliver::{Level, Record, Transport};

const RECORDS: usize = 2000;
const BATCH: usize = 100;
/// The batch during which the server is killed.
const KILL_AT_BATCH: usize = 9;
const STREAM: &str = "TELLTALE_TEST";
const TYPES: [&str; 3] = ["alert", "http", "sensor.status"];

/// `nats-server -js` on `port` with its store in `store`.
struct Server {
    child: Child,
}

impl Server {
    fn start(port: u16, store: &Path) -> Server {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the process after a SIGKILL sent from elsewhere.
    fn reap(mut self) {
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_server_installed() -> bool {
    Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

fn id(i: usize) -> String {
    format!("0190f0aa-0000-7000-8000-{i:012}")
}

fn record(i: usize) -> Record {
    let event_type = TYPES[i % TYPES.len()];
    Record {
        id: id(i).into(),
        event_type: event_type.into(),
        time: "2025-01-01T00:00:00Z".into(),
        level: Level::Info,
        host: "sensor-host".into(),
        body: format!(r#"{{"id":"{}","type":"{event_type}","n":{i}}}"#, id(i)).into_bytes(),
    }
}

#[test]
fn jetstream_survives_server_kill_without_loss_or_duplicates() {
    if !nats_server_installed() {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server is not installed (CI must have it: ./x setup)"
        );
        eprintln!("skipping sink_nats: nats-server is not installed (./x setup installs it)");
        return;
    }
    let store = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut server = Some(Server::start(port, store.path()));

    let cfg = NatsCfg {
        url: format!("nats://127.0.0.1:{port}"),
        subject: "telltale.test.{type}".into(),
        stream: Some(STREAM.into()),
        ack_timeout_ms: 2000,
        ..NatsCfg::default()
    };
    let mut transport = NatsTransport::open(&cfg).expect("open");
    let records: Vec<Record> = (0..RECORDS).map(record).collect();

    let mut failures = 0;
    let mut killer = None;
    let mut restarted = false;
    for (n, batch) in records.chunks(BATCH).enumerate() {
        if n == KILL_AT_BATCH {
            // nats-server acknowledges a message once it is in its file
            // store's write-behind buffer; a SIGKILL loses what had not been
            // written yet. Let the previous batches reach the files, so that
            // the only unknowns are those of the batch the kill interrupts,
            // which the retry covers.
            thread::sleep(Duration::from_millis(300));
            let pid = server.as_ref().expect("server").pid();
            killer = Some(thread::spawn(move || {
                thread::sleep(Duration::from_millis(1));
                // SAFETY: kill(2) on the pid of our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }));
        }
        let started = Instant::now();
        loop {
            match transport.deliver(batch) {
                Ok(()) => break,
                Err(e) => {
                    assert!(e.retryable, "batch {n}: not retryable: {e}");
                    assert!(
                        e.message.contains(&format!("127.0.0.1:{port}")),
                        "error does not name the server: {e}"
                    );
                    failures += 1;
                    eprintln!("batch {n}: {e}");
                    if !restarted {
                        killer
                            .take()
                            .expect("failure before the kill")
                            .join()
                            .unwrap();
                        server.take().expect("server").reap();
                        // Still down: the next attempt fails too, quickly.
                        let t = Instant::now();
                        let e = transport.deliver(batch).expect_err("server is down");
                        assert!(e.retryable, "{e}");
                        assert!(t.elapsed() < Duration::from_secs(3), "{e}");
                        failures += 1;
                        server = Some(Server::start(port, store.path()));
                        restarted = true;
                    } else {
                        // The worker's back-off, in short.
                        thread::sleep(Duration::from_millis(200));
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "batch {n} still failing after a minute: {e}"
                    );
                }
            }
        }
    }
    assert!(restarted, "the kill never made a delivery fail");
    let duplicates = transport.duplicates();
    eprintln!("{failures} failed deliveries, {duplicates} duplicates acknowledged");

    // Read the stream back with the same client.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stored: Vec<(String, String, Vec<u8>)> = rt.block_on(async {
        let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
            .await
            .expect("connect");
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(STREAM).await.expect("stream");
        let info = stream.info().await.expect("stream info").clone();
        assert_eq!(info.config.subjects, ["telltale.test.>"]);
        let mut out = Vec::new();
        for seq in info.state.first_sequence..=info.state.last_sequence {
            let m = stream.get_raw_message(seq).await.expect("get message");
            let msg_id = m
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            out.push((m.subject.to_string(), msg_id, m.payload.to_vec()));
        }
        out
    });

    let ids: Vec<&str> = stored.iter().map(|(_, id, _)| id.as_str()).collect();
    let expected: Vec<String> = (0..RECORDS).map(id).collect();
    let mut seen = std::collections::HashSet::new();
    let repeated: Vec<&&str> = ids.iter().filter(|id| !seen.insert(**id)).collect();
    assert!(repeated.is_empty(), "stored twice: {repeated:?}");
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !seen.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "missing: {} ({:?}…)",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    if let Some(at) = (0..RECORDS).find(|&i| ids[i] != expected[i]) {
        panic!(
            "stream order differs from publication order at {at}: {:?}",
            &ids[at.saturating_sub(2)..(at + 5).min(RECORDS)]
        );
    }
    for (i, (subject, _, payload)) in stored.iter().enumerate() {
        let r = &records[i];
        assert_eq!(subject, &format!("telltale.test.{}", r.event_type));
        assert_eq!(payload, &r.body);
    }
    assert!(failures >= 2, "{failures}");
}
