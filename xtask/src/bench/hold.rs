//! `bench hold`: what holding TLS writes for an enforcement decision costs.
//!
//! Each round runs sslpingpong (`http` mode: SSL_write/SSL_read of a 64-byte
//! HTTP/1.1 request and response) under off, on, exempt and held in turn, each
//! with a fresh sensor (see [`Config`]). `exempt` against `on` shows what a
//! process that no blocking policy selects pays (a map lookup per write:
//! expected ≈ 0); `held` against `on` what a held write adds (the process
//! stopped, its bytes read, framed and judged as a request, the process
//! continued). sslpingpong is one process playing both ends over a BIO pair, so
//! the policy selects both; the server's connection carries responses, not
//! requests, and is no longer held after its first write: one held write per
//! round trip. The report (medians of µs per round trip) is printed and written
//! to bench/results/hold-latest.txt.

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    Params, Sample, compile_pingpong, fresh_dir, measure, note_foreign_load, pinning,
    report::median,
    sensor_copy,
    tracer::{Config, EXEMPT_EXE, EnforceCounters, Tracers},
    workload::{Api, Bed, PING_BYTES, Workload},
    write_latest,
};
use crate::{Repo, cmd, setup};

/// The measured workload: one iteration is one round trip.
const WORKLOAD: Workload = Workload::PingPong(Api::Http);
/// SSL_writes per round trip (the client's request, the server's response).
const WRITES_PER_ROUND_TRIP: f64 = 2.0;
/// Of those, held under `held`: the request (the response's connection is
/// exempted from holds once the sensor sees it carries no requests).
const HELD_PER_ROUND_TRIP: f64 = 1.0;
/// Hooked calls per round trip: the two writes and the two reads.
const CALLS_PER_ROUND_TRIP: f64 = 4.0;

/// Everything one `bench hold` run measured.
struct Run {
    params: Params,
    /// The program `held`'s policy selects.
    held_exe: PathBuf,
    samples: Vec<Sample>,
    /// What could not be measured and other things a reader must know.
    notes: Vec<String>,
    /// Other tracers or load generators seen running ("comm (pid)").
    foreign: Vec<String>,
    elapsed: Duration,
}

/// Entry point of `./x bench hold`.
pub fn hold(repo: &Repo, quick: bool) -> Result<()> {
    let start = Instant::now();
    if !cmd::is_root() {
        bail!("bench hold loads eBPF programs and stops processes: run it as root");
    }
    setup::setup(repo, true)?;
    let work = repo.root.join("target").join("bench");
    let sensor = sensor_copy(&repo.build_sensor(true)?, &work)?;
    let run_dir = fresh_dir(&work.join("hold"))?;
    let mut notes = Vec::new();
    let Some(pingpong) = compile_pingpong(&repo.root, &work, &mut notes) else {
        bail!("nothing to measure: {}", notes.join("; "));
    };
    // The sensor matches the path the kernel reports for the executable.
    let held_exe = pingpong
        .canonicalize()
        .with_context(|| format!("resolving {}", pingpong.display()))?;

    let params = Params::new(quick);
    let pinning = pinning();
    announce(&params);
    let tracers = Tracers {
        sensor,
        naive_script: repo.root.join("bench").join("naive.bt"),
        logs: run_dir,
        cpu: pinning.map(|p| p.server),
        held_exe: Some(held_exe.clone()),
    };
    let bed = Bed {
        pingpong: Some(pingpong),
        load_cpu: pinning.map(|p| p.load),
        pingpong_secs: params.pingpong_secs,
        wrk_secs: params.wrk_secs,
        nginx: None,
    };
    if let Some(pin) = pinning {
        println!(
            "bench: sensor and its output reader on CPU {}; sslpingpong on CPU {}",
            pin.server, pin.load
        );
    }
    // Unmeasured (caches, CPU frequency).
    let _ = bed.run(WORKLOAD);

    let mut run = Run {
        params,
        held_exe,
        samples: Vec::new(),
        notes,
        foreign: Vec::new(),
        elapsed: Duration::ZERO,
    };
    run_rounds(&tracers, &bed, &mut run);
    run.elapsed = start.elapsed();
    let text = report(&run);
    println!("\n{text}");
    write_latest(repo, "hold", quick, &text)
}

fn announce(p: &Params) {
    // sslpingpong warms up for up to 2 s; starting and stopping the sensor
    // takes about 6 s, a little more with a blocking policy (it judges every
    // running process before attaching).
    let runs = Config::HOLD.len() as u64 * (p.pingpong_secs + 2);
    let est = p.rounds as u64 * (runs + 3 * 8);
    println!(
        "bench: hold: {} run: {} rounds of sslpingpong x off/on/exempt/held; about \
         {}m{:02}s after the build",
        if p.quick { "quick" } else { "full" },
        p.rounds,
        est / 60,
        est % 60
    );
}

