//! Zero-loss event rate: `sslpingpong rate` paces client SSL_write calls, each
//! with a unique marker, while the sensor captures; the markers found in the
//! sensor's output and its loss counters tell whether it kept up. The rate
//! steps up until the sensor loses data or the generator cannot go faster.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use anyhow::Result;

use super::{
    proc,
    tracer::{Config, SensorCounters, Tracers, Usage},
    workload::{Bed, key_value},
};

/// Bytes of each marked SSL_write.
pub const WRITE_BYTES: usize = 512;
/// A step whose generator reached less than this share of its target rate
/// shows the generator's limit: the sweep stops there.
const REACHED_SHARE: f64 = 0.95;

/// One step of the sweep.
#[derive(Debug)]
pub struct Step {
    /// Target client SSL_write calls per second.
    pub target: u64,
    /// Calls the generator made, and its achieved rate.
    pub sent: u64,
    pub achieved: f64,
    /// Distinct markers found in the sensor's egress events of the generator.
    pub markers: u64,
    pub counters: Option<SensorCounters>,
    pub usage: Option<Usage>,
    /// Problems (the step counts as lossy when it could not be verified).
    pub problems: Vec<String>,
}

impl Step {
    /// Every write arrived, and the kernel counted no loss.
    pub fn zero_loss(&self) -> bool {
        self.problems.is_empty()
            && self.markers == self.sent
            && self
                .counters
                .is_some_and(|c| c.lost_records == 0 && c.lost_bytes == 0)
    }

    /// The generator kept its target rate.
    pub fn reached(&self) -> bool {
        self.achieved >= REACHED_SHARE * self.target as f64
    }
}

/// The outcome of the sweep.
#[derive(Debug, Default)]
pub struct Sweep {
    pub steps: Vec<Step>,
    /// Why the sweep ended before its last step, if it did.
    pub stopped_because: Option<String>,
}

impl Sweep {
    /// The step with the highest achieved rate and no loss.
    pub fn best_zero_loss(&self) -> Option<&Step> {
        self.steps
            .iter()
            .filter(|s| s.zero_loss())
            .max_by(|a, b| a.achieved.total_cmp(&b.achieved))
    }

    /// The first step where a loss was counted.
    pub fn first_loss(&self) -> Option<&Step> {
        self.steps.iter().find(|s| !s.zero_loss())
    }
}

/// Runs the steps in order, one fresh sensor each, stopping at the first loss
/// or when the generator falls short of its target.
pub fn sweep(tracers: &Tracers, bed: &Bed, rates: &[u64], secs: u64) -> Sweep {
    let mut sweep = Sweep::default();
    if let Err(e) = bed.pingpong() {
        sweep.stopped_because = Some(format!("not run: {e}"));
        return sweep;
    }
    for &rate in rates {
        println!("bench: rate {rate} writes/s for {secs}s ...");
        let step = run_step(tracers, bed, rate, secs);
        println!("bench:   {}", describe(&step));
        let (lossy, short) = (!step.zero_loss(), !step.reached());
        sweep.steps.push(step);
        if lossy {
            sweep.stopped_because = Some(format!("loss (or unverifiable) at {rate}/s"));
            break;
        }
        if short {
            sweep.stopped_because = Some(format!("the generator could not reach {rate}/s"));
            break;
        }
    }
    sweep
}

fn run_step(tracers: &Tracers, bed: &Bed, rate: u64, secs: u64) -> Step {
    let mut step = Step {
        target: rate,
        sent: 0,
        achieved: 0.0,
        markers: 0,
        counters: None,
        usage: None,
        problems: Vec::new(),
    };
    let pid = Arc::new(AtomicU32::new(0));
    let mut session = match tracers.start(Config::On, Some(Arc::clone(&pid))) {
        Ok(s) => s,
        Err(e) => {
            step.problems.push(format!("{e:#}"));
            return step;
        }
    };
    match session.measure(|| generate(bed, rate, secs, &pid)) {
        Ok(((sent, achieved), usage)) => {
            (step.sent, step.achieved, step.usage) = (sent, achieved, usage);
        }
        Err(e) => step.problems.push(format!("{e:#}")),
    }
    let end = session.stop();
    step.problems.extend(end.problems);
    step.counters = end.counters;
    step.markers = end.output.map_or(0, |o| o.markers);
    step
}

/// Runs the generator; returns the writes it made and its achieved rate.
fn generate(bed: &Bed, rate: u64, secs: u64, pid: &AtomicU32) -> Result<(u64, f64)> {
    let mut cmd = bed.pinned(bed.pingpong()?);
    cmd.args(["rate", &rate.to_string(), &secs.to_string()])
        .arg(WRITE_BYTES.to_string());
    // The pid is set before the first marked write: the handshake and a
    // warm-up come first.
    let out = proc::run_bounded_with(&mut cmd, Duration::from_secs(secs + 30), |p| {
        pid.store(p, Ordering::Relaxed);
    })?;
    let sent = key_value(&out, "sent")?;
    let achieved = key_value(&out, "achieved")?;
    Ok((sent as u64, achieved))
}

/// One line about a step, for progress output.
pub fn describe(s: &Step) -> String {
    let lost = s.counters.map_or_else(
        || "lost_records=?".to_owned(),
        |c| {
            format!(
                "lost_records={} lost_bytes={}",
                c.lost_records, c.lost_bytes
            )
        },
    );
    let verdict = if s.zero_loss() { "zero loss" } else { "LOSS" };
    let mut line = format!(
        "achieved {:.0}/s, sent {}, markers seen {}, {lost}: {verdict}",
        s.achieved, s.sent, s.markers
    );
    if !s.problems.is_empty() {
        line.push_str(&format!(" ({})", s.problems.join("; ")));
    }
    line
}
