//! Running the sensor under test.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

#[derive(Default)]
struct Shared {
    events: Vec<Value>,
    started: bool,
    closed: bool,
    bad_lines: Vec<String>,
    /// Log lines (stderr) so far.
    log: String,
}

/// A running `telltale run --emit data`.
pub struct Sensor {
    child: Option<Child>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Sensor {
    /// Starts the sensor with `--emit data` plus `extra` arguments and waits until
    /// its probes are attached (its `started` status event).
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with(extra, None)
    }

    /// Like [`Sensor::start`], with a configuration file.
    pub fn start_with(extra: &[&str], config: Option<&Path>) -> Self {
        let mut args = vec!["--emit", "data"];
        args.extend_from_slice(extra);
        Self::spawn(&args, config)
    }

    /// Starts `telltale [--config C] run --status-interval 0 <args>` and waits
    /// until its probes are attached.
    pub fn spawn(args: &[&str], config: Option<&Path>) -> Self {
        Self::spawn_with_env(args, config, &[])
    }

    /// Like [`Sensor::spawn`], with `env` added to the sensor's environment (it
    /// reads host facts such as `TZ` and `https_proxy` from its own environment).
    pub fn spawn_with_env(args: &[&str], config: Option<&Path>, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(crate::sensor_bin());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.args(["run", "--status-interval", "0"])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let s2 = Arc::clone(&shared);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let (lock, cv) = &*s2;
                let mut g = lock.lock().expect("lock");
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if v["event_type"] == "sensor.status" && v["state"] == "started" {
                            g.started = true;
                        }
                        g.events.push(v);
                    }
                    Err(_) => g.bad_lines.push(line),
                }
                cv.notify_all();
            }
            let (lock, cv) = &*s2;
            lock.lock().expect("lock").closed = true;
            cv.notify_all();
        });
        let s3 = Arc::clone(&shared);
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                s.push_str(&line);
                s.push('\n');
                let (lock, cv) = &*s3;
                let mut g = lock.lock().expect("lock");
                g.log.push_str(&line);
                g.log.push('\n');
                cv.notify_all();
            }
            s
        });
        let mut sensor = Self {
            child: Some(child),
            shared,
            reader: Some(reader),
            stderr: Some(stderr),
        };
        sensor.wait_started(Duration::from_secs(60));
        sensor
    }

    fn wait_started(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut g = lock.lock().expect("lock");
        while !g.started && !g.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = cv.wait_timeout(g, left).expect("wait").0;
        }
        if !g.started {
            drop(g);
            let err = self.kill_and_stderr();
            panic!("sensor did not start within {timeout:?}; stderr:\n{err}");
        }
    }

    fn kill_and_stderr(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// Waits until a log line (stderr) contains every one of `needles`;
    /// returns whether one did within `timeout`.
    pub fn wait_log(&self, needles: &[&str], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut g = lock.lock().expect("lock");
        loop {
            if g.log.lines().any(|l| needles.iter().all(|n| l.contains(n))) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || g.closed {
                return false;
            }
            g = cv.wait_timeout(g, left).expect("wait").0;
        }
    }

    /// The pid of the sensor process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Stops the sensor with SIGTERM, waits for it to exit cleanly, and returns
    /// every event it printed and its stderr.
    pub fn stop(mut self) -> (Vec<Value>, String) {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sensor did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            r.join().expect("reader");
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        assert!(
            status.success(),
            "sensor exited with {status}; stderr:\n{stderr}"
        );
        let (lock, _) = &*self.shared;
        let mut g = lock.lock().expect("lock");
        assert!(
            g.bad_lines.is_empty(),
            "non-JSON lines on stdout: {:?}",
            g.bad_lines
        );
        (std::mem::take(&mut g.events), stderr)
    }
}

impl Sensor {
    /// Kills the sensor with SIGKILL (no clean stop) and returns the events it
    /// printed before.
    pub fn kill(mut self) -> Vec<Value> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let (lock, _) = &*self.shared;
        let mut g = lock.lock().expect("lock");
        std::mem::take(&mut g.events)
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
