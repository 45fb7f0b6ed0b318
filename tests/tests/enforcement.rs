//! Enforcement end to end: the official Anthropic Python SDK and a node fetch
//! client, running as a user a blocking policy selects, each send a request
//! that carries this host's kernel release and then an innocuous one to a
//! local mock LLM API. Under `block` the first never reaches the mock (its log
//! proves it), the client gets an error, and the second goes through on the
//! same client. In dry-run nothing is held and the decision is reported. A
//! sensor killed with SIGKILL while it holds a process leaves it running.

use std::{
    io::{BufRead, BufReader},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use telltale_tests::{ClientRun, Sensor, can_load_probes, exclusive, python_with_sdks_or_skip};

/// The user the policy selects and the clients run as.
const CLIENT_UID: u32 = 65534;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The mock LLM API: HTTPS on loopback (as root, so no policy selects it); it
/// answers Anthropic Messages and OpenAI Chat Completions and logs every
/// request it received in full, one JSON line each; a request whose body did
/// not arrive whole is logged as incomplete, without its bytes.
const MOCK: &str = r#"
import http.server, json, ssl, sys
port, cert, key, log_path = sys.argv[1:5]
log = open(log_path, "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(n)
        if len(body) != n:
            log.write(json.dumps({"path": self.path, "incomplete": True}) + "\n")
            return
        log.write(json.dumps({"path": self.path, "body": body.decode("utf-8", "replace")}) + "\n")
        if self.path.endswith("/messages"):
            out = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
                   "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}
        else:
            out = {"id": "c1", "object": "chat.completion", "created": 0, "model": "gpt-test",
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "ok"}}]}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
"#;

/// The Anthropic SDK client: the kernel release (as coding CLIs put it in
/// their system prompt), then an innocuous question, on one client.
const PY_CLIENT: &str = r#"
import platform, sys, anthropic
port, cert = sys.argv[1:3]
client = anthropic.Anthropic(api_key="sk-ant-test-0000", base_url=f"https://127.0.0.1:{port}",
    http_client=anthropic.DefaultHttpxClient(verify=cert), max_retries=0)
def ask(system, text):
    try:
        r = client.messages.create(model="claude-test", max_tokens=16, system=system,
                                   messages=[{"role": "user", "content": text}])
        print("OK", r.content[0].text, flush=True)
    except Exception as e:
        print("ERR", type(e).__name__, flush=True)
ask(f"You are a coding assistant.\nOS Version: Linux {platform.release()}", "Refactor main.py")
ask("You are a helpful assistant.", "What is a monad?")
"#;

