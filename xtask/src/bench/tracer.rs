//! The configurations compared: no tracer, the Telltale sensor with full
//! capture, and a naive bpftrace capture (`bench`); the sensor with a blocking
//! enforcement policy that selects no benchmark process or the benchmark
//! program itself (`bench hold`); and a running session of one of them.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, atomic::AtomicU32},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use super::{
    proc::{self, Guard},
    tap::{NotReady, Tap, TapOptions, TapSummary},
};

/// How long a tracer may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a tracer may take to drain and exit after its stop signal.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// The line naive.bt prints from BEGIN, which bpftrace runs once every probe is
/// attached (it prints "Attaching N probes..." before attaching).
const NAIVE_READY: &[u8] = b"naive.bt: tracing";
/// The `exe` glob of `exempt`'s policy: no process runs from there.
pub const EXEMPT_EXE: &str = "/nonexistent/*";

/// One of the compared configurations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// No tracer: the baseline.
    Off,
    /// `telltale run --emit data --status-interval 0`.
    On,
    /// bpftrace with bench/naive.bt.
    Naive,
    /// `on` with a configuration file holding one blocking policy whose `exe`
    /// glob selects no process ([`EXEMPT_EXE`]): writes cost a map lookup.
    Exempt,
    /// `on` with a configuration file holding one blocking policy whose `exe`
    /// is exactly [`Tracers::held_exe`]: every write of that program stops it
    /// (SIGSTOP) until the sensor has read and judged the bytes (SIGCONT).
    Held,
}

impl Config {
    /// In the order each round runs them.
    pub const ALL: [Config; 3] = [Config::Off, Config::On, Config::Naive];
    /// Those of `bench hold`, in the order each round runs them.
    pub const HOLD: [Config; 4] = [Config::Off, Config::On, Config::Exempt, Config::Held];

    /// Short name, used in the output and as a JSON value.
    pub fn name(self) -> &'static str {
        match self {
            Config::Off => "off",
            Config::On => "on",
            Config::Naive => "naive",
            Config::Exempt => "exempt",
            Config::Held => "held",
        }
    }

    /// Whether this runs the sensor (which ends with a `stopped` status).
    pub fn is_sensor(self) -> bool {
        matches!(self, Config::On | Config::Exempt | Config::Held)
    }
}

/// Where the tracers are and how they are started.
pub struct Tracers {
    /// target/release/telltale.
    pub sensor: PathBuf,
    /// bench/naive.bt.
    pub naive_script: PathBuf,
    /// Directory for the tracers' stderr logs.
    pub logs: PathBuf,
    /// CPU for the tracer (and its output reader), when pinning.
    pub cpu: Option<usize>,
    /// The program `held`'s policy selects (sslpingpong, canonical path);
    /// None outside `bench hold`.
    pub held_exe: Option<PathBuf>,
}

/// A tracer's CPU time and peak memory over one measured run.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu_secs: f64,
    pub wall_secs: f64,
    /// VmHWM after a reset at the start of the run.
    pub peak_rss_kib: Option<u64>,
}

impl Usage {
    /// CPU time as a percentage of the run's wall time (100 = one core).
    pub fn cpu_percent(&self) -> f64 {
        if self.wall_secs > 0.0 {
            100.0 * self.cpu_secs / self.wall_secs
        } else {
            0.0
        }
    }
}

/// The sensor's counters from its `stopped` status event.
#[derive(Clone, Copy, Debug, Default)]
pub struct SensorCounters {
    pub calls: u64,
    pub events: u64,
    pub lost_records: u64,
    pub lost_bytes: u64,
    /// Its `enforce` section, when it has one.
    pub enforce: Option<EnforceCounters>,
}

/// What enforcement held, from the `enforce` section of the `stopped` status.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnforceCounters {
    /// Writes held and judged for selected processes.
    pub holds: u64,
    /// Writes held once before their process was judged exempt.
    pub exempted: u64,
    /// Decisions left to the fail mode (timeouts, unreadable bytes).
    pub fail_decisions: u64,
    /// Sum of the hold durations (kernel stop to continuation), µs.
    pub held_us_total: u64,
    /// Longest hold, µs.
    pub held_us_max: u64,
}

