//! What AI clients send, end to end: the official Anthropic Python SDK and a
//! node client (OpenAI Chat Completions over node's fetch) run in a real git
//! project and send, as coding CLIs do, the kernel release, their working
//! directory, a listing of its files, `git status` output and — inside
//! `metadata.user_id` as a JSON string — a persistent device id next to a
//! per-session id. Every kind is detected at its JSON path, the device id is
//! recognised as persistent across sessions, and the inventory (events and
//! `telltale inventory`) lists what each client sent to the mock API.

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

/// The device id the Python client sends in every session.
const DEVICE_ID: &str = "7c3f9e2a51b04d8e9a6f0c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4";

/// The Anthropic SDK client: builds its context like a coding CLI, from the
/// process's own working directory, `uname`, `git status` and a listing.
const PY_CLIENT: &str = r#"
import json, os, platform, subprocess, sys, uuid
import anthropic

port, cert, device = sys.argv[1:4]
cwd = os.getcwd()
status = subprocess.run(["git", "status"], capture_output=True, text=True, check=True).stdout
listing = "\n".join(sorted(os.listdir(cwd)))
system = (
    "You are a coding assistant.\n<env>\n"
    f"Working directory: {cwd}\nIs directory a git repo: Yes\nPlatform: linux\n"
    f"OS Version: Linux {platform.release()}\nToday's date: 2026-11-29\n</env>\n"
    f"gitStatus: This is the git status at the start of the conversation.\n{status}"
)
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
    messages=[{"role": "user", "content": f"Here are the project files:\n{listing}\nWhat should I refactor?"}],
    metadata={"user_id": json.dumps({"device_id": device, "account_uuid": "", "session_id": str(uuid.uuid4())})},
)
print(reply.content[0].text)
"#;

/// The node client: an OpenAI Chat Completions request with the same kind of
/// context, and a tool call whose JSON arguments name a file in the project.
const NODE_CLIENT: &str = r#"
const os = require("os"), fs = require("fs"), cp = require("child_process");
const port = process.env.TT_PORT;
const cwd = process.cwd();
const status = cp.execSync("git status --short", { encoding: "utf8" });
const body = {
  model: "gpt-test",
  messages: [
    { role: "system", content: `You are an agent. cwd: ${cwd}. OS: ${os.type()} ${os.release()}.` },
    { role: "user", content: `Files:\n${fs.readdirSync(cwd).sort().join("\n")}` },
    { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function",
      function: { name: "read_file", arguments: JSON.stringify({ path: `${cwd}/ledger_reconcile.py` }) } }] },
    { role: "tool", tool_call_id: "call_1", content: `git status --short:\n${status}` },
  ],
};
fetch(`https://127.0.0.1:${port}/v1/chat/completions`, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: "Bearer sk-test-0000" },
  body: JSON.stringify(body),
}).then(async (r) => { console.log(r.status); await r.text(); })
  .catch((e) => { console.error(e); process.exit(1); });
"#;

/// Files of the project; the first four are distinctive names.
const FILES: [&str; 5] = [
    "ledger_reconcile.py",
    "invoice-export.sql",
    "customer_churn.ipynb",
    "deploy-prod.sh",
    "README.md",
];

/// A git project with committed, modified and untracked files.
fn project(dir: &Path) -> PathBuf {
    let p = dir.join("acme-payments");
    std::fs::create_dir_all(&p).expect("project dir");
    for f in FILES {
        std::fs::write(p.join(f), format!("# {f}\n")).expect("file");
    }
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args([
                "-c",
                "user.name=Dev",
                "-c",
                "user.email=dev@example.invalid",
            ])
            .args(args)
            .current_dir(&p)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .output()
            .expect("git");
        assert!(ok.status.success(), "git {args:?}: {:?}", ok);
    };
    git(&["init", "-q", "-b", "main"]);
    git(&[
        "add",
        "ledger_reconcile.py",
        "invoice-export.sql",
        "README.md",
    ]);
    git(&["commit", "-q", "-m", "init"]);
    std::fs::write(p.join("ledger_reconcile.py"), "# changed\n").expect("modify");
    p
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("telltale.toml");
    std::fs::write(
        &path,
        format!(
            "[state]\ndir = {:?}\n",
            dir.join("state").display().to_string()
        ),
    )
    .expect("config");
    path
}

