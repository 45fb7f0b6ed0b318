//! Protocol-decode stage: turns each connection's reassembled plaintext into HTTP
//! requests and responses (HTTP/1.1, HTTP/2 with HPACK, WebSocket), with content
//! decoding (gzip, deflate, br, zstd) and Server-Sent Events.
//!
//! [`Decoder`] keeps one state per connection. It tells from the first bytes
//! which protocol the connection speaks and which end the watched process is;
//! wire parsers ([`Http1`], [`Http2`]) report [`Part`]s, which the exchange layer
//! assembles into [`Exchange`]s under hard bounds. Nothing here panics on hostile
//! input: a malformed stream becomes an error for its connection and leaves every
//! other connection alone.

mod body;
mod exchange;
pub mod frame;
mod http1;
mod http2;
mod part;
mod sse;
#[cfg(test)]
mod tests;
mod ws;

use std::{collections::HashMap, hash::Hash};

use sensor_common::Direction;
use serde::Serialize;

#[cfg(test)]
pub(crate) use body::brotli_stored;
pub use body::{BodyLimits, Coding};

/// Undoes `codings` on `body` within `limits` (the content decoder on its own,
/// for fuzzing and benchmarks): the bytes decoded, however far it got.
pub fn body_decode(body: &[u8], codings: &[Coding], limits: BodyLimits) -> Vec<u8> {
    body::decode(body, codings, limits).bytes
}
pub use exchange::{Body, Exchange, Message, SseEvents};
pub use http1::Http1;
pub use http2::{Http2, PREFACE as HTTP2_PREFACE};
pub use part::{ErrorKind, Head, Header, Part, Side, Start, StreamId, Version, WireLimits};
pub use sse::SseEvent;

use exchange::{Assembled, Assembler, AssemblyLimits};

/// A wire-level protocol parser for one connection (both directions).
pub trait WireParser {
    /// Bytes `side` sent, in order, captured at `ts_ns` (`CLOCK_MONOTONIC`).
    fn feed(&mut self, side: Side, data: &[u8], ts_ns: u64, out: &mut dyn FnMut(Part<'_>));
    /// Bytes of `side` were lost before the next [`feed`](Self::feed): abort what
    /// cannot complete and find the next message boundary if the protocol allows.
    fn gap(&mut self, side: Side, out: &mut dyn FnMut(Part<'_>));
    /// The connection ended: end messages delimited by the close, abort the rest.
    fn close(&mut self, ts_ns: u64, out: &mut dyn FnMut(Part<'_>));
    /// Bytes held in buffers now (for the sensor-wide memory bound).
    fn buffered(&self) -> usize;
}

/// Bounds of the decode stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wire-level bounds (headers, frames, streams).
    pub wire: WireLimits,
    /// Body bytes kept per message for inspection; longer bodies are `truncated`.
    pub max_body_bytes: usize,
    /// Content-decoding bounds (decoded size, expansion ratio).
    pub body: BodyLimits,
    /// Server-Sent Events kept per response.
    pub max_sse_events: usize,
    /// Connections decoded at once; the least recently active is dropped first.
    pub max_connections: usize,
    /// Bytes held by all connections together (buffers and kept bodies); past it
    /// the connection holding most is dropped.
    pub max_total_bytes: usize,
    /// A connection silent for this long is closed (its exchanges go out).
    pub idle_timeout_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wire: WireLimits::default(),
            max_body_bytes: 8 << 20,
            body: BodyLimits {
                max_decoded_bytes: 16 << 20,
                max_ratio: 100,
            },
            max_sse_events: 4096,
            max_connections: 16384,
            max_total_bytes: 512 << 20,
            idle_timeout_ns: 600 * 1_000_000_000,
        }
    }
}

/// Application protocol of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Not decided yet (too few bytes).
    Unknown,
    /// HTTP/1.x.
    Http1,
    /// HTTP/2.
    Http2,
    /// Something else; not decoded.
    Other,
}

/// What is known of a connection when it reports something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConnView {
    /// Application protocol.
    pub protocol: Protocol,
    /// The watched process's end of the connection, once known.
    pub role: Option<Side>,
}

/// What the decoder reports.
#[derive(Debug)]
pub enum Output<'a> {
    /// A request is complete (or was given up); its response may follow.
    Request(&'a Exchange),
    /// An exchange is over: its response ended, or the connection did.
    Exchange(Box<Exchange>),
    /// A whole WebSocket message.
    WebSocket {
        /// The exchange that upgraded the connection.
        stream: StreamId,
        /// Who sent it.
        side: Side,
        /// Opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong).
        opcode: u8,
        /// Payload, up to the bound.
        payload: &'a [u8],
        /// The message was longer than `payload`.
        truncated: bool,
        /// When it ended.
        ts_ns: u64,
    },
    /// The connection, a side of it, or one exchange could not be decoded.
    Error(DecodeError),
}

/// A `decode.error`: what could not be decoded, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecodeError {
    /// Side affected, if one.
    pub side: Option<Side>,
    /// Exchange affected, if one.
    pub stream: Option<StreamId>,
    /// Class of error.
    pub kind: ErrorKind,
    /// What was wrong (never payload bytes).
    pub detail: String,
}

