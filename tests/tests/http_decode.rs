//! Protocol decoding end to end: real clients send LLM-API-shaped JSON to nginx
//! over TLS; the sensor's `http` events, on both ends of each connection, carry
//! exactly the request that was sent, and a malformed request yields a
//! `decode.error` without disturbing the connections around it.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use telltale_tests::{
    Nginx, Sensor, can_load_probes, exclusive, marker, nginx::API_RESPONSE, run_client,
};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A configuration that puts decoded bodies into `http` events.
fn bodies_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("telltale.toml");
    std::fs::write(&path, "[decode]\nhttp_bodies = true\n").expect("write config");
    path
}

fn start_sensor(dir: &Path) -> Sensor {
    Sensor::spawn(&["--emit", "http,errors"], Some(&bodies_config(dir)))
}

/// `http` events of `pid` whose request body contains `needle`.
fn http_with<'a>(events: &'a [Value], pid: u32, needle: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "http" && e["process"]["pid"] == pid)
        .filter(|e| {
            e["http"]["request"]["body"]["content"]
                .as_str()
                .is_some_and(|c| c.contains(needle))
        })
        .collect()
}

fn errors_of(events: &[Value], pids: &[u32]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "decode.error")
        .filter(|e| pids.iter().any(|p| e["process"]["pid"] == *p))
        .cloned()
        .collect()
}

fn request_json(m: &str) -> String {
    format!(
        r#"{{"model":"claude-test","max_tokens":64,"system":"You are a coding assistant. Session {m}.","messages":[{{"role":"user","content":"Summarise the repository {m}, please."}}],"metadata":{{"user_id":"{m}"}}}}"#
    )
}

fn gzip_file(dir: &Path, name: &str, content: &str) -> (std::path::PathBuf, u64) {
    let plain = dir.join(name);
    std::fs::write(&plain, content).expect("write body");
    let ok = Command::new("gzip")
        .args(["-k", "-n", "-f"])
        .arg(&plain)
        .status()
        .expect("gzip");
    assert!(ok.success(), "gzip failed");
    let gz = dir.join(format!("{name}.gz"));
    let len = std::fs::metadata(&gz).expect("gz file").len();
    (gz, len)
}

