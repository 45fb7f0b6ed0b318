//! OpenSSL plaintext capture, end to end: the real sensor, nginx as the server,
//! and curl, Python, node and `openssl s_client` as clients on loopback.
//!
//! Each test checks the exact bytes captured on both ends of its connections.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use telltale_tests::{
    Nginx, Sensor, Streams, assert_no_loss, body, can_load_probes, connection_with, connections,
    contains, data_events, dechunk, exclusive, marker, nginx::STATIC_SIZES, run_client, split_http,
};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Every event of `pid` names that pid and the expected comm.
fn assert_process(events: &[Value], pid: u32, comm: &str) {
    let mine: Vec<_> = data_events(events)
        .filter(|e| e["process"]["pid"] == pid)
        .collect();
    assert!(!mine.is_empty(), "no events from pid {pid} ({comm})");
    for e in mine {
        assert_eq!(e["process"]["comm"], comm, "{}", e["process"]);
        assert_eq!(e["thread"]["comm"], comm, "{}", e["thread"]);
        assert!(e["thread"]["tid"].as_u64().is_some_and(|t| t > 0));
        assert_eq!(e["thread"]["uid"], 0, "{}", e["thread"]);
        assert!(
            e["message"]["complete"] == true,
            "incomplete message {}",
            e["message"]["length"]
        );
    }
}

/// Uploads `size` bytes of marked content with `curl -T` (PUT) to nginx's
/// upload location on `port`; returns the marker, the content and the run.
fn curl_put(
    nginx: &Nginx,
    port: u16,
    dir: &Path,
    tag: &str,
    size: usize,
) -> (String, Vec<u8>, telltale_tests::ClientRun) {
    let m = marker(tag);
    let content = body(&m, size);
    let file = dir.join(&m);
    std::fs::write(&file, &content).expect("write body");
    let run = run_client(
        Command::new("curl")
            .args(["-sS", "--fail", "--http1.1", "--cacert"])
            .arg(nginx.cert())
            .args([
                "-H",
                &format!("X-Telltale-Marker: {m}"),
                "-o",
                "/dev/null",
                "-T",
            ])
            .arg(&file)
            .arg(format!("https://127.0.0.1:{port}/upload/{m}")),
        CLIENT_TIMEOUT,
    );
    (m, content, run)
}

/// The request body of an HTTP/1.1 request stream (de-chunked when chunked).
fn request_body(req: &[u8]) -> Vec<u8> {
    let (head, body) = split_http(req);
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_vec()
    }
}

/// The server saw exactly what the client sent and sent exactly what the client
/// read: nginx's connection carrying `marker` mirrors the client's.
fn assert_server_mirror(events: &[Value], nginx: &Nginx, client: &Streams, marker: &str) {
    let server: Vec<Streams> = nginx
        .workers()
        .into_iter()
        .flat_map(|pid| connections(events, pid).into_values())
        .filter(|s| contains(&s.ingress, marker.as_bytes()))
        .collect();
    assert_eq!(server.len(), 1, "one nginx connection carries {marker}");
    assert!(
        server[0].ingress == client.egress,
        "nginx read what the client wrote ({marker})"
    );
    assert!(
        server[0].egress == client.ingress,
        "the client read what nginx wrote ({marker})"
    );
}

