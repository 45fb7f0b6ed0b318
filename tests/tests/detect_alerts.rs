//! Detection end to end: the official Anthropic Python SDK sends a Messages
//! request to nginx over TLS; the sensor, started with this host's facts in its
//! environment, raises one alert that names the host facts the system prompt
//! carried, with redacted evidence, and stays quiet on a benign request.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;
use telltale_tests::{
    ClientRun, Nginx, Sensor, can_load_probes, exclusive, python_with_sdks_or_skip, run_client,
};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// This host's time zone and proxy, as the sensor sees them.
const TZ: &str = "America/Chicago";
const PROXY: &str = "http://proxy.telltale-test.example:3128";

/// Sends one `messages.create` with the official SDK: argv is port and CA
/// certificate; the prompts come from the environment (not argv, which the
/// sensor reports in `process.cmdline`). Prints the reply's text.
const SDK_CLIENT: &str = r#"
import os
import sys
import anthropic

port, cert = sys.argv[1:3]
system, user = os.environ["TT_SYSTEM"], os.environ["TT_USER"]
client = anthropic.Anthropic(
    api_key="sk-ant-test-0000",
    base_url=f"https://127.0.0.1:{port}",
    http_client=anthropic.DefaultHttpxClient(verify=cert),
    max_retries=0,
)
reply = client.messages.create(
    model="claude-test",
    max_tokens=64,
    system=system,
    messages=[{"role": "user", "content": user}],
)
print(reply.content[0].text)
"#;

/// A configuration whose state directory is inside `dir`.
fn config(dir: &Path) -> PathBuf {
    let state = dir.join("state");
    let path = dir.join("telltale.toml");
    std::fs::write(
        &path,
        format!("[state]\ndir = {:?}\n", state.display().to_string()),
    )
    .expect("write config");
    path
}

/// The sensor printing `emit`, with this test's host facts in its environment.
fn start_sensor(dir: &Path, emit: &str) -> Sensor {
    Sensor::spawn_with_env(
        &["--emit", emit],
        Some(&config(dir)),
        &[("TZ", TZ), ("https_proxy", PROXY)],
    )
}

/// This host's kernel release, as the sensor reads it.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .expect("/proc/sys/kernel/osrelease")
        .trim()
        .to_owned()
}

/// Runs the SDK client with a direct connection (no proxy in its environment).
fn run_sdk(python: &Path, nginx: &Nginx, system: &str, user: &str) -> ClientRun {
    let mut cmd = Command::new(python);
    cmd.arg("-c")
        .arg(SDK_CLIENT)
        .arg(nginx.port_api.to_string())
        .arg(nginx.cert())
        .env("TT_SYSTEM", system)
        .env("TT_USER", user);
    for var in [
        "https_proxy",
        "HTTPS_PROXY",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    let run = run_client(&mut cmd, CLIENT_TIMEOUT);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "ok",
        "the SDK parsed nginx's reply; stderr: {}",
        run.stderr
    );
    run
}

fn of_pid<'a>(events: &'a [Value], kind: &str, pid: u32) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == kind && e["process"]["pid"] == pid)
        .collect()
}

/// The `kind`s named in an alert's `alert.facts`.
fn fact_kinds(alert: &Value) -> Vec<&str> {
    alert["alert"]["facts"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["kind"].as_str()).collect())
        .unwrap_or_default()
}

