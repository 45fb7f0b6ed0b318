//! A real nginx serving HTTPS on loopback, with TLS 1.2-only and TLS 1.3-only
//! ports, static files of known sizes and an upload location, and a mock of
//! LLM API endpoints on a port that speaks HTTP/2 and HTTP/1.1.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Sizes of the static files served under `/static/<size>`.
pub const STATIC_SIZES: [usize; 4] = [0, 100, 64 * 1024, 1024 * 1024];

/// A running nginx master and its worker.
pub struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    /// Port that speaks only TLS 1.2.
    pub port_tls12: u16,
    /// Port that speaks only TLS 1.3.
    pub port_tls13: u16,
    /// TLS 1.3 with HTTP/2 and HTTP/1.1 (ALPN): a mock LLM API. `POST
    /// /v1/messages` and `/v1/chat/completions` read the whole request body (they
    /// are proxied to a plain-HTTP backend) and answer with JSON.
    pub port_api: u16,
}

/// The mock API's answer to `POST /v1/messages`.
pub const API_RESPONSE: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-test","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Nginx {
    /// Writes a certificate, content and configuration to a temporary directory
    /// and starts nginx in the foreground; returns once both ports accept.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("telltale-nginx-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-subj", "/CN=localhost", "-days", "2"])
            .arg("-addext")
            .arg("subjectAltName=DNS:localhost,IP:127.0.0.1")
            .arg("-keyout")
            .arg(d.join("key.pem"))
            .arg("-out")
            .arg(d.join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl req");
        assert!(ok.success(), "generating a certificate failed");
        std::fs::create_dir_all(d.join("html/static")).expect("mkdir");
        std::fs::create_dir_all(d.join("html/upload")).expect("mkdir");
        for size in STATIC_SIZES {
            let content = crate::body(&format!("static-{size}-"), size);
            std::fs::write(d.join(format!("html/static/{size}")), content).expect("write");
        }
        let (p12, p13, papi, pback) = (free_port(), free_port(), free_port(), free_port());
        // nginx's `return` string syntax: escape the quotes.
        let api_response = API_RESPONSE.replace('"', "\\\"");
        let conf = format!(
            r#"
user root;
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 10000;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  ssl_certificate {d}/cert.pem;
  ssl_certificate_key {d}/key.pem;
  root {d}/html;
  client_max_body_size 16m;
  client_body_buffer_size 2m;
  server {{
    listen 127.0.0.1:{p12} ssl;
    ssl_protocols TLSv1.2;
    location /upload/ {{ dav_methods PUT; create_full_put_path on; }}
    location = /post {{ return 200 "posted\n"; }}
  }}
  server {{
    listen 127.0.0.1:{p13} ssl;
    ssl_protocols TLSv1.3;
    location /upload/ {{ dav_methods PUT; create_full_put_path on; }}
    location = /post {{ return 200 "posted\n"; }}
  }}
  server {{
    listen 127.0.0.1:{papi} ssl http2;
    ssl_protocols TLSv1.3;
    location /v1/ {{ proxy_pass http://127.0.0.1:{pback}; }}
  }}
  server {{
    listen 127.0.0.1:{pback};
    default_type application/json;
    location /v1/ {{ return 200 "{api_response}"; }}
  }}
}}
"#,
            d = d.display()
        );
        std::fs::write(d.join("nginx.conf"), conf).expect("write conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (installed by `./x setup`)");
        let nginx = Self {
            child,
            dir,
            port_tls12: p12,
            port_tls13: p13,
            port_api: papi,
        };
        nginx.wait_ready();
        nginx
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [self.port_tls12, self.port_tls13, self.port_api] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "nginx did not listen on {port}: {}",
                    self.error_log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The server certificate (for clients that verify).
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Content of `/static/<size>`.
    pub fn static_file(&self, size: usize) -> Vec<u8> {
        std::fs::read(self.dir.path().join(format!("html/static/{size}"))).expect("static file")
    }

    /// The document root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Pids of the worker processes (children of the master).
    pub fn workers(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if ppid == Some(master) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: signalling our own child; SIGQUIT is nginx's graceful stop.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