#[test]
fn curl_get_and_put_are_captured_exactly_over_tls12_and_tls13() {
    if !can_load_probes("curl_get_and_put_are_captured_exactly_over_tls12_and_tls13") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().expect("tmp");
    let sensor = Sensor::start(&[]);
    struct Case {
        pid: u32,
        marker: String,
        size: usize,
        upload: Option<Vec<u8>>,
    }
    let mut cases = Vec::new();
    for port in [nginx.port_tls12, nginx.port_tls13] {
        for size in STATIC_SIZES {
            let m = marker("curl-get");
            let run = run_client(
                Command::new("curl")
                    .args(["-sS", "--fail", "--http1.1", "--cacert"])
                    .arg(nginx.cert())
                    .args(["-H", &format!("X-Telltale-Marker: {m}"), "-o", "/dev/null"])
                    .arg(format!("https://127.0.0.1:{port}/static/{size}")),
                CLIENT_TIMEOUT,
            );
            cases.push(Case {
                pid: run.pid,
                marker: m,
                size,
                upload: None,
            });

            let (m, content, run) = curl_put(&nginx, port, dir.path(), "curl-put", size);
            cases.push(Case {
                pid: run.pid,
                marker: m,
                size,
                upload: Some(content),
            });
        }
    }
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    for c in &cases {
        assert_process(&events, c.pid, "curl");
        let conn = connection_with(&events, c.pid, &c.marker);
        let (head, _) = split_http(&conn.egress);
        let head = String::from_utf8_lossy(head);
        assert!(
            head.contains(&format!("X-Telltale-Marker: {}\r\n", c.marker)),
            "{head}"
        );
        match &c.upload {
            None => {
                let want = format!("GET /static/{} HTTP/1.1\r\n", c.size);
                assert!(head.starts_with(&want), "{head}");
                let (rhead, rbody) = split_http(&conn.ingress);
                assert!(rhead.starts_with(b"HTTP/1.1 200 OK\r\n"));
                assert!(
                    rbody == nginx.static_file(c.size),
                    "response body of {} bytes",
                    c.size
                );
            }
            Some(content) => {
                let want = format!("PUT /upload/{} HTTP/1.1\r\n", c.marker);
                assert!(head.starts_with(&want), "{head}");
                assert!(
                    request_body(&conn.egress) == *content,
                    "request body of {} bytes",
                    c.size
                );
                assert!(
                    contains(&conn.ingress, b"201 Created")
                        || contains(&conn.ingress, b"204 No Content")
                );
                let stored = std::fs::read(nginx.root().join("html/upload").join(&c.marker))
                    .expect("nginx stored the upload");
                assert!(stored == *content, "nginx stored what curl sent");
            }
        }
        assert_server_mirror(&events, &nginx, &conn, &c.marker);
    }
}

const PY_CLIENTS: &str = r#"
import sys, ssl, urllib.request
import requests, httpx
port, cafile, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
url = f"https://127.0.0.1:{port}/post"
def body(name):
    with open(f"{outdir}/{name}", "rb") as f:
        return f.read()
def marker(name):
    return body(name)[:40].split(b"|")[0].decode()
ctx = ssl.create_default_context(cafile=cafile)
for name in ["urllib-1m", "urllib-100"]:
    req = urllib.request.Request(url, data=body(name), headers={"X-Telltale-Marker": marker(name)})
    assert urllib.request.urlopen(req, context=ctx).read() == b"posted\n"
r = requests.post(url, data=body("requests"), headers={"X-Telltale-Marker": marker("requests")}, verify=cafile)
assert r.text == "posted\n", r.text
with httpx.Client(verify=cafile, http2=False) as c:
    r = c.post(url, content=body("httpx"), headers={"X-Telltale-Marker": marker("httpx")})
    assert r.text == "posted\n", r.text
"#;