/// How a session ended.
#[derive(Debug)]
pub struct SessionEnd {
    /// Sensor only: the counters of its last (`stopped`) line.
    pub counters: Option<SensorCounters>,
    /// What its stdout carried (None for `off`).
    pub output: Option<TapSummary>,
    /// Problems met while stopping.
    pub problems: Vec<String>,
}

/// A running tracer (or none, for `off`).
pub struct Session {
    config: Config,
    running: Option<(Guard, Tap)>,
    log: Option<PathBuf>,
}

impl Tracers {
    /// Starts `config` and waits until it captures. `marker_pid` makes the
    /// reader count the rate generator's markers (sensor only).
    pub fn start(&self, config: Config, marker_pid: Option<Arc<AtomicU32>>) -> Result<Session> {
        let mut session = Session {
            config,
            running: None,
            log: None,
        };
        let (mut cmd, ready): (Command, fn(&[u8]) -> bool) = match config {
            Config::Off => return Ok(session),
            Config::On => (self.sensor_command(None), is_sensor_started),
            Config::Exempt | Config::Held => {
                let file = self.policy_file(config)?;
                (self.sensor_command(Some(&file)), is_sensor_started)
            }
            Config::Naive => (self.naive_command(), |l| l == NAIVE_READY),
        };
        let log = self.logs.join(format!("{}.stderr.log", config.name()));
        let stderr = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let signal = match config {
            Config::Naive => libc::SIGINT,
            _ => libc::SIGTERM,
        };
        let mut guard = Guard::spawn(&mut cmd, config.name(), signal)?;
        let out = guard
            .child_mut()
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let opts = TapOptions {
            ready,
            marker_pid,
            cpu: self.cpu,
        };
        let tap = Tap::start(out, opts)?;
        session.log = Some(log);
        let waited = tap.wait_ready(READY_TIMEOUT);
        session.running = Some((guard, tap));
        match waited {
            Ok(_) => Ok(session),
            Err(why) => Err(session.not_ready(why)),
        }
    }

    /// `telltale [--config FILE] run --emit data --status-interval 0`.
    fn sensor_command(&self, config_file: Option<&Path>) -> Command {
        let mut cmd = proc::pinned(&self.sensor, self.cpu);
        if let Some(file) = config_file {
            cmd.arg("--config").arg(file);
        }
        cmd.args(["run", "--emit", "data", "--status-interval", "0"]);
        cmd
    }

    /// Writes the configuration file of `exempt` or `held` (merged by the
    /// sensor over its defaults) into the log directory; returns its path.
    fn policy_file(&self, config: Config) -> Result<PathBuf> {
        let exe = match config {
            Config::Held => {
                let exe = self
                    .held_exe
                    .as_deref()
                    .ok_or_else(|| anyhow!("held needs the program whose writes it holds"))?;
                exact_glob(exe)?
            }
            _ => EXEMPT_EXE.to_owned(),
        };
        let file = self.logs.join(format!("{}.toml", config.name()));
        std::fs::write(&file, policy_toml(config.name(), &exe))
            .with_context(|| format!("writing {}", file.display()))?;
        Ok(file)
    }

    fn naive_command(&self) -> Command {
        let mut cmd = proc::pinned("bpftrace".as_ref(), self.cpu);
        // The largest string (and so buf()) size bpftrace 0.17 accepts.
        cmd.arg(&self.naive_script).env("BPFTRACE_STRLEN", "200");
        cmd
    }
}

/// An `exe` glob that matches `path` and nothing else: the path itself, which
/// must not contain the glob characters `*` and `?`.
fn exact_glob(path: &Path) -> Result<String> {
    match path.to_str() {
        Some(p) if !p.contains(['*', '?']) => Ok(p.to_owned()),
        _ => bail!(
            "{} cannot be matched exactly by an exe glob (not UTF-8, or has * or ?)",
            path.display()
        ),
    }
}

