//! The enforce stage: policies that turn what detection finds into `block` or
//! `kill` for chosen processes, decided before the request is encrypted.
//!
//! How a request is stopped. For processes a blocking policy selects, the
//! kernel's write probe stops the whole process (`SIGSTOP`) at the entry of
//! `SSL_write`/`gnutls_record_send`, before the library encrypts anything, and
//! tells user space where the plaintext is. Here the bytes are read from the
//! stopped process, appended to what the connection already sent of an
//! unfinished HTTP/1 request, and judged: the request's destination against
//! the policy's allow-list as soon as its head is known, and its whole content
//! with the detection rules once complete. Allowed: the process continues
//! (`SIGCONT`). Blocked: the connection's socket is shut down through
//! `pidfd_getfd` while the process is stopped, then it continues; the TLS
//! library's write fails (EPIPE), the client sees an error and goes on with
//! other requests. Killed: `SIGKILL` while stopped, so nothing is sent either.
//!
//! Processes are judged once per program (at exec, at start-up, or at their
//! first held write); the kernel remembers the judgement, and exempt processes
//! pay a map lookup per write. Without a policy that can block or kill, no
//! write is ever held. In dry-run, nothing is held: decisions are made on the
//! requests as captured and reported as `would_block`/`would_kill`.
//!
//! Fail-safety: a separate guard process continues every held process when
//! the sensor dies or stalls (see [`guard`]); a decision that comes later than
//! `decision_timeout_ms`, or a request to an AI endpoint that cannot be read
//! or decoded, gets the operator's `fail` mode.

pub mod act;
pub mod guard;
mod policy;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use serde::Serialize;
use telltale::{
    decode::{Decoder, Output, Side, frame},
    llm::Catalog,
};

use policy::{Cause, Decision};
pub use policy::{EnforceCfg, FailMode, Mode, Policies, PolicyError, Subject};

use crate::{
    capture::{Hold, HoldMap},
    clock::Clock,
    detection::{Detection, Evaluated, RequestOut},
    process::ProcessContext,
};

/// Processes judged selected remembered at most (the kernel's map size).
const MAX_SELECTED: usize = sensor_common::MAX_HOLD_PROCESSES as usize;
/// Connections of selected processes followed at most.
const MAX_CONNS: usize = 65_536;

/// What enforcement did (or would have done) with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Held, judged, let go.
    Allowed,
    /// Held and stopped: the connection was shut down before the request left.
    Blocked,
    /// Held and killed (nothing was sent), or killed after the alert when the
    /// process could not be held.
    Killed,
    /// Dry-run: would have been blocked.
    WouldBlock,
    /// Dry-run: would have been killed.
    WouldKill,
    /// A policy in `alert` mode matched (a destination outside its allow-list).
    Alerted,
    /// A blocking policy matched a request that was not held (its TLS stack
    /// cannot be held, or the hold was missed): it went out.
    NotHeld,
}

/// Why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The policy decided.
    Policy,
    /// The decision came later than `decision_timeout_ms`: `fail` applied.
    Timeout,
    /// The request to an AI endpoint could not be framed or decoded: `fail` applied.
    Undecodable,
    /// The held bytes could not be read: `fail` applied.
    Unreadable,
    /// The request is larger than `max_request_bytes`: `fail` applied.
    TooLarge,
    /// The block needed the connection's socket and none was found: `fail`
    /// applied (closed: the process was killed).
    NoSocket,
}

/// The `enforcement` part of an enforcement event.
#[derive(Debug, Clone, Serialize)]
pub struct EnforcementOut {
    /// What was done.
    pub action: Action,
    /// The mode that applied (none for a fail-mode decision).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Why.
    pub reason: Reason,
    /// The policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Rules whose findings set the mode.
    pub rules: Vec<String>,
    /// Host facts the request carried (names, never values).
    pub facts: Vec<String>,
    /// A destination outside the policy's allow-list, when that set the mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The request, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestOut>,
    /// How long the process was held, in microseconds (from the kernel's stop
    /// to its continuation or kill).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_us: Option<u64>,
    /// Bytes of the held write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Sockets shut down for a block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sockets_shut: Option<u32>,
    /// The fail mode, when it decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail: Option<FailMode>,
    /// Decisions only: nothing was held or done.
    pub dry_run: bool,
    /// More about a fail-mode decision or an action that went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl EnforcementOut {
    fn new(action: Action, reason: Reason) -> Self {
        Self {
            action,
            mode: None,
            reason,
            policy: None,
            rules: Vec::new(),
            facts: Vec::new(),
            destination: None,
            request: None,
            held_us: None,
            bytes: None,
            sockets_shut: None,
            fail: None,
            dry_run: false,
            detail: None,
        }
    }

