//! Processes the sensor did not know at start: a program that embeds OpenSSL,
//! started from a new path (found when it execs), and a client in its own
//! network and mount namespaces and a container-like cgroup (attributed to its
//! container, with the flow as its namespace sees it).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use telltale_tests::{
    Sensor, assert_no_loss, can_load_probes, events_of, exclusive, marker, rand_hex, run_client,
};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

const NODE_LATE: &str = r#"
const https = require('https');
const [port, mark] = process.argv.slice(2);
// Give the sensor time to see the exec and attach to this new program file.
setTimeout(() => {
  const req = https.request({ host: '127.0.0.1', port, path: '/post', method: 'POST',
    headers: { 'X-Telltale-Marker': mark }, rejectUnauthorized: false }, (res) => res.resume());
  req.end('late ' + mark);
}, 2000);
"#;

/// A copy of node at a path no configuration names, started after the sensor:
/// its exec reveals a new program with OpenSSL inside, which gets attached.
#[test]
fn a_new_program_with_openssl_inside_is_attached_when_it_execs() {
    if !can_load_probes("a_new_program_with_openssl_inside_is_attached_when_it_execs") {
        return;
    }
    let Some(node) = ["/usr/bin/node", "/usr/local/bin/node"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        eprintln!("skipping: node is not installed");
        return;
    };
    let _g = exclusive();
    let nginx = telltale_tests::Nginx::start();
    let dir = tempfile::tempdir().expect("tmp");
    let copy = dir.path().join("agent-runtime");
    std::fs::copy(node, &copy).expect("copy node");
    let script = dir.path().join("late.js");
    std::fs::write(&script, NODE_LATE).expect("script");
    let sensor = Sensor::start(&[]);
    let m = marker("exec");
    let run = run_client(
        Command::new(&copy)
            .arg(&script)
            .arg(nginx.port_tls13.to_string())
            .arg(&m),
        CLIENT_TIMEOUT,
    );
    let (events, stderr) = sensor.stop();
    assert_no_loss(&events);
    let mine = events_of(&events, run.pid);
    assert!(!mine.is_empty(), "the new program was captured:\n{stderr}");
    let copy = std::fs::canonicalize(&copy).expect("canonical");
    for e in &mine {
        assert_eq!(
            e["tls"]["library"],
            copy.display().to_string(),
            "{}",
            e["tls"]
        );
    }
    let all: Vec<u8> = mine
        .iter()
        .flat_map(|e| telltale_tests::plaintext(e))
        .collect();
    assert!(telltale_tests::contains(&all, m.as_bytes()));
}

const PY_SERVER: &str = r#"
import http.server, ssl, sys
cert, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"inside\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
"#;

/// A network namespace with its own loopback, removed on drop.
struct NetNs(String);

impl NetNs {
    fn new() -> Self {
        let name = format!("tt-{}", rand_hex(4));
        let ok = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(ok.is_ok_and(|s| s.success()), "ip netns add {name}");
        let ok = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "lo up in {name}");
        Self(name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A cgroup shaped like Docker's, in the unified hierarchy when the host has
/// one mounted, else in the v1 `pids` hierarchy; removed on drop.
struct ContainerCgroup {
    dir: PathBuf,
}

impl ContainerCgroup {
    fn new(id: &str) -> Option<Self> {
        let root = Path::new("/sys/fs/cgroup");
        let dir = if root.join("cgroup.controllers").exists() {
            root.join("telltale-test.slice")
                .join(format!("docker-{id}.scope"))
        } else if root.join("pids").is_dir() {
            root.join("pids").join("docker").join(id)
        } else {
            return None;
        };
        std::fs::create_dir_all(&dir).ok()?;
        Some(Self { dir })
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for ContainerCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A client in its own network and mount namespaces and a Docker-like cgroup
/// is attributed to that container, with the flow as its namespace sees it.
#[test]
fn a_client_in_its_own_namespaces_and_cgroup_is_attributed_to_its_container() {
    if !can_load_probes("a_client_in_its_own_namespaces_and_cgroup_is_attributed_to_its_container")
    {
        return;
    }
    let _g = exclusive();
    let id: String = rand_hex(32);
    let Some(cgroup) = ContainerCgroup::new(&id) else {
        eprintln!("skipping: no writable cgroup hierarchy here");
        return;
    };
    let ns = NetNs::new();
    let dir = tempfile::tempdir().expect("tmp");
    let pem = dir.path().join("server.pem");
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -subj /CN=inside -days 1 -keyout {p}.key -out {p}.crt 2>/dev/null && \
             cat {p}.key {p}.crt > {p}",
            p = pem.display()
        ))
        .status();
    assert!(ok.is_ok_and(|s| s.success()), "certificate");
    let server_py = dir.path().join("server.py");
    std::fs::write(&server_py, PY_SERVER).expect("script");
    let port = 8443;
    let mut server = Command::new("ip")
        .args(["netns", "exec", &ns.0, "/usr/bin/python3"])
        .arg(&server_py)
        .arg(&pem)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("server in the namespace");
    {
        use std::io::BufRead;
        let out = server.stdout.take().expect("stdout");
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut reader = std::io::BufReader::new(out);
        while !line.contains("ready") {
            assert!(Instant::now() < deadline, "server did not start");
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("server exited");
            }
        }
    }
    let _server = KillOnDrop(server);
    let sensor = Sensor::start(&[]);
    let m = marker("ns");
    let run = run_client(
        Command::new("sh").arg("-c").arg(format!(
            "echo $$ > {procs} && exec ip netns exec {ns} unshare -m -- \
             curl -sS --fail -k -o /dev/null -H 'X-Telltale-Marker: {m}' https://127.0.0.1:{port}/",
            procs = cgroup.procs().display(),
            ns = ns.0,
        )),
        CLIENT_TIMEOUT,
    );
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    let mine = events_of(&events, run.pid);
    assert!(!mine.is_empty(), "the namespaced client was captured");
    for e in &mine {
        let p = &e["process"];
        assert_eq!(p["comm"], "curl", "{p}");
        assert_eq!(p["container"]["runtime"], "docker", "{p}");
        assert_eq!(p["container"]["id"], id.as_str(), "{p}");
        assert!(p["cgroup"].as_str().is_some_and(|c| c.contains(&id)), "{p}");
        let s = &e["tls"]["socket"];
        assert_eq!(s["remote_ip"], "127.0.0.1", "{s}");
        assert_eq!(s["remote_port"], port, "{s}");
        assert!(s["community_id"].is_string(), "{s}");
    }
    let all: Vec<u8> = mine
        .iter()
        .flat_map(|e| telltale_tests::plaintext(e))
        .collect();
    assert!(telltale_tests::contains(&all, m.as_bytes()));
}
