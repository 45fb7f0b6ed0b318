//! Harness for Telltale's integration tests: runs the real `telltale` binary with
//! real probes, real TLS servers (nginx) and real clients (curl, Python, node,
//! openssl), and reads back the JSON events it prints.
//!
//! The tests need root and a kernel with BPF; elsewhere each test prints one line
//! saying why it skips. The sensor binary comes from `TELLTALE_BIN` (set by
//! `./x test`) or `target/{release,debug}/telltale`.

pub mod nginx;
pub mod sensor;

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::Value;

pub use nginx::Nginx;
pub use sensor::Sensor;

/// Whether probe-loading tests can run here. Prints the reason when they cannot.
pub fn can_load_probes(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        eprintln!(
            "skipping {test}: integration tests load eBPF probes and need root (euid {euid})"
        );
        return false;
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("skipping {test}: the kernel exposes no BTF (/sys/kernel/btf/vmlinux)");
        return false;
    }
    true
}

/// Serialises the tests that start a sensor: each loads probes for the whole host,
/// and on two cores they are both faster and easier to read one at a time.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate sits in the workspace")
        .to_path_buf()
}

/// The sensor binary under test.
pub fn sensor_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TELLTALE_BIN") {
        return PathBuf::from(p);
    }
    let root = workspace_root();
    ["release", "debug"]
        .iter()
        .map(|p| root.join("target").join(p).join("telltale"))
        .find(|p| p.exists())
        .expect("no telltale binary: run `./x test`, or set TELLTALE_BIN")
}

/// The python of the virtualenv `./x setup` makes in `.tools/pyenv`, with the
/// official LLM SDKs (`anthropic`) installed, when it is there.
pub fn python_with_sdks() -> Option<PathBuf> {
    let python = workspace_root().join(".tools/pyenv/bin/python");
    python.is_file().then_some(python)
}

/// [`python_with_sdks`] for test `test`: when the virtualenv is missing, prints
/// one line saying why `test` skips and returns `None`; under CI (`CI` set, as
/// `.ci/run` does) a missing virtualenv is a failure instead, since setup makes it.
pub fn python_with_sdks_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(python) = python_with_sdks() {
        return Some(python);
    }
    let missing = workspace_root().join(".tools/pyenv/bin/python");
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!(
            "{test}: {} is missing under CI; `./x setup` installs it",
            missing.display()
        );
    }
    eprintln!(
        "skipping {test}: no Python SDK virtualenv ({} is missing; run `./x setup`)",
        missing.display()
    );
    None
}

/// A finished client process.
#[derive(Debug)]
pub struct ClientRun {
    /// Its pid.
    pub pid: u32,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr, lossily decoded.
    pub stderr: String,
}

/// Runs a client to completion (at most `timeout`) and returns its pid and output.
/// Panics, with its stderr, if it fails.
pub fn run_client(cmd: &mut Command, timeout: Duration) -> ClientRun {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let pid = child.id();
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = t_out.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&t_err.join().expect("stderr reader")).into_owned();
    assert!(status.success(), "{cmd:?} failed with {status}: {stderr}");
    ClientRun {
        pid,
        stdout,
        stderr,
    }
}

/// A unique marker for one request: tests find their traffic by it.
pub fn marker(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("tt-{tag}-{}-{n}-{}", std::process::id(), rand_hex(6))
}

/// Random lowercase hex from the kernel's RNG.
pub fn rand_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert_eq!(n, bytes as isize, "getrandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// `len` bytes of random printable text that start with `marker`.
pub fn body(marker: &str, len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        // SAFETY: writing into the unfilled tail of raw.
        let n = unsafe { libc::getrandom(raw[filled..].as_mut_ptr().cast(), len - filled, 0) };
        assert!(n > 0, "getrandom");
        filled += n as usize;
    }
    let mut v: Vec<u8> = raw
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()])
        .collect();
    let m = marker.as_bytes();
    let k = m.len().min(len);
    v[..k].copy_from_slice(&m[..k]);
    v
}

/// The `tls.data` events in `events`.
pub fn data_events(events: &[Value]) -> impl Iterator<Item = &Value> {
    events.iter().filter(|e| e["event_type"] == "tls.data")
}

/// The `tls.data` events of process `pid`.
pub fn events_of(events: &[Value], pid: u32) -> Vec<&Value> {
    data_events(events)
        .filter(|e| e["process"]["pid"] == pid)
        .collect()
}

/// Decoded plaintext of a `tls.data` event.
pub fn plaintext(e: &Value) -> Vec<u8> {
    let m = &e["message"];
    let data = m["data"].as_str().expect("message.data");
    match m["encoding"].as_str() {
        Some("utf8") => data.as_bytes().to_vec(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("valid base64"),
        other => panic!("unknown encoding {other:?}"),
    }
}

/// One direction of one connection: the concatenated plaintext of its messages
/// in capture order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Streams {
    /// Bytes the process wrote.
    pub egress: Vec<u8>,
    /// Bytes the process read.
    pub ingress: Vec<u8>,
}

/// Every connection of process `pid`, keyed by the event's `tls.connection`.
pub fn connections(events: &[Value], pid: u32) -> std::collections::BTreeMap<String, Streams> {
    let mut map = std::collections::BTreeMap::<String, Streams>::new();
    for e in data_events(events).filter(|e| e["process"]["pid"] == pid) {
        let conn = e["tls"]["connection"]
            .as_str()
            .expect("connection")
            .to_owned();
        let s = map.entry(conn).or_default();
        match e["tls"]["direction"].as_str() {
            Some("egress") => s.egress.extend(plaintext(e)),
            Some("ingress") => s.ingress.extend(plaintext(e)),
            other => panic!("bad direction {other:?}"),
        }
    }
    map
}

/// The one connection of `pid` whose egress contains `needle`.
pub fn connection_with(events: &[Value], pid: u32, needle: &str) -> Streams {
    let matching: Vec<Streams> = connections(events, pid)
        .into_values()
        .filter(|s| {
            contains(&s.egress, needle.as_bytes()) || contains(&s.ingress, needle.as_bytes())
        })
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one connection of pid {pid} carrying {needle}, found {}",
        matching.len()
    );
    matching.into_iter().next().expect("one")
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Splits an HTTP/1.1 message into (head, body) at the first blank line.
pub fn split_http(msg: &[u8]) -> (&[u8], &[u8]) {
    let pos = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no end of headers in {:?}",
                String::from_utf8_lossy(&msg[..msg.len().min(200)])
            )
        });
    (&msg[..pos + 4], &msg[pos + 4..])
}

/// Decodes a chunked HTTP/1.1 body.
pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_txt = std::str::from_utf8(&body[..line_end]).expect("ascii size");
        let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// The `sensor.status` event with `state == "stopped"`.
pub fn final_status(events: &[Value]) -> &Value {
    events
        .iter()
        .rev()
        .find(|e| e["event_type"] == "sensor.status" && e["state"] == "stopped")
        .expect("a final sensor.status event")
}

/// Asserts the sensor reported no loss of any kind.
pub fn assert_no_loss(events: &[Value]) {
    let s = final_status(events);
    for key in [
        "lost_records",
        "lost_bytes",
        "read_faults",
        "active_full",
        "truncated_calls",
    ] {
        assert_eq!(s["kernel"][key], 0, "kernel counter {key}: {s}");
    }
    for key in ["incomplete", "evicted", "orphan_chunks"] {
        assert_eq!(s["reassembly"][key], 0, "reassembly counter {key}: {s}");
    }
    assert_eq!(s["pipeline"]["record_errors"], 0, "{s}");
}