/// Every round runs the workload under each configuration in turn, each with
/// a fresh sensor, so that drift cancels.
fn run_rounds(tracers: &Tracers, bed: &Bed, run: &mut Run) {
    let mut unavailable: Vec<Config> = Vec::new();
    let rounds = run.params.rounds;
    for round in 1..=rounds {
        println!("bench: round {round}/{rounds}");
        for config in Config::HOLD {
            if unavailable.contains(&config) {
                continue;
            }
            note_foreign_load(&mut run.foreign);
            match measure(tracers, bed, round, WORKLOAD, config) {
                Ok(sample) => run.samples.push(sample),
                Err(e) => {
                    let note =
                        format!("{} unavailable from round {round} on: {e:#}", config.name());
                    println!("bench: {note}");
                    run.notes.push(note);
                    unavailable.push(config);
                }
            }
        }
    }
}

/// What the runs of one configuration measured.
struct Summary {
    config: Config,
    /// µs per round trip, by round (an error where the run failed).
    per_round: Vec<Result<f64, String>>,
    /// Their median.
    median: Option<f64>,
    /// Sensor configurations: hooked calls and enforcement counters, summed
    /// over the rounds (the longest hold is the maximum).
    calls: u64,
    enforce: Option<EnforceCounters>,
    /// Whether the sensor reported lost records in any run.
    lossy: bool,
    /// Problems met while stopping the sensor.
    problems: Vec<String>,
}

impl Summary {
    fn of(run: &Run, config: Config) -> Self {
        let samples: Vec<&Sample> = run.samples.iter().filter(|s| s.config == config).collect();
        let per_round: Vec<Result<f64, String>> = samples
            .iter()
            .map(|s| s.value.clone().map(|ns| ns / 1000.0))
            .collect();
        let mut summary = Self {
            config,
            median: median(per_round.iter().filter_map(|v| v.clone().ok()).collect()),
            per_round,
            calls: 0,
            enforce: None,
            lossy: false,
            problems: Vec::new(),
        };
        for end in samples.iter().filter_map(|s| s.end.as_ref()) {
            summary.problems.extend(end.problems.iter().cloned());
            let Some(c) = end.counters else { continue };
            summary.calls += c.calls;
            summary.lossy |= c.lost_records > 0 || c.lost_bytes > 0;
            if let Some(e) = c.enforce {
                let sum = summary.enforce.get_or_insert_with(EnforceCounters::default);
                sum.holds += e.holds;
                sum.exempted += e.exempted;
                sum.fail_decisions += e.fail_decisions;
                sum.held_us_total += e.held_us_total;
                sum.held_us_max = sum.held_us_max.max(e.held_us_max);
            }
        }
        summary
    }

    /// Held writes as a share of the SSL_writes the sensor saw.
    fn held_share(&self) -> Option<f64> {
        let writes = self.calls as f64 * WRITES_PER_ROUND_TRIP / CALLS_PER_ROUND_TRIP;
        let e = self.enforce?;
        (writes > 0.0).then(|| e.holds as f64 / writes)
    }

    /// The largest minus the smallest µs per round trip of the rounds.
    fn spread(&self) -> Option<f64> {
        let values: Vec<f64> = self
            .per_round
            .iter()
            .filter_map(|v| v.clone().ok())
            .collect();
        let max = values.iter().copied().reduce(f64::max)?;
        let min = values.iter().copied().reduce(f64::min)?;
        Some(max - min)
    }

    /// The sensor's own mean hold (kernel stop to continuation), µs.
    fn mean_hold_us(&self) -> Option<f64> {
        let e = self.enforce.filter(|e| e.holds > 0)?;
        Some(e.held_us_total as f64 / e.holds as f64)
    }
}

/// `with` minus `base`, and `with` / `base`.
fn versus(with: Option<f64>, base: Option<f64>) -> Option<(f64, f64)> {
    match (with, base) {
        (Some(w), Some(b)) if b > 0.0 => Some((w - b, w / b)),
        _ => None,
    }
}

/// "+D µs per round trip (R×)" of `with` against `base`, or "n/a".
fn versus_text(with: &Summary, base: &Summary) -> String {
    versus(with.median, base.median).map_or_else(
        || "n/a".to_owned(),
        |(diff, ratio)| format!("{diff:+.2} µs per round trip ({ratio:.2}x)"),
    )
}

fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
}

