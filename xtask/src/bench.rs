//! `bench`: the sensor's overhead against no sensor and against a naive bpftrace
//! capture, all measured in the same run.
//!
//! Each round runs every workload under each configuration in turn (off, on,
//! naive; a fresh tracer each time): sslpingpong (cost per hooked SSL call,
//! plain and `_ex`) and nginx + wrk (HTTPS requests/s for 10 B, 16 KiB and
//! 1 MiB). Alternating cancels drift; the report uses medians. Then a sweep of paced, marked
//! SSL_write calls finds the highest rate the sensor captures without loss.
//! Results go to bench/results/<date>-<host>.md and bench/results/latest.json.
//!
//! `bench hold` (see [`hold`]) measures what enforcement's hold of a TLS write
//! costs; `bench decode` and `bench detect` are library benchmarks.

mod hold;
mod machine;
mod proc;
mod rate;
mod report;
mod tap;
mod tracer;
mod workload;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use self::{
    machine::Machine,
    tracer::{Config, SessionEnd, Tracers, Usage},
    workload::{Api, Bed, Body, Nginx, Workload},
};
use crate::{Repo, cmd, setup};

/// The workloads of every round, in order.
const WORKLOADS: [Workload; 5] = [
    Workload::PingPong(Api::Plain),
    Workload::PingPong(Api::Ex),
    Workload::Https(Body::Tiny),
    Workload::Https(Body::K16),
    Workload::Https(Body::M1),
];

/// Sizes of the benchmark (quick or full).
#[derive(Debug, Clone)]
pub struct Params {
    pub quick: bool,
    pub rounds: usize,
    pub pingpong_secs: u64,
    pub wrk_secs: u64,
    pub rate_secs: u64,
    /// Target client SSL_write calls per second, in sweep order.
    pub rates: Vec<u64>,
}

impl Params {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                rounds: 3,
                pingpong_secs: 1,
                wrk_secs: 2,
                rate_secs: 2,
                rates: vec![25_000, 100_000, 200_000],
            }
        } else {
            Self {
                quick,
                rounds: 5,
                pingpong_secs: 3,
                wrk_secs: 8,
                rate_secs: 5,
                rates: vec![25_000, 50_000, 100_000, 150_000, 200_000, 300_000],
            }
        }
    }

    /// A rough duration of the measurements (build and setup excluded).
    fn estimate(&self) -> Duration {
        // Starting and stopping a tracer takes about 3 s (mostly the sensor's stop).
        let workloads = 2 * self.pingpong_secs + 3 * self.wrk_secs;
        let round = Config::ALL.len() as u64 * workloads + 2 * WORKLOADS.len() as u64 * 3;
        let rounds = self.rounds as u64 * round;
        let sweep = self.rates.len() as u64 * (self.rate_secs + 5);
        Duration::from_secs(rounds + sweep + 10)
    }
}

/// Which CPU runs what.
#[derive(Debug, Clone, Copy)]
pub struct Pinning {
    /// nginx, the tracer and the reader of its output.
    pub server: usize,
    /// sslpingpong and wrk.
    pub load: usize,
}

/// One measurement of one workload under one configuration.
#[derive(Debug)]
pub struct Sample {
    pub round: usize,
    pub config: Config,
    pub workload: Workload,
    /// ns/iteration or requests/s, or why it could not be measured.
    pub value: Result<f64, String>,
    /// The tracer's CPU and memory during the run (not for `off`).
    pub usage: Option<Usage>,
    /// How the tracer's session ended: its counters and output (not for `off`).
    pub end: Option<SessionEnd>,
}

/// Everything one `bench` run measured.
#[derive(Debug)]
pub struct Results {
    pub params: Params,
    pub machine: Machine,
    /// (date, date-time) in UTC when the run started.
    pub started: (String, String),
    pub pinning: Option<Pinning>,
    pub samples: Vec<Sample>,
    pub sweep: rate::Sweep,
    /// What could not be measured and other things a reader must know.
    pub notes: Vec<String>,
    /// Other tracers or load generators seen running ("comm (pid)").
    pub foreign: Vec<String>,
    pub elapsed: Duration,
}

