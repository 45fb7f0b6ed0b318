//! `telltale targets` lists what the sensor would attach to.

use std::process::Command;

#[test]
fn targets_lists_system_libssl_and_node_with_offsets() {
    let out = Command::new(telltale_tests::sensor_bin())
        .args(["targets", "--json"])
        .output()
        .expect("run telltale targets");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let targets = v["targets"].as_array().expect("targets");
    let find = |suffix: &str| {
        targets
            .iter()
            .find(|t| t["path"].as_str().is_some_and(|p| p.ends_with(suffix)))
    };
    let libssl = find("/libssl.so.3").expect("system libssl listed");
    assert_eq!(libssl["kind"], "shared_library");
    let symbols: Vec<_> = libssl["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| f["symbol"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        symbols,
        ["SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex"]
    );
    if std::path::Path::new("/usr/bin/node").exists() {
        let node = find("/node").expect("node listed");
        assert_eq!(node["kind"], "executable");
        assert!(node["reasons"].to_string().contains("runtime on PATH"));
    }
}

/// GnuTLS and NSS are listed with their functions; a process holding a
/// connection is listed with its TLS stack, how it is hooked, and its peer port.
#[test]
fn targets_lists_every_stack_and_processes_with_connections() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Python (system OpenSSL) connects and waits for a TLS handshake that the
    // listener never answers.
    let mut client = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket, ssl, sys, time\n\
             s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
             ssl.create_default_context()\n\
             print('connected', flush=True)\n\
             time.sleep(60)",
        ])
        .arg(port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let (_conn, _) = listener.accept().expect("accept");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(client.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("python says it connected");
    let out = Command::new(telltale_tests::sensor_bin())
        .args(["targets", "--json"])
        .output()
        .expect("run telltale targets");
    let _ = client.kill();
    let _ = client.wait();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let targets = v["targets"].as_array().expect("targets");
    for (file, library) in [
        ("libgnutls.so.30", "gnutls"),
        ("libnspr4.so", "nss"),
        ("libssl3.so", "nss"),
    ] {
        if !std::path::Path::new("/usr/lib/x86_64-linux-gnu")
            .join(file)
            .exists()
        {
            continue;
        }
        let t = targets
            .iter()
            .find(|t| t["path"].as_str().is_some_and(|p| p.contains(file)))
            .unwrap_or_else(|| panic!("{file} listed"));
        assert_eq!(t["library"], library, "{t}");
    }
    let procs = v["processes"].as_array().expect("processes");
    let me = procs
        .iter()
        .find(|p| p["pid"] == client.id())
        .unwrap_or_else(|| panic!("the python client is listed: {procs:?}"));
    assert!(
        me["sockets"]["remote_ports"]
            .as_array()
            .is_some_and(|a| a.contains(&serde_json::json!(port))),
        "{me}"
    );
    let stacks = me["stacks"].as_array().expect("stacks");
    assert!(
        stacks
            .iter()
            .any(|s| s["library"] == "openssl" && s["hooked"].is_string()),
        "{me}"
    );
}

#[test]
fn bad_configuration_fails_with_file_and_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[capture]\nring_buffer_bytes = 12345\n").expect("write");
    let out = Command::new(telltale_tests::sensor_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("config")
        .output()
        .expect("run telltale config");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("ring_buffer_bytes"),
        "{err}"
    );
}