/// The plain-text report.
fn report(run: &Run) -> String {
    let p = &run.params;
    let [off, on, exempt, held] = Config::HOLD.map(|c| Summary::of(run, c));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hold: µs per sslpingpong round trip (client SSL_write of a {PING_BYTES}-byte \
         HTTP/1.1 request, server SSL_read, server SSL_write of a {PING_BYTES}-byte \
         response, client SSL_read; TLS 1.3 over a BIO pair); median of {} rounds of \
         {} s, configurations alternating, a fresh sensor per run; took {}m{:02}s",
        p.rounds,
        p.pingpong_secs,
        run.elapsed.as_secs() / 60,
        run.elapsed.as_secs() % 60
    );
    let _ = writeln!(
        out,
        "off = no sensor; on = `telltale run --emit data` (defaults, no policy); \
         exempt = on + one mode = \"block\" policy with exe = [\"{EXEMPT_EXE}\"]; \
         held = on + one with exe = [\"{}\"]",
        run.held_exe.display()
    );
    let _ = writeln!(
        out,
        "sslpingpong is ONE process playing client and server, so held's policy selects \
         both ends; each request is held, framed, judged (not an LLM API call) and let \
         go; the server's connection, which carries responses, is no longer held after \
         its first write ({} held write per round trip)",
        HELD_PER_ROUND_TRIP
    );
    let _ = writeln!(
        out,
        "{:<7} {:>13}  {:<26} {:>12} {:>12} {:>12}",
        "config", "µs/round trip", "per round (µs)", "held writes", "mean hold µs", "max hold µs"
    );
    for s in [&off, &on, &exempt, &held] {
        let rounds: Vec<String> = s
            .per_round
            .iter()
            .map(|v| {
                v.as_ref()
                    .map_or_else(|_| "FAILED".to_owned(), |v| format!("{v:.2}"))
            })
            .collect();
        let share = s
            .held_share()
            .map_or_else(|| "-".to_owned(), |f| format!("{:.1}%", 100.0 * f));
        let mean = s
            .mean_hold_us()
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        let max = s
            .enforce
            .filter(|e| e.holds > 0)
            .map_or_else(|| "-".to_owned(), |e| e.held_us_max.to_string());
        let lossy = if s.lossy { " *" } else { "" };
        let _ = writeln!(
            out,
            "{:<7} {:>13}  {:<26} {share:>12} {mean:>12} {max:>12}",
            s.config.name(),
            format!("{}{lossy}", us(s.median)),
            rounds.join(" "),
        );
    }
    let _ = writeln!(
        out,
        "(held writes: holds / SSL_writes the sensor saw, warm-up included; mean and max \
         hold: the sensor's own measure, kernel stop to continuation)"
    );
    let _ = writeln!(
        out,
        "exempt vs on: {}; expected ≈ 0 (a map lookup per write); on's rounds spread \
         over {} µs",
        versus_text(&exempt, &on),
        us(on.spread())
    );
    let per_write = versus(held.median, on.median)
        .map(|(diff, _)| format!(" = {:+.2} µs per held write", diff / HELD_PER_ROUND_TRIP));
    let _ = writeln!(
        out,
        "held vs on: {}{}",
        versus_text(&held, &on),
        per_write.unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "on vs off: {} (the capture itself, for reference)",
        versus_text(&on, &off)
    );
    notes(&mut out, run, [&on, &exempt, &held]);
    out
}

/// What a reader must know: failed runs, lost records, unexpected holds.
fn notes(out: &mut String, run: &Run, sensor: [&Summary; 3]) {
    let mut notes = run.notes.clone();
    for s in sensor {
        let name = s.config.name();
        if s.lossy {
            notes.push(format!("* {name}: the sensor reported lost records"));
        }
        notes.extend(s.problems.iter().map(|p| format!("{name}: {p}")));
        if let Some(e) = s.enforce {
            if e.fail_decisions > 0 {
                notes.push(format!(
                    "{name}: {} held writes were decided by the fail mode (timeout or \
                     unreadable bytes)",
                    e.fail_decisions
                ));
            }
            if s.config != Config::Held && e.holds > 0 {
                notes.push(format!("{name}: {} writes held, expected none", e.holds));
            }
        }
    }
    let expected = HELD_PER_ROUND_TRIP / WRITES_PER_ROUND_TRIP;
    if let Some(share) = sensor[2].held_share()
        && share < expected * 0.98
    {
        notes.push(format!(
            "held: only {:.1}% of the SSL_writes were held, expected {:.0}%",
            100.0 * share,
            100.0 * expected
        ));
    }
    for p in &run.foreign {
        notes.push(format!("not ours and distorting the results: {p}"));
    }
    for n in notes {
        let _ = writeln!(out, "note: {n}");
    }
}
