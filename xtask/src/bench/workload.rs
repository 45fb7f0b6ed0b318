//! The measured workloads: sslpingpong (cost per hooked call) and nginx + wrk
//! (HTTPS requests per second), plus the nginx server they need.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::proc::{self, Guard, pinned};
use crate::cmd;

/// Bytes of each ping and pong in sslpingpong.
pub const PING_BYTES: usize = 64;
/// Hooked SSL calls per sslpingpong iteration.
pub const CALLS_PER_ITERATION: f64 = 4.0;
/// wrk's connections (`-c`); one thread (`-t1`).
pub const WRK_CONNECTIONS: u32 = 16;

/// Which OpenSSL functions sslpingpong calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// SSL_write / SSL_read.
    Plain,
    /// SSL_write_ex / SSL_read_ex.
    Ex,
    /// SSL_write / SSL_read of a 64-byte HTTP/1.1 request and response.
    Http,
}

/// A file nginx serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Tiny,
    K16,
    M1,
}

impl Body {
    pub const ALL: [Body; 3] = [Body::Tiny, Body::K16, Body::M1];

    pub fn bytes(self) -> usize {
        match self {
            Body::Tiny => 10,
            Body::K16 => 16 * 1024,
            Body::M1 => 1024 * 1024,
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Body::Tiny => "tiny",
            Body::K16 => "16k",
            Body::M1 => "1m",
        }
    }
}

/// One measured workload; its value is ns per iteration or requests per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    PingPong(Api),
    Https(Body),
}

impl Workload {
    /// Stable identifier, used as a JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Workload::PingPong(Api::Plain) => "pingpong_plain",
            Workload::PingPong(Api::Ex) => "pingpong_ex",
            Workload::PingPong(Api::Http) => "pingpong_http",
            Workload::Https(Body::Tiny) => "nginx_10B",
            Workload::Https(Body::K16) => "nginx_16KiB",
            Workload::Https(Body::M1) => "nginx_1MiB",
        }
    }

    /// Unit of the value.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::PingPong(_) => "ns/iteration",
            Workload::Https(_) => "requests/s",
        }
    }
}

/// What the workloads need: the programs, the server and the pinning.
pub struct Bed {
    /// target/bench/sslpingpong, when it compiled.
    pub pingpong: Option<PathBuf>,
    /// CPU for the load generators (sslpingpong, wrk), when pinning.
    pub load_cpu: Option<usize>,
    /// Seconds per sslpingpong run.
    pub pingpong_secs: u64,
    /// Seconds per wrk run.
    pub wrk_secs: u64,
    /// The server, when it started.
    pub nginx: Option<Nginx>,
}

impl Bed {
    /// Whether what `w` needs is there (the program built, the server running).
    pub fn can_run(&self, w: Workload) -> bool {
        match w {
            Workload::PingPong(_) => self.pingpong.is_some(),
            Workload::Https(_) => self.nginx.is_some(),
        }
    }

    /// sslpingpong, or why it is missing.
    pub fn pingpong(&self) -> Result<&Path> {
        self.pingpong
            .as_deref()
            .ok_or_else(|| anyhow!("sslpingpong was not built"))
    }

    /// Runs `w` once and returns its value.
    pub fn run(&self, w: Workload) -> Result<f64> {
        match w {
            Workload::PingPong(api) => self.ping_pong(api),
            Workload::Https(body) => {
                let nginx = self
                    .nginx
                    .as_ref()
                    .ok_or_else(|| anyhow!("nginx is not running"))?;
                self.wrk(nginx.port, body)
            }
        }
    }

    /// A command for a load generator, pinned to its CPU.
    pub fn pinned(&self, program: &Path) -> Command {
        pinned(program, self.load_cpu)
    }

    fn ping_pong(&self, api: Api) -> Result<f64> {
        let mode = match api {
            Api::Plain => "plain",
            Api::Ex => "ex",
            Api::Http => "http",
        };
        let secs = self.pingpong_secs.to_string();
        let mut cmd = self.pinned(self.pingpong()?);
        cmd.args([mode, "100000000", &secs]);
        let out = proc::run_bounded(&mut cmd, Duration::from_secs(self.pingpong_secs + 30))?;
        key_value(&out, "ns_per_iter")
    }