/// Counters of the decode stage, for `sensor.status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DecodeStats {
    /// Connections decoded now (a gauge).
    pub connections: u64,
    /// Connections seen speaking HTTP/1.x.
    pub http1_connections: u64,
    /// Connections seen speaking HTTP/2.
    pub http2_connections: u64,
    /// Connections that are not HTTP (not decoded).
    pub other_connections: u64,
    /// Requests complete or given up.
    pub requests: u64,
    /// Exchanges reported.
    pub exchanges: u64,
    /// WebSocket messages reported.
    pub websocket_messages: u64,
    /// Errors reported (all kinds).
    pub errors: u64,
    /// Of which: bounds reached (including decompression bombs).
    pub limit_errors: u64,
    /// Of which: bytes lost before the decoder (capture gaps).
    pub gap_errors: u64,
    /// Connections dropped to keep within `max_connections` or `max_total_bytes`.
    pub dropped_connections: u64,
    /// Connections closed after `idle_timeout`.
    pub idle_closed: u64,
    /// Bytes held now (a gauge).
    pub held_bytes: u64,
}

/// Bytes looked at before deciding what a connection speaks.
const DETECT_BYTES: usize = HTTP2_PREFACE.len();

enum State {
    /// Bytes kept (in arrival order) until the protocol is clear.
    Detecting(Vec<(Direction, Vec<u8>, u64, bool)>),
    Http1(Box<Http1>),
    Http2(Box<Http2>),
    /// Not HTTP, or given up: ignored until the connection ends.
    Ignored,
}

struct Conn {
    state: State,
    role: Option<Side>,
    asm: Assembler,
    last_ns: u64,
    held: usize,
}

impl Conn {
    fn view(&self) -> ConnView {
        ConnView {
            protocol: match self.state {
                State::Detecting(_) => Protocol::Unknown,
                State::Http1(_) => Protocol::Http1,
                State::Http2(_) => Protocol::Http2,
                State::Ignored => Protocol::Other,
            },
            role: self.role,
        }
    }

    fn measure(&self) -> usize {
        let wire = match &self.state {
            State::Detecting(v) => v.iter().map(|(_, b, _, _)| b.len()).sum(),
            State::Http1(p) => p.buffered(),
            State::Http2(p) => p.buffered(),
            State::Ignored => 0,
        };
        wire + self.asm.held()
    }
}

/// Decodes every connection's plaintext; `K` names a connection.
pub struct Decoder<K> {
    limits: Limits,
    conns: HashMap<K, Conn>,
    held: usize,
    stats: DecodeStats,
}

/// The callback outputs go to: the connection, what is known of it, the output.
pub type Sink<'s, K> = dyn FnMut(&K, ConnView, Output<'_>) + 's;

impl<K: Hash + Eq + Clone> Decoder<K> {
    /// A decoder with the given bounds.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            conns: HashMap::new(),
            held: 0,
            stats: DecodeStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DecodeStats {
        DecodeStats {
            connections: self.conns.len() as u64,
            held_bytes: self.held as u64,
            ..self.stats
        }
    }

    /// Bytes of connection `key` that its watched process sent (`Egress`) or
    /// received (`Ingress`), in call order; `lost_after` when bytes that followed
    /// them in the stream were not captured.
    pub fn feed(
        &mut self,
        key: &K,
        dir: Direction,
        data: &[u8],
        ts_ns: u64,
        lost_after: bool,
        out: &mut Sink<'_, K>,
    ) {
        if !self.conns.contains_key(key) {
            if self.conns.len() >= self.limits.max_connections {
                self.drop_idlest(out);
            }
            self.conns.insert(
                key.clone(),
                Conn {
                    state: State::Detecting(Vec::new()),
                    role: None,
                    asm: Assembler::new(self.assembly_limits()),
                    last_ns: ts_ns,
                    held: 0,
                },
            );
        }
        let limits = self.limits;
        let stats = &mut self.stats;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.last_ns = conn.last_ns.max(ts_ns);
        if let State::Detecting(kept) = &mut conn.state {
            kept.push((dir, data.to_vec(), ts_ns, lost_after));
            match detect(kept) {
                Detected::NeedMore => {}
                Detected::Http1(role) => {
                    start(conn, role, Protocol::Http1, limits, key, stats, out)
                }
                Detected::Http2(role) => {
                    start(conn, role, Protocol::Http2, limits, key, stats, out)
                }
                Detected::Other(why) => {
                    conn.state = State::Ignored;
                    stats.other_connections += 1;
                    if let Some(why) = why {
                        report(
                            key,
                            conn.view(),
                            stats,
                            out,
                            error(None, ErrorKind::Gap, why),
                        );
                    }
                }
            }
        } else {
            pass(conn, dir, data, ts_ns, lost_after, key, stats, out);
        }
        self.account(key, out);
    }