    fn decided(action: Action, d: &Decision, e: Option<&Evaluated>) -> Self {
        let mut out = Self::new(action, Reason::Policy);
        out.mode = Some(d.mode);
        out.policy = Some(d.policy.clone());
        for c in &d.causes {
            match c {
                Cause::Rule(r) => out.rules.push(r.clone()),
                Cause::Destination(h) => out.destination = Some(h.clone()),
            }
        }
        if let Some(e) = e {
            out.facts = e.facts.clone();
            out.request = Some(e.summary.clone());
        }
        out
    }
}

/// An enforcement event to emit, about process `pid`.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Process.
    pub pid: u32,
    /// What happened.
    pub out: EnforcementOut,
}

/// Counters for `sensor.status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EnforceStats {
    /// Writes held and judged for selected processes.
    pub holds: u64,
    /// Writes of processes judged exempt at their first held write.
    pub exempted: u64,
    /// Held requests to AI endpoints let go.
    pub allowed: u64,
    /// Requests blocked.
    pub blocked: u64,
    /// Processes killed.
    pub killed: u64,
    /// Dry-run decisions to block or kill.
    pub would_act: u64,
    /// `alert`-mode policy decisions.
    pub alerted: u64,
    /// Blocking decisions on requests that were not held (they went out).
    pub not_held: u64,
    /// Decisions made by the fail mode (timeouts, unreadable or undecodable
    /// requests, sockets not found).
    pub fail_decisions: u64,
    /// Held processes that could not be continued or acted on.
    pub action_errors: u64,
    /// Connections of selected processes no longer held: no HTTP/1, no known
    /// AI endpoint.
    pub conns_skipped: u64,
    /// Sum and maximum of hold durations of selected processes, microseconds.
    pub held_us_total: u64,
    /// Longest hold.
    pub held_us_max: u64,
}

/// What the enforcer keeps about a connection of a selected process.
#[derive(Debug, Default)]
struct ConnState {
    /// Bytes written (and let go) of a request not complete yet.
    unsent: Vec<u8>,
    /// The socket, once known.
    fd: Option<i32>,
    /// A request on it was recognised as an LLM API call.
    ai: bool,
    /// The connection does not carry HTTP/1 requests (or outgrew the bound):
    /// no longer framed.
    unframed: Option<&'static str>,
    /// Writes on it were held (its requests are decided at the hold).
    held: bool,
    /// Bytes of the current write's capture seen so far (chunks come in order).
    call_seen: u64,
}

/// What a held write's decision needs from the rest of the pipeline.
pub struct HoldEnv<'a> {
    /// The process's context, when readable.
    pub process: Option<&'a ProcessContext>,
    /// The connection's server name (SNI), when the client set one.
    pub server_name: Option<&'a str>,
    /// Detection, to evaluate complete requests.
    pub detection: &'a mut Detection,
    /// The LLM API catalogue.
    pub catalog: &'a Catalog,
    /// The kernel's judgement map.
    pub holds: Option<&'a mut HoldMap>,
}

/// The decision on one held write, before it is carried out.
enum Verdict {
    /// Let it go; events for the LLM requests it completes.
    Allow(Vec<EnforcementOut>),
    /// Block or kill.
    Act(Mode, Box<EnforcementOut>),
    /// The fail mode decides.
    Fail(Reason, String),
}

/// The enforce stage.
pub struct Enforcer {
    cfg: EnforceCfg,
    policies: Policies,
    tls_ports: Vec<u16>,
    decode_limits: telltale::decode::Limits,
    hold: bool,
    selected: HashSet<u32>,
    conns: HashMap<(u32, u64), ConnState>,
    guard: Option<guard::Guard>,
    /// Held processes decided on, to continue once every hold of the batch is
    /// decided: a process is stopped as a whole, and continuing it for one
    /// thread's write would let another thread's held write go undecided.
    to_resume: HashSet<u32>,
    /// Counters.
    pub stats: EnforceStats,
}

