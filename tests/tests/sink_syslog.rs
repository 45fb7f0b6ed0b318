//! The syslog transport against a real rsyslogd (plain TCP and TLS with the gtls
//! driver): records go through in batches, rsyslogd is SIGKILLed half-way and
//! restarted on the same port, failed batches are retried as the sink worker
//! would, and every message rsyslogd parsed must be RFC 5424 with the PRI,
//! MSGID and structured data the transport promises.
//!
//! No root or BPF needed; `rsyslogd` (and `rsyslog-gnutls` for TLS) must be
//! installed (`./x setup`). Without them the tests skip with one line, except
//! under CI (`CI` set), where that is a failure.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use telltale::deliver::{
    Level, Record, Transport,
    syslog::{self, SyslogCfg},
};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// Where Debian and Fedora put rsyslog's gtls stream driver.
const GTLS_DRIVERS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so",
    "/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so",
    "/usr/lib64/rsyslog/lmnsd_gtls.so",
    "/usr/lib/rsyslog/lmnsd_gtls.so",
];

/// `true` when `what` is installed; else prints why `test` skips (or panics
/// under CI, where `./x setup` installs it).
fn installed_or_skip(test: &str, what: &str, paths: &[&str]) -> bool {
    if paths.iter().any(|p| Path::new(p).exists()) {
        return true;
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{test}: {what} is missing under CI ({paths:?}); `./x setup` installs it");
    }
    eprintln!("skipping {test}: {what} is not installed (run `./x setup`)");
    false
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral port")
        .port()
}