fn pretty(events: &[&Value]) -> String {
    events
        .iter()
        .map(|e| serde_json::to_string_pretty(e).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn anthropic_sdk_system_prompt_with_host_facts_raises_one_alert_naming_them() {
    const TEST: &str = "anthropic_sdk_system_prompt_with_host_facts_raises_one_alert_naming_them";
    if !can_load_probes(TEST) {
        return;
    }
    let Some(python) = python_with_sdks_or_skip(TEST) else {
        return;
    };
    let _g = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let nginx = Nginx::start();
    let sensor = start_sensor(dir.path(), "alerts,errors");
    let release = kernel_release();
    let system = format!(
        "You are a coding assistant working in the user's terminal.\n\n\
         Here is useful information about the environment you are running in:\n\
         <env>\n\
         Working directory: /workspace/app\n\
         Platform: linux\n\
         OS Version: Linux {release}\n\
         Timezone: {TZ}\n\
         Proxy: {PROXY}\n\
         </env>"
    );
    let run = run_sdk(&python, &nginx, &system, "hello");
    let (events, stderr) = sensor.stop();

    let alerts = of_pid(&events, "alert", run.pid);
    eprintln!(
        "alert events of the client (pid {}):\n{}",
        run.pid,
        pretty(&alerts)
    );
    let wanted = ["timezone", "proxy", "kernel_release"];
    let naming: Vec<&Value> = alerts
        .iter()
        .copied()
        .filter(|a| wanted.iter().all(|k| fact_kinds(a).contains(k)))
        .collect();
    assert_eq!(
        naming.len(),
        1,
        "one alert from the client names {wanted:?}; alerts of pid {}:\n{}\nsensor stderr:\n{stderr}",
        run.pid,
        pretty(&alerts)
    );
    let alert = naming[0];
    assert_eq!(alert["request"]["path"], "/v1/messages", "{alert}");
    assert_eq!(alert["request"]["api"], "anthropic_messages", "{alert}");

    let hits = alert["alert"]["hits"].as_array().expect("alert.hits");
    for kind in wanted {
        assert!(
            hits.iter().any(|h| h["source"]["kind"] == kind
                && h["role"] == "system"
                && h["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("$.system"))),
            "a system-prompt hit for {kind}: {}",
            serde_json::to_string_pretty(hits).unwrap_or_default()
        );
    }

    // Evidence is redacted: no excerpt, nor anything else in an alert's `alert`
    // or `request`, spells out a fact's value.
    for a in &alerts {
        for h in a["alert"]["hits"].as_array().into_iter().flatten() {
            let excerpt = h["evidence"]["excerpt"].as_str().unwrap_or("");
            for secret in [PROXY, TZ, release.as_str()] {
                assert!(
                    !excerpt.contains(secret),
                    "evidence excerpt {excerpt:?} reveals {secret:?}: {h}"
                );
            }
        }
        let shown = format!("{}{}", a["alert"], a["request"]);
        for secret in [PROXY, TZ, release.as_str()] {
            assert!(
                !shown.contains(secret),
                "alert reveals {secret:?}: {}",
                pretty(&[a])
            );
        }
    }

    let errors = of_pid(&events, "decode.error", run.pid);
    assert!(
        errors.is_empty(),
        "no decode.error for the client: {}",
        pretty(&errors)
    );
}

#[test]
fn benign_request_raises_no_alert() {
    const TEST: &str = "benign_request_raises_no_alert";
    if !can_load_probes(TEST) {
        return;
    }
    let Some(python) = python_with_sdks_or_skip(TEST) else {
        return;
    };
    let _g = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let nginx = Nginx::start();
    // `http` too, to show the request was seen and decoded: no alert must mean
    // nothing found, not nothing captured.
    let sensor = start_sensor(dir.path(), "alerts,errors,http");
    let run = run_sdk(
        &python,
        &nginx,
        "You are a helpful assistant.",
        "What is 3pm America/New_York in Europe/London?",
    );
    let (events, stderr) = sensor.stop();

    let exchanges = of_pid(&events, "http", run.pid);
    assert!(
        exchanges
            .iter()
            .any(|e| e["http"]["request"]["path"] == "/v1/messages"),
        "the sensor decoded the client's request; http events of pid {}:\n{}\nsensor stderr:\n{stderr}",
        run.pid,
        pretty(&exchanges)
    );
    let alerts = of_pid(&events, "alert", run.pid);
    assert!(
        alerts.is_empty(),
        "no alert for a benign request; got:\n{}\nsensor stderr:\n{stderr}",
        pretty(&alerts)
    );
    let errors = of_pid(&events, "decode.error", run.pid);
    assert!(
        errors.is_empty(),
        "no decode.error for the client: {}",
        pretty(&errors)
    );
}
