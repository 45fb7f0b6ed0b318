//! The `run` and `targets` commands: wiring of the pipeline stages.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use crate::{
    capture::{AttachedTarget, Capture, Discovery, DiscoveryConfig, LoadOptions, Record},
    clock::Clock,
    config::{Config, Emit},
    conn::{Limits, Reassembler, TlsMessage, proc_socket_resolver},
    event::{self, PipelineStats, Status, TargetStats, TlsData},
    host::HostIdentity,
    process::ProcessCache,
    sink::{self, EventSender},
};

/// Processes whose context is cached at once.
const PROCESS_CACHE_ENTRIES: usize = 4096;

fn discovery_config(cfg: &Config) -> DiscoveryConfig {
    DiscoveryConfig {
        library_dirs: cfg.capture.library_dirs.clone(),
        runtimes: cfg.capture.runtimes.clone(),
        extra: cfg.capture.extra_targets.clone(),
        scan_processes: cfg.capture.scan_processes,
    }
}

/// `telltale targets`: discovery only, nothing is loaded into the kernel.
pub fn print_targets(cfg: &Config, json: bool) -> anyhow::Result<()> {
    let mut d = Discovery::new();
    let targets = d.scan(&discovery_config(cfg));
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            targets: &'a [crate::capture::Target],
            skipped: &'a [crate::capture::Skipped],
        }
        let out = Out {
            targets: &targets,
            skipped: &d.skipped,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if targets.is_empty() {
        println!("no TLS libraries or executables found");
    }
    for t in &targets {
        println!("{} ({:?}, {})", t.path.display(), t.kind, t.library);
        for r in &t.reasons {
            println!("    why: {r}");
        }
        for f in &t.functions {
            println!(
                "    {:<13} offset {:#x}  {}",
                f.function.symbol(),
                f.file_offset,
                f.plan.describe()
            );
        }
        if let Some(o) = t.free_offset {
            println!(
                "    {:<13} offset {o:#x}  entry: marks the end of a connection",
                "SSL_free"
            );
        }
    }
    for s in &d.skipped {
        println!("skipped {}: {}", s.path.display(), s.reason);
    }
    Ok(())
}

struct Pipeline {
    host: HostIdentity,
    clock: Clock,
    started: Instant,
    emit_data: bool,
    events: EventSender,
    stats: PipelineStats,
    processes: ProcessCache,
}

impl Pipeline {
    async fn send<B: Serialize>(&mut self, event_type: &'static str, unix_ns: i128, body: B) {
        let env = event::envelope(&self.host, event_type, unix_ns, body);
        match serde_json::to_vec(&env) {
            Ok(line) => {
                if self.events.send(line).await.is_ok() {
                    self.stats.events += 1;
                }
            }
            Err(e) => tracing::error!(error = %e, event_type, "cannot serialise event"),
        }
    }

    async fn message(&mut self, capture: &Capture, m: TlsMessage) {
        if !self.emit_data {
            return;
        }
        let library = capture
            .target_path(m.target)
            .map(|p| p.display().to_string());
        let t = self.clock.to_unix_ns(m.ts_ns);
        let context = self.processes.get(m.key.pid);
        self.send("tls.data", t, TlsData::new(&m, library, context))
            .await;
    }

    async fn status(&mut self, state: &'static str, capture: &Capture, reasm: &Reassembler) {
        self.stats.record_errors = capture.record_errors();
        let body = Status {
            state,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            targets: target_stats(capture.targets()),
            kernel: capture.counters(),
            reassembly: reasm.stats(),
            pipeline: self.stats,
            processes: self.processes.stats(),
        };
        self.send("sensor.status", Clock::unix_now(), body).await;
    }
}

fn target_stats(targets: &[AttachedTarget]) -> TargetStats {
    let attached = targets.iter().filter(|t| t.is_active()).count();
    TargetStats {
        attached,
        failed: targets.len() - attached,
    }
}

fn handle(
    record: Record<'_>,
    stats: &mut PipelineStats,
    reasm: &mut Reassembler,
    msgs: &mut Vec<TlsMessage>,
    lifecycle: &mut Vec<Lifecycle>,
) {
    match record {
        Record::Chunk(chunk) => {
            stats.bytes += chunk.data.len() as u64;
            reasm.push(&chunk, |m| msgs.push(m));
        }
        Record::Close(c) => reasm.close(c.pid, c.conn, |m| msgs.push(m)),
        Record::ServerName(n) => reasm.set_server_name(n.pid, n.conn, &n.name),
        Record::FdBind(b) => reasm.bind_fd(&b, |m| msgs.push(m)),
        Record::Exec(pid) => lifecycle.push(Lifecycle::Exec(pid)),
        Record::Exit(pid) => {
            reasm.forget_pid(pid, |m| msgs.push(m));
            lifecycle.push(Lifecycle::Exit(pid));
        }
    }
}

/// Process lifecycle work deferred until the records of a batch are handled
/// (it needs the capture and the process cache, which are busy meanwhile).
#[derive(Debug, Clone, Copy)]
enum Lifecycle {
    Exec(u32),
    Exit(u32),
}

