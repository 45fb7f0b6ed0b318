//! TLS stacks other than OpenSSL, end to end: the real sensor, nginx as the
//! server and real clients built on GnuTLS (gnutls-cli, git through
//! libcurl-gnutls) and NSS (tstclnt from libnss3-tools).
//!
//! Each test checks the exact request and response bytes of its connection, the
//! library the event names and the server name (SNI) the client set.

use std::{
    io::{Read, Write},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use telltale_tests::{
    Nginx, Sensor, assert_no_loss, can_load_probes, connection_with, contains, data_events,
    events_of, exclusive, marker,
};

/// A client that talks on stdin/stdout (gnutls-cli, tstclnt): writes `input`,
/// keeps stdin open until stdout shows `until` (at most `timeout`), then closes
/// stdin and stops the client. Returns the pid. The exit status is not
/// checked: these tools report a server's close as an error.
fn run_interactive(cmd: &mut Command, input: &[u8], until: &[u8], timeout: Duration) -> u32 {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write request");
    let mut stdout = child.stdout.take().expect("stdout");
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    let start = Instant::now();
    let seen = || contains(&out.lock().expect("lock"), until);
    while !seen() && start.elapsed() < timeout {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    // Let the client finish on its own briefly (it frees its connection then).
    let grace = Instant::now();
    while child.try_wait().expect("wait").is_none() && grace.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    assert!(
        seen(),
        "{cmd:?} did not print {:?}: {}",
        String::from_utf8_lossy(until),
        String::from_utf8_lossy(&out.lock().expect("lock"))
    );
    pid
}

/// An HTTP/1.1 POST of `body` to nginx's `/post`, asking it to close afterwards.
fn post_request(marker: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /post HTTP/1.1\r\nHost: localhost\r\nX-Telltale-Marker: {marker}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Every event of `pid` names `library_kind`, a library file whose name starts
/// with `file_prefix`, functions from `functions` and the server name `sni`.
fn assert_library(
    events: &[&Value],
    library_kind: &str,
    file_prefix: &str,
    functions: &[&str],
    sni: &str,
) {
    assert!(!events.is_empty());
    for e in events {
        let tls = &e["tls"];
        assert_eq!(tls["library_kind"], library_kind, "{tls}");
        let file = tls["library"].as_str().unwrap_or_default();
        let name = Path::new(file)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(name.starts_with(file_prefix), "{tls}");
        let f = tls["function"].as_str().unwrap_or_default();
        assert!(functions.contains(&f), "{tls}");
        assert_eq!(tls["server_name"], sni, "{tls}");
        assert_eq!(tls["socket"]["remote_ip"], "127.0.0.1", "{tls}");
    }
}

#[test]
fn gnutls_clients_are_captured() {
    if !can_load_probes("gnutls_clients_are_captured") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let sensor = Sensor::start(&[]);
    let m = marker("gnutls-cli");
    let body = format!("{{\"marker\":\"{m}\",\"via\":\"gnutls-cli\"}}");
    let request = post_request(&m, &body);
    let cli_pid = run_interactive(
        Command::new("gnutls-cli")
            .arg("--x509cafile")
            .arg(nginx.cert())
            .args(["-p", &nginx.port_tls13.to_string(), "localhost"]),
        &request,
        b"posted",
        Duration::from_secs(30),
    );
    // git over HTTPS uses libcurl-gnutls on Debian.
    let repo = marker("git");
    let git = Command::new("git")
        .args([
            "ls-remote",
            &format!("https://localhost:{}/{repo}.git", nginx.port_tls12),
        ])
        .env("GIT_SSL_NO_VERIFY", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git");
    let _ = git.wait_with_output();
    let (events, _) = sensor.stop();
    assert_no_loss(&events);

    let conn = connection_with(&events, cli_pid, &m);
    assert_eq!(conn.egress, request, "gnutls-cli's request, byte for byte");
    assert!(conn.ingress.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(conn.ingress.ends_with(b"\r\n\r\nposted\n"));
    assert_library(
        &events_of(&events, cli_pid),
        "gnutls",
        "libgnutls.so",
        &["gnutls_record_send", "gnutls_record_recv"],
        "localhost",
    );

    // git runs its HTTPS transport in a child (git-remote-https), which may be
    // gone before the sensor reads its /proc: match the thread's comm.
    let git_events: Vec<&Value> = data_events(&events)
        .filter(|e| {
            e["thread"]["comm"]
                .as_str()
                .is_some_and(|c| c.starts_with("git-remote-"))
        })
        .filter(|e| e["tls"]["library_kind"] == "gnutls")
        .collect();
    let get = format!("GET /{repo}.git/info/refs?service=git-upload-pack HTTP/1.1\r\n");
    assert!(
        git_events
            .iter()
            .any(|e| contains(&telltale_tests::plaintext(e), get.as_bytes())),
        "git's request over libcurl-gnutls: {} events",
        git_events.len()
    );
    assert!(git_events.iter().any(|e| e["tls"]["direction"] == "ingress"
        && contains(&telltale_tests::plaintext(e), b"404 Not Found")));
}

#[test]
fn nss_client_is_captured_and_other_nspr_io_is_not() {
    if !can_load_probes("nss_client_is_captured_and_other_nspr_io_is_not") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let db = tempfile::tempdir().expect("tmp");
    let ok = Command::new("certutil")
        .args(["-N", "--empty-password", "-d"])
        .arg(format!("sql:{}", db.path().display()))
        .status()
        .expect("certutil from libnss3-tools");
    assert!(ok.success());
    let sensor = Sensor::start(&[]);
    let m = marker("tstclnt");
    let body = format!("{{\"marker\":\"{m}\",\"via\":\"nss\"}}");
    let request = post_request(&m, &body);
    // -o: accept the test server's self-signed certificate; -a: the server
    // name to send (nginx listens on 127.0.0.1 only, localhost may be ::1).
    let pid = run_interactive(
        Command::new("tstclnt")
            .args(["-h", "127.0.0.1", "-a", "localhost", "-o"])
            .args(["-p", &nginx.port_tls13.to_string(), "-d"])
            .arg(format!("sql:{}", db.path().display())),
        &request,
        b"posted",
        Duration::from_secs(30),
    );
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    let conn = connection_with(&events, pid, &m);
    assert_eq!(conn.egress, request, "tstclnt's request, byte for byte");
    assert!(conn.ingress.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(conn.ingress.ends_with(b"\r\n\r\nposted\n"));
    let mine = events_of(&events, pid);
    assert_library(
        &mine,
        "nss",
        "libnspr4.so",
        &["PR_Write", "PR_Read", "PR_Send", "PR_Recv"],
        "localhost",
    );
    // tstclnt also reads stdin and writes stdout through NSPR: only the SSL
    // layer's traffic is captured, so every message of the process belongs to
    // its one TLS connection.
    let conns: std::collections::BTreeSet<_> = mine
        .iter()
        .map(|e| e["tls"]["connection"].to_string())
        .collect();
    assert_eq!(conns.len(), 1, "{conns:?}");
}