/// The request and response of one side, checked against what was sent.
fn assert_exchange(e: &Value, role: &str, version: &str, port: u16, body: &str, gz_len: u64) {
    let h = &e["http"];
    assert_eq!(h["role"], role, "{e}");
    assert_eq!(h["version"], version, "{e}");
    let q = &h["request"];
    assert_eq!(q["method"], "POST");
    assert_eq!(q["path"], "/v1/messages");
    assert_eq!(q["authority"], format!("127.0.0.1:{port}"));
    assert_eq!(
        q["headers"]["x-api-key"], "[redacted]",
        "credentials are redacted"
    );
    assert_eq!(q["headers"]["content-encoding"], "gzip");
    assert_eq!(q["body"]["content_encoding"], serde_json::json!(["gzip"]));
    assert_eq!(q["body"]["length"], gz_len, "wire length is the gzip size");
    assert_eq!(q["body"]["truncated"], false);
    assert_eq!(
        q["body"]["content"].as_str(),
        Some(body),
        "the decoded body is exactly what was sent"
    );
    let r = &h["response"];
    assert_eq!(r["status"], 200, "{e}");
    assert_eq!(r["body"]["content"].as_str(), Some(API_RESPONSE));
    assert!(h["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
    assert!(e["tls"]["connection"].as_str().is_some());
}

#[test]
fn http2_gzip_json_request_is_decoded_end_to_end() {
    if !can_load_probes("http2_gzip_json_request_is_decoded_end_to_end") {
        return;
    }
    let _g = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let nginx = Nginx::start();
    let sensor = start_sensor(dir.path());
    let m = marker("h2gzip");
    let json = request_json(&m);
    let (gz, gz_len) = gzip_file(dir.path(), "body.json", &json);
    let run = run_client(
        Command::new("curl")
            .args(["-sS", "--fail", "--http2", "--cacert"])
            .arg(nginx.cert())
            .args([
                "-H",
                "content-type: application/json",
                "-H",
                "content-encoding: gzip",
                "-H",
                "x-api-key: sk-ant-test-0000",
                "--data-binary",
            ])
            .arg(format!("@{}", gz.display()))
            .arg(format!("https://127.0.0.1:{}/v1/messages", nginx.port_api)),
        CLIENT_TIMEOUT,
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout), API_RESPONSE);
    let workers = nginx.workers();
    let (events, stderr) = sensor.stop();

    let client = http_with(&events, run.pid, &m);
    assert_eq!(client.len(), 1, "one exchange from curl; stderr: {stderr}");
    assert_exchange(client[0], "client", "HTTP/2", nginx.port_api, &json, gz_len);
    assert_eq!(client[0]["http"]["request"]["scheme"], "https");

    let server: Vec<_> = workers
        .iter()
        .flat_map(|w| http_with(&events, *w, &m))
        .collect();
    if server.len() != 1 {
        let theirs: Vec<String> = events
            .iter()
            .filter(|e| workers.iter().any(|w| e["process"]["pid"] == *w))
            .map(|e| {
                let mut e = e.clone();
                e["process"] = Value::Null;
                e.to_string().chars().take(1500).collect()
            })
            .collect();
        panic!(
            "{} exchanges in the nginx worker, expected 1; its events: {theirs:#?}",
            server.len()
        );
    }
    assert_exchange(server[0], "server", "HTTP/2", nginx.port_api, &json, gz_len);

    let mut pids = workers.clone();
    pids.push(run.pid);
    assert_eq!(errors_of(&events, &pids), Vec::<Value>::new());
}

#[test]
fn http1_keep_alive_chunked_gzip_requests_are_paired_with_their_responses() {
    if !can_load_probes("http1_keep_alive_chunked_gzip_requests_are_paired_with_their_responses") {
        return;
    }
    let _g = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let nginx = Nginx::start();
    let sensor = start_sensor(dir.path());
    let m = marker("h1chunk");
    let json = request_json(&m);
    let (gz, gz_len) = gzip_file(dir.path(), "body.json", &json);
    let url = format!("https://127.0.0.1:{}/v1/messages", nginx.port_api);
    // Two requests on one kept-alive connection, each with a chunked gzip body.
    let run = run_client(
        Command::new("curl")
            .args(["-sS", "--fail", "--http1.1", "--cacert"])
            .arg(nginx.cert())
            .args([
                "-H",
                "content-type: application/json",
                "-H",
                "content-encoding: gzip",
                "-H",
                "transfer-encoding: chunked",
                "-H",
                "x-api-key: sk-ant-test-0000",
                "--data-binary",
            ])
            .arg(format!("@{}", gz.display()))
            .arg(&url)
            .arg(&url),
        CLIENT_TIMEOUT,
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        format!("{API_RESPONSE}{API_RESPONSE}")
    );
    let workers = nginx.workers();
    let (events, stderr) = sensor.stop();

    let client = http_with(&events, run.pid, &m);
    assert_eq!(client.len(), 2, "two exchanges from curl; stderr: {stderr}");
    let streams: Vec<_> = client.iter().map(|e| e["http"]["stream"].clone()).collect();
    assert_eq!(streams, [1, 2], "request ordinals on the connection");
    for e in &client {
        assert_exchange(e, "client", "HTTP/1.1", nginx.port_api, &json, gz_len);
        assert_eq!(
            e["http"]["request"]["headers"]["transfer-encoding"],
            "chunked"
        );
    }
    assert_eq!(
        client[0]["tls"]["connection"], client[1]["tls"]["connection"],
        "both on one connection"
    );
    let server: Vec<_> = workers
        .iter()
        .flat_map(|w| http_with(&events, *w, &m))
        .collect();
    assert_eq!(server.len(), 2, "two exchanges in the nginx worker");
    let mut pids = workers.clone();
    pids.push(run.pid);
    assert_eq!(errors_of(&events, &pids), Vec::<Value>::new());
}

#[test]
fn a_malformed_request_is_a_decode_error_and_other_connections_decode() {
    if !can_load_probes("a_malformed_request_is_a_decode_error_and_other_connections_decode") {
        return;
    }
    let _g = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let nginx = Nginx::start();
    let sensor = start_sensor(dir.path());
    let m = marker("malformed");
    // One process, two connections: a request with an invalid Content-Length,
    // then a valid one.
    let script = format!(
        r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
def talk(req):
    with socket.create_connection(("127.0.0.1", {port})) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(req)
            return t.recv(65536)
bad = b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 12abc\r\n\r\n{m}"
good_body = b'{{"model":"m","messages":[{{"role":"user","content":"{m}"}}]}}'
good = (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(good_body)).encode() + b"\r\n\r\n" + good_body)
print(talk(bad)[:12])
print(talk(good)[:12])
"#,
        port = nginx.port_api,
        m = m
    );
    let run = run_client(
        Command::new("python3")
            .arg("-c")
            .arg(&script)
            .arg(nginx.cert()),
        CLIENT_TIMEOUT,
    );
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(out.contains("400") && out.contains("200"), "{out}");
    let (events, stderr) = sensor.stop();

    let errors = errors_of(&events, &[run.pid]);
    assert_eq!(
        errors.len(),
        1,
        "one decode.error: {errors:?}; stderr: {stderr}"
    );
    let e = &errors[0];
    assert_eq!(e["decode"]["kind"], "malformed", "{e}");
    assert_eq!(e["decode"]["side"], "client", "{e}");
    assert_eq!(e["decode"]["protocol"], "http1", "{e}");
    assert!(
        !e["decode"]["detail"].as_str().unwrap_or("").contains(&m),
        "error details never carry plaintext: {e}"
    );
    let good = http_with(&events, run.pid, &m);
    assert_eq!(
        good.len(),
        1,
        "the valid request on the next connection is decoded"
    );
    assert_eq!(good[0]["http"]["response"]["status"], 200);
    assert_ne!(good[0]["tls"]["connection"], e["tls"]["connection"]);
}
