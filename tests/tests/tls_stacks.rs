//! TLS stacks other than OpenSSL, end to end: the real sensor, nginx as the
//! server and real clients built on GnuTLS (gnutls-cli, git through
//! libcurl-gnutls) and NSS (tstclnt from libnss3-tools).
//!
//! Each test checks the exact request and response bytes of its connection, the
//! library the event names and the server name (SNI) the client set.

use std::{
    io::{Read, Write},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use telltale_tests::{
    Nginx, Sensor, assert_no_loss, can_load_probes, connection_with, contains, data_events,
    events_of, exclusive, marker,
};

/// A client that talks on stdin/stdout (gnutls-cli, tstclnt): writes `input`,
/// keeps stdin open until stdout shows `until` (at most `timeout`), then closes
/// stdin and stops the client. Returns the pid. The exit status is not
/// checked: these tools report a server's close as an error.
fn run_interactive(cmd: &mut Command, input: &[u8], until: &[u8], timeout: Duration) -> u32 {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write request");
    let mut stdout = child.stdout.take().expect("stdout");
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    let start = Instant::now();
    let seen = || contains(&out.lock().expect("lock"), until);
    while !seen() && start.elapsed() < timeout {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    // Let the client finish on its own briefly (it frees its connection then).
    let grace = Instant::now();
    while child.try_wait().expect("wait").is_none() && grace.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    assert!(
        seen(),
        "{cmd:?} did not print {:?}: {}",
        String::from_utf8_lossy(until),
        String::from_utf8_lossy(&out.lock().expect("lock"))
    );
    pid
}

/// An HTTP/1.1 POST of `body` to nginx's `/post`, asking it to close afterwards.
fn post_request(marker: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /post HTTP/1.1\r\nHost: localhost\r\nX-Telltale-Marker: {marker}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Every event of `pid` names `library_kind`, a library file whose name starts
/// with `file_prefix`, functions from `functions` and the server name `sni`.
fn assert_library(
    events: &[&Value],
    library_kind: &str,
    file_prefix: &str,
    functions: &[&str],
    sni: &str,
) {
    assert!(!events.is_empty());
    for e in events {
        let tls = &e["tls"];
        assert_eq!(tls["library_kind"], library_kind, "{tls}");
        let file = tls["library"].as_str().unwrap_or_default();
        let name = Path::new(file)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(name.starts_with(file_prefix), "{tls}");
        let f = tls["function"].as_str().unwrap_or_default();
        assert!(functions.contains(&f), "{tls}");
        assert_eq!(tls["server_name"], sni, "{tls}");
        assert_eq!(tls["socket"]["remote_ip"], "127.0.0.1", "{tls}");
    }
}

#[test]
fn gnutls_clients_are_captured() {
    if !can_load_probes("gnutls_clients_are_captured") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let sensor = Sensor::start(&[]);
    let m = marker("gnutls-cli");
    let body = format!("{{\"marker\":\"{m}\",\"via\":\"gnutls-cli\"}}");
    let request = post_request(&m, &body);
    let cli_pid = run_interactive(
        Command::new("gnutls-cli")
            .arg("--x509cafile")
            .arg(nginx.cert())
            .args(["-p", &nginx.port_tls13.to_string(), "localhost"]),
        &request,
        b"posted",
        Duration::from_secs(30),
    );
    // git over HTTPS uses libcurl-gnutls on Debian.
    let repo = marker("git");
    let git = Command::new("git")
        .args([
            "ls-remote",
            &format!("https://localhost:{}/{repo}.git", nginx.port_tls12),
        ])
        .env("GIT_SSL_NO_VERIFY", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git");
    let _ = git.wait_with_output();
    let (events, _) = sensor.stop();
    assert_no_loss(&events);

    let conn = connection_with(&events, cli_pid, &m);
    assert_eq!(conn.egress, request, "gnutls-cli's request, byte for byte");
    assert!(conn.ingress.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(conn.ingress.ends_with(b"\r\n\r\nposted\n"));
    assert_library(
        &events_of(&events, cli_pid),
        "gnutls",
        "libgnutls.so",
        &["gnutls_record_send", "gnutls_record_recv"],
        "localhost",
    );

    // git runs its HTTPS transport in a child (git-remote-https), which may be
    // gone before the sensor reads its /proc: match the thread's comm.
    let git_events: Vec<&Value> = data_events(&events)
        .filter(|e| {
            e["thread"]["comm"]
                .as_str()
                .is_some_and(|c| c.starts_with("git-remote-"))
        })
        .filter(|e| e["tls"]["library_kind"] == "gnutls")
        .collect();
    let get = format!("GET /{repo}.git/info/refs?service=git-upload-pack HTTP/1.1\r\n");
    assert!(
        git_events
            .iter()
            .any(|e| contains(&telltale_tests::plaintext(e), get.as_bytes())),
        "git's request over libcurl-gnutls: {} events",
        git_events.len()
    );
    assert!(git_events.iter().any(|e| e["tls"]["direction"] == "ingress"
        && contains(&telltale_tests::plaintext(e), b"404 Not Found")));
}

#[test]
fn nss_client_is_captured_and_other_nspr_io_is_not() {
    if !can_load_probes("nss_client_is_captured_and_other_nspr_io_is_not") {
        return;
    }
    let _g = exclusive();
    let nginx = Nginx::start();
    let db = tempfile::tempdir().expect("tmp");
    let ok = Command::new("certutil")
        .args(["-N", "--empty-password", "-d"])
        .arg(format!("sql:{}", db.path().display()))
        .status()
        .expect("certutil from libnss3-tools");
    assert!(ok.success());
    let sensor = Sensor::start(&[]);
    let m = marker("tstclnt");
    let body = format!("{{\"marker\":\"{m}\",\"via\":\"nss\"}}");
    let request = post_request(&m, &body);
    // -o: accept the test server's self-signed certificate; -a: the server
    // name to send (nginx listens on 127.0.0.1 only, localhost may be ::1).
    let pid = run_interactive(
        Command::new("tstclnt")
            .args(["-h", "127.0.0.1", "-a", "localhost", "-o"])
            .args(["-p", &nginx.port_tls13.to_string(), "-d"])
            .arg(format!("sql:{}", db.path().display())),
        &request,
        b"posted",
        Duration::from_secs(30),
    );
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    let conn = connection_with(&events, pid, &m);
    assert_eq!(conn.egress, request, "tstclnt's request, byte for byte");
    assert!(conn.ingress.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(conn.ingress.ends_with(b"\r\n\r\nposted\n"));
    let mine = events_of(&events, pid);
    assert_library(
        &mine,
        "nss",
        "libnspr4.so",
        &["PR_Write", "PR_Read", "PR_Send", "PR_Recv"],
        "localhost",
    );
    // tstclnt also reads stdin and writes stdout through NSPR: only the SSL
    // layer's traffic is captured, so every message of the process belongs to
    // its one TLS connection.
    let conns: std::collections::BTreeSet<_> = mine
        .iter()
        .map(|e| e["tls"]["connection"].to_string())
        .collect();
    assert_eq!(conns.len(), 1, "{conns:?}");
}

/// Builds the Go test client (tests/clients/go-https) into `dir`, stripped
/// (`-s -w`: no symbol table, only `.gopclntab`). `None` (with one line saying
/// why) when Go is not installed outside CI.
fn build_go_client(dir: &Path) -> Option<std::path::PathBuf> {
    let go = Path::new("/usr/bin/go");
    if !go.exists() {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "go is missing under CI; `./x setup` installs golang-go"
        );
        eprintln!("skipping the Go client: /usr/bin/go is not installed (./x setup installs it)");
        return None;
    }
    let out = dir.join("gohttps");
    let src = telltale_tests::workspace_root().join("tests/clients/go-https");
    let status = Command::new(go)
        .args(["build", "-trimpath", "-ldflags=-s -w", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .status()
        .expect("go build");
    assert!(status.success(), "building the Go client failed");
    Some(out)
}

#[test]
fn stripped_go_client_is_captured() {
    if !can_load_probes("stripped_go_client_is_captured") {
        return;
    }
    let _g = exclusive();
    let dir = tempfile::tempdir().expect("tmp");
    let Some(client) = build_go_client(dir.path()) else {
        return;
    };
    let nginx = Nginx::start();
    let sensor = Sensor::start(&[]);
    let url = format!("https://127.0.0.1:{}/post", nginx.port_tls13);
    // The sensor finds the new program when it starts (exec); a first run can
    // finish before its probes are in place, so the second run is the one
    // checked, byte for byte.
    let mut runs = Vec::new();
    for round in 0..2 {
        let m = marker(&format!("go-{round}"));
        let body = format!("{{\"marker\":\"{m}\",\"via\":\"go\"}}");
        let file = dir.path().join(&m);
        std::fs::write(&file, &body).expect("body");
        let run = telltale_tests::run_client(
            Command::new(&client).arg(&url).arg(&file),
            Duration::from_secs(60),
        );
        assert!(contains(&run.stdout, b"posted"), "{}", run.stderr);
        runs.push((run.pid, m, body));
        if round == 0 {
            // Found at its exec (not configured): wait for the attachment.
            assert!(
                sensor.wait_log(
                    &["attached", &client.display().to_string(), "go-return-sites"],
                    Duration::from_secs(60)
                ),
                "the sensor did not attach to the Go client"
            );
        }
    }
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    let (pid, m, body) = &runs[1];
    let conn = connection_with(&events, *pid, m);
    let (head, sent) = telltale_tests::split_http(&conn.egress);
    let head = String::from_utf8_lossy(head);
    assert!(head.starts_with("POST /post HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains("User-Agent: Go-http-client/1.1\r\n"),
        "{head}"
    );
    assert_eq!(sent, body.as_bytes());
    assert!(conn.ingress.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(conn.ingress.ends_with(b"posted\n"));
    let mine = events_of(&events, *pid);
    for e in &mine {
        let tls = &e["tls"];
        assert_eq!(tls["library_kind"], "go", "{tls}");
        assert_eq!(tls["library"], client.display().to_string(), "{tls}");
        assert!(
            ["crypto/tls.(*Conn).Write", "crypto/tls.(*Conn).Read"]
                .contains(&tls["function"].as_str().unwrap_or_default()),
            "{tls}"
        );
        // The descriptor comes from the tls.Conn itself.
        assert_eq!(tls["socket"]["fd_source"], "conn_object", "{tls}");
        assert_eq!(
            tls["socket"]["remote_port"],
            u64::from(nginx.port_tls13),
            "{tls}"
        );
    }
}

/// uv (a Rust CLI on rustls, stripped) connects to a TLS port: nothing of its
/// traffic is visible, and a `coverage` event says so, naming the program, its
/// build-id and rustls. curl on the same port is hooked and raises none.
#[test]
fn unhookable_tls_raises_a_coverage_event() {
    if !can_load_probes("unhookable_tls_raises_a_coverage_event") {
        return;
    }
    let Some(python) =
        telltale_tests::python_with_sdks_or_skip("unhookable_tls_raises_a_coverage_event")
    else {
        return;
    };
    let uv = python.with_file_name("uv");
    assert!(
        uv.is_file(),
        "{} is missing; `./x setup` installs uv",
        uv.display()
    );
    let _g = exclusive();
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("telltale.toml");
    std::fs::write(
        &config,
        format!("[capture]\ntls_ports = [{}]\n", nginx.port_tls13),
    )
    .expect("config");
    let sensor = Sensor::start_with(&[], Some(&config));
    let url = format!("https://127.0.0.1:{}/script.py", nginx.port_tls13);
    // uv fetches the script over TLS (and rejects the test certificate).
    let out = Command::new(&uv)
        .args(["run", "--no-config"])
        .arg(&url)
        .env("UV_CACHE_DIR", dir.path().join("uv-cache"))
        .output()
        .expect("uv");
    let uv_pid_hint = String::from_utf8_lossy(&out.stderr).into_owned();
    let curl = telltale_tests::run_client(
        Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(nginx.cert())
            .arg(format!("https://127.0.0.1:{}/static/100", nginx.port_tls13)),
        Duration::from_secs(60),
    );
    let (events, log) = sensor.stop();
    let coverage: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "coverage")
        .collect();
    let gap = coverage
        .iter()
        .find(|e| e["binary"]["path"] == uv.canonicalize().expect("uv path").display().to_string())
        .unwrap_or_else(|| panic!("no coverage event for uv ({uv_pid_hint}): {coverage:?}\n{log}"));
    assert_eq!(gap["tls"]["visible"], false);
    // Every event of the run, the coverage event included, matches the schema.
    let schema_path = telltale_tests::workspace_root().join("schema/telltale-event.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("schema")).expect("JSON");
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    for e in &events {
        let errors: Vec<String> = validator.iter_errors(e).map(|x| x.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}: {e}");
    }
    assert_eq!(gap["destination"]["ip"], "127.0.0.1");
    assert_eq!(gap["destination"]["port"], u64::from(nginx.port_tls13));
    let build_id = gap["binary"]["build_id"].as_str().unwrap_or_default();
    assert_eq!(build_id.len(), 40, "{gap}");
    let stacks = gap["tls"]["stacks"].as_array().expect("stacks");
    assert!(
        stacks.iter().any(|s| s["library"]
            .as_str()
            .is_some_and(|l| l.starts_with("rustls 0."))
            && s.get("hooked").is_none()),
        "{gap}"
    );
    assert!(
        gap["tls"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("rustls"),
        "{gap}"
    );
    assert!(
        coverage.iter().all(|e| e["process"]["pid"] != curl.pid),
        "curl is hooked: {coverage:?}"
    );
    // Reported once for the process, though uv may open several connections.
    assert_eq!(
        coverage
            .iter()
            .filter(|e| e["process"]["pid"] == gap["process"]["pid"])
            .count(),
        1
    );
}

/// `tool` is missing: a skip line outside CI, a failure under CI (where
/// `./x setup` installs it).
fn missing(tool: &str, test: &str) {
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "{test}: {tool} is missing under CI; `./x setup` installs it"
    );
    eprintln!("skipping {test}: {tool} is not installed (./x setup installs it)");
}

/// Runs `client` twice (a new program is found at its exec; the first run can
/// finish before its probes are in place), waiting in between until the sensor
/// says it attached to `program` with `placement`. Returns the second run.
fn run_twice(
    sensor: &Sensor,
    program: &Path,
    placement: &str,
    mut client: impl FnMut(u32) -> telltale_tests::ClientRun,
) -> telltale_tests::ClientRun {
    let _ = client(0);
    assert!(
        sensor.wait_log(
            &["attached", &program.display().to_string(), placement],
            Duration::from_secs(90)
        ),
        "the sensor did not attach to {}",
        program.display()
    );
    client(1)
}

/// A statically linked OpenSSL client, stripped: its functions are found by
/// machine-code analysis and its traffic is captured like libssl's.
#[test]
fn stripped_static_openssl_client_is_captured() {
    const TEST: &str = "stripped_static_openssl_client_is_captured";
    if !can_load_probes(TEST) {
        return;
    }
    if !Path::new("/usr/lib/x86_64-linux-gnu/libssl.a").exists() {
        missing("libssl-dev (libssl.a)", TEST);
        return;
    }
    let _g = exclusive();
    let dir = tempfile::tempdir().expect("tmp");
    let src = telltale_tests::workspace_root().join("tests/clients/static-openssl/client.c");
    let unstripped = dir.path().join("client");
    let client = dir.path().join("static-client");
    let ok = Command::new("gcc")
        .args(["-O2"])
        .arg(&src)
        .arg("-o")
        .arg(&unstripped)
        .args([
            "-Wl,-Bstatic",
            "-lssl",
            "-lcrypto",
            "-Wl,-Bdynamic",
            "-ldl",
            "-pthread",
        ])
        .status()
        .expect("gcc");
    assert!(ok.success(), "building the static client");
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&client)
        .arg(&unstripped)
        .status()
        .expect("strip");
    assert!(ok.success());
    let nginx = Nginx::start();
    let sensor = Sensor::start(&[]);
    let port = nginx.port_tls13.to_string();
    let mut marks = Vec::new();
    let run = run_twice(&sensor, &client, "SSL_write:", |round| {
        let m = marker(&format!("static-{round}"));
        marks.push(m.clone());
        telltale_tests::run_client(
            Command::new(&client).args(["localhost", &port, &format!("/static/100?m={m}")]),
            Duration::from_secs(60),
        )
    });
    let (events, log) = sensor.stop();
    assert_no_loss(&events);
    assert!(
        log.contains("SSL_write:emulated-sites") || log.contains("SSL_write:entry+uretprobe"),
        "{log}"
    );
    let m = &marks[1];
    let conn = connection_with(&events, run.pid, m);
    let want =
        format!("GET /static/100?m={m} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(conn.egress, want.as_bytes());
    let (head, body) = telltale_tests::split_http(&conn.ingress);
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(body == nginx.static_file(100));
    for e in events_of(&events, run.pid) {
        assert_eq!(e["tls"]["library_kind"], "openssl", "{}", e["tls"]);
        assert_eq!(e["tls"]["library"], client.display().to_string());
        assert_eq!(e["tls"]["server_name"], "localhost", "SNI through SSL_ctrl");
    }
}

/// A Bun-compiled executable (BoringSSL linked in, stripped): found by
/// machine-code analysis or the shipped offsets of its Bun release.
#[test]
fn bun_compiled_client_is_captured() {
    const TEST: &str = "bun_compiled_client_is_captured";
    if !can_load_probes(TEST) {
        return;
    }
    let bun = telltale_tests::workspace_root().join(".tools/bun/bun");
    if !bun.is_file() {
        missing(".tools/bun/bun", TEST);
        return;
    }
    let _g = exclusive();
    let dir = tempfile::tempdir().expect("tmp");
    let app = dir.path().join("bun-client");
    let src = telltale_tests::workspace_root().join("tests/clients/bun-fetch/client.js");
    let out = Command::new(&bun)
        .args(["build", "--compile"])
        .arg(&src)
        .arg("--outfile")
        .arg(&app)
        .env("BUN_INSTALL_CACHE_DIR", dir.path().join("bun-cache"))
        .output()
        .expect("bun build --compile");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nginx = Nginx::start();
    let sensor = Sensor::start(&[]);
    let url = format!("https://127.0.0.1:{}/post", nginx.port_tls13);
    let mut sent = Vec::new();
    let run = run_twice(&sensor, &app, "SSL_write:", |round| {
        let m = marker(&format!("bun-{round}"));
        let body = format!("{{\"marker\":\"{m}\",\"via\":\"bun\"}}");
        let file = dir.path().join(&m);
        std::fs::write(&file, &body).expect("body");
        sent.push((m, body));
        let run = telltale_tests::run_client(
            Command::new(&app).arg(&url).arg(&file),
            Duration::from_secs(60),
        );
        assert!(contains(&run.stdout, b"posted"), "{}", run.stderr);
        run
    });
    let (events, _) = sensor.stop();
    assert_no_loss(&events);
    let (m, body) = &sent[1];
    // Bun's HTTP client runs on its own thread; the events name the process.
    let conn = connection_with(&events, run.pid, m);
    let (head, got) = telltale_tests::split_http(&conn.egress);
    let head = String::from_utf8_lossy(head);
    assert!(head.starts_with("POST /post HTTP/1.1\r\n"), "{head}");
    assert_eq!(got, body.as_bytes());
    assert!(conn.ingress.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(conn.ingress.ends_with(b"posted\n"));
    for e in events_of(&events, run.pid) {
        assert_eq!(e["tls"]["library_kind"], "boringssl", "{}", e["tls"]);
        assert_eq!(e["tls"]["library"], app.display().to_string());
    }
}