/// Entry point of `./x bench`.
pub fn bench(repo: &Repo, quick: bool) -> Result<()> {
    let start = Instant::now();
    if !cmd::is_root() {
        bail!("bench loads eBPF programs and pins processes: run it as root");
    }
    setup::setup(repo, true)?;
    let work = repo.root.join("target").join("bench");
    let sensor = sensor_copy(&repo.build_sensor(true)?, &work)?;
    let run_dir = fresh_dir(&work.join("run"))?;

    let params = Params::new(quick);
    let pinning = pinning();
    let mut results = Results {
        machine: Machine::probe(&repo.root),
        started: machine::utc_now(),
        pinning,
        samples: Vec::new(),
        sweep: rate::Sweep::default(),
        notes: Vec::new(),
        foreign: Vec::new(),
        elapsed: Duration::ZERO,
        params: params.clone(),
    };
    announce(&results);
    let pingpong = compile_pingpong(&repo.root, &work, &mut results.notes);
    let tracers = Tracers {
        sensor,
        naive_script: repo.root.join("bench").join("naive.bt"),
        logs: run_dir.clone(),
        cpu: pinning.map(|p| p.server),
        held_exe: None,
    };
    let bed = Bed {
        pingpong,
        load_cpu: pinning.map(|p| p.load),
        pingpong_secs: params.pingpong_secs,
        wrk_secs: params.wrk_secs,
        nginx: start_nginx(&run_dir, pinning, &mut results.notes),
    };
    warm_up(&bed);
    run_rounds(&tracers, &bed, &mut results);
    note_foreign_load(&mut results.foreign);
    results.sweep = rate::sweep(&tracers, &bed, &params.rates, params.rate_secs);
    drop(bed);

    results.elapsed = start.elapsed();
    let text = report::markdown(&results);
    println!("\n{text}");
    let written = report::write(&repo.root.join("bench").join("results"), &results, &text)?;
    for path in written {
        println!("bench: wrote {}", path.display());
    }
    Ok(())
}

fn announce(r: &Results) {
    let p = &r.params;
    let kind = if p.quick { "quick" } else { "full" };
    let est = p.estimate().as_secs();
    println!(
        "bench: {kind} run: {} rounds of {} workloads x off/on/naive, then up to {} rate \
         steps; about {}m{:02}s after the build",
        p.rounds,
        WORKLOADS.len(),
        p.rates.len(),
        est / 60,
        est % 60
    );
    if let Some(pin) = r.pinning {
        println!(
            "bench: nginx, tracer and its output reader on CPU {}; sslpingpong and wrk on CPU {}",
            pin.server, pin.load
        );
    }
}

/// Copies the freshly built sensor into `work`, so that a rebuild of
/// target/release during the bench does not change what is measured.
fn sensor_copy(built: &Path, work: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let copy = work.join("telltale");
    std::fs::copy(built, &copy)
        .with_context(|| format!("copying {} to {}", built.display(), copy.display()))?;
    Ok(copy)
}

/// Compiles bench/sslpingpong.c into `work`; on failure adds a note (the
/// measurements that need it are skipped).
fn compile_pingpong(root: &Path, work: &Path, notes: &mut Vec<String>) -> Option<PathBuf> {
    let bin = work.join("sslpingpong");
    let mut gcc = Command::new("gcc");
    gcc.args(["-O2", "-Wall", "-Wextra", "-o"])
        .arg(&bin)
        .arg(root.join("bench").join("sslpingpong.c"))
        .args(["-lssl", "-lcrypto"]);
    match cmd::run(&mut gcc) {
        Ok(()) => {
            println!("bench: built {}", bin.display());
            Some(bin)
        }
        Err(e) => {
            let note = format!(
                "sslpingpong did not compile (needs gcc and libssl-dev), no per-call \
                 cost or rate results: {e:#}"
            );
            println!("bench: {note}");
            notes.push(note);
            None
        }
    }
}

/// Empties (or creates) `dir`.
fn fresh_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// CPU 0 for the server side, CPU 1 for the load, when there are two CPUs.
fn pinning() -> Option<Pinning> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus >= 2 && cmd::which("taskset").is_some()).then_some(Pinning { server: 0, load: 1 })
}

fn start_nginx(dir: &Path, pin: Option<Pinning>, notes: &mut Vec<String>) -> Option<Nginx> {
    match Nginx::start(&dir.join("nginx"), pin.map(|p| p.server)) {
        Ok(n) => {
            println!("bench: nginx listening on 127.0.0.1:{}", n.port);
            Some(n)
        }
        Err(e) => {
            let note = format!("nginx could not start, no HTTPS results: {e:#}");
            println!("bench: {note}");
            notes.push(note);
            None
        }
    }
}