/// `telltale run`: capture until SIGINT/SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let (events, writer) =
        sink::json_lines(std::io::stdout(), cfg.output.queue, cfg.output.queue_bytes)
            .context("starting the event writer")?;
    let mut p = Pipeline {
        host: HostIdentity::current(),
        clock: Clock::sample(),
        started: Instant::now(),
        emit_data: cfg.output.emit.contains(&Emit::Data),
        events,
        stats: PipelineStats::default(),
        processes: ProcessCache::new(PROCESS_CACHE_ENTRIES),
    };
    let opts = LoadOptions {
        ring_bytes: cfg.capture.ring_buffer_bytes,
        // A threshold near the ring's size would let it fill before anyone wakes.
        wakeup_bytes: cfg
            .capture
            .wakeup_bytes
            .min(u64::from(cfg.capture.ring_buffer_bytes) / 2),
        emulated_sites: cfg.capture.emulated_sites,
    };
    let mut capture = Capture::start(discovery_config(&cfg), opts).context("starting capture")?;
    let mut reasm = Reassembler::new(
        Limits {
            max_pending: cfg.reassembly.max_pending_messages,
            max_pending_bytes: cfg.reassembly.max_pending_bytes,
            stale_after_ns: cfg.reassembly.stale_after_ms.saturating_mul(1_000_000),
            max_connections: cfg.reassembly.max_connections,
        },
        proc_socket_resolver(),
    );
    let ts = target_stats(capture.targets());
    if ts.attached == 0 {
        tracing::warn!("no TLS library found to attach to; waiting for one to appear");
    }
    let emitting: Vec<_> = cfg
        .output
        .emit
        .iter()
        .map(|e| format!("{e:?}").to_lowercase())
        .collect();
    tracing::info!(
        targets = ts.attached,
        failed = ts.failed,
        emit = %emitting.join(","),
        "telltale running; Ctrl-C or SIGTERM stops"
    );
    p.status("started", &capture, &reasm).await;

    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut rescan = interval(Duration::from_millis(cfg.capture.rescan_interval_ms));
    rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
    rescan.reset();
    let status_every = Duration::from_secs(cfg.status.interval_secs.max(1));
    let mut status = interval(status_every);
    status.reset();
    let mut housekeeping = interval(Duration::from_millis(500));
    // Records below the wakeup threshold are submitted silently; this timer
    // bounds how long they wait.
    let mut poll = interval(Duration::from_millis(cfg.capture.poll_interval_ms));
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut msgs: Vec<TlsMessage> = Vec::new();
    let mut lifecycle: Vec<Lifecycle> = Vec::new();
    let mut more = false;

    loop {
        tokio::select! {
            r = capture.read(|record| handle(record, &mut p.stats, &mut reasm, &mut msgs, &mut lifecycle)) => {
                more = !r.context("reading the ring buffer")?;
            }
            // The ring held more than one batch: take the next one now.
            _ = std::future::ready(()), if more => {
                more = !capture.drain(|record| handle(record, &mut p.stats, &mut reasm, &mut msgs, &mut lifecycle));
            }
            _ = poll.tick() => {
                more = !capture.drain(|record| handle(record, &mut p.stats, &mut reasm, &mut msgs, &mut lifecycle));
                reasm.release_overdue(Clock::mono_now(), |m| msgs.push(m));
            }
            _ = rescan.tick() => {
                let n = capture.rescan();
                if n > 0 {
                    tracing::debug!(new = n, "rescan found new targets");
                }
            }
            _ = status.tick(), if cfg.status.interval_secs > 0 => {
                p.status("running", &capture, &reasm).await;
            }
            _ = housekeeping.tick() => {
                p.clock = Clock::sample();
                reasm.expire(Clock::mono_now(), |m| msgs.push(m));
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
        for m in msgs.drain(..) {
            p.message(&capture, m).await;
        }
        for l in lifecycle.drain(..) {
            match l {
                Lifecycle::Exec(pid) => {
                    // Read the new program's context now: a short-lived process
                    // may be gone by the time its TLS messages are handled.
                    p.processes.exec(pid);
                    let _ = p.processes.get(pid);
                    capture.exec(pid);
                }
                Lifecycle::Exit(pid) => p.processes.exit(pid),
            }
        }
    }

    // Detach first so nothing new arrives, then drain what the kernel already
    // delivered, so that a clean stop loses nothing.
    capture.detach();
    loop {
        let emptied = capture
            .drain(|record| handle(record, &mut p.stats, &mut reasm, &mut msgs, &mut lifecycle));
        for m in msgs.drain(..) {
            p.message(&capture, m).await;
        }
        if emptied {
            break;
        }
    }
    reasm.flush(|m| msgs.push(m));
    for m in msgs.drain(..) {
        p.message(&capture, m).await;
    }
    p.status("stopped", &capture, &reasm).await;
    let k = capture.counters();
    let r = reasm.stats();
    let stats = p.stats;
    drop(p);
    match tokio::task::spawn_blocking(move || writer.join()).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "writing events failed"),
        Ok(Err(_)) | Err(_) => tracing::warn!("the event writer thread failed"),
    }
    use sensor_common::Counter as C;
    tracing::info!(
        events = stats.events,
        messages = r.messages,
        bytes = stats.bytes,
        calls = k.get(C::Calls),
        lost_records = k.get(C::LostRecords),
        lost_bytes = k.get(C::LostBytes),
        read_faults = k.get(C::ReadFaults),
        truncated_bytes = k.get(C::TruncatedBytes),
        active_full = k.get(C::ActiveFull),
        incomplete_messages = r.incomplete,
        evicted_messages = r.evicted,
        "telltale stopped"
    );
    Ok(())
}