    fn wrk(&self, port: u16, body: Body) -> Result<f64> {
        let mut cmd = self.pinned("wrk".as_ref());
        cmd.args(["-t1", &format!("-c{WRK_CONNECTIONS}")])
            .arg(format!("-d{}s", self.wrk_secs))
            .arg(format!("https://127.0.0.1:{port}/{}", body.file_name()));
        let out = proc::run_bounded(&mut cmd, Duration::from_secs(self.wrk_secs + 30))?;
        wrk_requests_per_sec(&out)
    }
}

/// The number after `key=` in sslpingpong's output line.
pub fn key_value(out: &str, key: &str) -> Result<f64> {
    out.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no {key}=<number> in sslpingpong's output: {}", out.trim()))
}

/// "Requests/sec: N" from wrk's report; fails when wrk saw errors or non-2xx
/// responses, which would make the rate meaningless.
fn wrk_requests_per_sec(out: &str) -> Result<f64> {
    let bad: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Socket errors") || l.starts_with("Non-2xx"))
        .collect();
    if !bad.is_empty() {
        bail!("wrk reported {}", bad.join("; "));
    }
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no Requests/sec line in wrk's output: {}", out.trim()))
}

/// nginx serving the [`Body`] files over TLS 1.3 on a loopback port.
pub struct Nginx {
    /// Stops nginx (SIGQUIT) when the server is dropped.
    _guard: Guard,
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Writes a certificate, the files and a configuration into `dir` and starts
    /// nginx in the foreground, pinned to `cpu`; returns once it accepts.
    pub fn start(dir: &Path, cpu: Option<usize>) -> Result<Self> {
        std::fs::create_dir_all(dir.join("html"))
            .with_context(|| format!("creating {}", dir.display()))?;
        self_signed_cert(dir)?;
        for body in Body::ALL {
            let path = dir.join("html").join(body.file_name());
            std::fs::write(&path, ascii_body(body.bytes()))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(dir, port))
            .with_context(|| format!("writing {}", conf.display()))?;
        let mut cmd = pinned("nginx".as_ref(), cpu);
        cmd.arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let nginx = Self {
            _guard: Guard::spawn(&mut cmd, "nginx", libc::SIGQUIT)?,
            port,
            dir: dir.to_path_buf(),
        };
        nginx.wait_listening()?;
        Ok(nginx)
    }

    fn wait_listening(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() >= deadline {
                bail!(
                    "nginx does not listen on 127.0.0.1:{} after 20s: {}",
                    self.port,
                    proc::log_tail(&self.dir.join("error.log"), 3)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

fn self_signed_cert(dir: &Path) -> Result<()> {
    let mut req = Command::new("openssl");
    req.args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-subj", "/CN=localhost", "-days", "2"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"));
    cmd::stdout(&mut req).map(drop)
}

/// Printable ASCII of `len` bytes, so that captured bodies are UTF-8 text.
fn ascii_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .context("finding a free loopback port")
}

fn nginx_conf(dir: &Path, port: u16) -> String {
    format!(
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
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  ssl_certificate {d}/cert.pem;
  ssl_certificate_key {d}/key.pem;
  ssl_protocols TLSv1.3;
  root {d}/html;
  server {{
    listen 127.0.0.1:{port} ssl;
  }}
}}
"#,
        d = dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_rate_is_parsed_and_errors_are_refused() {
        let out = "Running 3s test @ https://127.0.0.1:1/tiny\n  1 threads and 16 connections\n\
                   Requests/sec:  41234.56\nTransfer/sec:      9.79MB\n";
        assert_eq!(wrk_requests_per_sec(out).unwrap(), 41234.56);
        let bad = format!("{out}  Socket errors: connect 0, read 3, write 0, timeout 0\n");
        assert!(wrk_requests_per_sec(&bad).is_err());
        assert!(wrk_requests_per_sec("nothing").is_err());
    }

    #[test]
    fn pingpong_values_are_parsed() {
        let out = "mode=plain iterations=10 seconds=2.000 ns_per_iter=2293.7\n";
        assert_eq!(key_value(out, "ns_per_iter").unwrap(), 2293.7);
        assert_eq!(key_value(out, "iterations").unwrap(), 10.0);
        assert!(key_value(out, "sent").is_err());
    }
}