#[test]
fn python_urllib_requests_and_httpx_are_captured() {
    if !can_load_probes("python_urllib_requests_and_httpx_are_captured") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().expect("tmp");
    let mut bodies = Vec::new();
    for (name, size) in [
        ("urllib-1m", 1 << 20),
        ("urllib-100", 100),
        ("requests", 64 << 10),
        ("httpx", 64 << 10),
    ] {
        let m = marker(name);
        let b = body(&format!("{m}|"), size.max(m.len() + 1));
        std::fs::write(dir.path().join(name), &b).expect("write");
        bodies.push((name, m, b));
    }
    let script = dir.path().join("clients.py");
    std::fs::write(&script, PY_CLIENTS).expect("script");
    let sensor = Sensor::start(&[]);
    let run = run_client(
        Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(nginx.port_tls13.to_string())
            .arg(nginx.cert())
            .arg(dir.path()),
        CLIENT_TIMEOUT,
    );
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    assert_process(&events, run.pid, "python3");
    for (name, m, b) in &bodies {
        let conn = connection_with(&events, run.pid, m);
        assert!(
            conn.egress.starts_with(b"POST /post HTTP/1.1\r\n"),
            "{name}"
        );
        assert!(
            request_body(&conn.egress) == *b,
            "{name}: body of {} bytes",
            b.len()
        );
        let (_, rbody) = split_http(&conn.ingress);
        assert_eq!(rbody, b"posted\n", "{name}");
        assert_server_mirror(&events, &nginx, &conn, m);
    }
    // A 1 MiB body written in one SSL_write_ex call arrives as one whole message.
    let (_, m, b) = &bodies[0];
    let whole: Vec<_> = data_events(&events)
        .filter(|e| e["process"]["pid"] == run.pid && e["message"]["length"] == (1u64 << 20))
        .collect();
    assert_eq!(whole.len(), 1, "one 1 MiB message");
    assert_eq!(whole[0]["tls"]["function"], "SSL_write_ex");
    assert!(
        telltale_tests::plaintext(whole[0]) == *b,
        "1 MiB body {m} intact in one event"
    );
}

const NODE_CLIENTS: &str = r#"
const https = require('https');
const fs = require('fs');
const [port, dir] = process.argv.slice(2);
const big = fs.readFileSync(`${dir}/https-body`);
const small = fs.readFileSync(`${dir}/fetch-body`);
const mark = (b) => b.subarray(0, 60).toString().split('|')[0];
function viaHttps() {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port, path: '/post', method: 'POST',
      headers: { 'Content-Length': big.length, 'X-Telltale-Marker': mark(big) },
      agent: new https.Agent({ keepAlive: false }),
    }, (res) => {
      let got = '';
      res.on('data', (d) => { got += d; });
      res.on('end', () => (got === 'posted\n' ? resolve() : reject(new Error(got))));
    });
    req.on('error', reject);
    req.end(big);
  });
}
async function viaFetch() {
  const r = await fetch(`https://127.0.0.1:${port}/post`, {
    method: 'POST', body: small, headers: { 'X-Telltale-Marker': mark(small) },
  });
  const t = await r.text();
  if (t !== 'posted\n') throw new Error(t);
}
(async () => { await viaHttps(); await viaFetch(); })().catch((e) => { console.error(e); process.exit(1); });
"#;

#[test]
fn node_https_module_and_fetch_are_captured() {
    if !can_load_probes("node_https_module_and_fetch_are_captured") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().expect("tmp");
    let m_https = marker("node-https");
    let m_fetch = marker("node-fetch");
    let b_https = body(&format!("{m_https}|"), 1 << 20);
    let b_fetch = body(&format!("{m_fetch}|"), 64 << 10);
    std::fs::write(dir.path().join("https-body"), &b_https).expect("write");
    std::fs::write(dir.path().join("fetch-body"), &b_fetch).expect("write");
    let script = dir.path().join("clients.js");
    std::fs::write(&script, NODE_CLIENTS).expect("script");
    let sensor = Sensor::start(&[]);
    let run = run_client(
        Command::new("node")
            .arg(&script)
            .arg(nginx.port_tls13.to_string())
            .arg(dir.path())
            .env("NODE_EXTRA_CA_CERTS", nginx.cert()),
        CLIENT_TIMEOUT,
    );
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    assert_process(&events, run.pid, "node");
    for (m, b) in [(&m_https, &b_https), (&m_fetch, &b_fetch)] {
        let conn = connection_with(&events, run.pid, m);
        assert!(conn.egress.starts_with(b"POST /post HTTP/1.1\r\n"), "{m}");
        assert!(
            request_body(&conn.egress) == *b,
            "{m}: body of {} bytes",
            b.len()
        );
        let (_, rbody) = split_http(&conn.ingress);
        assert_eq!(rbody, b"posted\n");
        assert_server_mirror(&events, &nginx, &conn, m);
    }
}