/// A short unmeasured run of each workload kind (caches, CPU frequency).
fn warm_up(bed: &Bed) {
    for w in [Workload::PingPong(Api::Plain), Workload::Https(Body::K16)] {
        let _ = bed.run(w);
    }
}

/// Every round runs each workload under off, on and naive in turn, each with a
/// fresh tracer, so that drift cancels and loss is known per measurement.
fn run_rounds(tracers: &Tracers, bed: &Bed, results: &mut Results) {
    let mut unavailable: Vec<Config> = Vec::new();
    let rounds = results.params.rounds;
    for round in 1..=rounds {
        println!("bench: round {round}/{rounds}");
        for workload in WORKLOADS.into_iter().filter(|&w| bed.can_run(w)) {
            for config in Config::ALL {
                if unavailable.contains(&config) {
                    continue;
                }
                note_foreign_load(&mut results.foreign);
                match measure(tracers, bed, round, workload, config) {
                    Ok(sample) => results.samples.push(sample),
                    Err(e) => {
                        let note = format!(
                            "{} unavailable from round {round} ({}) on: {e:#}",
                            config.name(),
                            workload.key()
                        );
                        println!("bench: {note}");
                        results.notes.push(note);
                        unavailable.push(config);
                    }
                }
            }
        }
    }
}

/// One run of `w` under `config`; fails only when the tracer cannot start.
fn measure(
    tracers: &Tracers,
    bed: &Bed,
    round: usize,
    w: Workload,
    config: Config,
) -> Result<Sample> {
    let mut session = tracers.start(config, None)?;
    let (value, usage) = match session.measure(|| bed.run(w)) {
        Ok((v, usage)) => (Ok(v), usage),
        Err(e) => (Err(format!("{e:#}")), None),
    };
    let end = session.stop();
    let shown = match &value {
        Ok(v) => format!("{v:.1} {}", w.unit()),
        Err(e) => format!("FAILED: {e}"),
    };
    let cpu = usage.map_or_else(String::new, |u| {
        format!(" (tracer CPU {:.0}%)", u.cpu_percent())
    });
    println!("bench:   {:<15} {:<5} {shown}{cpu}", w.key(), config.name());
    for p in &end.problems {
        println!("bench:   {}: {p}", config.name());
    }
    Ok(Sample {
        round,
        config,
        workload: w,
        value,
        usage,
        end: (config != Config::Off).then_some(end),
    })
}

/// Adds to `seen` the other tracers or load generators running now, which
/// would distort the results.
fn note_foreign_load(seen: &mut Vec<String>) {
    for p in proc::foreign_load() {
        if !seen.contains(&p) {
            println!("bench: WARNING: not ours and distorting the results: {p}");
            seen.push(p);
        }
    }
}

/// Entry point of `./x bench decode` and `./x bench detect`: a library
/// benchmark (sensor/benches/NAME.rs) on one core, without root or BPF. Also
/// of `./x bench hold`, which is not one (see [`hold`]).
pub fn library(repo: &Repo, name: &str, quick: bool) -> Result<()> {
    if name == "hold" {
        return hold::hold(repo, quick);
    }
    let mut run = repo.cargo([
        "bench",
        "-p",
        "telltale",
        "--no-default-features",
        "--bench",
        name,
        "--",
    ])?;
    if quick {
        run.arg("--quick");
    }
    let out = cmd::stdout(&mut run).with_context(|| format!("running the {name} benchmark"))?;
    println!("{}", out.trim_end());
    write_latest(repo, name, quick, &out)
}

/// Writes `report` to bench/results/NAME-latest.txt under a line naming the
/// command, the date, the commit and the machine.
fn write_latest(repo: &Repo, name: &str, quick: bool, report: &str) -> Result<()> {
    let m = machine::Machine::probe(&repo.root);
    let (date, _) = machine::utc_now();
    let dir = repo.root.join("bench").join("results");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(format!("{name}-latest.txt"));
    let text = format!(
        "# ./x bench {name}{} — {date}, commit {}, {} ({} cores), kernel {}\n{}\n",
        if quick { " --quick" } else { "" },
        m.commit,
        m.cpu_model,
        m.cores,
        m.kernel,
        report.trim_end()
    );
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    println!("bench: wrote {}", file.display());
    Ok(())
}