/// An rsyslogd child with its own configuration, writing every message it
/// receives on `port` to `out` with the RFC 5424 fields it parsed.
struct Rsyslogd {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Rsyslogd {
    fn start(dir: &Path, port: u16, tls: Option<&Tls>) -> Self {
        let d = dir.display();
        let (module, global_tls) = match tls {
            None => (r#"module(load="imtcp")"#.to_string(), String::new()),
            Some(t) => (
                r#"module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")"#
                    .to_string(),
                format!(
                    r#" DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}" DefaultNetstreamDriverKeyFile="{}""#,
                    t.ca.display(),
                    t.cert.display(),
                    t.key.display()
                ),
            ),
        };
        // Direct queue and flush per transaction: what rsyslogd read is in the
        // file as soon as possible, so that a SIGKILL loses as little as
        // rsyslogd itself allows (its socket buffer and the batch in hand).
        let conf = format!(
            r#"global(workDirectory="{d}" maxMessageSize="64k"{global_tls})
{module}
template(name="fields" type="string" string="%pri%|%protocol-version%|%timestamp:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
ruleset(name="r" queue.type="Direct") {{
  action(type="omfile" file="{d}/out.log" template="fields" flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imtcp" port="{port}" ruleset="r")
"#
        );
        fs::write(dir.join("rsyslog.conf"), conf).expect("writing rsyslog.conf");
        let mut r = Self {
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let pidfile = self.dir.join("rsyslogd.pid");
        // A SIGKILLed rsyslogd leaves its pid file behind.
        let _ = fs::remove_file(&pidfile);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.stderr"))
            .expect("rsyslogd log");
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(&pidfile)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawning rsyslogd");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("rsyslogd exited with {status}: {}", self.stderr());
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "rsyslogd did not listen on {} within 15 s: {}",
                self.port,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and wait for the process to be gone (its sockets closed).
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL rsyslogd");
            c.wait().expect("reaping rsyslogd");
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("rsyslogd.stderr")).unwrap_or_default()
    }

    fn lines(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("out.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl CLI.
struct Tls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_certs(dir: &Path) -> Tls {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=telltale test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    Tls {
        ca: dir.join("ca.pem"),
        cert: dir.join("srv.pem"),
        key: dir.join("srv.key"),
    }
}

const TYPES: [&str; 3] = ["alert", "http", "sensor.status"];
const LEVELS: [Level; 5] = [
    Level::Info,
    Level::Low,
    Level::Medium,
    Level::High,
    Level::Critical,
];
const TIME: &str = "2025-03-04T05:06:07.123456789Z";

fn id(i: usize) -> String {
    format!("01959a2b-0000-7000-8000-{i:012}")
}

fn record(i: usize) -> Record {
    let id = id(i);
    let body = serde_json::json!({
        "id": id,
        "n": i,
        "text": "a \"quoted\" ] bracket\nand a newline, ünïcode",
    });
    Record {
        id: id.into(),
        event_type: TYPES[i % 3].into(),
        time: TIME.into(),
        level: LEVELS[i % 5],
        host: "sensor-host-1".into(),
        body: serde_json::to_vec(&body).expect("json"),
    }
}

fn expected_pri(i: usize) -> u32 {
    let severity = match LEVELS[i % 5] {
        Level::Critical => 2,
        Level::High => 3,
        Level::Medium => 4,
        Level::Low => 5,
        Level::Info => 6,
    };
    16 * 8 + severity
}

/// Checks one line of rsyslogd's output against the record it came from and
/// returns the record's number.
fn check_line(line: &str) -> usize {
    let f: Vec<&str> = line.splitn(9, '|').collect();
    assert_eq!(f.len(), 9, "{line}");
    let msg: serde_json::Value =
        serde_json::from_str(f[8]).unwrap_or_else(|e| panic!("MSG is not JSON ({e}): {line}"));
    let i = msg["n"].as_u64().unwrap_or_else(|| panic!("no n: {line}")) as usize;
    let id = id(i);
    assert_eq!(msg["id"], id.as_str(), "{line}");
    assert_eq!(f[0], expected_pri(i).to_string(), "PRI: {line}");
    assert_eq!(f[1], "1", "VERSION: {line}");
    assert_eq!(f[2], "2025-03-04T05:06:07.123456Z", "TIMESTAMP: {line}");
    assert_eq!(f[3], "sensor-host-1", "HOSTNAME: {line}");
    assert_eq!(f[4], "telltale", "APP-NAME: {line}");
    assert_eq!(f[5], std::process::id().to_string(), "PROCID: {line}");
    assert_eq!(f[6], TYPES[i % 3], "MSGID: {line}");
    assert_eq!(
        f[7],
        format!("[telltale@32473 id=\"{id}\" type=\"{}\"]", TYPES[i % 3]),
        "SD: {line}"
    );
    i
}

/// When rsyslogd is killed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// Right after a batch was acknowledged, while rsyslogd may still hold
    /// unprocessed bytes: those are lost without an error (at most once).
    MidBurst,
    /// Once rsyslogd wrote everything sent so far: the transport must notice the
    /// closed connection, so nothing may be lost.
    Idle,
}

/// Sends `total` records in batches of `batch`, SIGKILLs rsyslogd after
/// `kill_after` batches, restarts it after a few failed deliveries, retries every
/// failed batch, and checks what rsyslogd wrote.
fn kill_restart_run(
    test: &str,
    tls: bool,
    kill: Kill,
    total: usize,
    batch: usize,
    kill_after: usize,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = tls.then(|| make_certs(dir.path()));
    let port = free_port();
    let mut server = Rsyslogd::start(dir.path(), port, certs.as_ref());

    let mut cfg: SyslogCfg = serde_json::from_value(serde_json::json!({
        "address": format!("127.0.0.1:{port}"),
        "tls": tls,
        "connect_timeout_ms": 2000,
        "write_timeout_ms": 2000,
    }))
    .expect("config");
    if let Some(c) = &certs {
        cfg.ca_file = Some(c.ca.clone());
    }
    let mut t = syslog::open(&cfg).expect("open");

    let records: Vec<Record> = (0..total).map(record).collect();
    // Records whose batch returned Ok before the kill: the only ones the
    // transport may lose without telling (bytes in flight or in rsyslogd's hands).
    let mut acked_before_kill = BTreeSet::new();
    let mut killed = false;
    let mut failures = 0usize;
    let mut failures_after_kill = 0usize;
    let start = Instant::now();
    for (n, chunk) in records.chunks(batch).enumerate() {
        if n == kill_after {
            if kill == Kill::Idle {
                let t0 = Instant::now();
                while server.lines().len() < acked_before_kill.len() {
                    assert!(
                        t0.elapsed() < Duration::from_secs(20),
                        "{test}: rsyslogd did not write the first records: {}",
                        server.stderr()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            server.kill9();
            killed = true;
        }
        loop {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{test}: delivery did not finish"
            );
            match t.deliver(chunk) {
                Ok(()) => break,
                Err(e) => {
                    assert!(e.retryable, "{test}: {e}");
                    failures += 1;
                    if killed {
                        failures_after_kill += 1;
                    }
                    if failures_after_kill == 3 && server.child.is_none() {
                        eprintln!("{test}: restarting rsyslogd after: {e}");
                        server.spawn();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        if !killed {
            acked_before_kill.extend(n * batch..n * batch + chunk.len());
        }
    }
    assert!(
        failures_after_kill >= 3,
        "{test}: the kill went unnoticed ({failures_after_kill} failures)"
    );

    // Wait until rsyslogd wrote everything, or everything that must arrive and
    // nothing more for two seconds.
    let mut counts: BTreeMap<usize, usize>;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut complete_since = None;
    loop {
        counts = BTreeMap::new();
        for line in server.lines() {
            *counts.entry(check_line(&line)).or_default() += 1;
        }
        if counts.len() == total || Instant::now() > deadline {
            break;
        }
        let complete = (0..total)
            .filter(|i| !acked_before_kill.contains(i))
            .all(|i| counts.contains_key(&i));
        if complete
            && complete_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(2)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let duplicates: Vec<(String, usize)> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(i, c)| (id(*i), *c))
        .collect();
    let lost: Vec<usize> = (0..total).filter(|i| !counts.contains_key(i)).collect();
    let when = match kill {
        Kill::MidBurst => "mid-burst",
        Kill::Idle => "idle",
    };
    eprintln!(
        "{test} ({when} kill): {total} records in batches of {batch}, rsyslogd SIGKILLed after {} \
         acknowledged records and restarted; {failures} failed deliveries retried; \
         {} distinct records received, {} lines; {} duplicated: {duplicates:?}; \
         {} lost (numbers): {lost:?}",
        acked_before_kill.len(),
        counts.len(),
        counts.values().sum::<usize>(),
        duplicates.len(),
        lost.len(),
    );
    if kill == Kill::Idle {
        assert!(lost.is_empty(), "{test}: records lost: {lost:?}");
    }
    for i in &lost {
        assert!(
            acked_before_kill.contains(i),
            "{test}: {} was lost although it was delivered after the kill; rsyslogd: {}",
            id(*i),
            server.stderr()
        );
    }
}

#[test]
fn syslog_tcp_survives_rsyslogd_kill_and_restart() {
    let test = "syslog_tcp_survives_rsyslogd_kill_and_restart";
    if !installed_or_skip(test, "rsyslogd", &[RSYSLOGD]) {
        return;
    }
    kill_restart_run(test, false, Kill::MidBurst, 1000, 50, 8);
    kill_restart_run(test, false, Kill::Idle, 1000, 50, 8);
}

#[test]
fn syslog_tls_survives_rsyslogd_kill_and_restart() {
    let test = "syslog_tls_survives_rsyslogd_kill_and_restart";
    if !installed_or_skip(test, "rsyslogd", &[RSYSLOGD])
        || !installed_or_skip(test, "rsyslog's gtls driver (rsyslog-gnutls)", GTLS_DRIVERS)
    {
        return;
    }
    kill_restart_run(test, true, Kill::MidBurst, 200, 20, 4);
    kill_restart_run(test, true, Kill::Idle, 200, 20, 4);
}