/// A sensor configuration with one blocking policy, `bench-NAME`, selecting
/// the processes whose executable path matches `exe_glob`.
fn policy_toml(name: &str, exe_glob: &str) -> String {
    // A JSON string is a valid TOML basic string.
    let quote = |s: &str| Value::from(s).to_string();
    format!(
        "[enforce]\n[[enforce.policies]]\nname = {}\nexe = [{}]\nmode = \"block\"\n",
        quote(&format!("bench-{name}")),
        quote(exe_glob)
    )
}

/// The sensor's first stdout line: `sensor.status` with `state: "started"`.
fn is_sensor_started(line: &[u8]) -> bool {
    serde_json::from_slice::<Value>(line)
        .is_ok_and(|v| v["event_type"] == "sensor.status" && v["state"] == "started")
}

impl Session {
    /// The tracer's pid (None for `off`).
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|(g, _)| g.id())
    }

    /// Runs `work` and returns its result with the tracer's CPU time and peak
    /// memory during it. Fails when the tracer died meanwhile.
    pub fn measure<T>(&mut self, work: impl FnOnce() -> Result<T>) -> Result<(T, Option<Usage>)> {
        let Some(pid) = self.pid() else {
            return Ok((work()?, None));
        };
        let hwm_reset = proc::reset_peak_rss(pid).is_ok();
        let cpu0 = proc::cpu_seconds(pid)?;
        let t0 = Instant::now();
        let value = work();
        let wall_secs = t0.elapsed().as_secs_f64();
        self.check_alive()?;
        let usage = Usage {
            cpu_secs: proc::cpu_seconds(pid)? - cpu0,
            wall_secs,
            peak_rss_kib: proc::peak_rss_kib(pid).ok().filter(|_| hwm_reset),
        };
        Ok((value?, Some(usage)))
    }

    fn check_alive(&mut self) -> Result<()> {
        let Some((guard, _)) = self.running.as_mut() else {
            return Ok(());
        };
        if guard.exited().is_some() {
            let exit = guard.describe_exit();
            bail!("tracer died during the run: {exit}; {}", self.log_tail());
        }
        Ok(())
    }

    /// Stops the tracer (signal, drain, exit) and reads what it reported.
    pub fn stop(mut self) -> SessionEnd {
        let mut end = SessionEnd {
            counters: None,
            output: None,
            problems: Vec::new(),
        };
        let Some((mut guard, tap)) = self.running.take() else {
            return end;
        };
        let (status, killed) = guard.stop(STOP_GRACE);
        if killed {
            end.problems.push(format!(
                "{} did not exit within {}s of its stop signal; killed",
                self.config.name(),
                STOP_GRACE.as_secs()
            ));
        } else if status.is_some_and(|s| !s.success()) {
            end.problems
                .push(format!("{}; {}", guard.describe_exit(), self.log_tail()));
        }
        drop(guard);
        match tap.finish() {
            Ok(summary) => {
                if self.config.is_sensor() {
                    match stopped_counters(&summary.last_line) {
                        Ok(c) => end.counters = Some(c),
                        Err(e) => end.problems.push(format!("sensor: {e:#}")),
                    }
                }
                if let Some(e) = &summary.read_error {
                    end.problems.push(format!("reading its output: {e}"));
                }
                end.output = Some(summary);
            }
            Err(e) => end.problems.push(format!("{e:#}")),
        }
        end
    }

    /// The error for a tracer that did not become ready; stops it.
    fn not_ready(mut self, why: NotReady) -> anyhow::Error {
        let name = self.config.name();
        let what = match why {
            NotReady::Timeout => format!("not ready after {}s", READY_TIMEOUT.as_secs()),
            NotReady::Closed => match self.running.as_mut() {
                Some((guard, _)) => {
                    guard.wait_for(Duration::from_secs(2));
                    guard.describe_exit()
                }
                None => "closed its output".to_owned(),
            },
        };
        let tail = self.log_tail();
        let _ = self.stop();
        anyhow!("{name} did not start: {what}; {tail}")
    }

    fn log_tail(&self) -> String {
        match &self.log {
            Some(log) => format!("stderr: {}", proc::log_tail(log, 3)),
            None => String::new(),
        }
    }
}