impl Enforcer {
    /// The stage for a configuration; `tls_ports` name the destinations whose
    /// sockets a block may shut when the connection's own is not known.
    pub fn new(
        cfg: &EnforceCfg,
        tls_ports: &[u16],
        decode_limits: telltale::decode::Limits,
    ) -> Result<Self, PolicyError> {
        let policies = Policies::new(&cfg.policies)?;
        let hold = policies.any_holds() && !cfg.dry_run;
        Ok(Self {
            cfg: cfg.clone(),
            hold,
            policies,
            tls_ports: tls_ports.to_vec(),
            decode_limits,
            selected: HashSet::new(),
            conns: HashMap::new(),
            guard: None,
            to_resume: HashSet::new(),
            stats: EnforceStats::default(),
        })
    }

    /// Decides and reports only, as in dry-run: this host cannot hold writes.
    pub fn force_dry_run(&mut self) {
        self.cfg.dry_run = true;
        self.hold = false;
    }

    /// Whether TLS writes are held (a policy can block or kill; not dry-run).
    pub fn holds_writes(&self) -> bool {
        self.hold
    }

    /// Whether any policy is configured.
    pub fn active(&self) -> bool {
        !self.cfg.policies.is_empty()
    }

    /// Names of holding policies that select every process.
    pub fn unselective_policies(&self) -> Vec<String> {
        self.policies.unselective().map(str::to_owned).collect()
    }

