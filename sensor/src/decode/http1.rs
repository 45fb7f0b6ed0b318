//! HTTP/1.0 and HTTP/1.1 (RFC 9112) on one connection, both directions, with
//! pipelining, chunked bodies, interim responses and the WebSocket upgrade.
//!
//! Each side is a small state machine fed in whatever pieces the capture
//! delivers. Only an unfinished head, chunk-size line or trailer section is
//! buffered (at most `max_header_bytes`); body bytes are reported as slices of
//! the input. Heads are parsed by `httparse`.
//!
//! Pairing: request `n` on a connection is stream `n`; the `n`-th final response
//! answers it. Interim 1xx responses are skipped.
//!
//! Lost bytes and malformed input: the message in progress is aborted and the
//! side resynchronises at the next line that starts a plausible message (a
//! request line on the client side, a status line on the server side). A
//! response whose head or body was cut is attributed to the oldest request
//! awaiting one, so the responses after it stay paired with the requests after
//! it; a request head cut by a gap still takes its ordinal, for the same reason.
//!
//! Pipelining bound: at most `max_streams` requests are reported while awaiting
//! their responses. Requests beyond it are still parsed, so ordinals and
//! framing stay right, but neither they nor their responses are reported (one
//! `Limit` error marks the start of each such run); reporting resumes with the
//! first request that arrives when there is room again.

use std::collections::VecDeque;

use memchr::{memchr, memrchr};

use super::ws::{Deflate, WsHalf, WsLimits, negotiated_deflate};
use super::{
    ErrorKind, Head, Header, Part, Side, Start, StreamId, Version, WireLimits, WireParser,
};

/// Wire parser for HTTP/1.0 and HTTP/1.1 on one connection, both directions:
/// reports request and response heads, de-chunked body bytes, ends with
/// trailers, and WebSocket messages after an upgrade (see the module docs for
/// pairing, resynchronisation and bounds).
pub struct Http1 {
    limits: WireLimits,
    client: Half,
    server: Half,
    /// Reported requests awaiting their final response, oldest first.
    pending: VecDeque<Pending>,
    /// Ordinal of the next request.
    next_request: StreamId,
    /// Ordinal of the next final response.
    next_response: StreamId,
    /// Requests are beyond the pipelining bound and not reported.
    over_limit: bool,
    /// A request (Upgrade or CONNECT) whose response decides whether the
    /// connection stays HTTP; the client's later bytes are held until then.
    deciding: Option<StreamId>,
    closed: bool,
}

/// One direction of the connection.
struct Half {
    side: Side,
    state: State,
    /// Unfinished head, chunk-size line, trailers or resync candidate line; or
    /// the client's bytes held while an upgrade is being decided.
    buf: Vec<u8>,
}

/// Where a side is in its byte stream.
enum State {
    /// Between messages: the next bytes start a head.
    Head,
    /// Inside a message body.
    Body(Body),
    /// Looking for a line that starts a message, after a gap or an error.
    Resync { at_line_start: bool },
    /// Client bytes after an Upgrade or CONNECT request, held in `buf` until the
    /// response tells whether they are HTTP. `lost`: some did not fit.
    Held { ts_ns: u64, lost: bool },
    /// WebSocket frames after a 101 response.
    WebSocket(Box<WsHalf>),
    /// Not decoded any more (tunnel, other protocol, undecodable, closed).
    Ignore,
}

/// The message whose body is being read.
struct Body {
    stream: StreamId,
    /// Parts of this message are reported (false beyond the pipelining bound).
    report: bool,
    framing: Framing,
}

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes remain (0: no body).
    Length(u64),
    /// Chunked transfer coding, at this point.
    Chunked(Chunk),
    /// The body ends when the connection closes.
    UntilClose,
}

/// Position in a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// A chunk-size line (with extensions) is next.
    Size,
    /// This many bytes of chunk data remain.
    Data(u64),
    /// The CRLF after chunk data is next.
    DataCr,
    /// The LF of that CRLF is next.
    DataLf,
    /// The trailer section after the last chunk.
    Trailers,
}

/// What a response needs to know about its request.
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    stream: StreamId,
    method: Method,
    upgrade: Option<Upgrade>,
}

/// Request methods that change how the response is framed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Method {
    /// Responses have no body.
    Head,
    /// A 2xx response opens a tunnel.
    Connect,
    #[default]
    Other,
}

/// The protocol a request asked to upgrade to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    WebSocket,
    Other,
}

/// Why some bytes cannot be decoded; becomes a [`Part::Error`].
#[derive(Debug)]
struct Fault {
    kind: ErrorKind,
    detail: &'static str,
}

impl Fault {
    fn malformed(detail: &'static str) -> Self {
        Self {
            kind: ErrorKind::Malformed,
            detail,
        }
    }
}

/// Outcome of looking for a buffered unit (head, chunk-size line, trailers).
enum Scan<T> {
    /// Found; `used` bytes of the new input completed it.
    Complete { used: usize, value: T },
    /// Not complete yet; all the input is buffered.
    Partial,
    /// The bytes are not what was expected.
    Invalid(Fault),
    /// Not complete within the size bound.
    TooLong,
}

impl Http1 {
    /// A parser for a new connection, enforcing `limits` (header count and
    /// size, requests awaiting responses, WebSocket message size).
    pub fn new(limits: WireLimits) -> Self {
        Self {
            limits,
            client: Half::new(Side::Client),
            server: Half::new(Side::Server),
            pending: VecDeque::new(),
            next_request: 1,
            next_response: 1,
            over_limit: false,
            deciding: None,
            closed: false,
        }
    }

