//! The benchmark's report: medians and ratios as markdown tables (printed and
//! written to bench/results/<date>-<host>.md) and the raw numbers as JSON
//! (bench/results/latest.json).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{
    Results, Sample, WORKLOADS,
    rate::{self, Step, WRITE_BYTES},
    tap::TapSummary,
    tracer::{Config, SensorCounters, SessionEnd, Usage},
    workload::{Api, Body, CALLS_PER_ITERATION, PING_BYTES, WRK_CONNECTIONS, Workload},
};

/// Writes the markdown and latest.json into `dir`; returns the paths written.
pub fn write(dir: &Path, r: &Results, markdown: &str) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let suffix = if r.params.quick { "-quick" } else { "" };
    let md = dir.join(format!(
        "{}-{}{suffix}.md",
        r.started.0,
        r.machine.short_hostname()
    ));
    std::fs::write(&md, markdown).with_context(|| format!("writing {}", md.display()))?;
    let json_path = dir.join("latest.json");
    let text = serde_json::to_string_pretty(&to_json(r)).context("serialising results")?;
    std::fs::write(&json_path, text + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    Ok(vec![md, json_path])
}

// ---------------------------------------------------------------------------
// Statistics

/// The median of `values` (the mean of the middle two for an even count).
pub(super) fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn samples(r: &Results, w: Workload, c: Config) -> impl Iterator<Item = &Sample> {
    r.samples
        .iter()
        .filter(move |s| s.workload == w && s.config == c)
}

/// Median value of a workload under a configuration.
fn median_value(r: &Results, w: Workload, c: Config) -> Option<f64> {
    median(
        samples(r, w, c)
            .filter_map(|s| s.value.clone().ok())
            .collect(),
    )
}

/// Median tracer usage of a workload under a configuration, field by field.
fn median_usage(r: &Results, w: Workload, c: Config) -> Option<Usage> {
    let usages: Vec<Usage> = samples(r, w, c)
        .filter(|s| s.value.is_ok())
        .filter_map(|s| s.usage)
        .collect();
    Some(Usage {
        cpu_secs: median(usages.iter().map(|u| u.cpu_secs).collect())?,
        wall_secs: median(usages.iter().map(|u| u.wall_secs).collect())?,
        peak_rss_kib: median(
            usages
                .iter()
                .filter_map(|u| u.peak_rss_kib.map(|k| k as f64))
                .collect(),
        )
        .map(|k| k as u64),
    })
}

/// Added µs per hooked call of `c` over `off` in the ping-pong.
fn added_us_per_call(r: &Results, api: Api, c: Config) -> Option<f64> {
    let w = Workload::PingPong(api);
    let (off, with) = (median_value(r, w, Config::Off)?, median_value(r, w, c)?);
    Some((with - off) / CALLS_PER_ITERATION / 1000.0)
}

/// Whether the tracer reported lost events in any run of `w` under `c`.
fn lossy(r: &Results, w: Workload, c: Config) -> bool {
    samples(r, w, c).filter_map(|s| s.end.as_ref()).any(|e| {
        e.counters
            .is_some_and(|k| k.lost_records > 0 || k.lost_bytes > 0)
            || e.output.as_ref().is_some_and(|o| o.bpftrace_lost > 0)
    })
}

/// The median value of `w` under `c`, marked with " *" when events were lost.
fn value_cell(r: &Results, w: Workload, c: Config) -> String {
    let mark = if lossy(r, w, c) { " *" } else { "" };
    format!("{}{mark}", num(median_value(r, w, c), 0))
}

/// Legend of the " *" mark.
const LOSSY_LEGEND: &str = "\\* the tracer reported lost events in at least one of \
                            these runs (see Capture completeness).\n";

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Markdown

/// A markdown table with padded columns (readable as plain text too).
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(i, w)| format!("{:<w$}", cells.get(i).map_or("", String::as_str)))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        let mut out = line(&self.header);
        out.push_str(&line(&rule));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

fn times(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}x"))
}

fn signed_us(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:+.2}"))
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// The whole report.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    header(&mut out, r);
    pingpong_section(&mut out, r);
    nginx_section(&mut out, r);
    rate_section(&mut out, r);
    usage_section(&mut out, r);
    latency_section(&mut out, r);
    capture_section(&mut out, r);
    notes_section(&mut out, r);
    raw_section(&mut out, r);
    out
}

