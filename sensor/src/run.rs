//! The `run` and `targets` commands: wiring of the pipeline stages.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use crate::{
    capture::{
        AttachedTarget, Capture, Connect, Coverage, Discovery, DiscoveryConfig, Hold, LoadOptions,
        NetProcess, Record, network_processes,
    },
    clock::Clock,
    config::{Config, Emit},
    conn::{ConnKey, Limits, Reassembler, SocketView, TlsMessage, proc_socket_resolver},
    detection::{Alert, Detection},
    enforce::{Enforcer, HoldEnv, Outcome},
    event::{
        self, AlertEvent, Binary, ConnOut, CoverageEvent, CoverageTls, DecodeErrorEvent, DecodeOut,
        Destination, EnforcementEvent, HttpEvent, HttpOut, HttpPolicy, InventoryEvent, LibraryRef,
        PipelineStats, ProcessOut, Status, TargetStats, TlsData,
    },
    host::HostIdentity,
    process::ProcessCache,
    sink::{self, EventSender},
};
use telltale::deliver::sinks::{Outgoing, Sinks};
use telltale::{
    decode::{ConnView, Decoder, Output, Side},
    llm::Catalog,
};

/// Processes whose context is cached at once.
const PROCESS_CACHE_ENTRIES: usize = 4096;

/// How long after a connect to a TLS port its process has to show captured
/// plaintext before the sensor looks for a coverage gap.
const COVERAGE_GRACE: Duration = Duration::from_secs(1);

/// Connects waiting for their grace period, at most.
const PENDING_CONNECTS_MAX: usize = 4096;

fn discovery_config(cfg: &Config) -> DiscoveryConfig {
    DiscoveryConfig {
        library_dirs: cfg.capture.library_dirs.clone(),
        runtimes: cfg.capture.runtimes.clone(),
        extra: cfg.capture.extra_targets.clone(),
        scan_processes: cfg.capture.scan_processes,
        analysis_cache: Some(cfg.state.dir.join("binaries.json")),
    }
}