/// The node client: the same two requests as OpenAI Chat Completions.
const NODE_CLIENT: &str = r#"
const os = require("os");
const port = process.argv[1];
async function ask(system, text) {
  try {
    const r = await fetch(`https://127.0.0.1:${port}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer sk-test-0000" },
      body: JSON.stringify({ model: "gpt-test",
        messages: [{ role: "system", content: system }, { role: "user", content: text }] }),
    });
    const j = await r.json();
    console.log("OK", j.choices[0].message.content);
  } catch (e) {
    console.log("ERR", (e.cause && e.cause.code) || e.name);
  }
}
(async () => {
  await ask(`You are an agent. OS: ${os.type()} ${os.release()}.`, "Refactor main.js");
  await ask("You are a helpful assistant.", "What is a monad?");
})();
"#;

/// The innocuous question both clients ask second.
const INNOCUOUS: &str = "What is a monad?";

struct Mock {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Mock {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let log = dir.join("mock.log");
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(MOCK)
            .arg(port.to_string())
            .arg(dir.join("cert.pem"))
            .arg(dir.join("key.pem"))
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("mock ready line");
        assert_eq!(line.trim(), "ready", "the mock API did not start");
        Self { child, port, log }
    }

    /// Every request the mock logged.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("mock log line"))
            .collect()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory the clients' user can read, with a certificate for 127.0.0.1.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("telltale-enforce-")
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-days", "2", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(dir.path().join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(ok.success(), "generating a certificate failed");
    for f in ["cert.pem", "key.pem"] {
        std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    dir
}

/// A configuration: a policy that blocks every fingerprint rule's findings
/// in processes of [`CLIENT_UID`]; the mock's port is a TLS port.
fn config(dir: &Path, port: u16, timeout_ms: u64) -> PathBuf {
    let path = dir.join("telltale.toml");
    let text = format!(
        r#"
[state]
dir = {state:?}

[capture]
tls_ports = [443, {port}]

[enforce]
decision_timeout_ms = {timeout_ms}
fail = "open"

[[enforce.policies]]
name = "no-host-facts"
user = ["{CLIENT_UID}"]
mode = "alert"
rules = {{ "TT-FP-*" = "block" }}
"#,
        state = dir.join("state").display().to_string(),
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn as_client(cmd: &mut Command, dir: &Path) {
    cmd.uid(CLIENT_UID)
        .gid(CLIENT_UID)
        .current_dir(dir)
        .env("HOME", dir)
        .stdin(Stdio::null());
}

fn python_client(python: &Path, dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg("-c")
        .arg(PY_CLIENT)
        .arg(port.to_string())
        .arg(dir.join("cert.pem"));
    as_client(&mut cmd, dir);
    cmd
}

fn node_client(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg("-e")
        .arg(NODE_CLIENT)
        .arg(port.to_string())
        .env("NODE_EXTRA_CA_CERTS", dir.join("cert.pem"));
    as_client(&mut cmd, dir);
    cmd
}

fn run(cmd: &mut Command) -> (ClientRun, Vec<String>) {
    let run = telltale_tests::run_client(cmd, CLIENT_TIMEOUT);
    let lines = String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (run, lines)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .expect("osrelease")
        .trim()
        .to_owned()
}

fn enforcement_of(events: &[Value], pid: u32) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "enforcement" && e["process"]["pid"] == pid)
        .collect()
}

/// Every event matches the event schema.
fn assert_schema(events: &[Value]) {
    let path = telltale_tests::workspace_root().join("schema/telltale-event.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("schema JSON");
    let v = jsonschema::draft202012::options()
        .build(&schema)
        .expect("schema compiles");
    for e in events {
        let errors: Vec<String> = v.iter_errors(e).map(|x| x.to_string()).collect();
        assert!(errors.is_empty(), "{e}\n{errors:?}");
    }
}

fn final_kernel_counters(events: &[Value]) -> &Value {
    &telltale_tests::final_status(events)["kernel"]
}

/// What every test here starts from: probes can load, the SDK virtualenv is
/// there (else it skips, saying why), the other sensor tests are kept out, a
/// directory the clients can read, the mock API and a configuration.
struct Bed {
    python: PathBuf,
    mock: Mock,
    config: PathBuf,
    dir: tempfile::TempDir,
    _exclusive: std::sync::MutexGuard<'static, ()>,
}

impl Bed {
    fn start(test: &str, decision_timeout_ms: u64) -> Option<Self> {
        if !can_load_probes(test) {
            return None;
        }
        let python = python_with_sdks_or_skip(test)?;
        let exclusive = exclusive();
        let dir = workdir();
        let mock = Mock::start(dir.path());
        let config = config(dir.path(), mock.port, decision_timeout_ms);
        Some(Self {
            python,
            mock,
            config,
            dir,
            _exclusive: exclusive,
        })
    }

    fn sensor(&self, args: &[&str]) -> Sensor {
        Sensor::spawn(args, Some(&self.config))
    }

    fn python_client(&self) -> Command {
        python_client(&self.python, self.dir.path(), self.mock.port)
    }
}

#[test]
fn blocked_requests_never_leave_and_clients_keep_working() {
    let Some(bed) = Bed::start(
        "blocked_requests_never_leave_and_clients_keep_working",
        5000,
    ) else {
        return;
    };
    let sensor = bed.sensor(&["--emit", "alerts"]);
    let (py, py_out) = run(&mut bed.python_client());
    let (node, node_out) = run(&mut node_client(bed.dir.path(), bed.mock.port));
    let mock = &bed.mock;
    let (events, log) = sensor.stop();

    for (name, out, stderr) in [
        ("python", &py_out, &py.stderr),
        ("node", &node_out, &node.stderr),
    ] {
        assert_eq!(out.len(), 2, "{name}: {out:?} {stderr}");
        assert!(
            out[0].starts_with("ERR"),
            "{name}: the leaking request must fail: {out:?}"
        );
        assert_eq!(
            out[1], "OK ok",
            "{name}: the next request must work: {out:?}"
        );
    }

    // The mock's log: the two innocuous requests, whole; nothing with the
    // kernel release, not even part of it.
    let release = kernel_release();
    let requests = mock.requests();
    let raw = std::fs::read_to_string(&mock.log).unwrap_or_default();
    assert!(
        !raw.contains(&release),
        "the kernel release reached the mock: {raw}"
    );
    let whole: Vec<&Value> = requests.iter().filter(|r| r["body"].is_string()).collect();
    assert_eq!(whole.len(), 2, "{requests:?}");
    assert!(
        whole
            .iter()
            .all(|r| r["body"].as_str().unwrap_or("").contains(INNOCUOUS))
    );

    for (name, pid) in [("python", py.pid), ("node", node.pid)] {
        let enf = enforcement_of(&events, pid);
        let blocked: Vec<_> = enf
            .iter()
            .filter(|e| e["enforcement"]["action"] == "blocked")
            .collect();
        assert_eq!(blocked.len(), 1, "{name}: {enf:#?}\n{log}");
        let b = &blocked[0]["enforcement"];
        assert_eq!(b["mode"], "block", "{b}");
        assert_eq!(b["policy"], "no-host-facts", "{b}");
        assert!(
            b["rules"].as_array().is_some_and(|r| r
                .iter()
                .any(|id| id.as_str().is_some_and(|id| id.starts_with("TT-FP-")))),
            "{b}"
        );
        assert!(b["sockets_shut"].as_u64().is_some_and(|n| n >= 1), "{b}");
        assert!(b["request"]["path"].is_string(), "{b}");
        let allowed: Vec<_> = enf
            .iter()
            .filter(|e| e["enforcement"]["action"] == "allowed")
            .collect();
        assert_eq!(allowed.len(), 1, "{name}: {enf:#?}");
        eprintln!(
            "{name}: blocked after {} µs held, innocuous request held {} µs",
            b["held_us"], allowed[0]["enforcement"]["held_us"]
        );
        // The blocked request's values never appear in an event.
        for e in &enf {
            assert!(!e.to_string().contains(&release), "{e}");
        }
    }
    assert_schema(&events);
    let k = final_kernel_counters(&events);
    assert!(k["holds"].as_u64().is_some_and(|n| n >= 4), "{k}");
    assert_eq!(k["holds_missed"], 0, "{k}");
}

#[test]
fn dry_run_reports_what_it_would_block_and_holds_nothing() {
    let Some(bed) = Bed::start(
        "dry_run_reports_what_it_would_block_and_holds_nothing",
        5000,
    ) else {
        return;
    };
    let sensor = bed.sensor(&["--emit", "alerts", "--dry-run"]);
    let (py, out) = run(&mut bed.python_client());
    let (events, _) = sensor.stop();
    let mock = &bed.mock;
    assert_eq!(out, ["OK ok", "OK ok"], "{}", py.stderr);
    let raw = std::fs::read_to_string(&mock.log).unwrap_or_default();
    assert!(
        raw.contains(&kernel_release()),
        "dry-run must not block: {raw}"
    );
    let enf = enforcement_of(&events, py.pid);
    assert_eq!(enf.len(), 1, "{enf:#?}");
    let e = &enf[0]["enforcement"];
    assert_eq!(e["action"], "would_block", "{e}");
    assert_eq!(e["dry_run"], true, "{e}");
    assert_schema(&events);
    assert_eq!(final_kernel_counters(&events)["holds"], 0);
}

fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            == Some('T')
    })
}

fn guards_of(sensor_bin: &Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            args.first()
                .is_some_and(|a| *a == sensor_bin.as_os_str().as_encoded_bytes())
                && args.get(1).is_some_and(|a| *a == b"hold-guard")
        })
        .collect()
}

#[test]
fn a_sensor_killed_while_holding_leaves_no_stopped_process() {
    // A long decision timeout: the guard's own stall limit must not be what
    // continues the client here.
    let Some(bed) = Bed::start(
        "a_sensor_killed_while_holding_leaves_no_stopped_process",
        60_000,
    ) else {
        return;
    };
    let sensor = bed.sensor(&["--emit", "alerts"]);
    assert_eq!(
        guards_of(&telltale_tests::sensor_bin()).len(),
        1,
        "one guard runs"
    );
    // The sensor stops deciding...
    // SAFETY: signalling the child process.
    unsafe { libc::kill(sensor.pid() as i32, libc::SIGSTOP) };
    let mut client = bed
        .python_client()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client");
    // ...so the client's first TLS write holds it.
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    while !stopped(client.id()) {
        assert!(
            client.try_wait().expect("wait").is_none(),
            "the client finished without being held"
        );
        assert!(Instant::now() < deadline, "the client was never held");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed_at = Instant::now();
    // SAFETY: signalling the child process.
    unsafe { libc::kill(sensor.pid() as i32, libc::SIGKILL) };
    // The guard continues the client once the sensor is gone.
    while stopped(client.id()) {
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "the client stayed stopped after the sensor died"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "the guard continued the client {} ms after the sensor was killed",
        killed_at.elapsed().as_millis()
    );
    let _ = sensor.kill();
    let status = loop {
        if let Some(s) = client.try_wait().expect("wait") {
            break s;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "the client did not finish (stopped: {})",
            stopped(client.id())
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "client failed: {status}");
    let mut out = String::new();
    use std::io::Read;
    client
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    // With no sensor to decide, the requests went out (the guard fails open).
    assert_eq!(out.lines().collect::<Vec<_>>(), ["OK ok", "OK ok"], "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !guards_of(&telltale_tests::sensor_bin()).is_empty() {
        assert!(Instant::now() < deadline, "the guard did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}
