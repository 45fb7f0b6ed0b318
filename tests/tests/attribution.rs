//! Who talked to whom: each captured message names its process (program, command
//! line, ancestry, user) and its network flow (addresses, ports, Community ID),
//! and short-lived processes leave no state behind.

use std::{process::Command, time::Duration};

use serde_json::Value;
use telltale_tests::{
    Nginx, Sensor, assert_no_loss, can_load_probes, events_of, exclusive, final_status, marker,
    run_client,
};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Every event of `pid` carries the flow between `client_port`'s side and nginx.
fn assert_flow(events: &[Value], pid: u32, server_port: u16, sources: &[&str]) -> String {
    let mine = events_of(events, pid);
    assert!(!mine.is_empty(), "events of pid {pid}");
    let mut community = None;
    for e in mine {
        let s = &e["tls"]["socket"];
        assert_eq!(s["transport"], "tcp", "{s}");
        assert_eq!(s["remote_ip"], "127.0.0.1", "{s}");
        assert_eq!(s["remote_port"], server_port, "{s}");
        assert_eq!(s["local_ip"], "127.0.0.1", "{s}");
        let source = s["fd_source"].as_str().unwrap_or("");
        assert!(
            sources.contains(&source),
            "fd_source {source} not in {sources:?}"
        );
        let id = s["community_id"].as_str().expect("community id").to_owned();
        assert!(id.starts_with("1:"), "{id}");
        if let Some(c) = &community {
            assert_eq!(c, &id, "one flow per connection");
        }
        community = Some(id);
    }
    community.expect("at least one")
}

const NODE_CLIENT: &str = r#"
const https = require('https');
const [port, mark] = process.argv.slice(2);
const req = https.request({ host: '127.0.0.1', port, path: '/post', method: 'POST',
  headers: { 'X-Telltale-Marker': mark }, rejectUnauthorized: false,
  agent: new https.Agent({ keepAlive: false }) }, (res) => { res.resume(); });
req.end('hello from node ' + mark);
"#;