/// `telltale targets`: discovery only, nothing is loaded into the kernel.
pub fn print_targets(cfg: &Config, json: bool) -> anyhow::Result<()> {
    let dcfg = discovery_config(cfg);
    let mut d = Discovery::new(dcfg.analysis_cache.as_deref());
    let targets = d.scan(&dcfg);
    let planned: Vec<AttachedTarget> = targets
        .iter()
        .cloned()
        .map(AttachedTarget::planned)
        .collect();
    let processes = network_processes(&planned, &d.notes);
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            targets: &'a [crate::capture::Target],
            skipped: &'a [crate::capture::Skipped],
            processes: &'a [NetProcess],
        }
        let out = Out {
            targets: &targets,
            skipped: &d.skipped,
            processes: &processes,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if targets.is_empty() {
        println!("no TLS libraries or executables found");
    }
    for t in &targets {
        println!(
            "{} ({:?}, {}, found by {})",
            t.path.display(),
            t.kind,
            t.library.name(),
            t.found_by
        );
        for r in &t.reasons {
            println!("    why: {r}");
        }
        for f in &t.functions {
            println!(
                "    {:<24} offset {:#x}  {}",
                f.function.symbol(),
                f.file_offset,
                f.plan.describe()
            );
        }
        for h in &t.hooks {
            println!(
                "    {:<24} offset {:#x}  {}",
                h.symbol,
                h.file_offset,
                h.kind.describe()
            );
        }
    }
    for s in &d.skipped {
        println!("skipped {}: {}", s.path.display(), s.reason);
    }
    println!();
    println!("processes with network sockets ({}):", processes.len());
    println!(
        "  {:>7}  {:<15} {:<22} {:<30} TLS",
        "PID", "COMM", "SOCKETS", "EXECUTABLE"
    );
    for p in &processes {
        let ports: Vec<String> = p.sockets.remote_ports.iter().map(u16::to_string).collect();
        let sockets = format!(
            "{} tcp {} udp{}",
            p.sockets.tcp,
            p.sockets.udp,
            if ports.is_empty() {
                String::new()
            } else {
                format!(" →{}", ports.join(","))
            }
        );
        let exe = p
            .tls
            .exe
            .as_ref()
            .map(|e| e.display().to_string())
            .unwrap_or_else(|| "?".to_owned());
        let tls = if p.tls.stacks.is_empty() {
            "none found (not visible if it speaks TLS)".to_owned()
        } else {
            p.tls
                .stacks
                .iter()
                .map(|s| match (&s.hooked, &s.reason) {
                    (Some(how), _) => format!("{} hooked: {how}", s.library),
                    (None, why) => format!(
                        "{} NOT hooked: {}",
                        s.library,
                        why.as_deref().unwrap_or("unknown")
                    ),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        println!(
            "  {:>7}  {:<15} {:<22} {:<30} {tls}",
            p.tls.pid, p.tls.comm, sockets, exe
        );
    }
    Ok(())
}

struct Pipeline {
    /// The sinks in use (replaced on SIGHUP), shared with the dispatcher.
    sinks: Arc<RwLock<Arc<Sinks>>>,
    started: Instant,
    emit_data: bool,
    events: EventSender,
    stats: PipelineStats,
    decoder: Decoder<ConnKey>,
    /// What is known about processes' TLS stacks, for coverage events.
    coverage: Coverage,
    /// Connects to TLS ports waiting for their grace period to pass.
    pending_connects: std::collections::VecDeque<(Instant, Connect)>,
    /// What events are built from; separate from the decoder so that the
    /// decoder's callback can use it.
    ctx: Ctx,
}

/// The state events are built from.
struct Ctx {
    host: HostIdentity,
    clock: Clock,
    processes: ProcessCache,
    emit_http: bool,
    emit_errors: bool,
    policy: HttpPolicy,
    catalog: Catalog,
    /// What decode events say about each connection the decoder follows.
    conns: HashMap<ConnKey, ConnMeta>,
    /// Events built inside the decoder's callback, sent after it returns.
    lines: Vec<Outgoing>,
    /// The host name sinks key and label events with.
    host_name: Arc<str>,
    /// Detection and alerting.
    detection: Detection,
    emit_alerts: bool,
    /// Enforcement policies.
    enforcer: Enforcer,
}

/// A connection's description for decode events, from its latest message.
#[derive(Debug, Clone)]
struct ConnMeta {
    library: LibraryRef,
    server_name: Option<Arc<str>>,
    socket: SocketView,
}

impl Ctx {
    fn line<B: Serialize>(&mut self, event_type: &'static str, unix_ns: i128, body: B) {
        let env = event::envelope(&self.host, event_type, unix_ns, body);
        match serde_json::to_vec(&env) {
            Ok(json) => {
                let level = event::level(event_type, &json);
                self.lines.push(Outgoing {
                    event_type: Arc::from(event_type),
                    id: Arc::from(env.event_id.as_str()),
                    time: Arc::from(env.time.as_str()),
                    level,
                    host: Arc::clone(&self.host_name),
                    json,
                });
            }
            Err(e) => tracing::error!(error = %e, event_type, "cannot serialise event"),
        }
    }

    fn process(&mut self, pid: u32) -> ProcessOut {
        match self.processes.get(pid) {
            Some(ctx) => ProcessOut::Context(ctx),
            None => ProcessOut::Minimal {
                pid,
                comm: String::new(),
            },
        }
    }

    fn conn_out(&self, key: &ConnKey) -> ConnOut {
        match self.conns.get(key) {
            Some(m) => ConnOut::new(
                key.to_string(),
                Some(&m.library),
                m.server_name.as_deref(),
                &m.socket,
            ),
            None => ConnOut::new(
                key.to_string(),
                None,
                None,
                &SocketView::Unknown(Arc::from("not known")),
            ),
        }
    }

    /// Turns what the decoder reports into events.
    fn decoded(&mut self, key: &ConnKey, view: ConnView, out: Output<'_>) {
        match out {
            Output::Exchange(x) if self.emit_http => {
                let ts = x
                    .response
                    .as_ref()
                    .or(x.request.as_ref())
                    .map_or_else(Clock::unix_now, |m| self.clock.to_unix_ns(m.end_ns));
                let body = HttpEvent {
                    process: self.process(key.pid),
                    tls: self.conn_out(key),
                    http: HttpOut::new(&x, view, self.clock, &self.policy),
                    llm: event::llm_summary(&x, &self.catalog),
                };
                self.line("http", ts, body);
            }
            Output::Error(error) if self.emit_errors => {
                let body = DecodeErrorEvent {
                    process: self.process(key.pid),
                    tls: self.conn_out(key),
                    decode: DecodeOut {
                        protocol: view.protocol,
                        role: view.role,
                        error,
                    },
                };
                self.line("decode.error", Clock::unix_now(), body);
            }
            // What the watched process sends goes to detection as soon as the
            // request is complete, before its response.
            Output::Request(x) if view.role == Some(Side::Client) => {
                let now = x
                    .request
                    .as_ref()
                    .map_or_else(Clock::unix_now, |m| self.clock.to_unix_ns(m.end_ns));
                let context = self.processes.get(key.pid);
                let comm = context.as_ref().map_or("", |c| c.comm.as_str()).to_owned();
                let (alerts, evaluated) =
                    self.detection
                        .inspect(x, &self.catalog, context.as_deref(), *key, &comm, now);
                for a in alerts {
                    self.alert(a);
                }
                if let Some(e) = evaluated {
                    let sni = self.conns.get(key).and_then(|m| m.server_name.clone());
                    if let Some(o) = self.enforcer.on_request(
                        key.pid,
                        key.conn,
                        context.as_deref(),
                        sni.as_deref(),
                        &e,
                    ) {
                        self.enforcement(o, *key, None, now);
                    }
                }
                for change in self.detection.take_inventory_changes() {
                    if self.emit_alerts {
                        let body = InventoryEvent {
                            process: self.process(key.pid),
                            inventory: change,
                        };
                        self.line("inventory", now, body);
                    }
                }
            }
            Output::Request(_)
            | Output::WebSocket { .. }
            | Output::Exchange(_)
            | Output::Error(_) => {}
        }
    }

    /// An enforcement event (sent whatever `output.emit` says: what was done
    /// to a process must be on the record).
    /// `seen` describes a connection the decoder has not followed yet.
    fn enforcement(
        &mut self,
        o: Outcome,
        key: ConnKey,
        seen: Option<(&LibraryRef, Option<&str>)>,
        time_ns: i128,
    ) {
        let tls = match (self.conns.contains_key(&key), seen) {
            (false, Some((library, server_name))) => ConnOut::new(
                key.to_string(),
                Some(library),
                server_name,
                &SocketView::Unknown(Arc::from("not seen yet: held at its first write")),
            ),
            _ => self.conn_out(&key),
        };
        let body = EnforcementEvent {
            process: self.process(o.pid),
            tls,
            enforcement: o.out,
        };
        self.line("enforcement", time_ns, body);
    }

    fn alert(&mut self, a: Alert) {
        if !self.emit_alerts {
            return;
        }
        let tls = self.conn_out(&a.conn);
        let (flow_id, community_id) = tls.socket.flow();
        let values = self.detection.values_of(&a.alert.facts);
        let body = AlertEvent {
            flow_id,
            community_id,
            process: self.process(a.conn.pid).without(&values),
            tls,
            request: a.request,
            alert: a.alert,
        };
        self.line("alert", a.time_ns, body);
    }

    /// Emits the aggregates of windows that ended (all at shutdown).
    fn close_alert_windows(&mut self, all: bool) {
        let now = (!all).then(Clock::unix_now);
        for a in self.detection.close_windows(now) {
            self.alert(a);
        }
    }
}

impl Pipeline {
    async fn send<B: Serialize>(&mut self, event_type: &'static str, unix_ns: i128, body: B) {
        self.ctx.line(event_type, unix_ns, body);
        self.flush_lines().await;
    }

    async fn flush_lines(&mut self) {
        let mut lines = std::mem::take(&mut self.ctx.lines);
        if !lines.is_empty() {
            let started = Clock::mono_now();
            for ev in lines.drain(..) {
                if self.events.send(ev).await.is_ok() {
                    self.stats.events += 1;
                }
            }
            let waited = Clock::mono_now().saturating_sub(started);
            self.stats.sink_wait_ns_total = self.stats.sink_wait_ns_total.saturating_add(waited);
        }
        self.ctx.lines = lines;
    }

    async fn message(&mut self, capture: &Capture, m: TlsMessage) {
        self.coverage.saw_tls(m.key.pid);
        let library = match capture.target_of(m.target) {
            Some((path, lib)) => LibraryRef {
                kind: lib.name(),
                path: Some(path.display().to_string()),
            },
            None => LibraryRef::from_function(m.function),
        };
        if self.emit_data {
            let t = self.ctx.clock.to_unix_ns(m.ts_ns);
            let context = self.ctx.processes.get(m.key.pid);
            self.ctx
                .line("tls.data", t, TlsData::new(&m, &library, context));
        }
        self.ctx.conns.insert(
            m.key,
            ConnMeta {
                library,
                server_name: m.server_name.clone(),
                socket: m.socket.clone(),
            },
        );
        let lost_after = !m.complete || m.truncated;
        let ctx = &mut self.ctx;
        let started = Clock::mono_now();
        self.decoder.feed(
            &m.key,
            m.direction,
            &m.data,
            m.ts_ns,
            lost_after,
            &mut |k, v, o| ctx.decoded(k, v, o),
        );
        let done = Clock::mono_now();
        let st = &mut self.stats;
        st.messages_timed += 1;
        let capture = started.saturating_sub(m.ts_ns);
        st.capture_ns_total = st.capture_ns_total.saturating_add(capture);
        st.capture_ns_max = st.capture_ns_max.max(capture);
        let work = done.saturating_sub(started);
        st.decode_detect_ns_total = st.decode_detect_ns_total.saturating_add(work);
        st.decode_detect_ns_max = st.decode_detect_ns_max.max(work);
        self.flush_lines().await;
    }

    /// Drops the cached context of every process that exec'd in the batch,
    /// once, before anything of the batch reads it (a held process may have
    /// exec'd, and changed user, just before its write).
    fn forget_exec_contexts(&mut self, lifecycle: &[Lifecycle]) {
        for l in lifecycle {
            if let Lifecycle::Exec(pid, _) = l {
                self.ctx.processes.exec(*pid);
            }
        }
    }

    /// Decides on the batch's held writes, then continues their processes.
    fn holds(&mut self, capture: &mut Capture, reasm: &Reassembler, lifecycle: &[Lifecycle]) {
        for l in lifecycle {
            let Lifecycle::Hold(h) = l else { continue };
            let ctx = &mut self.ctx;
            let mut process = ctx.processes.get(h.pid);
            if process.as_ref().is_some_and(|c| c.uid != Some(h.uid)) {
                // It changed user since it was read.
                ctx.processes.exec(h.pid);
                process = ctx.processes.get(h.pid);
            }
            let server_name = reasm.server_name(h.pid, h.conn);
            let outcomes = ctx.enforcer.on_hold(
                h,
                HoldEnv {
                    process: process.as_deref(),
                    server_name: server_name.as_deref(),
                    detection: &mut ctx.detection,
                    catalog: &ctx.catalog,
                    holds: capture.holds(),
                },
            );
            let key = reasm.key(h.pid, h.conn).unwrap_or(ConnKey {
                pid: h.pid,
                conn: h.conn,
                id: 0,
            });
            let library = LibraryRef::from_function(h.function);
            for o in outcomes {
                let t = ctx.clock.to_unix_ns(h.ts_ns);
                ctx.enforcement(o, key, Some((&library, server_name.as_deref())), t);
            }
        }
        self.ctx.enforcer.flush_resumes();
    }

    /// A connection ended: its open exchanges go out.
    /// A process connected to a TLS port: when none of its TLS stacks is
    /// hooked, the SOC learns (once per process and program) that its traffic
    /// is invisible, and why.
    fn connect(&mut self, c: Connect) {
        // The sensor's own sinks are not what it watches.
        if c.pid == std::process::id() || self.coverage.has_tls(c.pid) {
            return;
        }
        if self.pending_connects.len() >= PENDING_CONNECTS_MAX {
            self.pending_connects.pop_front();
            self.stats.coverage_checks_dropped += 1;
        }
        self.pending_connects
            .push_back((Instant::now() + COVERAGE_GRACE, c));
    }

    /// Judges the connects whose grace period passed (all of them at stop):
    /// a process whose plaintext was captured meanwhile is covered.
    async fn judge_connects(&mut self, capture: &Capture, all: bool) {
        let now = Instant::now();
        while let Some((due, _)) = self.pending_connects.front() {
            if !all && *due > now {
                break;
            }
            let Some((_, c)) = self.pending_connects.pop_front() else {
                break;
            };
            if !self.coverage.has_tls(c.pid) {
                self.judge_connect(capture, c);
            }
        }
        self.flush_lines().await;
    }

    fn judge_connect(&mut self, capture: &Capture, c: Connect) {
        let Some(view) = self
            .coverage
            .inspect(c.pid, capture.targets(), capture.notes())
        else {
            tracing::debug!(pid = c.pid, comm = %c.comm, "connecting process exited before inspection");
            return;
        };
        if view.covered() || !self.coverage.first_report(c.pid, view.exe.as_deref()) {
            return;
        }
        self.stats.coverage_gaps += 1;
        let reason = view.gap_reason();
        let t = self.ctx.clock.to_unix_ns(c.ts_ns);
        let process = self.ctx.process(c.pid);
        let body = CoverageEvent {
            process,
            destination: Destination {
                ip: c.remote.ip().to_string(),
                port: c.remote.port(),
            },
            binary: Binary {
                path: view.exe.as_ref().map(|p| p.display().to_string()),
                build_id: view.build_id.clone(),
            },
            tls: CoverageTls {
                visible: false,
                stacks: view.stacks,
                reason,
            },
        };
        self.ctx.line("coverage", t, body);
    }

    async fn conn_ended(&mut self, key: ConnKey) {
        let ctx = &mut self.ctx;
        self.decoder
            .close(&key, Clock::mono_now(), &mut |k, v, o| ctx.decoded(k, v, o));
        self.ctx.conns.remove(&key);
        self.flush_lines().await;
    }

    /// Closes idle connections, or all of them at shutdown.
    async fn expire_decoded(&mut self, all: bool) {
        let ctx = &mut self.ctx;
        if all {
            self.decoder.flush(&mut |k, v, o| ctx.decoded(k, v, o));
        } else {
            self.decoder
                .expire(Clock::mono_now(), &mut |k, v, o| ctx.decoded(k, v, o));
        }
        let decoder = &self.decoder;
        self.ctx.conns.retain(|k, _| decoder.follows(k));
        self.flush_lines().await;
    }

    async fn status(&mut self, state: &'static str, capture: &Capture, reasm: &Reassembler) {
        let body = self.status_body(state, capture, reasm);
        self.send("sensor.status", Clock::unix_now(), body).await;
    }

    fn status_body(
        &mut self,
        state: &'static str,
        capture: &Capture,
        reasm: &Reassembler,
    ) -> Status {
        self.stats.record_errors = capture.record_errors();
        Status {
            state,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            targets: target_stats(capture.targets()),
            kernel: capture.counters(),
            reassembly: reasm.stats(),
            pipeline: self.stats,
            processes: self.ctx.processes.stats(),
            decode: self.decoder.stats(),
            detect: self.ctx.detection.stats.clone(),
            enforce: self.ctx.enforcer.stats.clone(),
            sinks: current(&self.sinks).stats(),
        }
    }

    /// SIGHUP: the configuration file again; rules and sinks are replaced, the
    /// probes stay attached. A configuration that does not load changes nothing.
    fn reload(&mut self, reload: &Reload) {
        let cfg = match reload() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload refused, keeping the running configuration: {e:#}");
                return;
            }
        };
        match self.ctx.detection.reload_rules(&cfg.detect) {
            Ok(n) => tracing::info!(rules = n, "rules reloaded"),
            Err(e) => tracing::error!("rules not reloaded: {e:#}"),
        }
        if let Err(e) = swap_sinks(&self.sinks, &cfg) {
            tracing::error!("sinks not reloaded: {e}");
        }
    }

    /// Answers a metrics or health request.
    fn metrics(&mut self, conn: tokio::net::TcpStream, capture: &Capture, reasm: &Reassembler) {
        let body = self.status_body("running", capture, reasm);
        let value = serde_json::to_value(&body).unwrap_or_default();
        tokio::spawn(crate::metrics::serve(conn, value));
    }
}

/// Loads the configuration again for a SIGHUP (file and command-line flags).
pub type Reload = Box<dyn Fn() -> anyhow::Result<Config> + Send>;

/// The sinks in use now.
fn current(sinks: &RwLock<Arc<Sinks>>) -> Arc<Sinks> {
    match sinks.read() {
        Ok(g) => Arc::clone(&g),
        Err(p) => Arc::clone(&p.into_inner()),
    }
}

/// Replaces the running sinks with those of `cfg`. The dispatcher waits
/// meanwhile (events queue, then the kernel ring absorbs them), so no event
/// goes to neither; old sinks deliver or spool what they hold first, so a sink
/// kept under the same name resumes its spool.
fn swap_sinks(sinks: &RwLock<Arc<Sinks>>, cfg: &Config) -> Result<(), String> {
    for c in &cfg.sinks {
        c.validate()?;
    }
    let spool_root = cfg.state.dir.join("spool");
    let mut guard = sinks
        .write()
        .map_err(|_| "the sinks' lock is poisoned".to_owned())?;
    // The dispatcher may still hold the old sinks for one event.
    let mut old = std::mem::replace(&mut *guard, Arc::new(Sinks::start(&[], None)?));
    let deadline = Instant::now() + Duration::from_secs(2);
    let old = loop {
        match Arc::try_unwrap(old) {
            Ok(s) => break Some(s),
            Err(again) if Instant::now() < deadline => {
                old = again;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => break None,
        }
    };
    if let Some(old) = old {
        old.close(sink::CLOSE_GRACE);
    }
    let new = Sinks::start(&cfg.sinks, Some(&spool_root))?;
    *guard = Arc::new(new);
    tracing::info!(sinks = cfg.sinks.len(), "sinks reloaded");
    Ok(())
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
    enforcer: &mut Enforcer,
    msgs: &mut Vec<TlsMessage>,
    lifecycle: &mut Vec<Lifecycle>,
) {
    match record {
        Record::Chunk(chunk) => {
            stats.bytes += chunk.data.len() as u64;
            if chunk.direction == sensor_common::Direction::Egress {
                enforcer.wrote(
                    chunk.pid,
                    chunk.conn,
                    chunk.data,
                    chunk.offset,
                    chunk.total_len,
                );
            }
            reasm.push(&chunk, |m| msgs.push(m));
        }
        Record::Close(c) => {
            enforcer.forget_conn(c.pid, c.conn);
            if let Some(key) = reasm.close(c.pid, c.conn, |m| msgs.push(m)) {
                lifecycle.push(Lifecycle::Closed(key));
            }
        }
        Record::ServerName(n) => reasm.set_server_name(n.pid, n.conn, &n.name),
        Record::FdBind(b) => {
            enforcer.bind(b.pid, b.conn, b.fd);
            reasm.bind_fd(&b, |m| msgs.push(m));
        }
        Record::Hold(h) => lifecycle.push(Lifecycle::Hold(h)),
        Record::Exec(e) => lifecycle.push(Lifecycle::Exec(e.pid, e.path)),
        Record::Connect(c) => lifecycle.push(Lifecycle::Connect(c)),
        Record::Exit(pid) => {
            enforcer.forget_pid(pid);
            for key in reasm.forget_pid(pid, |m| msgs.push(m)) {
                lifecycle.push(Lifecycle::Closed(key));
            }
            lifecycle.push(Lifecycle::Exit(pid));
        }
    }
}

/// Connection and process lifecycle work deferred until the messages of a batch
/// are handled (it needs the capture, the decoder and the process cache, which
/// are busy meanwhile). A connection's messages come before its end.
#[derive(Debug, Clone)]
enum Lifecycle {
    Closed(ConnKey),
    Exec(u32, Option<std::path::PathBuf>),
    Exit(u32),
    Connect(Connect),
    /// A held write: decided before anything else of the batch.
    Hold(Hold),
}

/// The next connection to the metrics listener, or never without one.
async fn accept(
    l: Option<&tokio::net::TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

fn lower_set(names: &[String]) -> std::collections::HashSet<String> {
    names.iter().map(|n| n.to_ascii_lowercase()).collect()
}

/// The embedded provider catalogue with the operator's files over it.
pub fn load_catalog(cfg: &Config) -> anyhow::Result<Catalog> {
    let mut catalog = Catalog::embedded().clone();
    for path in &cfg.llm.catalogs {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading LLM provider catalogue {}", path.display()))?;
        let extra = Catalog::from_toml(&text, &path.display().to_string())?;
        catalog = catalog.with_overrides(extra);
    }
    Ok(catalog)
}

/// `telltale run`: capture until SIGINT/SIGTERM.
pub async fn run(cfg: Config, reload: Reload) -> anyhow::Result<()> {
    let spool_root = cfg.state.dir.join("spool");
    let sinks = Arc::new(RwLock::new(Arc::new(
        Sinks::start(&cfg.sinks, Some(&spool_root)).map_err(|e| anyhow::anyhow!("{e}"))?,
    )));
    let (events, writer) =
        sink::dispatch(Arc::clone(&sinks), cfg.output.queue, cfg.output.queue_bytes)
            .context("starting the event dispatcher")?;
    let catalog = load_catalog(&cfg)?;
    let detection = Detection::start(&cfg.detect, &cfg.state.dir).context("starting detection")?;
    let mut enforcer = Enforcer::new(&cfg.enforce, &cfg.capture.tls_ports, cfg.decode.limits())
        .context("loading enforcement policies")?;
    if enforcer.holds_writes()
        && let Some(why) = crate::capture::hold_unsupported()
    {
        tracing::warn!(
            reason = %why,
            "enforcement cannot hold writes here: policies decide and report as in --dry-run"
        );
        enforcer.force_dry_run();
    }
    for name in enforcer.unselective_policies() {
        tracing::warn!(policy = %name, "an enforcement policy without selectors holds the TLS writes of every process");
    }
    let host = HostIdentity::current();
    let host_name: Arc<str> = Arc::from(host.hostname.as_str());
    let mut p = Pipeline {
        sinks: Arc::clone(&sinks),
        started: Instant::now(),
        emit_data: cfg.output.emit.contains(&Emit::Data),
        events,
        stats: PipelineStats::default(),
        decoder: Decoder::new(cfg.decode.limits()),
        coverage: Coverage::new(),
        pending_connects: std::collections::VecDeque::new(),
        ctx: Ctx {
            host,
            host_name,
            clock: Clock::sample(),
            processes: ProcessCache::new(PROCESS_CACHE_ENTRIES),
            emit_http: cfg.output.emit.contains(&Emit::Http),
            emit_errors: cfg.output.emit.contains(&Emit::Errors),
            policy: HttpPolicy {
                bodies: cfg.decode.http_bodies,
                redact_headers: lower_set(&cfg.decode.redact_headers),
                redact_query: lower_set(&cfg.decode.redact_query_params),
            },
            catalog,
            conns: HashMap::new(),
            lines: Vec::new(),
            detection,
            emit_alerts: cfg.output.emit.contains(&Emit::Alerts),
            enforcer,
        },
    };
    let opts = LoadOptions {
        ring_bytes: cfg.capture.ring_buffer_bytes,
        // A threshold near the ring's size would let it fill before anyone wakes.
        wakeup_bytes: cfg
            .capture
            .wakeup_bytes
            .min(u64::from(cfg.capture.ring_buffer_bytes) / 2),
        emulated_sites: cfg.capture.emulated_sites,
        tls_ports: cfg.capture.tls_ports.clone(),
        hold: p.ctx.enforcer.holds_writes(),
    };
    // Before a probe can hold anything: the guard that continues held
    // processes if the sensor dies (started first, so that its pipe is among
    // the first descriptors the kernel closes when the sensor is killed), and
    // every running process judged.
    let mut judge_running = |map: &mut crate::capture::HoldMap| -> Result<(), String> {
        let guard = p
            .ctx
            .enforcer
            .start_guard(map.fd())
            .map_err(|e| format!("starting the hold guard: {e}"))?;
        map.judge(guard, false);
        let pids: Vec<u32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        let mut selected = 0usize;
        for pid in pids {
            let ctx = p.ctx.processes.get(pid);
            let held = p.ctx.enforcer.judge(pid, ctx.as_deref(), None);
            map.judge(pid, held);
            selected += usize::from(held);
        }
        tracing::info!(
            guard,
            selected,
            "enforcement: running processes judged; writes of selected ones are held"
        );
        Ok(())
    };
    let mut capture = Capture::start(discovery_config(&cfg), opts, &mut judge_running)
        .context("starting capture")?;
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
    let mut sighup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let metrics_listener = match cfg.metrics.listen.as_str() {
        "" => None,
        addr => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "metrics on http://{addr}/metrics, health on /healthz");
                Some(l)
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot listen for metrics; continuing without");
                None
            }
        },
    };
    let mut rescan = interval(Duration::from_millis(cfg.capture.rescan_interval_ms));
    rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
    rescan.reset();
    let status_every = Duration::from_secs(cfg.status.interval_secs.max(1));
    let mut status = interval(status_every);
    status.reset();
    let mut housekeeping = interval(Duration::from_millis(500));
    let mut facts_refresh = interval(Duration::from_secs(cfg.detect.facts_refresh_secs));
    facts_refresh.reset();
    // Records below the wakeup threshold are submitted silently; this timer
    // bounds how long they wait.
    let mut poll = interval(Duration::from_millis(cfg.capture.poll_interval_ms));
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut msgs: Vec<TlsMessage> = Vec::new();
    let mut lifecycle: Vec<Lifecycle> = Vec::new();
    let mut more = false;

    loop {
        tokio::select! {
            r = capture.read(|record| handle(record, &mut p.stats, &mut reasm, &mut p.ctx.enforcer, &mut msgs, &mut lifecycle)) => {
                more = !r.context("reading the ring buffer")?;
            }
            // The ring held more than one batch: take the next one now.
            _ = std::future::ready(()), if more => {
                more = !capture.drain(|record| handle(record, &mut p.stats, &mut reasm, &mut p.ctx.enforcer, &mut msgs, &mut lifecycle));
            }
            _ = poll.tick() => {
                more = !capture.drain(|record| handle(record, &mut p.stats, &mut reasm, &mut p.ctx.enforcer, &mut msgs, &mut lifecycle));
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
                p.ctx.clock = Clock::sample();
                reasm.expire(Clock::mono_now(), |m| msgs.push(m));
                p.expire_decoded(false).await;
                p.ctx.close_alert_windows(false);
                p.flush_lines().await;
                p.judge_connects(&capture, false).await;
            }
            _ = facts_refresh.tick() => {
                p.ctx.detection.refresh_facts();
                p.ctx.detection.save();
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => p.reload(&reload),
            conn = accept(metrics_listener.as_ref()) => {
                if let Ok((conn, _)) = conn {
                    p.metrics(conn, &capture, &reasm);
                }
            }
        }
        // Held writes first: their processes are stopped until decided.
        p.forget_exec_contexts(&lifecycle);
        p.holds(&mut capture, &reasm, &lifecycle);
        p.ctx.enforcer.heartbeat();
        // New programs next: a short-lived process may be gone by the time the
        // batch's messages are decoded and inspected, so read its context now.
        for l in &lifecycle {
            if let Lifecycle::Exec(pid, path) = l {
                let pid = *pid;
                // The context first: a short-lived process is soon gone, and
                // every event of it needs its context. A new program is then
                // inspected and attached (by path when it is already gone), so
                // that its later calls, and its next runs, are captured. (Its
                // stale context was dropped above.)
                let context = p.ctx.processes.get(pid);
                if let Some(map) = capture.holds() {
                    map.judge(pid, p.ctx.enforcer.judge(pid, context.as_deref(), None));
                }
                capture.exec(pid, path.as_deref());
                p.coverage.exec(pid, path.as_deref());
            }
        }
        for m in msgs.drain(..) {
            p.message(&capture, m).await;
        }
        // Ends after the messages they follow.
        for l in lifecycle.drain(..) {
            match l {
                Lifecycle::Exec(..) | Lifecycle::Hold(_) => {}
                Lifecycle::Connect(c) => p.connect(c),
                Lifecycle::Closed(key) => p.conn_ended(key).await,
                Lifecycle::Exit(pid) => p.ctx.processes.exit(pid),
            }
        }
    }

    // Detach first so nothing new arrives, then drain what the kernel already
    // delivered, so that a clean stop loses nothing.
    capture.detach();
    loop {
        let emptied = capture.drain(|record| {
            handle(
                record,
                &mut p.stats,
                &mut reasm,
                &mut p.ctx.enforcer,
                &mut msgs,
                &mut lifecycle,
            )
        });
        p.forget_exec_contexts(&lifecycle);
        p.holds(&mut capture, &reasm, &lifecycle);
        for m in msgs.drain(..) {
            p.message(&capture, m).await;
        }
        for l in lifecycle.drain(..) {
            match l {
                Lifecycle::Closed(key) => p.conn_ended(key).await,
                Lifecycle::Connect(c) => p.connect(c),
                Lifecycle::Exec(..) | Lifecycle::Exit(_) | Lifecycle::Hold(_) => {}
            }
        }
        if emptied {
            break;
        }
    }
    reasm.flush(|m| msgs.push(m));
    for m in msgs.drain(..) {
        p.message(&capture, m).await;
    }
    // Requests still waiting for their responses go out as they are.
    p.expire_decoded(true).await;
    p.ctx.close_alert_windows(true);
    p.flush_lines().await;
    p.judge_connects(&capture, true).await;
    p.ctx.enforcer.flush_resumes();
    p.ctx.enforcer.stop_guard();
    p.ctx.detection.save();
    p.status("stopped", &capture, &reasm).await;
    let k = capture.counters();
    let r = reasm.stats();
    let stats = p.stats;
    drop(p);
    drop(sinks);
    match tokio::task::spawn_blocking(move || writer.join()).await {
        Ok(Ok(final_stats)) => {
            for s in final_stats {
                if s.spool_pending > 0 || s.dropped_spool_full > 0 || s.dropped_rejected > 0 {
                    tracing::warn!(
                        sink = %s.name,
                        delivered = s.delivered,
                        spooled_for_next_start = s.spool_pending,
                        dropped = s.dropped_spool_full + s.dropped_rejected,
                        "sink stopped with records undelivered"
                    );
                }
            }
        }
        Ok(Err(_)) | Err(_) => tracing::warn!("the event dispatcher thread failed"),
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