#[test]
fn openssl_s_client_is_captured() {
    if !can_load_probes("openssl_s_client_is_captured") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let sensor = Sensor::start(&[]);
    let m = marker("s-client");
    let request = format!(
        "GET /static/100 HTTP/1.1\r\nHost: localhost\r\nX-Telltale-Marker: {m}\r\nConnection: close\r\n\r\n"
    );
    let input = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(input.path(), &request).expect("write");
    let run = run_client(
        Command::new("openssl")
            .args(["s_client", "-quiet", "-ign_eof", "-connect"])
            .arg(format!("127.0.0.1:{}", nginx.port_tls12))
            .arg("-CAfile")
            .arg(nginx.cert())
            .stdin(std::fs::File::open(input.path()).expect("open")),
        CLIENT_TIMEOUT,
    );
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    assert_process(&events, run.pid, "openssl");
    let conn = connection_with(&events, run.pid, &m);
    assert_eq!(conn.egress, request.as_bytes());
    let (rhead, rbody) = split_http(&conn.ingress);
    assert!(rhead.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(rbody, nginx.static_file(100));
    assert!(contains(&run.stdout, &nginx.static_file(100)));
    assert_server_mirror(&events, &nginx, &conn, &m);
}

const NODE_CONCURRENT: &str = r#"
const https = require('https');
const fs = require('fs');
const [port, dir, n] = process.argv.slice(2);
const agent = new https.Agent({ keepAlive: false, maxSockets: 1000 });
const one = (i) => new Promise((resolve, reject) => {
  const b = fs.readFileSync(`${dir}/body-${i}`);
  const req = https.request({
    host: '127.0.0.1', port, path: '/post', method: 'POST', agent,
    headers: { 'Content-Length': b.length, 'X-Telltale-Marker': b.subarray(0, 60).toString().split('|')[0] },
  }, (res) => { res.resume(); res.on('end', resolve); });
  req.on('error', reject);
  // Write in pieces so that writes of different connections interleave.
  for (let o = 0; o < b.length; o += 4096) req.write(b.subarray(o, o + 4096));
  req.end();
});
Promise.all([...Array(Number(n)).keys()].map(one)).catch((e) => { console.error(e); process.exit(1); });
"#;

#[test]
fn sixty_concurrent_connections_of_one_process_do_not_mix() {
    if !can_load_probes("sixty_concurrent_connections_of_one_process_do_not_mix") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().expect("tmp");
    const N: usize = 60;
    let mut bodies = Vec::new();
    for i in 0..N {
        let m = marker("conc");
        let b = body(&format!("{m}|"), 20_000 + 37 * i);
        std::fs::write(dir.path().join(format!("body-{i}")), &b).expect("write");
        bodies.push((m, b));
    }
    let script = dir.path().join("concurrent.js");
    std::fs::write(&script, NODE_CONCURRENT).expect("script");
    let sensor = Sensor::start(&[]);
    let run = run_client(
        Command::new("node")
            .arg(&script)
            .arg(nginx.port_tls13.to_string())
            .arg(dir.path())
            .arg(N.to_string())
            .env("NODE_EXTRA_CA_CERTS", nginx.cert()),
        CLIENT_TIMEOUT,
    );
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    assert_process(&events, run.pid, "node");
    let conns = connections(&events, run.pid);
    assert!(conns.len() >= N, "{} connections seen", conns.len());
    for (m, b) in &bodies {
        // Exactly one connection carries each marker, and it carries nothing else.
        let conn = connection_with(&events, run.pid, m);
        let others = bodies
            .iter()
            .filter(|(o, _)| o != m && contains(&conn.egress, o.as_bytes()));
        assert_eq!(others.count(), 0, "{m} shares its connection");
        assert!(request_body(&conn.egress) == *b, "{m}: body intact");
        assert_server_mirror(&events, &nginx, &conn, m);
    }
}

const PY_LATE: &str = r#"
import sys, ssl, time, urllib.request
port, cafile, mark, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ctx = ssl.create_default_context(cafile=cafile)  # loads libssl now
time.sleep(delay)  # the sensor's rescan finds the new library meanwhile
req = urllib.request.Request(f"https://127.0.0.1:{port}/post", data=mark.encode(), headers={"X-Telltale-Marker": mark})
assert urllib.request.urlopen(req, context=ctx).read() == b"posted\n"
"#;

/// A process started after the sensor, loading a libssl from a path the sensor
/// has never seen, is discovered through its mappings and captured.
#[test]
fn process_started_later_with_a_new_libssl_is_captured() {
    if !can_load_probes("process_started_later_with_a_new_libssl_is_captured") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().expect("tmp");
    let system = [
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/lib64/libssl.so.3",
        "/usr/lib64/libssl.so.3",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists())
    .expect("a system libssl.so.3");
    let libdir = dir.path().join("lib");
    std::fs::create_dir(&libdir).expect("mkdir");
    let copy = libdir.join("libssl.so.3");
    std::fs::copy(system, &copy).expect("copy libssl");
    let cfg = dir.path().join("telltale.toml");
    std::fs::write(&cfg, "[capture]\nrescan_interval_ms = 200\n").expect("config");
    let script = dir.path().join("late.py");
    std::fs::write(&script, PY_LATE).expect("script");
    let sensor = Sensor::start_with(&[], Some(&cfg));
    let m = marker("late");
    let run = run_client(
        Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(nginx.port_tls13.to_string())
            .arg(nginx.cert())
            .arg(&m)
            .arg("3")
            .env("LD_LIBRARY_PATH", &libdir),
        CLIENT_TIMEOUT,
    );
    let (events, stderr) = sensor.stop();
    assert_no_loss(&events);
    let conn = connection_with(&events, run.pid, &m);
    assert!(conn.egress.starts_with(b"POST /post HTTP/1.1\r\n"));
    let copy = std::fs::canonicalize(&copy)
        .expect("canonical")
        .display()
        .to_string();
    let libs: Vec<_> = data_events(&events)
        .filter(|e| e["process"]["pid"] == run.pid)
        .map(|e| e["tls"]["library"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        libs.iter().all(|l| *l == copy),
        "library of every event is the copy: {libs:?}\n{stderr}"
    );
    assert!(stderr.contains(&copy), "the attach is logged");
}

/// Without `--emit data` no plaintext leaves the sensor, neither on stdout nor
/// in its logs; the counters still show the capture happened.
#[test]
fn plaintext_is_only_printed_when_asked_for() {
    if !can_load_probes("plaintext_is_only_printed_when_asked_for") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let sensor = Sensor::spawn(&["--log-level", "trace"], None);
    let m = marker("quiet");
    run_client(
        Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(nginx.cert())
            .args(["-H", &format!("X-Telltale-Marker: {m}"), "-o", "/dev/null"])
            .arg(format!("https://127.0.0.1:{}/static/100", nginx.port_tls13)),
        CLIENT_TIMEOUT,
    );
    let (events, stderr) = sensor.stop();
    assert_eq!(data_events(&events).count(), 0);
    let all = serde_json::to_string(&events).expect("json");
    assert!(
        !all.contains(&m) && !stderr.contains(&m),
        "the marker leaked"
    );
    let fin = telltale_tests::final_status(&events);
    assert!(fin["kernel"]["calls"].as_u64().unwrap_or(0) >= 2, "{fin}");
    assert!(
        stderr.contains("telltale stopped"),
        "final counters line: {stderr}"
    );
}

/// The emulated probe sites and the entry+uretprobe fallback capture exactly
/// the same bytes for the same exchange.
#[test]
fn emulated_sites_and_uretprobes_capture_the_same_bytes() {
    if !can_load_probes("emulated_sites_and_uretprobes_capture_the_same_bytes") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().expect("tmp");
    let mut captured = Vec::new();
    for emulated in [true, false] {
        let cfg = dir.path().join(format!("sites-{emulated}.toml"));
        std::fs::write(&cfg, format!("[capture]\nemulated_sites = {emulated}\n")).expect("config");
        let sensor = Sensor::start_with(&[], Some(&cfg));
        let (m, content, run) = curl_put(&nginx, nginx.port_tls13, dir.path(), "sites", 40_000);
        let (events, stderr) = sensor.stop();
        assert_no_loss(&events);
        let conn = connection_with(&events, run.pid, &m);
        assert!(
            request_body(&conn.egress) == content,
            "emulated_sites={emulated}: body intact"
        );
        let functions: Vec<_> = data_events(&events)
            .filter(|e| e["process"]["pid"] == run.pid)
            .map(|e| e["tls"]["function"].as_str().unwrap_or("").to_owned())
            .collect();
        assert!(functions.iter().any(|f| f == "SSL_write"), "{functions:?}");
        let strategy = if emulated {
            "emulated-sites"
        } else {
            "entry+uretprobe"
        };
        assert!(
            stderr.contains(&format!("SSL_write:{strategy}")),
            "strategy {strategy} logged:\n{stderr}"
        );
        // Same shape either way: the head (minus the marker) and the body.
        let (head, _) = split_http(&conn.egress);
        let head = String::from_utf8_lossy(head).replace(&m, "MARKER");
        captured.push((head, !conn.ingress.is_empty()));
    }
    assert_eq!(captured[0], captured[1]);
}

const PY_SNI: &str = r#"
import socket, ssl, sys
port, name = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", port)) as raw:
    with ctx.wrap_socket(raw, server_hostname=name) as s:
        s.sendall(f"GET /static/100 HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        while s.recv(65536):
            pass
"#;

const NODE_SNI: &str = r#"
const tls = require('tls');
const [port, name] = process.argv.slice(2);
const s = tls.connect({ host: '127.0.0.1', port: Number(port), servername: name, rejectUnauthorized: false }, () => {
  s.write(`GET /static/100 HTTP/1.1\r\nHost: ${name}\r\nConnection: close\r\n\r\n`);
});
s.on('data', () => {});
s.on('end', () => process.exit(0));
s.on('error', (e) => { console.error(e); process.exit(1); });
"#;

/// The server name a client asks for (SNI) is reported on its connection's
/// events, for clients that set it through OpenSSL (curl, Python, node).
#[test]
fn server_name_is_reported_for_curl_python_and_node() {
    if !can_load_probes("server_name_is_reported_for_curl_python_and_node") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().expect("tmp");
    let py = dir.path().join("sni.py");
    std::fs::write(&py, PY_SNI).expect("script");
    let js = dir.path().join("sni.js");
    std::fs::write(&js, NODE_SNI).expect("script");
    let port = nginx.port_tls13.to_string();
    let sensor = Sensor::start(&[]);
    let mut runs = Vec::new();
    let name = format!("{}.curl.telltale.test", telltale_tests::rand_hex(4));
    let run = run_client(
        Command::new("curl")
            .args(["-sS", "--fail", "-k", "-o", "/dev/null", "--resolve"])
            .arg(format!("{name}:{port}:127.0.0.1"))
            .arg(format!("https://{name}:{port}/static/100")),
        CLIENT_TIMEOUT,
    );
    runs.push((run.pid, name));
    let name = format!("{}.python.telltale.test", telltale_tests::rand_hex(4));
    let run = run_client(
        Command::new("/usr/bin/python3")
            .arg(&py)
            .arg(&port)
            .arg(&name),
        CLIENT_TIMEOUT,
    );
    runs.push((run.pid, name));
    let name = format!("{}.node.telltale.test", telltale_tests::rand_hex(4));
    let run = run_client(
        Command::new("node").arg(&js).arg(&port).arg(&name),
        CLIENT_TIMEOUT,
    );
    runs.push((run.pid, name));
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    for (pid, name) in &runs {
        let mine: Vec<_> = data_events(&events)
            .filter(|e| e["process"]["pid"] == *pid)
            .collect();
        assert!(!mine.is_empty(), "events of {name}");
        for e in mine {
            assert_eq!(e["tls"]["server_name"], name.as_str(), "{}", e["tls"]);
        }
    }
    // The server side sets no server name of its own.
    for w in nginx.workers() {
        for e in data_events(&events).filter(|e| e["process"]["pid"] == w) {
            assert!(e["tls"].get("server_name").is_none(), "{}", e["tls"]);
        }
    }
}