    fn half(&mut self, side: Side) -> &mut Half {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// Decodes `data` of `side` step by step; each step consumes bytes or moves
    /// to a state that will.
    fn run(&mut self, side: Side, mut data: &[u8], ts_ns: u64, out: &mut dyn FnMut(Part<'_>)) {
        let mut idle_steps = 0;
        while !data.is_empty() {
            let used = self.step(side, data, ts_ns, out).min(data.len());
            data = &data[used..];
            // A step may hand over without consuming (resync to head, head
            // error to resync), never twice in a row more than a few times.
            idle_steps = if used == 0 { idle_steps + 1 } else { 0 };
            if idle_steps > 3 {
                debug_assert!(false, "http1 parser made no progress");
                break;
            }
        }
    }

    fn step(
        &mut self,
        side: Side,
        data: &[u8],
        ts_ns: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) -> usize {
        match &mut self.half(side).state {
            State::Head => self.step_head(side, data, ts_ns, out),
            State::Body(_) => self.step_body(side, data, ts_ns, out),
            State::Resync { at_line_start } => {
                let at_line_start = *at_line_start;
                self.step_resync(side, data, at_line_start)
            }
            State::Held { .. } => self.step_held(data, ts_ns, out),
            State::WebSocket(ws) => {
                ws.feed(data, ts_ns, out);
                data.len()
            }
            State::Ignore => data.len(),
        }
    }

    /// Reads a request or response head.
    fn step_head(
        &mut self,
        side: Side,
        data: &[u8],
        ts_ns: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) -> usize {
        let (max_bytes, max_count) = (self.limits.max_header_bytes, self.limits.max_header_count);
        let half = self.half(side);
        if half.buf.is_empty() {
            // RFC 9112 §2.2: empty lines before a message are ignored (some
            // clients send CRLF after a body).
            let blank = data
                .iter()
                .take_while(|&&b| matches!(b, b'\r' | b'\n'))
                .count();
            if blank > 0 {
                return blank;
            }
        }
        match scan(&mut half.buf, data, max_bytes, |bytes| {
            parse_head(side, bytes, max_count)
        }) {
            Scan::Complete { used, value } => {
                match side {
                    Side::Client => self.on_request(value, ts_ns, out),
                    Side::Server => self.on_response(value, ts_ns, out),
                }
                used
            }
            Scan::Partial => data.len(),
            Scan::Invalid(fault) => {
                self.head_failed(side, fault, out);
                0
            }
            Scan::TooLong => {
                let fault = Fault {
                    kind: ErrorKind::Limit,
                    detail: "head does not end within the header size bound",
                };
                self.head_failed(side, fault, out);
                0
            }
        }
    }

    /// A request head was read: report it and set up its body.
    fn on_request(&mut self, head: Head, ts_ns: u64, out: &mut dyn FnMut(Part<'_>)) {
        let stream = self.take_request_ordinal();
        let report = self.admit(out);
        let method = match &head.start {
            Start::Request { method, .. } if method == "HEAD" => Method::Head,
            Start::Request { method, .. } if method == "CONNECT" => Method::Connect,
            _ => Method::Other,
        };
        let upgrade = upgrade_of(&head);
        let framing = request_framing(&head);
        if report {
            self.pending.push_back(Pending {
                stream,
                method,
                upgrade,
            });
            if method == Method::Connect || upgrade.is_some() {
                self.deciding = Some(stream);
            }
            out(Part::Head {
                stream,
                side: Side::Client,
                head,
                ts_ns,
            });
        }
        match framing {
            Ok(framing) => self.start_body(Side::Client, stream, report, framing, ts_ns, out),
            Err(fault) => {
                self.fail(Side::Client, Some((stream, report)), fault, out);
                // The head ended at a line end: the next line may start a message.
                self.half(Side::Client).state = State::Resync {
                    at_line_start: true,
                };
            }
        }
    }

    /// Whether request `stream` fits the pipelining bound (see the module docs).
    fn admit(&mut self, out: &mut dyn FnMut(Part<'_>)) -> bool {
        if self.pending.len() < self.limits.max_streams {
            self.over_limit = false;
            return true;
        }
        if !self.over_limit {
            self.over_limit = true;
            // Side-level: the requests after this one are not reported either.
            out(Part::Error {
                side: Some(Side::Client),
                stream: None,
                kind: ErrorKind::Limit,
                detail: "too many requests awaiting a response; not reporting more until one is answered"
                    .into(),
            });
        }
        false
    }

    fn take_request_ordinal(&mut self) -> StreamId {
        let stream = self.next_request;
        self.next_request += 1;
        stream
    }

    /// Ordinal of the next final response and the request it answers; `None`
    /// when that request was not reported.
    fn take_response_ordinal(&mut self) -> (StreamId, Option<Pending>) {
        let stream = self.next_response;
        self.next_response += 1;
        // A response to a request the parser never saw (joined mid-connection,
        // lost bytes) is reported with an ordinal of its own.
        if stream >= self.next_request {
            self.next_request = stream + 1;
            return (
                stream,
                Some(Pending {
                    stream,
                    ..Pending::default()
                }),
            );
        }
        while self.pending.front().is_some_and(|p| p.stream < stream) {
            self.pending.pop_front();
        }
        if self.pending.front().is_some_and(|p| p.stream == stream) {
            return (stream, self.pending.pop_front());
        }
        (stream, None)
    }

    /// A response head was read: report it, set up its body or switch protocols.
    fn on_response(&mut self, head: Head, ts_ns: u64, out: &mut dyn FnMut(Part<'_>)) {
        let status = match head.start {
            Start::Response { status } => status,
            Start::Request { .. } => return,
        };
        // Interim responses (100 Continue, 102, 103) are not reported and do not
        // answer the request.
        if (100..200).contains(&status) && status != 101 {
            return;
        }
        let (stream, request) = self.take_response_ordinal();
        let report = request.is_some();
        let request = request.unwrap_or_default();
        let deflate = negotiated_deflate(&head);
        let framing = response_framing(&head, status, request.method);
        if report {
            out(Part::Head {
                stream,
                side: Side::Server,
                head,
                ts_ns,
            });
        }
        let tunnel = request.method == Method::Connect && (200..300).contains(&status);
        if status == 101 || tunnel {
            if report {
                out(Part::End {
                    stream,
                    side: Side::Server,
                    trailers: Vec::new(),
                    ts_ns,
                });
            }
            self.deciding = None;
            if status == 101 && request.upgrade == Some(Upgrade::WebSocket) {
                self.start_websocket(stream, deflate, out);
            } else {
                self.stop_decoding(out);
            }
            return;
        }
        if self.deciding == Some(stream) {
            self.deciding = None;
            self.release_held(out);
        }
        match framing {
            Ok(framing) => self.start_body(Side::Server, stream, report, framing, ts_ns, out),
            Err(fault) => {
                self.fail(Side::Server, Some((stream, report)), fault, out);
                // The head ended at a line end: the next line may start a message.
                self.half(Side::Server).state = State::Resync {
                    at_line_start: true,
                };
            }
        }
    }

    /// Both sides switch to WebSocket frames; held client bytes are decoded as such.
    fn start_websocket(
        &mut self,
        stream: StreamId,
        deflate: Option<Deflate>,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        let limits = WsLimits {
            max_message: self.limits.max_ws_message_bytes,
        };
        self.server.state =
            State::WebSocket(Box::new(WsHalf::new(Side::Server, stream, limits, deflate)));
        self.server.buf = Vec::new();
        self.abort_body(Side::Client, "connection switched to WebSocket", out);
        let mut client = Box::new(WsHalf::new(Side::Client, stream, limits, deflate));
        let previous = std::mem::replace(&mut self.client.state, State::Ignore);
        let held = std::mem::take(&mut self.client.buf);
        match previous {
            State::Held { lost: true, .. } => {
                // Frame boundaries were lost with the bytes that did not fit.
                client.lose();
                self.client.state = State::WebSocket(client);
            }
            State::Held { ts_ns, lost: false } => {
                self.client.state = State::WebSocket(client);
                self.run(Side::Client, &held, ts_ns, out);
            }
            _ => self.client.state = State::WebSocket(client),
        }
    }

    /// The connection became a tunnel or another protocol: ignore the rest.
    fn stop_decoding(&mut self, out: &mut dyn FnMut(Part<'_>)) {
        self.abort_body(Side::Client, "connection switched protocols", out);
        for half in [&mut self.client, &mut self.server] {
            half.state = State::Ignore;
            half.buf = Vec::new();
        }
        // Connection-level: nothing after this is decoded, on either side.
        out(Part::Error {
            side: None,
            stream: None,
            kind: ErrorKind::Unsupported,
            detail: "connection became a tunnel or switched to a protocol other than WebSocket"
                .into(),
        });
    }

    /// The response to an Upgrade or CONNECT request kept the connection HTTP:
    /// decode the client bytes held meanwhile.
    fn release_held(&mut self, out: &mut dyn FnMut(Part<'_>)) {
        let State::Held { ts_ns, lost } = self.client.state else {
            return;
        };
        let held = std::mem::take(&mut self.client.buf);
        if lost {
            self.client.state = State::Resync {
                at_line_start: false,
            };
            return;
        }
        self.client.state = State::Head;
        self.run(Side::Client, &held, ts_ns, out);
    }

    /// Holds client bytes until the pending upgrade is decided, up to the bound.
    fn step_held(&mut self, data: &[u8], ts_ns: u64, out: &mut dyn FnMut(Part<'_>)) -> usize {
        let max = self.limits.max_header_bytes;
        let half = &mut self.client;
        let State::Held {
            ts_ns: held_ts,
            lost,
        } = &mut half.state
        else {
            return 0;
        };
        *held_ts = ts_ns;
        if *lost {
            return data.len();
        }
        if half.buf.len() + data.len() > max {
            *lost = true;
            half.buf = Vec::new();
            out(Part::Error {
                side: Some(Side::Client),
                stream: None,
                kind: ErrorKind::Limit,
                detail:
                    "client bytes sent before the response to its upgrade request exceed the bound"
                        .into(),
            });
            return data.len();
        }
        half.buf.extend_from_slice(data);
        data.len()
    }

    /// Sets up the body of a message whose head was just read.
    fn start_body(
        &mut self,
        side: Side,
        stream: StreamId,
        report: bool,
        framing: Framing,
        ts_ns: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        if framing == Framing::Length(0) {
            self.end_message(side, stream, report, Vec::new(), ts_ns, out);
        } else {
            self.half(side).state = State::Body(Body {
                stream,
                report,
                framing,
            });
        }
    }

    /// A message ended normally.
    fn end_message(
        &mut self,
        side: Side,
        stream: StreamId,
        report: bool,
        trailers: Vec<Header>,
        ts_ns: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        if report {
            out(Part::End {
                stream,
                side,
                trailers,
                ts_ns,
            });
        }
        let held = side == Side::Client && self.deciding == Some(stream);
        self.half(side).state = if held {
            State::Held { ts_ns, lost: false }
        } else {
            State::Head
        };
    }

    /// Reads body bytes or chunked framing.
    fn step_body(
        &mut self,
        side: Side,
        data: &[u8],
        ts_ns: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) -> usize {
        let (max_bytes, max_count) = (self.limits.max_header_bytes, self.limits.max_header_count);
        let half = self.half(side);
        let State::Body(body) = &mut half.state else {
            return 0;
        };
        let (stream, report) = (body.stream, body.report);
        let step = match &mut body.framing {
            Framing::UntilClose => BodyStep::data(data.len(), false),
            Framing::Length(remaining) => {
                let used = take_up_to(remaining, data.len());
                BodyStep::data(used, *remaining == 0)
            }
            Framing::Chunked(chunk) => {
                step_chunked(chunk, &mut half.buf, data, max_bytes, max_count)
            }
        };
        if report && step.data && step.used > 0 {
            out(Part::Body {
                stream,
                side,
                data: &data[..step.used],
            });
        }
        match step.next {
            Next::Continue => step.used,
            Next::End(trailers) => {
                self.end_message(side, stream, report, trailers, ts_ns, out);
                step.used
            }
            Next::Fail(fault) => self.fail(side, Some((stream, report)), fault, out),
        }
    }

    /// A head could not be read: the message it started is lost.
    fn head_failed(&mut self, side: Side, fault: Fault, out: &mut dyn FnMut(Part<'_>)) {
        let message = self.attribute_lost_head(side, out);
        self.fail(side, message, fault, out);
    }

    /// Reports `fault`, aborts `message` (stream, reported) and resynchronises
    /// `side` from the current position, skipping the current line. Consumes nothing.
    fn fail(
        &mut self,
        side: Side,
        message: Option<(StreamId, bool)>,
        fault: Fault,
        out: &mut dyn FnMut(Part<'_>),
    ) -> usize {
        out(Part::Error {
            side: Some(side),
            stream: None,
            kind: fault.kind,
            detail: fault.detail.into(),
        });
        if let Some((stream, true)) = message {
            out(Part::Abort {
                stream,
                side,
                reason: fault.detail,
            });
        }
        let half = self.half(side);
        half.buf.clear();
        half.state = State::Resync {
            at_line_start: false,
        };
        0
    }

    /// A head was started but cannot be read (lost bytes, malformed). It still
    /// takes its place in the pairing, so later exchanges stay paired: a request
    /// takes an ordinal; a response answers the oldest waiting request.
    fn attribute_lost_head(
        &mut self,
        side: Side,
        out: &mut dyn FnMut(Part<'_>),
    ) -> Option<(StreamId, bool)> {
        match side {
            Side::Client => {
                let stream = self.take_request_ordinal();
                let report = self.pending.len() < self.limits.max_streams;
                if report {
                    self.pending.push_back(Pending {
                        stream,
                        ..Pending::default()
                    });
                }
                Some((stream, report))
            }
            Side::Server => {
                let (stream, request) = self.take_response_ordinal();
                if self.deciding == Some(stream) {
                    // Whether the connection was upgraded is unknown; the client
                    // side goes on as HTTP.
                    self.deciding = None;
                    self.release_held(out);
                }
                Some((stream, request.is_some()))
            }
        }
    }

    /// Aborts the message `side` is in the middle of, if any.
    fn abort_body(&mut self, side: Side, reason: &'static str, out: &mut dyn FnMut(Part<'_>)) {
        if let State::Body(Body {
            stream,
            report: true,
            ..
        }) = self.half(side).state
        {
            out(Part::Abort {
                stream,
                side,
                reason,
            });
        }
    }

    /// Skips to a line that starts a plausible message (see [`could_start`]).
    /// A line that began in an earlier input waits in `buf` while it may qualify.
    fn step_resync(&mut self, side: Side, data: &[u8], mut at_line_start: bool) -> usize {
        let cap = self.limits.max_header_bytes;
        let half = self.half(side);
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            let line_end = memchr(b'\n', rest);
            if !at_line_start {
                let Some(i) = line_end else {
                    break;
                };
                pos += i + 1;
                at_line_start = true;
                continue;
            }
            let line_len = line_end.map_or(rest.len(), |i| i + 1);
            if half.buf.len() + line_len > cap {
                half.buf.clear();
                at_line_start = false;
                continue;
            }
            let Some(i) = line_end else {
                // An unfinished line: keep it while it may start a message.
                if half.buf.is_empty() && !could_start(side, rest) {
                    break;
                }
                half.buf.extend_from_slice(rest);
                half.state = State::Resync {
                    at_line_start: true,
                };
                return data.len();
            };
            let old = half.buf.len();
            let plausible = if old == 0 {
                could_start(side, &rest[..=i])
            } else {
                half.buf.extend_from_slice(&rest[..=i]);
                let plausible = could_start(side, &half.buf);
                half.buf.truncate(old);
                plausible
            };
            if plausible {
                // The head step reads the line again, from `buf` and `data[pos..]`.
                half.state = State::Head;
                return pos;
            }
            half.buf.clear();
            pos += i + 1;
        }
        half.buf.clear();
        half.state = State::Resync {
            at_line_start: false,
        };
        data.len()
    }
}

impl Half {
    fn new(side: Side) -> Self {
        Self {
            side,
            state: State::Head,
            buf: Vec::new(),
        }
    }

    /// Bytes held by this side.
    fn buffered(&self) -> usize {
        let ws = match &self.state {
            State::WebSocket(ws) => ws.buffered(),
            _ => 0,
        };
        self.buf.len() + ws
    }
}

impl WireParser for Http1 {
    fn feed(&mut self, side: Side, data: &[u8], ts_ns: u64, out: &mut dyn FnMut(Part<'_>)) {
        if !self.closed {
            self.run(side, data, ts_ns, out);
        }
    }

    fn gap(&mut self, side: Side, out: &mut dyn FnMut(Part<'_>)) {
        if self.closed {
            return;
        }
        let report_gap = |out: &mut dyn FnMut(Part<'_>)| {
            out(Part::Error {
                side: Some(side),
                stream: None,
                kind: ErrorKind::Gap,
                detail: "bytes were lost; resynchronising".into(),
            });
        };
        let half = self.half(side);
        let message = match &mut half.state {
            State::Ignore => return,
            State::WebSocket(ws) => {
                // Frame boundaries cannot be found again.
                ws.lose();
                report_gap(out);
                return;
            }
            State::Held { lost, .. } => {
                *lost = true;
                half.buf = Vec::new();
                report_gap(out);
                return;
            }
            State::Body(body) => Some((body.stream, body.report)),
            State::Head if half.buf.iter().any(|b| !b.is_ascii_whitespace()) => {
                self.attribute_lost_head(side, out)
            }
            State::Head | State::Resync { .. } => None,
        };
        report_gap(out);
        if let Some((stream, true)) = message {
            out(Part::Abort {
                stream,
                side,
                reason: "bytes were lost",
            });
        }
        let half = self.half(side);
        half.buf.clear();
        // Captures usually lose whole reads, so the next bytes may well start a
        // message: check the first line too.
        half.state = State::Resync {
            at_line_start: true,
        };
    }

    fn close(&mut self, ts_ns: u64, out: &mut dyn FnMut(Part<'_>)) {
        if self.closed {
            return;
        }
        self.closed = true;
        for half in [&mut self.client, &mut self.server] {
            let state = std::mem::replace(&mut half.state, State::Ignore);
            half.buf = Vec::new();
            let State::Body(Body {
                stream,
                report: true,
                framing,
            }) = state
            else {
                continue;
            };
            let side = half.side;
            if framing == Framing::UntilClose {
                out(Part::End {
                    stream,
                    side,
                    trailers: Vec::new(),
                    ts_ns,
                });
            } else {
                out(Part::Abort {
                    stream,
                    side,
                    reason: "connection closed before the message ended",
                });
            }
        }
    }

    fn buffered(&self) -> usize {
        self.client.buffered() + self.server.buffered()
    }
}

/// What one step through a body did.
struct BodyStep {
    /// Input bytes consumed.
    used: usize,
    /// Those bytes are body data (to report).
    data: bool,
    next: Next,
}

/// What follows a body step.
enum Next {
    Continue,
    /// The message ended, with these trailers.
    End(Vec<Header>),
    /// The framing is broken.
    Fail(Fault),
}

impl BodyStep {
    fn data(used: usize, ended: bool) -> Self {
        let next = if ended {
            Next::End(Vec::new())
        } else {
            Next::Continue
        };
        Self {
            used,
            data: true,
            next,
        }
    }

    fn framing(used: usize, next: Next) -> Self {
        Self {
            used,
            data: false,
            next,
        }
    }
}

/// One step through a chunked body (RFC 9112 §7.1).
fn step_chunked(
    chunk: &mut Chunk,
    buf: &mut Vec<u8>,
    data: &[u8],
    max_bytes: usize,
    max_count: usize,
) -> BodyStep {
    match chunk {
        Chunk::Data(remaining) => {
            let used = take_up_to(remaining, data.len());
            if *remaining == 0 {
                *chunk = Chunk::DataCr;
            }
            BodyStep {
                used,
                data: true,
                next: Next::Continue,
            }
        }
        Chunk::DataCr | Chunk::DataLf => {
            match (*chunk, data.first()) {
                (Chunk::DataCr, Some(b'\r')) => *chunk = Chunk::DataLf,
                (_, Some(b'\n')) => *chunk = Chunk::Size,
                _ => {
                    let fault = Fault::malformed("chunk data is not followed by CRLF");
                    return BodyStep::framing(0, Next::Fail(fault));
                }
            }
            BodyStep::framing(1, Next::Continue)
        }
        Chunk::Size => match scan(buf, data, max_bytes, parse_chunk_line) {
            Scan::Complete { used, value } => {
                *chunk = if value == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(value)
                };
                BodyStep::framing(used, Next::Continue)
            }
            Scan::Partial => BodyStep::framing(data.len(), Next::Continue),
            Scan::Invalid(fault) => BodyStep::framing(0, Next::Fail(fault)),
            Scan::TooLong => BodyStep::framing(
                0,
                Next::Fail(Fault::malformed("chunk-size line is too long")),
            ),
        },
        Chunk::Trailers => match scan(buf, data, max_bytes, |b| parse_trailers(b, max_count)) {
            Scan::Complete { used, value } => BodyStep::framing(used, Next::End(value)),
            Scan::Partial => BodyStep::framing(data.len(), Next::Continue),
            Scan::Invalid(fault) => BodyStep::framing(0, Next::Fail(fault)),
            Scan::TooLong => {
                let fault = Fault {
                    kind: ErrorKind::Limit,
                    detail: "trailers do not end within the header size bound",
                };
                BodyStep::framing(0, Next::Fail(fault))
            }
        },
    }
}

/// Takes up to `available` of the `remaining` bytes; returns how many.
fn take_up_to(remaining: &mut u64, available: usize) -> usize {
    let used = usize::try_from(*remaining).map_or(available, |r| r.min(available));
    *remaining -= used as u64;
    used
}

/// Looks for a unit that `parse` recognises at the start of `buf` + `data`,
/// within `limit` bytes, buffering what is unfinished.
///
/// The outcome depends only on the first `limit` bytes of the unit, never on
/// where the input was split: an error in an unfinished last line waits for the
/// line to end, and `buf` is only parsed again once new input brings a line
/// end, so a unit split into many pieces costs a parse per line, not per piece.
fn scan<T>(
    buf: &mut Vec<u8>,
    data: &[u8],
    limit: usize,
    mut parse: impl FnMut(&[u8]) -> Result<Option<(usize, T)>, Fault>,
) -> Scan<T> {
    if buf.is_empty() {
        let window = &data[..data.len().min(limit)];
        return match judge(window, &mut parse) {
            Scan::Partial if window.len() >= limit => Scan::TooLong,
            Scan::Partial => {
                buf.extend_from_slice(window);
                Scan::Partial
            }
            other => other,
        };
    }
    let old = buf.len();
    let new = &data[..data.len().min(limit.saturating_sub(old))];
    buf.extend_from_slice(new);
    if memchr(b'\n', new).is_some() {
        match judge(buf, &mut parse) {
            Scan::Partial => {}
            Scan::Complete { used, value } if used > old => {
                buf.clear();
                return Scan::Complete {
                    used: used - old,
                    value,
                };
            }
            // Cannot happen: `buf` alone was incomplete when it was buffered.
            Scan::Complete { .. } => {
                buf.clear();
                return Scan::Invalid(Fault::malformed("inconsistent buffered head"));
            }
            other => {
                buf.clear();
                return other;
            }
        }
    }
    if buf.len() >= limit {
        buf.clear();
        return Scan::TooLong;
    }
    Scan::Partial
}

/// Runs `parse` on `bytes`; an error only counts if it lies in a finished line.
fn judge<T>(
    bytes: &[u8],
    parse: &mut impl FnMut(&[u8]) -> Result<Option<(usize, T)>, Fault>,
) -> Scan<T> {
    match parse(bytes) {
        Ok(Some((used, value))) => Scan::Complete { used, value },
        Ok(None) => Scan::Partial,
        Err(fault) => match memrchr(b'\n', bytes) {
            Some(i) if i + 1 == bytes.len() => Scan::Invalid(fault),
            Some(i) => match parse(&bytes[..=i]) {
                Err(fault) => Scan::Invalid(fault),
                _ => Scan::Partial,
            },
            None => Scan::Partial,
        },
    }
}

/// Parses a request (client) or response (server) head with `httparse`.
fn parse_head(
    side: Side,
    bytes: &[u8],
    max_headers: usize,
) -> Result<Option<(usize, Head)>, Fault> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
    match side {
        Side::Client => {
            let mut request = httparse::Request::new(&mut slots);
            let httparse::Status::Complete(used) = request.parse(bytes).map_err(fault_of)? else {
                return Ok(None);
            };
            let start = Start::Request {
                method: request.method.unwrap_or_default().to_owned(),
                target: request.path.unwrap_or_default().to_owned(),
                authority: None,
                scheme: None,
            };
            Ok(Some((
                used,
                head_of(start, request.version, request.headers),
            )))
        }
        Side::Server => {
            let mut response = httparse::Response::new(&mut slots);
            let httparse::Status::Complete(used) = response.parse(bytes).map_err(fault_of)? else {
                return Ok(None);
            };
            let start = Start::Response {
                status: response.code.unwrap_or_default(),
            };
            Ok(Some((
                used,
                head_of(start, response.version, response.headers),
            )))
        }
    }
}

fn head_of(start: Start, minor: Option<u8>, headers: &[httparse::Header<'_>]) -> Head {
    Head {
        start,
        version: if minor == Some(0) {
            Version::Http10
        } else {
            Version::Http11
        },
        headers: headers_of(headers),
    }
}

fn headers_of(headers: &[httparse::Header<'_>]) -> Vec<Header> {
    headers
        .iter()
        .map(|h| Header::new(h.name, h.value))
        .collect()
}

fn fault_of(error: httparse::Error) -> Fault {
    match error {
        httparse::Error::TooManyHeaders => Fault {
            kind: ErrorKind::Limit,
            detail: "too many header fields",
        },
        httparse::Error::HeaderName => Fault::malformed("invalid header name"),
        httparse::Error::HeaderValue => Fault::malformed("invalid header value"),
        httparse::Error::NewLine => Fault::malformed("invalid line ending"),
        httparse::Error::Status => Fault::malformed("invalid response status"),
        httparse::Error::Token => Fault::malformed("invalid method or token"),
        httparse::Error::Version => Fault::malformed("invalid HTTP version"),
    }
}

/// Parses a chunk-size line (RFC 9112 §7.1) with `httparse`.
fn parse_chunk_line(bytes: &[u8]) -> Result<Option<(usize, u64)>, Fault> {
    // httparse reads an empty size as 0; a size needs at least one digit.
    if !bytes.first().is_some_and(u8::is_ascii_hexdigit) {
        return Err(Fault::malformed("chunk size is not hex"));
    }
    match httparse::parse_chunk_size(bytes) {
        Ok(httparse::Status::Complete(found)) => Ok(Some(found)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(Fault::malformed("invalid chunk-size line")),
    }
}

/// Parses the trailer section after the last chunk (RFC 9112 §7.1.2).
fn parse_trailers(bytes: &[u8], max_headers: usize) -> Result<Option<(usize, Vec<Header>)>, Fault> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
    match httparse::parse_headers(bytes, &mut slots).map_err(fault_of)? {
        httparse::Status::Complete((used, headers)) => Ok(Some((used, headers_of(headers)))),
        httparse::Status::Partial => Ok(None),
    }
}

/// Whether `line` (a whole line, or the start of one) may start a message of
/// `side`: a request line on the client side, a status line on the server side.
fn could_start(side: Side, line: &[u8]) -> bool {
    if matches!(line.first(), None | Some(b'\r' | b'\n')) {
        return false;
    }
    // With no header slots, a valid start line parses as incomplete.
    let parsed = match side {
        Side::Client => httparse::Request::new(&mut []).parse(line),
        Side::Server => httparse::Response::new(&mut []).parse(line),
    };
    matches!(parsed, Ok(httparse::Status::Partial))
}

/// The protocol a request asks to upgrade to (`Upgrade` header), if any.
fn upgrade_of(head: &Head) -> Option<Upgrade> {
    let mut values = head.values("upgrade").peekable();
    values.peek()?;
    let websocket = values.flat_map(list_items).any(|item| {
        let name = item.split(|&b| b == b'/').next().unwrap_or_default();
        name.eq_ignore_ascii_case(b"websocket")
    });
    Some(if websocket {
        Upgrade::WebSocket
    } else {
        Upgrade::Other
    })
}

/// Items of a comma-separated field value, trimmed, empty ones skipped.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty())
}

/// `Some(true)` if `Transfer-Encoding` ends in chunked, `Some(false)` if it is
/// present otherwise, `None` without it.
fn transfer_chunked(head: &Head) -> Option<bool> {
    let mut values = head.values("transfer-encoding").peekable();
    values.peek()?;
    let last = values.flat_map(list_items).last();
    Some(last.is_some_and(|coding| {
        let name = coding.split(|&b| b == b';').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(b"chunked")
    }))
}

/// The `Content-Length`, if any. Repeated identical values are accepted;
/// differing or non-numeric ones are malformed (RFC 9112 §6.3, RFC 9110 §8.6).
fn content_length(head: &Head) -> Result<Option<u64>, Fault> {
    let mut length = None;
    for item in head
        .values("content-length")
        .flat_map(|v| v.split(|&b| b == b','))
    {
        let item = item.trim_ascii();
        if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
            return Err(Fault::malformed("content-length is not a number"));
        }
        let value = std::str::from_utf8(item)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Fault::malformed("content-length is too large"))?;
        if length.is_some_and(|l| l != value) {
            return Err(Fault::malformed("conflicting content-length values"));
        }
        length = Some(value);
    }
    Ok(length)
}

/// How a request body is delimited: chunked, by length, or absent.
fn request_framing(head: &Head) -> Result<Framing, Fault> {
    match transfer_chunked(head) {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 item 3).
        Some(true) => Ok(Framing::Chunked(Chunk::Size)),
        Some(false) => Err(Fault::malformed(
            "request transfer-encoding does not end in chunked",
        )),
        None => Ok(Framing::Length(content_length(head)?.unwrap_or(0))),
    }
}

/// How a response body is delimited (RFC 9112 §6.3).
fn response_framing(head: &Head, status: u16, method: Method) -> Result<Framing, Fault> {
    if method == Method::Head || status < 200 || status == 204 || status == 304 {
        return Ok(Framing::Length(0));
    }
    match transfer_chunked(head) {
        Some(true) => Ok(Framing::Chunked(Chunk::Size)),
        Some(false) => Ok(Framing::UntilClose),
        None => Ok(content_length(head)?.map_or(Framing::UntilClose, Framing::Length)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An owned [`Part`], with consecutive body pieces of a message joined.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Head(StreamId, Side, Head),
        Body(StreamId, Side, Vec<u8>),
        End(StreamId, Side, Vec<Header>),
        Abort(StreamId, Side),
        Ws(StreamId, Side, u8, Vec<u8>, bool),
        Error(Option<Side>, ErrorKind),
    }

    fn record(events: &mut Vec<Ev>, part: Part<'_>) {
        let ev = match part {
            Part::Head {
                stream, side, head, ..
            } => Ev::Head(stream, side, head),
            Part::Body { stream, side, data } => {
                assert!(!data.is_empty(), "empty body part");
                if let Some(Ev::Body(s, d, bytes)) = events.last_mut()
                    && *s == stream
                    && *d == side
                {
                    bytes.extend_from_slice(data);
                    return;
                }
                Ev::Body(stream, side, data.to_vec())
            }
            Part::End {
                stream,
                side,
                trailers,
                ..
            } => Ev::End(stream, side, trailers),
            Part::Abort { stream, side, .. } => Ev::Abort(stream, side),
            Part::WebSocket {
                stream,
                side,
                opcode,
                payload,
                truncated,
                ..
            } => Ev::Ws(stream, side, opcode, payload.to_vec(), truncated),
            Part::Error {
                side, kind, detail, ..
            } => {
                assert!(!detail.is_empty());
                Ev::Error(side, kind)
            }
        };
        events.push(ev);
    }

    struct Conn {
        parser: Http1,
        events: Vec<Ev>,
    }

    impl Conn {
        fn new() -> Self {
            Self::with(WireLimits::default())
        }

        fn with(limits: WireLimits) -> Self {
            Self {
                parser: Http1::new(limits),
                events: Vec::new(),
            }
        }

        fn feed(&mut self, side: Side, data: &[u8]) -> &mut Self {
            let events = &mut self.events;
            self.parser.feed(side, data, 7, &mut |p| record(events, p));
            self
        }

        fn client(&mut self, data: &[u8]) -> &mut Self {
            self.feed(Side::Client, data)
        }

        fn server(&mut self, data: &[u8]) -> &mut Self {
            self.feed(Side::Server, data)
        }

        fn gap(&mut self, side: Side) -> &mut Self {
            let events = &mut self.events;
            self.parser.gap(side, &mut |p| record(events, p));
            self
        }

        fn close(&mut self) -> &mut Self {
            let events = &mut self.events;
            self.parser.close(9, &mut |p| record(events, p));
            self
        }

        fn take(&mut self) -> Vec<Ev> {
            std::mem::take(&mut self.events)
        }
    }

    const C: Side = Side::Client;
    const S: Side = Side::Server;

    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Head {
        Head {
            start: Start::Request {
                method: method.into(),
                target: target.into(),
                authority: None,
                scheme: None,
            },
            version: Version::Http11,
            headers: headers
                .iter()
                .map(|(n, v)| Header::new(n, v.as_bytes()))
                .collect(),
        }
    }

    fn response(status: u16, headers: &[(&str, &str)]) -> Head {
        Head {
            start: Start::Response { status },
            version: Version::Http11,
            headers: headers
                .iter()
                .map(|(n, v)| Header::new(n, v.as_bytes()))
                .collect(),
        }
    }

    fn heads(events: &[Ev]) -> Vec<(StreamId, Side)> {
        events
            .iter()
            .filter_map(|e| match e {
                Ev::Head(s, d, _) => Some((*s, *d)),
                _ => None,
            })
            .collect()
    }

    fn errors(events: &[Ev]) -> Vec<ErrorKind> {
        events
            .iter()
            .filter_map(|e| match e {
                Ev::Error(_, k) => Some(*k),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn request_and_response_with_content_length() {
        let mut conn = Conn::new();
        conn.client(b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: api.example\r\nContent-Length: 5\r\n\r\nhello");
        conn.server(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok");
        let head = request(
            "POST",
            "/v1/messages?beta=true",
            &[("host", "api.example"), ("content-length", "5")],
        );
        assert_eq!(
            conn.take(),
            vec![
                Ev::Head(1, C, head),
                Ev::Body(1, C, b"hello".to_vec()),
                Ev::End(1, C, vec![]),
                Ev::Head(
                    1,
                    S,
                    response(
                        200,
                        &[("content-type", "text/plain"), ("content-length", "2")]
                    )
                ),
                Ev::Body(1, S, b"ok".to_vec()),
                Ev::End(1, S, vec![]),
            ]
        );
        assert_eq!(conn.parser.buffered(), 0);
    }

    #[test]
    fn timestamps_come_from_the_completing_bytes() {
        let mut parser = Http1::new(WireLimits::default());
        let mut seen = Vec::new();
        let mut out = |p: Part<'_>| match p {
            Part::Head { ts_ns, .. } => seen.push(("head", ts_ns)),
            Part::End { ts_ns, .. } => seen.push(("end", ts_ns)),
            _ => {}
        };
        parser.feed(C, b"POST / HTTP/1.1\r\nContent-Le", 1, &mut out);
        parser.feed(C, b"ngth: 2\r\n\r\na", 2, &mut out);
        parser.feed(C, b"b", 3, &mut out);
        assert_eq!(seen, vec![("head", 2), ("end", 3)]);
    }

    #[test]
    fn pipelined_requests_pair_with_responses_in_order() {
        let mut conn = Conn::new();
        conn.client(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nHEAD /c HTTP/1.1\r\n\r\n");
        conn.server(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nB");
        conn.server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
        let events = conn.take();
        assert_eq!(
            heads(&events),
            vec![(1, C), (2, C), (3, C), (1, S), (2, S), (3, S)]
        );
        assert!(events.contains(&Ev::Body(2, S, b"B".to_vec())));
        // The HEAD response has no body despite its Content-Length.
        assert_eq!(events.last(), Some(&Ev::End(3, S, vec![])));
        assert!(errors(&events).is_empty());
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let mut conn = Conn::new();
        conn.client(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;name=val\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 9\r\nX-Other: y\r\n\r\n");
        conn.server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n");
        let events = conn.take();
        assert_eq!(events[1], Ev::Body(1, C, b"abcde".to_vec()));
        assert_eq!(
            events[2],
            Ev::End(
                1,
                C,
                vec![Header::new("X-Sum", "9"), Header::new("x-other", "y")]
            )
        );
        assert_eq!(events[4], Ev::Body(1, S, b"0123456789".to_vec()));
        assert_eq!(events[5], Ev::End(1, S, vec![]));
    }

    #[test]
    fn chunked_split_byte_by_byte_matches_one_feed() {
        let wire: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1a;x=\"q\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: 1\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
        let mut whole = Conn::new();
        whole.client(wire);
        let mut split = Conn::new();
        for b in wire {
            split.client(std::slice::from_ref(b));
        }
        assert_eq!(whole.take(), split.take());
    }

    #[test]
    fn bodyless_requests_and_read_until_close_responses() {
        let mut conn = Conn::new();
        conn.client(b"GET / HTTP/1.0\r\n\r\n");
        conn.server(b"HTTP/1.0 200 OK\r\n\r\npart one, ");
        conn.server(b"part two");
        let events = conn.take();
        assert!(matches!(&events[0], Ev::Head(1, C, h) if h.version == Version::Http10));
        assert_eq!(events[1], Ev::End(1, C, vec![]));
        assert!(matches!(&events[2], Ev::Head(1, S, h) if h.version == Version::Http10));
        assert_eq!(events[3], Ev::Body(1, S, b"part one, part two".to_vec()));
        assert_eq!(events.len(), 4);
        conn.close();
        assert_eq!(conn.take(), vec![Ev::End(1, S, vec![])]);
        // Nothing is decoded after the close.
        conn.client(b"GET / HTTP/1.1\r\n\r\n").close();
        assert!(conn.take().is_empty());
    }

    #[test]
    fn statuses_without_bodies() {
        for status in ["204 No Content", "304 Not Modified"] {
            let mut conn = Conn::new();
            conn.client(b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n");
            conn.server(format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n").as_bytes());
            conn.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            let events = conn.take();
            assert_eq!(
                heads(&events),
                vec![(1, C), (2, C), (1, S), (2, S)],
                "{status}"
            );
            assert!(!events.iter().any(|e| matches!(e, Ev::Body(..))));
        }
    }

    #[test]
    fn interim_responses_are_skipped() {
        let mut conn = Conn::new();
        conn.client(b"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        conn.server(b"HTTP/1.1 100 Continue\r\n\r\n");
        conn.client(b"abc");
        conn.server(
            b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n",
        );
        conn.server(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
        let events = conn.take();
        assert_eq!(heads(&events), vec![(1, C), (1, S)]);
        assert!(
            matches!(&events[3], Ev::Head(1, S, h) if h.start == Start::Response { status: 201 })
        );
    }

    #[test]
    fn leading_empty_lines_are_ignored() {
        let mut conn = Conn::new();
        conn.client(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(heads(&conn.take()), vec![(1, C)]);
    }

    #[test]
    fn content_length_rules() {
        let cases: [(&str, bool); 6] = [
            ("Content-Length: 2\r\nContent-Length: 2", true),
            ("Content-Length: 2, 2", true),
            ("Content-Length: 2\r\nContent-Length: 3", false),
            ("Content-Length: 2, 3", false),
            ("Content-Length: -2", false),
            ("Content-Length: 99999999999999999999999", false),
        ];
        for (field, valid) in cases {
            let mut conn = Conn::new();
            conn.client(format!("POST / HTTP/1.1\r\n{field}\r\n\r\nokGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n").as_bytes());
            let events = conn.take();
            if valid {
                assert!(events.contains(&Ev::Body(1, C, b"ok".to_vec())), "{field}");
                assert_eq!(heads(&events), vec![(1, C), (2, C), (3, C)], "{field}");
                assert!(events.iter().any(
                    |e| matches!(e, Ev::Head(2, C, h) if h.start == request("GET", "/2", &[]).start)
                ));
            } else {
                assert_eq!(
                    events[1..3],
                    [Ev::Error(Some(C), ErrorKind::Malformed), Ev::Abort(1, C)],
                    "{field}"
                );
                // Resynchronised at the next line that is a request line (the
                // body bytes make `okGET` look like a method: that is all a
                // resync can tell).
                assert_eq!(heads(&events), vec![(1, C), (2, C), (3, C)], "{field}");
            }
        }
    }

    #[test]
    fn huge_content_length_streams_without_allocating() {
        let mut conn = Conn::new();
        conn.client(b"POST / HTTP/1.1\r\nContent-Length: 1000000000000000000\r\n\r\n");
        let chunk = vec![b'x'; 1 << 16];
        for _ in 0..4 {
            conn.client(&chunk);
        }
        assert_eq!(conn.parser.buffered(), 0);
        let events = conn.take();
        assert!(matches!(&events[1], Ev::Body(1, C, b) if b.len() == 4 << 16));
        conn.close();
        assert_eq!(conn.take(), vec![Ev::Abort(1, C)]);
    }

    #[test]
    fn transfer_encoding_without_final_chunked() {
        let mut conn = Conn::new();
        conn.client(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(errors(&conn.take()), vec![ErrorKind::Malformed]);
        let mut conn = Conn::new();
        conn.client(b"GET / HTTP/1.1\r\n\r\n");
        conn.server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 1\r\n\r\nabc");
        conn.close();
        let events = conn.take();
        assert!(events.contains(&Ev::Body(1, S, b"abc".to_vec())));
        assert_eq!(events.last(), Some(&Ev::End(1, S, vec![])));
    }

    #[test]
    fn header_limits() {
        let limits = WireLimits {
            max_header_count: 2,
            max_header_bytes: 64,
            ..WireLimits::default()
        };
        let mut conn = Conn::with(limits);
        conn.client(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\nGET /ok HTTP/1.1\r\n\r\n");
        let events = conn.take();
        assert_eq!(errors(&events), vec![ErrorKind::Limit]);
        // The lost head keeps its ordinal.
        assert_eq!(heads(&events), vec![(2, C)]);

        let mut conn = Conn::with(limits);
        let long = format!(
            "GET /{} HTTP/1.1\r\n\r\nGET /ok HTTP/1.1\r\n\r\n",
            "a".repeat(100)
        );
        conn.client(&long.as_bytes()[..30]);
        conn.client(&long.as_bytes()[30..]);
        let events = conn.take();
        assert_eq!(errors(&events), vec![ErrorKind::Limit]);
        assert_eq!(heads(&events), vec![(2, C)]);

        let mut conn = Conn::with(limits);
        conn.client(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
        assert_eq!(errors(&conn.take()), vec![ErrorKind::Limit]);
    }

    #[test]
    fn malformed_head_resynchronises() {
        let mut conn = Conn::new();
        conn.client(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
        let events = conn.take();
        assert_eq!(events[0], Ev::Error(Some(C), ErrorKind::Malformed));
        assert_eq!(heads(&events), vec![(2, C)]);
        let mut conn = Conn::new();
        conn.server(b"HTTP/1.1 2x0 OK\r\n\r\n");
        assert_eq!(errors(&conn.take()), vec![ErrorKind::Malformed]);
    }

    #[test]
    fn error_details_never_carry_payload() {
        let mut parser = Http1::new(WireLimits::default());
        let mut details = Vec::new();
        let mut out = |p: Part<'_>| {
            if let Part::Error { detail, .. } = p {
                details.push(detail);
            }
        };
        parser.feed(
            C,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nSECRET\r\n",
            1,
            &mut out,
        );
        parser.feed(S, b"SECRET2 200\r\n\r\n", 1, &mut out);
        assert_eq!(details.len(), 2);
        assert!(details.iter().all(|d| !d.contains("SECRET")));
        assert!(details[0].contains("chunk size is not hex"));
    }

    #[test]
    fn chunk_data_must_end_with_crlf() {
        let mut conn = Conn::new();
        conn.client(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n");
        let events = conn.take();
        assert_eq!(
            events[2..],
            [Ev::Error(Some(C), ErrorKind::Malformed), Ev::Abort(1, C)]
        );
    }

    #[test]
    fn gap_in_request_body_aborts_and_resynchronises() {
        let mut conn = Conn::new();
        conn.client(b"POST /a HTTP/1.1\r\nContent-Length: 100\r\n\r\nsome");
        conn.gap(C);
        conn.client(b"body text\r\nnot GET a request\r\nGET /b HTTP/1.1\r\n\r\n");
        let events = conn.take();
        assert_eq!(
            events[2..],
            [
                Ev::Error(Some(C), ErrorKind::Gap),
                Ev::Abort(1, C),
                Ev::Head(2, C, request("GET", "/b", &[])),
                Ev::End(2, C, vec![]),
            ]
        );
    }

    #[test]
    fn gap_resync_keeps_a_partial_candidate_line() {
        let mut conn = Conn::new();
        conn.gap(C);
        conn.client(b"tail of something\r\nGET /b HT");
        conn.client(b"TP/1.1\r\n\r\n");
        assert_eq!(heads(&conn.take()), vec![(1, C)]);
    }

    #[test]
    fn gap_on_server_side_keeps_later_pairs() {
        let mut conn = Conn::new();
        conn.client(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n");
        conn.server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab");
        conn.gap(S);
        conn.server(b"HTTP/1.1 201 OK\r\nContent-Length: 0\r\n\r\n");
        // A gap inside a head: that response still answers the next request.
        conn.server(b"HTTP/1.1 202 Acc");
        conn.gap(S);
        conn.server(b"HTTP/1.1 203 OK\r\nContent-Length: 0\r\n\r\n");
        let events = conn.take();
        let server: Vec<_> = events
            .into_iter()
            .filter(|e| !matches!(e, Ev::Head(_, C, _) | Ev::End(_, C, _)))
            .collect();
        assert_eq!(
            server,
            vec![
                Ev::Head(1, S, response(200, &[("content-length", "10")])),
                Ev::Body(1, S, b"ab".to_vec()),
                Ev::Error(Some(S), ErrorKind::Gap),
                Ev::Abort(1, S),
                Ev::Head(2, S, response(201, &[("content-length", "0")])),
                Ev::End(2, S, vec![]),
                Ev::Error(Some(S), ErrorKind::Gap),
                Ev::Abort(3, S),
                // No request is left: an orphan response gets an ordinal of its own.
                Ev::Head(4, S, response(203, &[("content-length", "0")])),
                Ev::End(4, S, vec![]),
            ]
        );
    }

    #[test]
    fn orphan_response_gets_the_next_ordinal() {
        let mut conn = Conn::new();
        conn.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        conn.client(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(heads(&conn.take()), vec![(1, S), (2, C)]);
    }

    #[test]
    fn pipelining_bound_pauses_reporting() {
        let limits = WireLimits {
            max_streams: 2,
            ..WireLimits::default()
        };
        let mut conn = Conn::with(limits);
        conn.client(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 1\r\n\r\nxGET /4 HTTP/1.1\r\n\r\n");
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz";
        conn.server(ok).server(ok).server(ok).server(ok);
        conn.client(b"GET /5 HTTP/1.1\r\n\r\n").server(ok);
        let events = conn.take();
        assert_eq!(errors(&events), vec![ErrorKind::Limit]);
        assert_eq!(
            heads(&events),
            vec![(1, C), (2, C), (1, S), (2, S), (5, C), (5, S)]
        );
    }

    #[test]
    fn connect_tunnel_is_not_decoded() {
        let mut conn = Conn::new();
        conn.client(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01",
        );
        conn.server(b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03");
        conn.client(b"GET / HTTP/1.1\r\n\r\n");
        let events = conn.take();
        assert_eq!(heads(&events), vec![(1, C), (1, S)]);
        assert_eq!(events[3], Ev::End(1, S, vec![]));
        assert_eq!(events[4], Ev::Error(None, ErrorKind::Unsupported));
        assert_eq!(events.len(), 5);
        assert_eq!(conn.parser.buffered(), 0);
    }

    #[test]
    fn refused_connect_releases_held_requests() {
        let mut conn = Conn::new();
        conn.client(b"CONNECT example.com:443 HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
        assert_eq!(conn.parser.buffered(), b"GET /after HTTP/1.1\r\n\r\n".len());
        conn.server(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n");
        let events = conn.take();
        assert_eq!(heads(&events), vec![(1, C), (1, S), (2, C)]);
    }

    fn ws_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut frame = vec![
            0x80 | opcode,
            payload.len() as u8 | if mask.is_some() { 0x80 } else { 0 },
        ];
        if let Some(key) = mask {
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        frame
    }

    const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    const SWITCHED: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

    #[test]
    fn websocket_upgrade_decodes_frames_both_ways() {
        let mut conn = Conn::new();
        let mut client = UPGRADE.to_vec();
        // The client's first frame arrives before the 101 is seen: held.
        client.extend(ws_frame(1, b"hi", Some([1, 2, 3, 4])));
        conn.client(&client);
        let mut server = SWITCHED.to_vec();
        server.extend(ws_frame(1, b"hello", None));
        conn.server(&server);
        conn.client(&ws_frame(8, b"\x03\xe8", Some([9, 9, 9, 9])));
        let events = conn.take();
        assert_eq!(heads(&events), vec![(1, C), (1, S)]);
        assert_eq!(
            events[3..],
            [
                Ev::End(1, S, vec![]),
                Ev::Ws(1, C, 1, b"hi".to_vec(), false),
                Ev::Ws(1, S, 1, b"hello".to_vec(), false),
                Ev::Ws(1, C, 8, b"\x03\xe8".to_vec(), false),
            ]
        );
        // A gap makes that direction undecodable; the other goes on.
        conn.gap(C);
        conn.client(&ws_frame(1, b"lost", Some([1, 1, 1, 1])));
        conn.server(&ws_frame(2, b"\x00", None));
        assert_eq!(
            conn.take(),
            vec![
                Ev::Error(Some(C), ErrorKind::Gap),
                Ev::Ws(1, S, 2, vec![0], false)
            ]
        );
    }

    #[test]
    fn websocket_permessage_deflate_is_negotiated() {
        use flate2::{Compress, Compression, FlushCompress};
        let mut compress = Compress::new(Compression::default(), false);
        let mut deflated = vec![0u8; 256];
        compress
            .compress(b"compressed hello", &mut deflated, FlushCompress::Sync)
            .expect("deflate");
        deflated.truncate(compress.total_out() as usize - 4);
        let mut frame = ws_frame(1, &deflated, None);
        frame[0] |= 0x40;
        let mut conn = Conn::new();
        conn.client(UPGRADE);
        conn.server(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n");
        conn.server(&frame);
        assert_eq!(
            conn.take().last(),
            Some(&Ev::Ws(1, S, 1, b"compressed hello".to_vec(), false))
        );
    }

    #[test]
    fn refused_upgrade_continues_as_http() {
        let mut conn = Conn::new();
        conn.client(UPGRADE).client(b"GET /next HTTP/1.1\r\n\r\n");
        conn.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let events = conn.take();
        assert_eq!(heads(&events), vec![(1, C), (1, S), (2, C), (2, S)]);
        assert!(errors(&events).is_empty());
    }

    #[test]
    fn other_upgrades_are_unsupported() {
        let mut conn = Conn::new();
        conn.client(
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n",
        );
        conn.server(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n\x00\x00\x12\x04");
        let events = conn.take();
        assert_eq!(
            events.last(),
            Some(&Ev::Error(None, ErrorKind::Unsupported))
        );
    }

    #[test]
    fn held_bytes_are_bounded() {
        let limits = WireLimits {
            max_header_bytes: 128,
            ..WireLimits::default()
        };
        let mut conn = Conn::with(limits);
        conn.client(UPGRADE);
        conn.client(&[0x81; 200]);
        assert_eq!(conn.parser.buffered(), 0);
        let events = conn.take();
        assert_eq!(events.last(), Some(&Ev::Error(Some(C), ErrorKind::Limit)));
        conn.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        conn.client(b"more\r\nGET /x HTTP/1.1\r\n\r\n");
        assert_eq!(heads(&conn.take()), vec![(1, S), (2, C)]);
    }

    #[test]
    fn transfer_encoding_overrides_content_length() {
        let mut conn = Conn::new();
        conn.client(b"POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n");
        let events = conn.take();
        assert_eq!(
            events[1..],
            [Ev::Body(1, C, b"x".to_vec()), Ev::End(1, C, vec![])]
        );
    }

    #[test]
    fn gap_while_holding_makes_the_client_websocket_undecodable() {
        let mut conn = Conn::new();
        conn.client(UPGRADE)
            .client(&ws_frame(1, b"a", Some([1, 2, 3, 4])));
        conn.gap(C);
        conn.server(SWITCHED).server(&ws_frame(1, b"s", None));
        conn.client(&ws_frame(1, b"b", Some([1, 2, 3, 4])));
        let events = conn.take();
        assert_eq!(events[2], Ev::Error(Some(C), ErrorKind::Gap));
        assert_eq!(
            events[5..],
            [Ev::Ws(1, S, 1, b"s".to_vec(), false)],
            "client frames after the gap are not decoded"
        );
    }

    #[test]
    fn websocket_split_byte_by_byte_matches_one_feed() {
        let mut client = UPGRADE.to_vec();
        client.extend(ws_frame(1, b"early", Some([1, 2, 3, 4])));
        let mut server = SWITCHED.to_vec();
        server.extend(ws_frame(2, b"data", None));
        let mut whole = Conn::new();
        whole.client(&client).server(&server);
        let mut split = Conn::new();
        for b in &client {
            split.client(std::slice::from_ref(b));
        }
        for b in &server {
            split.server(std::slice::from_ref(b));
        }
        assert_eq!(whole.take(), split.take());
    }

    #[test]
    fn close_aborts_unfinished_messages() {
        let mut conn = Conn::new();
        conn.client(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab");
        conn.server(b"HTTP/1.1 200 OK\r\nContent-Le");
        assert_eq!(
            conn.parser.buffered(),
            b"HTTP/1.1 200 OK\r\nContent-Le".len()
        );
        conn.take();
        conn.close();
        assert_eq!(conn.take(), vec![Ev::Abort(1, C)]);
        assert_eq!(conn.parser.buffered(), 0);
    }

    /// One exchange of the generated conversations.
    #[derive(Debug, Clone)]
    enum Exchange {
        Length(Vec<u8>, Vec<u8>),
        Chunked(Vec<Vec<u8>>, Vec<Vec<u8>>),
        Continue(Vec<u8>, Vec<u8>),
        HeadRequest(Vec<u8>),
    }

    fn chunked(chunks: &[Vec<u8>], trailer: &str) -> Vec<u8> {
        let mut wire = Vec::new();
        for (i, chunk) in chunks.iter().filter(|c| !c.is_empty()).enumerate() {
            wire.extend(format!("{:x};n={i}\r\n", chunk.len()).bytes());
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend(format!("0\r\n{trailer}\r\n").bytes());
        wire
    }

    fn with_length(start: &str, extra: &str, body: &[u8]) -> Vec<u8> {
        let mut wire =
            format!("{start}\r\n{extra}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        wire.extend_from_slice(body);
        wire
    }

    /// Client and server bytes of a conversation.
    fn wire_of(exchanges: &[Exchange]) -> (Vec<u8>, Vec<u8>) {
        let (mut client, mut server) = (Vec::new(), Vec::new());
        for (i, exchange) in exchanges.iter().enumerate() {
            match exchange {
                Exchange::Length(req, resp) => {
                    client.extend(with_length(
                        &format!("POST /{i} HTTP/1.1"),
                        "Host: h\r\n",
                        req,
                    ));
                    server.extend(with_length("HTTP/1.1 200 OK", "", resp));
                }
                Exchange::Chunked(req, resp) => {
                    client.extend(
                        format!("POST /{i} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").bytes(),
                    );
                    client.extend(chunked(req, "X-T: 1\r\n"));
                    server.extend(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                    server.extend(chunked(resp, ""));
                }
                Exchange::Continue(req, resp) => {
                    client.extend(with_length(
                        &format!("PUT /{i} HTTP/1.1"),
                        "Expect: 100-continue\r\n",
                        req,
                    ));
                    server.extend(b"HTTP/1.1 100 Continue\r\n\r\n");
                    server.extend(with_length("HTTP/1.0 201 Created", "", resp));
                }
                Exchange::HeadRequest(resp) => {
                    client.extend(format!("HEAD /{i} HTTP/1.1\r\n\r\n").bytes());
                    server.extend(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", resp.len())
                            .bytes(),
                    );
                }
            }
        }
        (client, server)
    }

    fn exchange() -> impl Strategy<Value = Exchange> {
        let body = || proptest::collection::vec(any::<u8>(), 0..40);
        let chunks =
            || proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..4);
        prop_oneof![
            (body(), body()).prop_map(|(a, b)| Exchange::Length(a, b)),
            (chunks(), chunks()).prop_map(|(a, b)| Exchange::Chunked(a, b)),
            (body(), body()).prop_map(|(a, b)| Exchange::Continue(a, b)),
            body().prop_map(Exchange::HeadRequest),
        ]
    }

    fn pieces<'a>(data: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
        at.sort_unstable();
        let mut out = Vec::new();
        let mut start = 0;
        for cut in at.into_iter().chain([data.len()]) {
            out.push(&data[start..cut]);
            start = cut;
        }
        out
    }

    /// Body bytes per (stream, side), in order.
    fn bodies(events: &[Ev]) -> Vec<(StreamId, Side, Vec<u8>)> {
        let mut out: Vec<(StreamId, Side, Vec<u8>)> = Vec::new();
        for event in events {
            if let Ev::Body(stream, side, data) = event {
                match out.last_mut() {
                    Some((s, d, bytes)) if s == stream && d == side => {
                        bytes.extend_from_slice(data)
                    }
                    _ => out.push((*stream, *side, data.clone())),
                }
            }
        }
        out
    }

    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        let words: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1\r\n",
            b"Upgrade: websocket\r\n",
            b"Content-Length: 5\r\n",
            b"Content-Length: 1000000000000\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"\r\n",
            b"5\r\nhello\r\n",
            b"0\r\n",
            b"\x81\x85abcd",
            b"\xc1\x7f\xff\xff\xff\xff\xff\xff\xff\xff",
        ];
        prop_oneof![
            proptest::sample::select(words).prop_map(<[u8]>::to_vec),
            proptest::collection::vec(any::<u8>(), 0..24),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn splits_do_not_change_the_parts(
            exchanges in proptest::collection::vec(exchange(), 1..6),
            client_cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
            server_cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let (client, server) = wire_of(&exchanges);
            let mut whole = Conn::new();
            whole.client(&client).server(&server).close();
            let whole = whole.take();
            let mut split = Conn::new();
            for piece in pieces(&client, &client_cuts) {
                split.client(piece);
            }
            for piece in pieces(&server, &server_cuts) {
                split.server(piece);
            }
            split.close();
            let split = split.take();
            prop_assert_eq!(&whole, &split);
            prop_assert!(errors(&whole).is_empty());
            let n = exchanges.len() as u64;
            let expected: Vec<_> = (1..=n).map(|s| (s, C)).chain((1..=n).map(|s| (s, S))).collect();
            prop_assert_eq!(heads(&whole), expected);
            let ends = whole.iter().filter(|e| matches!(e, Ev::End(..))).count();
            prop_assert_eq!(ends as u64, 2 * n);
            for (i, exchange) in exchanges.iter().enumerate() {
                let stream = i as u64 + 1;
                let (req, resp): (Vec<u8>, Vec<u8>) = match exchange {
                    Exchange::Length(a, b) | Exchange::Continue(a, b) => (a.clone(), b.clone()),
                    Exchange::Chunked(a, b) => (a.concat(), b.concat()),
                    Exchange::HeadRequest(_) => (Vec::new(), Vec::new()),
                };
                let of = |side| bodies(&whole).into_iter().find(|(s, d, _)| *s == stream && *d == side).map(|b| b.2).unwrap_or_default();
                prop_assert_eq!(of(C), req);
                prop_assert_eq!(of(S), resp);
            }
        }

        #[test]
        fn arbitrary_input_stays_bounded(
            ops in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec(fragment(), 0..8), 0u8..16),
                0..24,
            ),
        ) {
            let limits = WireLimits {
                max_header_count: 4,
                max_header_bytes: 96,
                max_streams: 3,
                max_frame_bytes: 64,
                max_ws_message_bytes: 48,
            };
            let bound = 2 * limits.max_header_bytes + 2 * (limits.max_ws_message_bytes + 14 + 125);
            let mut parser = Http1::new(limits);
            let mut sink = |_: Part<'_>| {};
            for (client, fragments, action) in ops {
                let side = if client { C } else { S };
                match action {
                    0 => parser.gap(side, &mut sink),
                    1 => parser.close(1, &mut sink),
                    _ => parser.feed(side, &fragments.concat(), 1, &mut sink),
                }
                prop_assert!(parser.buffered() <= bound, "buffered {}", parser.buffered());
            }
            parser.close(2, &mut sink);
            prop_assert_eq!(parser.buffered(), 0);
        }
    }
}
