//! Operating the sensor: the metrics and health endpoint answer, SIGHUP swaps
//! the sinks of a running sensor (a sink added to the file starts receiving
//! events, the probes stay attached), and `config check` names the file, line and
//! problem of a bad configuration.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use telltale_tests::{Nginx, Sensor, can_load_probes, exclusive, run_client, sensor_bin};

fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn metrics_health_and_a_sighup_sink_swap() {
    if !can_load_probes("metrics_health_and_a_sighup_sink_swap") {
        return;
    }
    let _g = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = dir.path().join("telltale.toml");
    let base = format!(
        "[state]\ndir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        dir.path().join("state").display()
    );
    std::fs::write(
        &config,
        format!("{base}[[sinks]]\nname = \"stdout\"\nstdout = {{}}\n"),
    )
    .expect("config");
    let nginx = Nginx::start();
    let sensor = Sensor::spawn(&["--emit", "data"], Some(&config));

    let (code, health) = get(port, "/healthz");
    assert_eq!((code, health.as_str()), (200, "ok\n"));
    let (code, metrics) = get(port, "/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("telltale_targets_attached "), "{metrics}");
    assert!(
        metrics.contains("telltale_sinks_delivered{name=\"stdout\"}"),
        "{metrics}"
    );
    assert_eq!(get(port, "/nope").0, 404);

    // Add a file sink and reload.
    let file = dir.path().join("events.json");
    std::fs::write(
        &config,
        format!(
            "{base}[[sinks]]\nname = \"stdout\"\nstdout = {{}}\n[[sinks]]\nname = \"file\"\nfile = {{ path = \"{}\" }}\n",
            file.display()
        ),
    )
    .expect("config");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(sensor.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get(port, "/metrics").1.contains("name=\"file\"") {
        assert!(
            Instant::now() < deadline,
            "the file sink never appeared in the metrics"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("https://127.0.0.1:{}/static/100", nginx.port_tls13);
    let run = run_client(
        Command::new("curl")
            .args(["-sS", "--fail", "-o", "/dev/null", "--cacert"])
            .arg(nginx.cert())
            .arg(&url),
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(500));
    let (events, stderr) = sensor.stop();
    assert!(stderr.contains("sinks reloaded"), "{stderr}");
    let in_file = std::fs::read_to_string(&file).expect("file sink written");
    let pid = run.pid.to_string();
    assert!(
        in_file
            .lines()
            .any(|l| l.contains("\"tls.data\"") && l.contains(&format!("\"pid\":{pid}"))),
        "the reloaded file sink got the new traffic"
    );
    // The probes stayed attached: stdout saw the same traffic.
    assert!(
        events
            .iter()
            .any(|e| e["event_type"] == "tls.data" && e["process"]["pid"] == run.pid)
    );
}

#[test]
fn config_check_names_the_file_line_and_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[decode]\nmax_frame_bytes = 12\n").expect("write");
    let out = Command::new(sensor_bin())
        .arg("--config")
        .arg(&bad)
        .args(["config", "check"])
        .output()
        .expect("telltale config check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("decode.max_frame_bytes"),
        "{err}"
    );
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[[sinks]]\nname = \"x\"\nsyslg = {}\n").expect("write");
    let out = Command::new(sensor_bin())
        .arg("--config")
        .arg(&typo)
        .args(["config", "check"])
        .output()
        .expect("telltale config check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("typo.toml") && err.contains("syslg"), "{err}");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[metrics]\nlisten = \"\"\n").expect("write");
    let out = Command::new(sensor_bin())
        .arg("--config")
        .arg(&good)
        .args(["config", "check"])
        .output()
        .expect("telltale config check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}