    /// Starts the guard process that continues held processes if the sensor
    /// dies or stalls.
    pub fn start_guard(&mut self, map: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u32> {
        let g = guard::Guard::start(map, self.stall_after())?;
        let pid = g.pid();
        self.guard = Some(g);
        Ok(pid)
    }

    /// How long the guard waits for a heartbeat before it continues the held
    /// processes of a stalled sensor.
    fn stall_after(&self) -> Duration {
        Duration::from_millis(self.cfg.decision_timeout_ms) + Duration::from_secs(2)
    }

    /// Tells the guard the sensor is alive (call at least every second).
    pub fn heartbeat(&mut self) {
        if let Some(g) = &mut self.guard {
            g.heartbeat();
        }
    }

    /// Stops the guard (after its final sweep). Call once the probes are
    /// detached.
    pub fn stop_guard(&mut self) {
        if let Some(mut g) = self.guard.take() {
            g.detached();
            g.stop();
        }
    }

    /// Judges process `pid` (a new program, or one found at start-up) and
    /// remembers the result. Returns whether its writes are held.
    pub fn judge(&mut self, pid: u32, ctx: Option<&ProcessContext>, uid: Option<u32>) -> bool {
        // Never the sensor itself: nobody would continue it.
        let selected = pid != std::process::id() && self.policies.holds(&subject(ctx, uid));
        if selected {
            if self.selected.len() >= MAX_SELECTED {
                // The kernel's LRU map forgets too; such a process is judged
                // again at its next write.
                self.selected.clear();
            }
            self.selected.insert(pid);
        } else {
            self.selected.remove(&pid);
        }
        selected
    }

    /// Process `pid` exited.
    pub fn forget_pid(&mut self, pid: u32) {
        self.selected.remove(&pid);
        self.conns.retain(|(p, _), _| *p != pid);
    }

    /// Connection `conn` of `pid` ended.
    pub fn forget_conn(&mut self, pid: u32, conn: u64) {
        self.conns.remove(&(pid, conn));
    }

    /// A connection's socket became known.
    pub fn bind(&mut self, pid: u32, conn: u64, fd: i32) {
        if self.selected.contains(&pid) {
            self.conn(pid, conn).fd = Some(fd);
        }
    }

    fn conn(&mut self, pid: u32, conn: u64) -> &mut ConnState {
        if self.conns.len() >= MAX_CONNS && !self.conns.contains_key(&(pid, conn)) {
            // Forget an arbitrary connection: its next held write is decided
            // without its earlier part (and counted as undecodable if that
            // matters).
            if let Some(k) = self.conns.keys().next().copied() {
                self.conns.remove(&k);
            }
        }
        self.conns.entry((pid, conn)).or_default()
    }

    /// Bytes a selected process wrote (and that were let go) on `conn`, as
    /// captured: `data` at `offset` of a write of `total` bytes. The start of
    /// a request whose end a later held write brings.
    pub fn wrote(&mut self, pid: u32, conn: u64, data: &[u8], offset: u64, total: u64) {
        if !self.hold || !self.selected.contains(&pid) {
            return;
        }
        let max = self.cfg.max_request_bytes;
        let st = self.conn(pid, conn);
        if st.unframed.is_some() {
            return;
        }
        if offset == 0 {
            st.call_seen = 0;
        }
        if offset != st.call_seen || total > sensor_common::MAX_CAPTURE_PER_CALL {
            // Without every byte the connection sent, its requests cannot be
            // framed any more.
            st.unframed = Some("bytes the connection sent were not captured");
            st.unsent = Vec::new();
            return;
        }
        st.call_seen += data.len() as u64;
        st.unsent.extend_from_slice(data);
        loop {
            match frame::next_request(&st.unsent) {
                frame::Next::Complete(n) => {
                    st.unsent.drain(..n);
                }
                frame::Next::Incomplete(_) => break,
                frame::Next::NotHttp1(why) => {
                    st.unframed = Some(why);
                    st.unsent = Vec::new();
                    break;
                }
            }
        }
        if st.unsent.len() > max {
            st.unframed = Some("a request larger than enforce.max_request_bytes");
            st.unsent = Vec::new();
        }
    }

    /// Decides on a held write, carries the decision out and continues (or
    /// kills) the process. Returns the events to emit.
    pub fn on_hold(&mut self, h: &Hold, env: HoldEnv<'_>) -> Vec<Outcome> {
        let HoldEnv {
            process,
            server_name,
            detection,
            catalog,
            mut holds,
        } = env;
        if h.selected != Some(true) || !self.selected.contains(&h.pid) {
            let selected = self.judge(h.pid, process, Some(h.uid));
            if let Some(map) = holds.as_deref_mut() {
                map.judge(h.pid, selected);
            }
            tracing::debug!(
                pid = h.pid,
                selected,
                exe = process.and_then(|c| c.exe.as_deref()).unwrap_or("?"),
                uid = h.uid,
                "judged a held process"
            );
            if !selected {
                self.stats.exempted += 1;
                self.resume(h.pid);
                return Vec::new();
            }
        }
        self.stats.holds += 1;
        let waited = Duration::from_nanos(Clock::mono_now().saturating_sub(h.ts_ns));
        let verdict = if waited > Duration::from_millis(self.cfg.decision_timeout_ms) {
            Verdict::Fail(
                Reason::Timeout,
                format!(
                    "held {} ms before the sensor could decide",
                    waited.as_millis()
                ),
            )
        } else {
            self.judge_write(h, process, server_name, detection, catalog)
        };
        let st = self.conn(h.pid, h.conn);
        st.held = true;
        let ai = st.ai || server_name.is_some_and(|n| catalog.provider_of_host(n).is_some());
        let mut events = match verdict {
            Verdict::Allow(events) => {
                self.resume(h.pid);
                self.stats.allowed += events.len() as u64;
                events
            }
            Verdict::Act(mode, out) => vec![self.act(h, mode, *out)],
            Verdict::Fail(reason, detail) if ai => vec![self.fail(h, reason, detail)],
            Verdict::Fail(reason, _) => {
                // Not an AI endpoint as far as anything tells: nothing to
                // decide. A connection that carries no HTTP/1 (HTTP/2, a
                // WebSocket, another protocol) never will be decided: its writes
                // need not be held any more.
                if reason == Reason::Undecodable
                    && self
                        .conns
                        .get(&(h.pid, h.conn))
                        .is_some_and(|c| c.unframed.is_some())
                    && let Some(map) = holds
                {
                    map.skip_conn(h.pid, h.conn);
                    self.stats.conns_skipped += 1;
                }
                self.resume(h.pid);
                Vec::new()
            }
        };
        let held_us = Clock::mono_now().saturating_sub(h.ts_ns) / 1000;
        self.stats.held_us_total = self.stats.held_us_total.saturating_add(held_us);
        self.stats.held_us_max = self.stats.held_us_max.max(held_us);
        for e in &mut events {
            e.held_us = Some(held_us);
            e.bytes = h.len;
        }
        events
            .into_iter()
            .map(|out| Outcome { pid: h.pid, out })
            .collect()
    }

    /// Judges the bytes of a held write with what its connection sent before.
    fn judge_write(
        &mut self,
        h: &Hold,
        process: Option<&ProcessContext>,
        server_name: Option<&str>,
        detection: &mut Detection,
        catalog: &Catalog,
    ) -> Verdict {
        let Some(len) = h.len else {
            return Verdict::Fail(
                Reason::Undecodable,
                "the probe's site does not tell the write's length".into(),
            );
        };
        let max = self.cfg.max_request_bytes;
        let (unsent, unframed) = {
            let st = self.conn(h.pid, h.conn);
            (st.unsent.len(), st.unframed)
        };
        if let Some(why) = unframed {
            return Verdict::Fail(Reason::Undecodable, why.to_owned());
        }
        if len as usize > max.saturating_sub(unsent) {
            return Verdict::Fail(
                Reason::TooLarge,
                format!(
                    "{} bytes with what the connection sent before",
                    unsent as u64 + len
                ),
            );
        }
        let bytes = match act::read_memory(h.pid, h.buf, len as usize) {
            Ok(b) => b,
            Err(e) => return Verdict::Fail(Reason::Unreadable, e.to_string()),
        };
        let mut candidate = std::mem::take(&mut self.conn(h.pid, h.conn).unsent);
        let kept = candidate.len();
        candidate.extend_from_slice(&bytes);
        let subject = subject(process, Some(h.uid));
        let comm = process.map_or("", |c| c.comm.as_str());
        let mut events = Vec::new();
        let mut strongest: Option<(Decision, Option<Evaluated>)> = None;
        let mut consider = |d: Option<Decision>, e: Option<Evaluated>, events: &mut Vec<_>| match d
        {
            Some(d) if d.mode.holds() => {
                if strongest.as_ref().is_none_or(|(s, _)| d.mode > s.mode) {
                    strongest = Some((d, e));
                }
            }
            Some(d) => events.push(EnforcementOut::decided(Action::Allowed, &d, e.as_ref())),
            None => {
                if let Some(e) = e {
                    let mut out = EnforcementOut::new(Action::Allowed, Reason::Policy);
                    out.facts = e.facts.clone();
                    out.request = Some(e.summary);
                    events.push(out);
                }
            }
        };
        let mut off = 0;
        let mut undecodable = None;
        while off < candidate.len() {
            match frame::next_request(&candidate[off..]) {
                frame::Next::Complete(n) => {
                    let request = &candidate[off..off + n];
                    off += n;
                    let Some(e) = self.evaluate(request, detection, catalog, process, h.pid, comm)
                    else {
                        continue;
                    };
                    self.conn(h.pid, h.conn).ai = true;
                    let host = e.summary.authority.as_deref().or(server_name);
                    let d =
                        self.policies
                            .decide(&subject, e.client.as_deref(), host, true, &e.rules);
                    if !e.readable && d.as_ref().is_none_or(|d| !d.mode.holds()) {
                        undecodable = Some("the body is not the API's JSON".to_owned());
                    }
                    consider(d, Some(e), &mut events);
                }
                frame::Next::Incomplete(head) => {
                    // The destination is known from the head: a request to an
                    // AI endpoint outside the allow-list stops here, before
                    // its body leaves.
                    if let Some(head) = head {
                        let host = head.host.as_deref().or(server_name);
                        if catalog
                            .recognise(&head.method, host, &head.target)
                            .is_some()
                        {
                            self.conn(h.pid, h.conn).ai = true;
                            let client = head.user_agent.as_deref().and_then(|ua| {
                                telltale::inventory::product_from_user_agent(ua).map(|(p, _)| p)
                            });
                            let d = self.policies.decide(
                                &subject,
                                client.as_deref(),
                                host,
                                true,
                                &[] as &[&str],
                            );
                            if d.as_ref().is_some_and(|d| d.mode.holds()) {
                                consider(d, None, &mut events);
                            }
                        }
                    }
                    break;
                }
                frame::Next::NotHttp1(why) => {
                    self.conn(h.pid, h.conn).unframed = Some(why);
                    undecodable = Some(why.to_owned());
                    break;
                }
            }
        }
        if let Some((d, e)) = strongest {
            let out = EnforcementOut::decided(Action::Blocked, &d, e.as_ref());
            return Verdict::Act(d.mode, Box::new(out));
        }
        if let Some(why) = undecodable {
            return Verdict::Fail(Reason::Undecodable, why);
        }
        // Let go. What the connection sent before stays as it was: the write's
        // own bytes join it once the capture of its return shows they went out
        // (see `wrote`); a write that fails and is retried is not counted twice.
        candidate.truncate(kept);
        self.conn(h.pid, h.conn).unsent = candidate;
        Verdict::Allow(events)
    }

    /// Decodes one whole request and evaluates it; None when it is not an LLM
    /// API request.
    fn evaluate(
        &self,
        request: &[u8],
        detection: &mut Detection,
        catalog: &Catalog,
        process: Option<&ProcessContext>,
        pid: u32,
        comm: &str,
    ) -> Option<Evaluated> {
        let mut decoder: Decoder<u8> = Decoder::new(self.decode_limits);
        let mut found = None;
        decoder.feed(
            &0,
            sensor_common::Direction::Egress,
            request,
            Clock::mono_now(),
            false,
            &mut |_, view, out| {
                if let Output::Request(x) = out
                    && view.role == Some(Side::Client)
                    && found.is_none()
                {
                    found = detection.evaluate(x, catalog, process, pid, comm);
                }
            },
        );
        found
    }

    /// Carries out a block or kill on a held process.
    fn act(&mut self, h: &Hold, mode: Mode, mut out: EnforcementOut) -> EnforcementOut {
        if mode == Mode::Kill {
            out.action = Action::Killed;
            self.kill(h.pid);
            return out;
        }
        match self.shut(h) {
            Ok(n) => {
                out.sockets_shut = Some(n);
                self.stats.blocked += 1;
                self.resume(h.pid);
                out
            }
            Err(detail) => {
                let mut f = self.fail(h, Reason::NoSocket, detail);
                f.mode = out.mode;
                f.policy = out.policy;
                f.rules = out.rules;
                f.facts = out.facts;
                f.destination = out.destination;
                f.request = out.request;
                f
            }
        }
    }

    /// Applies the fail mode to a held write.
    fn fail(&mut self, h: &Hold, reason: Reason, detail: String) -> EnforcementOut {
        self.stats.fail_decisions += 1;
        let mut out = EnforcementOut::new(Action::Allowed, reason);
        out.fail = Some(self.cfg.fail);
        out.detail = Some(detail);
        match self.cfg.fail {
            FailMode::Open => self.resume(h.pid),
            FailMode::Closed => {
                let shut = if reason == Reason::NoSocket {
                    Err(String::new())
                } else {
                    self.shut(h)
                };
                match shut {
                    Ok(n) => {
                        out.action = Action::Blocked;
                        out.sockets_shut = Some(n);
                        self.stats.blocked += 1;
                        self.resume(h.pid);
                    }
                    Err(_) => {
                        // Nothing else keeps the request from leaving.
                        out.action = Action::Killed;
                        self.kill(h.pid);
                    }
                }
            }
        }
        out
    }

    /// Shuts down the held write's connection: its own socket when known,
    /// else the process's established sockets to TLS ports that belong to no
    /// other known connection. Returns how many were shut.
    fn shut(&mut self, h: &Hold) -> Result<u32, String> {
        let known =
            h.fd.or_else(|| self.conns.get(&(h.pid, h.conn)).and_then(|c| c.fd));
        let fds: Vec<i32> = match known {
            Some(fd) => vec![fd],
            None => {
                let others: HashSet<i32> = self
                    .conns
                    .iter()
                    .filter(|((p, c), _)| *p == h.pid && *c != h.conn)
                    .filter_map(|(_, s)| s.fd)
                    .collect();
                crate::conn::established_tcp(h.pid)
                    .map_err(|e| format!("listing the process's sockets: {e}"))?
                    .into_iter()
                    .filter(|(fd, remote)| {
                        self.tls_ports.contains(&remote.port()) && !others.contains(fd)
                    })
                    .map(|(fd, _)| fd)
                    .collect()
            }
        };
        if fds.is_empty() {
            return Err(
                "the connection's socket is not known and the process has no \
                        other established connection to a TLS port"
                    .into(),
            );
        }
        let mut shut = 0;
        let mut last_err = None;
        for fd in fds {
            match act::shutdown_socket(h.pid, fd) {
                Ok(()) => shut += 1,
                Err(e) => last_err = Some(format!("shutting down descriptor {fd}: {e}")),
            }
        }
        match (shut, last_err) {
            (0, Some(e)) => Err(e),
            (n, _) => Ok(n),
        }
    }

    fn resume(&mut self, pid: u32) {
        self.to_resume.insert(pid);
    }

    /// Continues the processes whose held writes were decided.
    pub fn flush_resumes(&mut self) {
        for pid in std::mem::take(&mut self.to_resume) {
            if let Err(e) = act::resume(pid)
                && e.raw_os_error() != Some(libc::ESRCH)
            {
                self.stats.action_errors += 1;
                tracing::warn!(pid, error = %e, "cannot continue a held process");
            }
        }
    }

    fn kill(&mut self, pid: u32) {
        self.to_resume.remove(&pid);
        match act::kill(pid) {
            Ok(()) => self.stats.killed += 1,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => {
                self.stats.action_errors += 1;
                tracing::warn!(pid, error = %e, "cannot kill a process");
                self.resume(pid);
            }
        }
    }

    /// A request as captured (after it went out): decisions for processes
    /// whose writes were not held — dry-run reports, `alert`-mode policies,
    /// and `kill` after the alert when a process could not be held.
    pub fn on_request(
        &mut self,
        pid: u32,
        conn: u64,
        process: Option<&ProcessContext>,
        server_name: Option<&str>,
        e: &Evaluated,
    ) -> Option<Outcome> {
        if !self.active() {
            return None;
        }
        if self.hold && self.conns.get(&(pid, conn)).is_some_and(|c| c.held) {
            // Decided when it was held.
            return None;
        }
        let host = e.summary.authority.as_deref().or(server_name);
        let d = self.policies.decide(
            &subject(process, None),
            e.client.as_deref(),
            host,
            true,
            &e.rules,
        )?;
        let action = match (d.mode, self.cfg.dry_run) {
            (Mode::Alert, _) => {
                if !d.causes.iter().any(|c| matches!(c, Cause::Destination(_))) {
                    // Rule findings in alert mode are the alerts themselves.
                    return None;
                }
                self.stats.alerted += 1;
                Action::Alerted
            }
            (_, true) => {
                self.stats.would_act += 1;
                if d.mode == Mode::Kill {
                    Action::WouldKill
                } else {
                    Action::WouldBlock
                }
            }
            (Mode::Kill, false) => {
                self.kill(pid);
                Action::Killed
            }
            (Mode::Block, false) => {
                self.stats.not_held += 1;
                Action::NotHeld
            }
        };
        let mut out = EnforcementOut::decided(action, &d, Some(e));
        out.dry_run = self.cfg.dry_run;
        if action == Action::NotHeld {
            out.detail = Some(
                "the request was captured after it was sent: the process's TLS stack \
                 cannot be held (Go, NSS) or its hold was missed"
                    .into(),
            );
        }
        Some(Outcome { pid, out })
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        self.flush_resumes();
        self.stop_guard();
    }
}

fn subject(ctx: Option<&ProcessContext>, uid: Option<u32>) -> Subject<'_> {
    Subject {
        exe: ctx.and_then(|c| c.exe.as_deref()),
        build_id: ctx.and_then(|c| c.exe_build_id.as_deref()),
        cgroup: ctx.and_then(|c| c.cgroup.as_deref()),
        container: ctx.and_then(|c| c.container.as_ref().map(|c| c.id.as_str())),
        uid: ctx.and_then(|c| c.uid).or(uid),
        user: ctx.and_then(|c| c.user.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enforcer(dry_run: bool, policies: &str) -> Enforcer {
        #[derive(serde::Deserialize)]
        struct W {
            policies: Vec<policy::PolicyCfg>,
        }
        let w: W = toml::from_str(policies).expect("policies");
        let cfg = EnforceCfg {
            dry_run,
            decision_timeout_ms: 1000,
            fail: FailMode::Open,
            max_request_bytes: 1 << 20,
            policies: w.policies,
        };
        Enforcer::new(&cfg, &[443], telltale::decode::Limits::default()).expect("enforcer")
    }

    fn evaluated(authority: &str, rules: &[&str]) -> Evaluated {
        Evaluated {
            summary: RequestOut {
                method: "POST".into(),
                authority: Some(authority.into()),
                path: "/v1/messages".into(),
                provider: Some("anthropic".into()),
                api: None,
                model: None,
            },
            client: Some("Anthropic".into()),
            rules: rules.iter().map(|r| (*r).to_owned()).collect(),
            facts: vec!["uname -r".into()],
            readable: true,
        }
    }

    const BLOCK_FP: &str = r#"
        [[policies]]
        name = "p"
        mode = "alert"
        rules = { "TT-FP-*" = "block", "TT-ID-*" = "kill" }
        allow_destinations = ["api.anthropic.com"]
    "#;

    #[test]
    fn dry_run_reports_would_block_and_would_kill_and_holds_nothing() {
        let mut e = enforcer(true, BLOCK_FP);
        assert!(!e.holds_writes());
        let o = e
            .on_request(
                7,
                1,
                None,
                None,
                &evaluated("api.anthropic.com", &["TT-FP-005"]),
            )
            .expect("a decision");
        assert_eq!(o.out.action, Action::WouldBlock);
        assert!(o.out.dry_run);
        assert_eq!(o.out.rules, ["TT-FP-005"]);
        assert_eq!(o.out.facts, ["uname -r"]);
        let o = e
            .on_request(
                7,
                1,
                None,
                None,
                &evaluated("api.anthropic.com", &["TT-FP-005", "TT-ID-002"]),
            )
            .expect("a decision");
        assert_eq!(
            (o.out.action, o.out.rules.as_slice()),
            (Action::WouldKill, &["TT-ID-002".to_owned()][..])
        );
        // Nothing matched, allowed destination: nothing to report.
        assert!(
            e.on_request(7, 1, None, None, &evaluated("api.anthropic.com", &[]))
                .is_none()
        );
        assert_eq!(e.stats.would_act, 2);
    }

    #[test]
    fn alert_mode_destinations_are_reported() {
        let mut e = enforcer(false, BLOCK_FP);
        assert!(e.holds_writes());
        let o = e
            .on_request(
                7,
                1,
                None,
                Some("api.openai.com"),
                &evaluated("api.openai.com:443", &[]),
            )
            .expect("a decision");
        assert_eq!(o.out.action, Action::Alerted);
        assert_eq!(o.out.destination.as_deref(), Some("api.openai.com:443"));
        // A block that was not held (Go, NSS, a missed hold) says so.
        let o = e
            .on_request(
                7,
                2,
                None,
                None,
                &evaluated("api.anthropic.com", &["TT-FP-001"]),
            )
            .expect("a decision");
        assert_eq!(o.out.action, Action::NotHeld);
        assert_eq!(e.stats.not_held, 1);
    }

    #[test]
    fn written_bytes_keep_only_the_unfinished_request() {
        let mut e = enforcer(false, BLOCK_FP);
        assert!(e.judge(42, None, Some(1000)));
        let head = b"POST /v1/messages HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n";
        e.wrote(42, 9, head, 0, head.len() as u64);
        assert_eq!(e.conns[&(42, 9)].unsent.len(), head.len());
        // The body completes it; a second request's head starts.
        let mut rest = b"body".to_vec();
        rest.extend_from_slice(b"GET /x HTTP/1.1\r\n");
        e.wrote(42, 9, &rest, 0, rest.len() as u64);
        assert_eq!(e.conns[&(42, 9)].unsent, b"GET /x HTTP/1.1\r\n");
        // A chunk that does not follow the last one: bytes were lost, the
        // connection can no longer be framed.
        e.wrote(42, 9, b"Host: a\r\n", 100, 200);
        assert!(e.conns[&(42, 9)].unframed.is_some());
        assert!(e.conns[&(42, 9)].unsent.is_empty());
        // Processes not selected are not followed.
        e.wrote(43, 9, head, 0, head.len() as u64);
        assert!(!e.conns.contains_key(&(43, 9)));
    }

    #[test]
    fn the_sensor_never_selects_itself() {
        let mut e = enforcer(false, "[[policies]]\nname = \"all\"\nmode = \"block\"");
        assert!(!e.judge(std::process::id(), None, None));
        assert!(e.judge(std::process::id() + 1, None, None));
        assert_eq!(e.unselective_policies(), ["all"]);
    }
}