    /// Connection `key` ended: its open exchanges go out.
    pub fn close(&mut self, key: &K, ts_ns: u64, out: &mut Sink<'_, K>) {
        if let Some(mut conn) = self.conns.remove(key) {
            self.held = self.held.saturating_sub(conn.held);
            finish(&mut conn, ts_ns, key, &mut self.stats, out);
        }
    }

    /// Whether connection `key` is followed now.
    pub fn follows(&self, key: &K) -> bool {
        self.conns.contains_key(key)
    }

    /// Closes connections silent for longer than the idle timeout.
    pub fn expire(&mut self, now_ns: u64, out: &mut Sink<'_, K>) {
        let timeout = self.limits.idle_timeout_ns;
        let idle: Vec<K> = self
            .conns
            .iter()
            .filter(|(_, c)| now_ns.saturating_sub(c.last_ns) > timeout)
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            self.stats.idle_closed += 1;
            self.close(&k, now_ns, out);
        }
    }

    /// Closes every connection (at shutdown).
    pub fn flush(&mut self, out: &mut Sink<'_, K>) {
        let keys: Vec<K> = self.conns.keys().cloned().collect();
        for k in keys {
            let ts = self.conns.get(&k).map_or(0, |c| c.last_ns);
            self.close(&k, ts, out);
        }
    }

    fn assembly_limits(&self) -> AssemblyLimits {
        AssemblyLimits {
            max_body_bytes: self.limits.max_body_bytes,
            body: self.limits.body,
            max_sse_events: self.limits.max_sse_events,
            max_streams: self.limits.wire.max_streams,
        }
    }

    /// Updates the memory account after `key` changed, and keeps the total bound.
    fn account(&mut self, key: &K, out: &mut Sink<'_, K>) {
        if let Some(conn) = self.conns.get_mut(key) {
            let now = conn.measure();
            self.held = self.held.saturating_sub(conn.held) + now;
            conn.held = now;
        }
        while self.held > self.limits.max_total_bytes {
            let Some(k) = self
                .conns
                .iter()
                .filter(|(_, c)| c.held > 0)
                .max_by_key(|(_, c)| c.held)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.give_up(&k, "the decoder's memory bound was reached", out);
        }
    }

    fn drop_idlest(&mut self, out: &mut Sink<'_, K>) {
        let idlest = self
            .conns
            .iter()
            .min_by_key(|(_, c)| c.last_ns)
            .map(|(k, _)| k.clone());
        if let Some(k) = idlest {
            self.stats.dropped_connections += 1;
            let ts = self.conns.get(&k).map_or(0, |c| c.last_ns);
            let view = self.conns.get(&k).map(Conn::view);
            if let Some(view) = view {
                let detail = format!(
                    "more than {} connections decoded at once; the least recently active is \
                     no longer followed",
                    self.limits.max_connections
                );
                report(
                    &k,
                    view,
                    &mut self.stats,
                    out,
                    error(None, ErrorKind::Limit, detail),
                );
            }
            self.close(&k, ts, out);
        }
    }

    /// Stops decoding `key` (its exchanges so far go out) but remembers it, so
    /// that its later bytes are not mistaken for a new connection.
    fn give_up(&mut self, key: &K, why: &str, out: &mut Sink<'_, K>) {
        let none = AssemblyLimits {
            max_body_bytes: 0,
            ..self.assembly_limits()
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.stats.dropped_connections += 1;
        let view = conn.view();
        report(
            key,
            view,
            &mut self.stats,
            out,
            error(None, ErrorKind::Limit, why.into()),
        );
        let ts = conn.last_ns;
        finish(conn, ts, key, &mut self.stats, out);
        conn.state = State::Ignored;
        conn.asm = Assembler::new(none);
        self.held = self.held.saturating_sub(conn.held);
        conn.held = 0;
    }
}