/// The counters of the sensor's `stopped` status line.
fn stopped_counters(line: &str) -> Result<SensorCounters> {
    let v: Value = serde_json::from_str(line)
        .with_context(|| format!("its last line is not JSON: {:.120}", line))?;
    if v["event_type"] != "sensor.status" || v["state"] != "stopped" {
        bail!(
            "its last line is not the stopped sensor.status: {:.120}",
            line
        );
    }
    let n = |section: &str, key: &str| -> Result<u64> {
        v[section][key]
            .as_u64()
            .ok_or_else(|| anyhow!("stopped status has no {section}.{key}"))
    };
    let enforce = v["enforce"]
        .is_object()
        .then(|| -> Result<EnforceCounters> {
            Ok(EnforceCounters {
                holds: n("enforce", "holds")?,
                exempted: n("enforce", "exempted")?,
                fail_decisions: n("enforce", "fail_decisions")?,
                held_us_total: n("enforce", "held_us_total")?,
                held_us_max: n("enforce", "held_us_max")?,
            })
        });
    Ok(SensorCounters {
        calls: n("kernel", "calls")?,
        events: n("pipeline", "events")?,
        lost_records: n("kernel", "lost_records")?,
        lost_bytes: n("kernel", "lost_bytes")?,
        enforce: enforce.transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stopped_status_gives_the_counters() {
        let line = r#"{"event_type":"sensor.status","state":"stopped","kernel":{"calls":741,"records":852,"lost_records":2,"lost_bytes":300},"pipeline":{"events":742}}"#;
        let c = stopped_counters(line).unwrap();
        assert_eq!(
            (c.calls, c.events, c.lost_records, c.lost_bytes),
            (741, 742, 2, 300)
        );
        assert!(c.enforce.is_none());
        assert!(stopped_counters(&line.replace("stopped", "running")).is_err());
        assert!(stopped_counters("Lost 3 events").is_err());
        let enforced = line.replace(
            r#""pipeline""#,
            r#""enforce":{"holds":40,"exempted":1,"fail_decisions":0,"held_us_total":800,"held_us_max":90},"pipeline""#,
        );
        let e = stopped_counters(&enforced).unwrap().enforce.unwrap();
        assert_eq!((e.holds, e.exempted, e.held_us_total), (40, 1, 800));
    }

    #[test]
    fn the_policy_file_selects_exactly_the_program() {
        let exe = exact_glob(Path::new("/work/target/bench/sslpingpong")).unwrap();
        assert_eq!(
            policy_toml("held", &exe),
            "[enforce]\n[[enforce.policies]]\nname = \"bench-held\"\n\
             exe = [\"/work/target/bench/sslpingpong\"]\nmode = \"block\"\n"
        );
        assert!(exact_glob(Path::new("/tmp/a*b")).is_err());
    }

    #[test]
    fn a_tracer_that_exits_at_once_is_reported_with_its_stderr() {
        let logs = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        std::fs::create_dir_all(&logs).unwrap();
        let tracers = Tracers {
            sensor: "/bin/false".into(),
            naive_script: "/nonexistent.bt".into(),
            logs: logs.clone(),
            cpu: None,
            held_exe: None,
        };
        let err = tracers
            .start(Config::On, None)
            .err()
            .map(|e| format!("{e:#}"));
        std::fs::remove_dir_all(&logs).unwrap();
        let err = err.expect("/bin/false never becomes ready");
        assert!(
            err.contains("on did not start: on exited (exit status 1)"),
            "{err}"
        );
    }

    #[test]
    fn the_started_status_is_recognised() {
        assert!(is_sensor_started(
            br#"{"event_type":"sensor.status","state":"started","kernel":{}}"#
        ));
        assert!(!is_sensor_started(br#"{"event_type":"tls.data"}"#));
        assert!(!is_sensor_started(b"Attaching 8 probes..."));
    }
}
