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