fn run_python(python: &Path, nginx: &Nginx, cwd: &Path, home: &Path) -> ClientRun {
    let run = run_client(
        Command::new(python)
            .arg("-c")
            .arg(PY_CLIENT)
            .arg(nginx.port_api.to_string())
            .arg(nginx.cert())
            .arg(DEVICE_ID)
            .current_dir(cwd)
            .env("HOME", home)
            .env("GIT_CONFIG_NOSYSTEM", "1"),
        CLIENT_TIMEOUT,
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "ok",
        "{}",
        run.stderr
    );
    run
}

fn alerts_of(events: &[Value], pid: u32) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "alert" && e["process"]["pid"] == pid)
        .collect()
}

/// (rule id, fact kind or identifier, hit path) of every hit of `alerts`.
fn hits(alerts: &[&Value]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for a in alerts {
        let id = a["alert"]["id"].as_str().unwrap_or_default().to_owned();
        for h in a["alert"]["hits"].as_array().into_iter().flatten() {
            let src = &h["source"];
            let what = src["kind"]
                .as_str()
                .or(src["type"].as_str())
                .unwrap_or_default()
                .to_owned();
            out.push((
                id.clone(),
                what,
                h["path"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    out
}

fn has(hits: &[(String, String, String)], rule: &str, what: &str, path: &str) -> bool {
    hits.iter()
        .any(|(r, w, p)| r == rule && (what.is_empty() || w == what) && p == path)
}

#[test]
fn coding_clients_context_is_detected_and_inventoried_per_client() {
    const TEST: &str = "coding_clients_context_is_detected_and_inventoried_per_client";
    if !can_load_probes(TEST) {
        return;
    }
    let Some(python) = python_with_sdks_or_skip(TEST) else {
        return;
    };
    let _g = exclusive();
    let dir = tempfile::tempdir().expect("tmp");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let cwd = project(dir.path());
    let nginx = Nginx::start();
    let cfg = config(dir.path());
    let sensor = Sensor::spawn(&["--emit", "alerts"], Some(&cfg));
    let first = run_python(&python, &nginx, &cwd, &home);
    let second = run_python(&python, &nginx, &cwd, &home);
    let node = run_client(
        Command::new("node")
            .arg("-e")
            .arg(NODE_CLIENT)
            .env("TT_PORT", nginx.port_api.to_string())
            .current_dir(&cwd)
            .env("NODE_EXTRA_CA_CERTS", nginx.cert())
            .env("HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1"),
        CLIENT_TIMEOUT,
    );
    assert_eq!(
        String::from_utf8_lossy(&node.stdout).trim(),
        "200",
        "{}",
        node.stderr
    );
    let (events, log) = sensor.stop();

    // The Anthropic SDK: every kind at its path.
    let py = hits(&alerts_of(&events, first.pid));
    let dump = || format!("{py:#?}\n{log}");
    assert!(
        has(&py, "TT-FP-005", "kernel_release", "$.system"),
        "{}",
        dump()
    );
    assert!(
        has(&py, "TT-FP-002", "working_directory", "$.system"),
        "{}",
        dump()
    );
    assert!(
        has(&py, "TT-FP-007", "regex", "$.system"),
        "git status: {}",
        dump()
    );
    assert!(
        has(&py, "TT-FP-008", "file_name", "$.messages[0].content"),
        "file listing: {}",
        dump()
    );
    // The device id persists across sessions (processes); the session id does not.
    let again = hits(&alerts_of(&events, second.pid));
    let device = "$.metadata.user_id{json}.device_id";
    let session = "$.metadata.user_id{json}.session_id";
    assert!(has(&again, "TT-ID-002", "", device), "{again:#?}");
    assert!(!has(&again, "TT-ID-002", "", session), "{again:#?}");

    // node: the same kinds in the OpenAI shape, including the tool call's
    // JSON arguments and the tool result.
    let nd = hits(&alerts_of(&events, node.pid));
    assert!(
        has(&nd, "TT-FP-005", "kernel_release", "$.messages[0].content"),
        "{nd:#?}"
    );
    assert!(
        has(
            &nd,
            "TT-FP-002",
            "working_directory",
            "$.messages[0].content"
        ),
        "{nd:#?}"
    );
    assert!(
        has(&nd, "TT-FP-008", "file_name", "$.messages[1].content"),
        "{nd:#?}"
    );
    assert!(
        has(
            &nd,
            "TT-FP-002",
            "working_directory",
            "$.messages[2].tool_calls[0].function.arguments{json}.path"
        ),
        "{nd:#?}"
    );
    assert!(
        has(&nd, "TT-FP-007", "regex", "$.messages[3].content"),
        "{nd:#?}"
    );

    // Inventory events, per client.
    let inventory: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "inventory")
        .collect();
    let entry_of = |product: &str| -> &Value {
        inventory
            .iter()
            .rev()
            .map(|e| &e["inventory"]["entry"])
            .find(|en| en["client"]["product"] == product)
            .unwrap_or_else(|| panic!("no inventory event for {product}: {inventory:#?}"))
    };
    let names = |en: &Value, key: &str| -> Vec<String> {
        en[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["name"].as_str().map(str::to_owned))
            .collect()
    };
    let sdk = entry_of("Anthropic/Python");
    assert_eq!(sdk["client"]["version"], "2.14.0");
    assert_eq!(sdk["destination"], format!("127.0.0.1:{}", nginx.port_api));
    let kinds = names(sdk, "kinds");
    // The SDK's X-Stainless-OS/-Arch/-Runtime-Version headers declare the rest.
    for k in [
        "kernel_release",
        "working_directory",
        "file_name",
        "TT-FP-007",
        "os_name",
        "arch",
        "runtime_version",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    assert!(names(sdk, "fields").iter().any(|f| f == device), "{sdk:#}");
    let first_reason = inventory
        .iter()
        .find(|e| e["process"]["pid"] == first.pid)
        .map(|e| e["inventory"]["reason"].clone());
    assert_eq!(first_reason, Some(Value::from("new_client")));
    let nd_entry = entry_of("node");
    let kinds = names(nd_entry, "kinds");
    for k in [
        "kernel_release",
        "working_directory",
        "file_name",
        "TT-FP-007",
    ] {
        assert!(kinds.iter().any(|x| x == k), "node: {k} in {kinds:?}");
    }

    // `telltale inventory` reads the same state: both clients, their kinds.
    let out = Command::new(telltale_tests::sensor_bin())
        .arg("--config")
        .arg(&cfg)
        .args(["inventory", "--json"])
        .output()
        .expect("telltale inventory");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let clients = snap["clients"].as_array().expect("clients");
    for product in ["Anthropic/Python", "node"] {
        let c = clients
            .iter()
            .find(|c| c["product"] == product)
            .unwrap_or_else(|| panic!("{product} in {snap:#}"));
        let dest = c["destinations"]
            .as_array()
            .and_then(|d| d.first())
            .expect("a destination");
        assert!(
            names(dest, "kinds")
                .iter()
                .any(|k| k == "working_directory"),
            "{c:#}"
        );
    }
    let table = Command::new(telltale_tests::sensor_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("inventory")
        .output()
        .expect("telltale inventory");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("Anthropic/Python 2.14.0") && table.contains("working_directory"),
        "{table}"
    );
}