fn header(out: &mut String, r: &Results) {
    let m = &r.machine;
    let p = &r.params;
    let _ = writeln!(out, "# Telltale benchmark, {}\n", r.started.1);
    let _ = writeln!(
        out,
        "- machine: {} ({} cores), kernel {}, host {}",
        m.cpu_model, m.cores, m.kernel, m.hostname
    );
    let _ = writeln!(out, "- sensor commit: {}", m.commit);
    for (name, version) in &m.tools {
        let _ = writeln!(out, "- {name}: {version}");
    }
    let _ = writeln!(
        out,
        "- run: {} ({} rounds of off, on, naive alternating; medians; sslpingpong {} s, \
         wrk {} s, rate steps {} s); took {}m{:02}s",
        if p.quick { "quick" } else { "full" },
        p.rounds,
        p.pingpong_secs,
        p.wrk_secs,
        p.rate_secs,
        r.elapsed.as_secs() / 60,
        r.elapsed.as_secs() % 60
    );
    let _ = writeln!(
        out,
        "- configurations: off = no tracer; on = `telltale run --emit data \
         --status-interval 0` (both directions, plaintext printed, stdout read by a \
         thread); naive = bpftrace bench/naive.bt (uprobe + uretprobe, `buf()` of up \
         to 200 B printed per call)"
    );
    match r.pinning {
        Some(pin) => {
            let _ = writeln!(
                out,
                "- CPUs: nginx, the tracer and its output reader on CPU {}; sslpingpong \
                 and wrk on CPU {} (probe handlers run on the CPU of the calling thread)",
                pin.server, pin.load
            );
        }
        None => {
            let _ = writeln!(out, "- CPUs: not pinned (fewer than 2 CPUs or no taskset)");
        }
    }
    out.push('\n');
}