fn error(side: Option<Side>, kind: ErrorKind, detail: String) -> DecodeError {
    DecodeError {
        side,
        stream: None,
        kind,
        detail,
    }
}

fn report<K>(
    key: &K,
    view: ConnView,
    stats: &mut DecodeStats,
    out: &mut Sink<'_, K>,
    e: DecodeError,
) {
    count_error(stats, e.kind);
    out(key, view, Output::Error(e));
}

fn count_error(stats: &mut DecodeStats, kind: ErrorKind) {
    stats.errors += 1;
    match kind {
        ErrorKind::Limit => stats.limit_errors += 1,
        ErrorKind::Gap => stats.gap_errors += 1,
        ErrorKind::Malformed | ErrorKind::Unsupported => {}
    }
}

/// What the first bytes say.
#[derive(Debug, PartialEq, Eq)]
enum Detected {
    NeedMore,
    /// HTTP/1; the watched process's role.
    Http1(Side),
    /// HTTP/2; the watched process's role.
    Http2(Side),
    /// Not HTTP; with a reason to report when it is probably HTTP we cannot follow.
    Other(Option<String>),
}

fn detect(kept: &[(Direction, Vec<u8>, u64, bool)]) -> Detected {
    let mut undecided = false;
    let mut frames_only: Option<Direction> = None;
    let mut seen = 0;
    for dir in [Direction::Egress, Direction::Ingress] {
        let mut first = Vec::new();
        for (_, b, _, _) in kept.iter().filter(|(d, ..)| *d == dir) {
            first.extend_from_slice(&b[..b.len().min(DETECT_BYTES - first.len())]);
            if first.len() >= DETECT_BYTES {
                break;
            }
        }
        if first.is_empty() {
            continue;
        }
        seen += 1;
        // The end that sends the preface or a request line is the client.
        let role = |sends_requests: bool| match (dir, sends_requests) {
            (Direction::Egress, true) | (Direction::Ingress, false) => Side::Client,
            _ => Side::Server,
        };
        match classify(&first) {
            Class::Preface => return Detected::Http2(role(true)),
            Class::RequestLine => return Detected::Http1(role(true)),
            Class::StatusLine => return Detected::Http1(role(false)),
            Class::Maybe => undecided = true,
            Class::MidHttp2 => frames_only = Some(dir),
            Class::No => {}
        }
    }
    if undecided {
        return Detected::NeedMore;
    }
    if frames_only.is_some() {
        // A server may write its SETTINGS before its read of the client's
        // preface returns: wait for the other direction, within a bound.
        let held: usize = kept.iter().map(|(_, b, _, _)| b.len()).sum();
        if seen < 2 && held < DETECT_HOLD_BYTES {
            return Detected::NeedMore;
        }
        return Detected::Other(Some(
            "joined an HTTP/2 connection after its start; its header compression state \
             is unknown, so it is not decoded"
                .into(),
        ));
    }
    Detected::Other(None)
}

/// Bytes of one direction held while waiting for the other to show how the
/// connection started.
const DETECT_HOLD_BYTES: usize = 64 * 1024;

enum Class {
    Preface,
    RequestLine,
    StatusLine,
    MidHttp2,
    Maybe,
    No,
}

fn classify(b: &[u8]) -> Class {
    let n = b.len().min(HTTP2_PREFACE.len());
    if b[..n] == HTTP2_PREFACE[..n] {
        return if n == HTTP2_PREFACE.len() {
            Class::Preface
        } else {
            Class::Maybe
        };
    }
    let status = b"HTTP/1.";
    let m = b.len().min(status.len());
    if b[..m] == status[..m] {
        return if m == status.len() {
            Class::StatusLine
        } else {
            Class::Maybe
        };
    }
    // A method is a token; real ones are upper-case letters (and `-`).
    let method_len = b
        .iter()
        .take_while(|c| c.is_ascii_uppercase() || **c == b'-' || **c == b'_')
        .count();
    match b.get(method_len) {
        Some(b' ') if (3..=20).contains(&method_len) => return Class::RequestLine,
        None if method_len <= 20 => return Class::Maybe,
        _ => {}
    }
    if looks_like_h2_frame(b) {
        return Class::MidHttp2;
    }
    Class::No
}