/// curl and Python do their own socket I/O inside SSL calls; node uses memory
/// BIOs and writes the socket after `SSL_write`: all get their flow, and the
/// server side sees the same flow (same Community ID) from its end.
#[test]
fn flows_are_named_for_curl_python_node_and_the_server() {
    if !can_load_probes("flows_are_named_for_curl_python_node_and_the_server") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let port = nginx.port_tls13;
    let dir = tempfile::tempdir().expect("tmp");
    let js = dir.path().join("client.js");
    std::fs::write(&js, NODE_CLIENT).expect("script");
    let sensor = Sensor::start(&[]);
    let curl = run_client(
        Command::new("curl")
            .args(["-sS", "--fail", "-k", "-o", "/dev/null", "-H"])
            .arg(format!("X-Telltale-Marker: {}", marker("flow-curl")))
            .arg(format!("https://127.0.0.1:{port}/static/100")),
        CLIENT_TIMEOUT,
    );
    let py = run_client(
        Command::new("/usr/bin/python3").arg("-c").arg(format!(
            "import ssl,urllib.request as u\n\
             c=ssl.create_default_context();c.check_hostname=False;c.verify_mode=ssl.CERT_NONE\n\
             u.urlopen('https://127.0.0.1:{port}/static/100',context=c).read()"
        )),
        CLIENT_TIMEOUT,
    );
    let node = run_client(
        Command::new("node")
            .arg(&js)
            .arg(port.to_string())
            .arg(marker("flow-node")),
        CLIENT_TIMEOUT,
    );
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    let nested = ["nested_io"];
    let mut ids = vec![
        assert_flow(&events, curl.pid, port, &nested),
        assert_flow(&events, py.pid, port, &nested),
        assert_flow(
            &events,
            node.pid,
            port,
            &["following_write", "preceding_read", "nested_io"],
        ),
    ];
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct flows");
    // nginx's events carry the same flows, seen from the server's end.
    let server_ids: Vec<String> = nginx
        .workers()
        .into_iter()
        .flat_map(|w| {
            events_of(&events, w)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        })
        .map(|e| {
            let s = &e["tls"]["socket"];
            assert_eq!(s["local_port"], port, "{s}");
            s["community_id"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    for id in &ids {
        assert!(server_ids.contains(id), "nginx saw flow {id}");
    }
}

/// The process block names the program, its hash, its command line with
/// secrets redacted, its user and its ancestry.
#[test]
fn process_context_is_attached_and_secrets_in_arguments_are_redacted() {
    if !can_load_probes("process_context_is_attached_and_secrets_in_arguments_are_redacted") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let sensor = Sensor::start(&[]);
    let secret = format!("sk-ant-{}", telltale_tests::rand_hex(16));
    let m = marker("ctx");
    let run = run_client(
        Command::new("curl")
            .args(["-sS", "--fail", "-k", "-o", "/dev/null", "-H"])
            .arg(format!("X-Telltale-Marker: {m}"))
            .arg("-H")
            .arg(format!("x-api-key: {secret}"))
            .arg(format!("https://127.0.0.1:{}/static/100", nginx.port_tls13)),
        CLIENT_TIMEOUT,
    );
    let (events, _) = sensor.stop();
    let mine = events_of(&events, run.pid);
    assert!(!mine.is_empty());
    let p = &mine[0]["process"];
    assert!(
        p["exe"].as_str().is_some_and(|e| e.ends_with("/curl")),
        "{p}"
    );
    let digest = p["exe_sha256"].as_str().expect("sha256");
    assert_eq!(digest.len(), 64, "{p}");
    assert_eq!(p["user"], "root", "{p}");
    let cmdline: Vec<&str> = p["cmdline"]
        .as_array()
        .expect("cmdline")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(cmdline.first(), Some(&"curl"), "{cmdline:?}");
    assert!(
        cmdline.iter().any(|a| a.contains(&m)),
        "ordinary arguments kept: {cmdline:?}"
    );
    let whole = serde_json::to_string(p).expect("json");
    assert!(!whole.contains(&secret), "the API key leaked: {whole}");
    assert!(whole.contains("[REDACTED]"), "{whole}");
    // The test binary started curl: it is the parent.
    let parent = &p["ancestry"][0];
    assert_eq!(parent["pid"], std::process::id(), "{p}");
    assert_eq!(p["ppid"], std::process::id());
}

/// A thousand short-lived processes in a row, each making one TLS request, are
/// all attributed, and their state is gone once they have exited.
#[test]
fn a_thousand_short_lived_processes_are_attributed_and_forgotten() {
    if !can_load_probes("a_thousand_short_lived_processes_are_attributed_and_forgotten") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let sensor = Sensor::start(&[]);
    const N: usize = 1000;
    let url = format!("https://127.0.0.1:{}/static/0", nginx.port_tls13);
    let mut pids = Vec::with_capacity(N);
    for _ in 0..N {
        let run = run_client(
            Command::new("curl").args(["-sS", "--fail", "-k", "-o", "/dev/null", &url]),
            CLIENT_TIMEOUT,
        );
        pids.push(run.pid);
    }
    // Let exit records and the attribution window pass before stopping.
    std::thread::sleep(Duration::from_millis(500));
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    for pid in &pids {
        let mine = events_of(&events, *pid);
        assert!(mine.len() >= 2, "pid {pid}: request and response");
        for e in mine {
            assert_eq!(e["process"]["comm"], "curl");
            assert!(
                e["process"]["exe"]
                    .as_str()
                    .is_some_and(|x| x.ends_with("/curl")),
                "pid {pid} attributed: {}",
                e["process"]
            );
            assert!(
                e["tls"]["socket"]["community_id"].is_string(),
                "{}",
                e["tls"]
            );
        }
    }
    let fin = final_status(&events);
    assert_eq!(fin["reassembly"]["open_connections"], 0, "{fin}");
    let cached = fin["processes"]["cached"].as_u64().expect("cached");
    assert!(
        cached < 100,
        "exited processes are forgotten: {cached} cached; {fin}"
    );
}