fn pingpong_section(out: &mut String, r: &Results) {
    let _ = writeln!(
        out,
        "## Added cost per hooked SSL call\n\nsslpingpong: client and server in one \
         process over a BIO pair, TLS 1.3, {PING_BYTES} B each way, {CALLS_PER_ITERATION} \
         hooked calls per iteration. Added µs/call = (config − off) / {CALLS_PER_ITERATION}.\n"
    );
    let mut t = Table::new(&[
        "calls",
        "off ns/iter",
        "on ns/iter",
        "naive ns/iter",
        "on +µs/call",
        "naive +µs/call",
        "on/naive (added)",
    ]);
    for (api, label) in [
        (Api::Plain, "SSL_write/SSL_read"),
        (Api::Ex, "SSL_write_ex/SSL_read_ex"),
    ] {
        let w = Workload::PingPong(api);
        let (on, naive) = (
            added_us_per_call(r, api, Config::On),
            added_us_per_call(r, api, Config::Naive),
        );
        t.row(vec![
            label.to_owned(),
            value_cell(r, w, Config::Off),
            value_cell(r, w, Config::On),
            value_cell(r, w, Config::Naive),
            signed_us(on),
            signed_us(naive),
            times(ratio(on, naive)),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');
    out.push_str(LOSSY_LEGEND);
    out.push('\n');
}

fn nginx_section(out: &mut String, r: &Results) {
    let _ = writeln!(
        out,
        "## nginx + wrk, HTTPS requests/s\n\nTLS 1.3, keep-alive, `wrk -t1 \
         -c{WRK_CONNECTIONS}`, one nginx worker. wrk uses the system libssl too, so \
         both ends are hooked.\n"
    );
    let mut t = Table::new(&[
        "file",
        "off",
        "on",
        "naive",
        "on/off",
        "naive/off",
        "on/naive",
    ]);
    for body in Body::ALL {
        let w = Workload::Https(body);
        let [off, on, naive] = Config::ALL.map(|c| median_value(r, w, c));
        t.row(vec![
            size_label(body.bytes()),
            value_cell(r, w, Config::Off),
            value_cell(r, w, Config::On),
            value_cell(r, w, Config::Naive),
            times(ratio(on, off)),
            times(ratio(naive, off)),
            times(ratio(on, naive)),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');
    out.push_str(LOSSY_LEGEND);
    out.push('\n');
}

fn size_label(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn rate_section(out: &mut String, r: &Results) {
    let _ = writeln!(
        out,
        "## Zero-loss event rate (sensor)\n\n`sslpingpong rate`: paced client SSL_write \
         calls of {WRITE_BYTES} B, each with a unique marker; the server side reads each \
         with SSL_read, so every write makes 2 hooked calls and 2 events. Zero loss = \
         every marker found in the sensor's egress events, and kernel.lost_records = \
         lost_bytes = 0.\n"
    );
    let sweep = &r.sweep;
    if sweep.steps.is_empty() {
        out.push_str("No step ran.\n\n");
        return;
    }
    let mut t = Table::new(&[
        "target writes/s",
        "achieved",
        "markers / sent",
        "lost_records",
        "lost_bytes",
        "sensor CPU %",
        "peak RSS MiB",
        "result",
    ]);
    for s in &sweep.steps {
        t.row(step_row(s));
    }
    out.push_str(&t.render());
    out.push('\n');
    let _ = writeln!(out, "{}\n", rate_verdict(sweep));
}

fn step_row(s: &Step) -> Vec<String> {
    let (lr, lb) = s.counters.map_or(("?".into(), "?".into()), |c| {
        (c.lost_records.to_string(), c.lost_bytes.to_string())
    });
    let result = if s.zero_loss() {
        "zero loss".to_owned()
    } else if s.problems.is_empty() {
        "LOSS".to_owned()
    } else {
        format!("unverified: {}", s.problems.join("; "))
    };
    vec![
        s.target.to_string(),
        format!("{:.0}", s.achieved),
        format!("{} / {}", s.markers, s.sent),
        lr,
        lb,
        num(s.usage.map(|u| u.cpu_percent()), 0),
        mib(s.usage.and_then(|u| u.peak_rss_kib)),
        result,
    ]
}

fn rate_verdict(sweep: &rate::Sweep) -> String {
    let best = sweep.best_zero_loss().map_or_else(
        || "none".to_owned(),
        |s| {
            format!(
                "{:.0} writes/s ({:.0} hooked calls/s)",
                s.achieved,
                2.0 * s.achieved
            )
        },
    );
    let first = match sweep.first_loss() {
        Some(s) => format!("at {} writes/s (achieved {:.0})", s.target, s.achieved),
        None => {
            let top = sweep.steps.iter().map(|s| s.achieved).fold(0.0, f64::max);
            format!("none up to {top:.0} writes/s")
        }
    };
    let why = sweep
        .stopped_because
        .as_deref()
        .map_or_else(String::new, |w| format!(" Sweep stopped: {w}."));
    format!("Highest rate with zero loss: **{best}**. First drop: **{first}**.{why}")
}

fn usage_section(out: &mut String, r: &Results) {
    out.push_str(
        "## Tracer CPU time and memory\n\nCPU = utime + stime of the tracer process \
         during the run (100% = one core; the reader of its output is not included); \
         peak RSS = VmHWM, reset at the start of the run.\n\n",
    );
    let mut t = Table::new(&["run", "config", "CPU s", "CPU % of run", "peak RSS MiB"]);
    let w = Workload::Https(Body::K16);
    for c in [Config::On, Config::Naive] {
        let u = median_usage(r, w, c);
        t.row(usage_row("nginx 16 KiB (median)", c, u));
    }
    if let Some(s) = r.sweep.best_zero_loss() {
        let label = format!("rate {} writes/s (highest zero-loss)", s.target);
        t.row(usage_row(&label, Config::On, s.usage));
    }
    out.push_str(&t.render());
    out.push('\n');
}

fn usage_row(label: &str, c: Config, u: Option<Usage>) -> Vec<String> {
    vec![
        label.to_owned(),
        c.name().to_owned(),
        num(u.map(|u| u.cpu_secs), 2),
        num(u.map(|u| u.cpu_percent()), 0),
        mib(u.and_then(|u| u.peak_rss_kib)),
    ]
}

/// The `q`-quantile (0..=1) of sorted samples.
fn quantile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied()
}

fn latency_section(out: &mut String, r: &Results) {
    out.push_str(
        "## Event latency (sensor)\n\nFrom the SSL call's return (the event's \
         `message.mono_ns`, taken in the kernel) to the moment the consumer of the \
         sensor's stdout read the event's line; all `on` runs of a workload together. \
         Records are submitted without a wakeup below 1 MiB unread and the sensor \
         polls every 5 ms.\n\n",
    );
    let mut t = Table::new(&["workload", "events", "p50 ms", "p99 ms", "max ms"]);
    let ms = |v: Option<u32>| {
        v.map_or("n/a".to_owned(), |us| {
            format!("{:.2}", f64::from(us) / 1000.0)
        })
    };
    for w in WORKLOADS {
        let mut all: Vec<u32> = samples(r, w, Config::On)
            .filter_map(|s| s.end.as_ref()?.output.as_ref())
            .flat_map(|o| o.latency_us.iter().copied())
            .collect();
        all.sort_unstable();
        t.row(vec![
            w.key().to_owned(),
            all.len().to_string(),
            ms(quantile(&all, 0.5)),
            ms(quantile(&all, 0.99)),
            ms(all.last().copied()),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');
}

fn capture_section(out: &mut String, r: &Results) {
    out.push_str(
        "## Capture completeness (sums over the rounds)\n\nSensor: kernel counters of \
         its `stopped` status. Naive: lines bpftrace printed and the events it reported \
         lost (\"Lost N events\").\n\n",
    );
    let mut t = Table::new(&[
        "workload",
        "on kernel.calls",
        "on pipeline.events",
        "on lost_records",
        "on lost_bytes",
        "naive lines",
        "naive lost events",
    ]);
    for w in WORKLOADS {
        let on = |f: fn(&SensorCounters) -> u64| -> String {
            let counters: Vec<SensorCounters> = samples(r, w, Config::On)
                .filter_map(|s| s.end.as_ref()?.counters)
                .collect();
            if counters.is_empty() {
                return "n/a".into();
            }
            counters.iter().map(f).sum::<u64>().to_string()
        };
        let naive = |f: fn(&TapSummary) -> u64| -> String {
            let outputs: Vec<&TapSummary> = samples(r, w, Config::Naive)
                .filter_map(|s| s.end.as_ref()?.output.as_ref())
                .collect();
            if outputs.is_empty() {
                return "n/a".into();
            }
            outputs.into_iter().map(f).sum::<u64>().to_string()
        };
        t.row(vec![
            w.key().to_owned(),
            on(|c| c.calls),
            on(|c| c.events),
            on(|c| c.lost_records),
            on(|c| c.lost_bytes),
            naive(|o| o.lines),
            naive(|o| o.bpftrace_lost),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');
}

fn notes_section(out: &mut String, r: &Results) {
    let mut notes: Vec<String> = r.notes.clone();
    if !r.foreign.is_empty() {
        notes.push(format!(
            "other tracers or load generators ran during the bench, results are \
             distorted: {}",
            r.foreign.join(", ")
        ));
    }
    for s in &r.samples {
        for p in s.end.iter().flat_map(|e| &e.problems) {
            notes.push(format!(
                "round {} {} {}: {p}",
                s.round,
                s.config.name(),
                s.workload.key()
            ));
        }
    }
    let failed: Vec<String> = r
        .samples
        .iter()
        .filter_map(|s| {
            let e = s.value.as_ref().err()?;
            Some(format!(
                "round {} {} {} failed: {e}",
                s.round,
                s.config.name(),
                s.workload.key()
            ))
        })
        .collect();
    notes.extend(failed);
    if notes.is_empty() {
        return;
    }
    out.push_str("## Notes\n\n");
    for n in notes {
        let _ = writeln!(out, "- {n}");
    }
    out.push('\n');
}

fn raw_section(out: &mut String, r: &Results) {
    out.push_str("## Raw samples (in round order)\n\n");
    let mut t = Table::new(&["workload", "unit", "off", "on", "naive"]);
    for w in WORKLOADS {
        let mut row = vec![w.key().to_owned(), w.unit().to_owned()];
        for c in Config::ALL {
            let vals: Vec<String> = samples(r, w, c)
                .map(|s| {
                    s.value
                        .as_ref()
                        .map_or_else(|_| "err".into(), |v| format!("{v:.0}"))
                })
                .collect();
            row.push(vals.join(" "));
        }
        t.row(row);
    }
    out.push_str(&t.render());
}

// ---------------------------------------------------------------------------
// JSON

fn to_json(r: &Results) -> Value {
    let m = &r.machine;
    let p = &r.params;
    json!({
        "date": r.started.1,
        "quick": p.quick,
        "elapsed_secs": r.elapsed.as_secs_f64(),
        "machine": {
            "cpu_model": m.cpu_model,
            "cores": m.cores,
            "kernel": m.kernel,
            "hostname": m.hostname,
            "sensor_commit": m.commit,
            "tools": m.tools.iter().map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect::<serde_json::Map<_, _>>(),
        },
        "params": {
            "rounds": p.rounds,
            "pingpong_secs": p.pingpong_secs,
            "wrk_secs": p.wrk_secs,
            "rate_secs": p.rate_secs,
            "rates": p.rates,
            "pingpong_bytes": PING_BYTES,
            "wrk_connections": WRK_CONNECTIONS,
            "rate_write_bytes": WRITE_BYTES,
        },
        "pinning": r.pinning.map(|p| json!({"server_cpu": p.server, "load_cpu": p.load})),
        "medians": medians_json(r),
        "samples": r.samples.iter().map(sample_json).collect::<Vec<_>>(),
        "rate": {
            "steps": r.sweep.steps.iter().map(step_json).collect::<Vec<_>>(),
            "highest_zero_loss_writes_per_sec": r.sweep.best_zero_loss().map(|s| s.achieved),
            "first_loss_target": r.sweep.first_loss().map(|s| s.target),
            "stopped_because": r.sweep.stopped_because,
        },
        "notes": r.notes,
        "foreign_processes": r.foreign,
    })
}

fn medians_json(r: &Results) -> Value {
    let mut map = serde_json::Map::new();
    for w in WORKLOADS {
        let mut per = serde_json::Map::new();
        for c in Config::ALL {
            per.insert(c.name().to_owned(), json!(median_value(r, w, c)));
        }
        per.insert("unit".into(), json!(w.unit()));
        if let Workload::PingPong(api) = w {
            for c in [Config::On, Config::Naive] {
                let key = format!("{}_added_us_per_call", c.name());
                per.insert(key, json!(added_us_per_call(r, api, c)));
            }
        }
        map.insert(w.key().to_owned(), Value::Object(per));
    }
    Value::Object(map)
}

fn usage_json(u: Option<Usage>) -> Value {
    u.map_or(Value::Null, |u| {
        json!({
            "cpu_secs": u.cpu_secs,
            "wall_secs": u.wall_secs,
            "cpu_percent": u.cpu_percent(),
            "peak_rss_kib": u.peak_rss_kib,
        })
    })
}

fn sample_json(s: &Sample) -> Value {
    json!({
        "round": s.round,
        "config": s.config.name(),
        "workload": s.workload.key(),
        "unit": s.workload.unit(),
        "value": s.value.as_ref().ok(),
        "error": s.value.as_ref().err(),
        "tracer": usage_json(s.usage),
        "session": s.end.as_ref().map(session_json),
    })
}

fn session_json(e: &SessionEnd) -> Value {
    json!({
        "sensor": e.counters.map(|c| json!({
            "calls": c.calls,
            "events": c.events,
            "lost_records": c.lost_records,
            "lost_bytes": c.lost_bytes,
        })),
        "output_lines": e.output.as_ref().map(|o| o.lines),
        "output_bytes": e.output.as_ref().map(|o| o.bytes),
        "bpftrace_lost": e.output.as_ref().map(|o| o.bpftrace_lost),
        "problems": e.problems,
    })
}

fn step_json(s: &Step) -> Value {
    json!({
        "target_writes_per_sec": s.target,
        "achieved_writes_per_sec": s.achieved,
        "sent": s.sent,
        "markers_seen": s.markers,
        "lost_records": s.counters.map(|c| c.lost_records),
        "lost_bytes": s.counters.map(|c| c.lost_bytes),
        "kernel_calls": s.counters.map(|c| c.calls),
        "pipeline_events": s.counters.map(|c| c.events),
        "zero_loss": s.zero_loss(),
        "sensor": usage_json(s.usage),
        "problems": s.problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn tables_are_padded_markdown() {
        let mut t = Table::new(&["a", "long header"]);
        t.row(vec!["value".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "| a     | long header |\n| ----- | ----------- |\n| value | x           |\n"
        );
    }

    #[test]
    fn sizes_are_labelled() {
        assert_eq!(size_label(10), "10 B");
        assert_eq!(size_label(16 * 1024), "16 KiB");
        assert_eq!(size_label(1 << 20), "1 MiB");
    }
}