/// An HTTP/2 frame header (RFC 9113 §4.1, §6): a sane length, a known type with
/// only that type's flags, and a stream id that type allows.
fn looks_like_h2_frame(b: &[u8]) -> bool {
    if b.len() < 9 {
        return false;
    }
    let len = u32::from_be_bytes([0, b[0], b[1], b[2]]);
    let (ty, flags) = (b[3], b[4]);
    let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
    if len > 16_384 || stream & 0x8000_0000 != 0 {
        return false;
    }
    // (allowed flags, whether the type lives on a stream)
    let (allowed, on_stream) = match ty {
        0 => (0x09, true),      // DATA: END_STREAM, PADDED
        1 => (0x2d, true),      // HEADERS: END_STREAM, END_HEADERS, PADDED, PRIORITY
        2 | 3 => (0, true),     // PRIORITY, RST_STREAM
        4 | 6 => (0x01, false), // SETTINGS, PING: ACK
        5 => (0x0c, true),      // PUSH_PROMISE: END_HEADERS, PADDED
        7 => (0, false),        // GOAWAY
        8 => (0, stream != 0),  // WINDOW_UPDATE: either
        9 => (0x04, true),      // CONTINUATION: END_HEADERS
        _ => return false,
    };
    flags & !allowed == 0 && on_stream == (stream != 0)
}

fn start<K>(
    conn: &mut Conn,
    role: Side,
    protocol: Protocol,
    limits: Limits,
    key: &K,
    stats: &mut DecodeStats,
    out: &mut Sink<'_, K>,
) {
    let State::Detecting(kept) = std::mem::replace(&mut conn.state, State::Ignored) else {
        return;
    };
    conn.role = Some(role);
    conn.state = match protocol {
        Protocol::Http2 => {
            stats.http2_connections += 1;
            State::Http2(Box::new(Http2::new(limits.wire)))
        }
        _ => {
            stats.http1_connections += 1;
            State::Http1(Box::new(Http1::new(limits.wire)))
        }
    };
    for (dir, data, ts, lost) in kept {
        pass(conn, dir, &data, ts, lost, key, stats, out);
    }
}

/// Feeds bytes to the connection's parser and its parts to the assembler.
#[allow(clippy::too_many_arguments)]
fn pass<K>(
    conn: &mut Conn,
    dir: Direction,
    data: &[u8],
    ts_ns: u64,
    lost_after: bool,
    key: &K,
    stats: &mut DecodeStats,
    out: &mut Sink<'_, K>,
) {
    let Some(role) = conn.role else {
        return;
    };
    // The watched process sends what its role sends.
    let side = if dir == Direction::Egress {
        role
    } else {
        role.peer()
    };
    let view = conn.view();
    let Conn { state, asm, .. } = conn;
    let parser: &mut dyn WireParser = match state {
        State::Http1(p) => p.as_mut(),
        State::Http2(p) => p.as_mut(),
        State::Detecting(_) | State::Ignored => return,
    };
    let mut emit = |part: Part<'_>| asm.part(part, &mut |a| deliver(a, key, view, stats, out));
    parser.feed(side, data, ts_ns, &mut emit);
    if lost_after {
        parser.gap(side, &mut emit);
    }
}

fn finish<K>(conn: &mut Conn, ts_ns: u64, key: &K, stats: &mut DecodeStats, out: &mut Sink<'_, K>) {
    let view = conn.view();
    let Conn { state, asm, .. } = conn;
    let parser: Option<&mut dyn WireParser> = match state {
        State::Http1(p) => Some(p.as_mut()),
        State::Http2(p) => Some(p.as_mut()),
        State::Detecting(_) | State::Ignored => None,
    };
    if let Some(p) = parser {
        p.close(ts_ns, &mut |part| {
            asm.part(part, &mut |a| deliver(a, key, view, stats, out))
        });
    }
    asm.close(ts_ns, &mut |a| deliver(a, key, view, stats, out));
}

fn deliver<K>(
    a: Assembled<'_>,
    key: &K,
    view: ConnView,
    stats: &mut DecodeStats,
    out: &mut Sink<'_, K>,
) {
    match a {
        Assembled::Request(x) => {
            stats.requests += 1;
            out(key, view, Output::Request(x));
        }
        Assembled::Exchange(x) => {
            stats.exchanges += 1;
            out(key, view, Output::Exchange(x));
        }
        Assembled::WebSocket {
            stream,
            side,
            opcode,
            payload,
            truncated,
            ts_ns,
        } => {
            stats.websocket_messages += 1;
            out(
                key,
                view,
                Output::WebSocket {
                    stream,
                    side,
                    opcode,
                    payload,
                    truncated,
                    ts_ns,
                },
            );
        }
        Assembled::Error {
            side,
            stream,
            kind,
            detail,
        } => report(
            key,
            view,
            stats,
            out,
            DecodeError {
                side,
                stream,
                kind,
                detail,
            },
        ),
    }
}
