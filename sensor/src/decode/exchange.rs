//! Assembles one connection's [`Part`]s into messages and request/response
//! exchanges: keeps body bytes up to a bound, undoes content codings, parses
//! Server-Sent Events, and hands a request to detection as soon as it is complete
//! (before its response).

use std::collections::HashMap;

use serde::Serialize;

use super::{
    ErrorKind, Head, Header, Part, Side, StreamId, Version,
    body::{self, BodyLimits, Coding, Stop},
    sse::{self, SseEvent},
};

/// A message body as far as it was kept and decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    /// Body bytes on the wire after transfer decoding (chunked, HTTP/2 DATA).
    pub length: u64,
    /// Content codings, in the order they were applied.
    pub codings: Vec<Coding>,
    /// The first bytes of the body as sent (still content-encoded).
    pub kept: Vec<u8>,
    /// `kept` is shorter than `length`, or the message did not complete.
    pub truncated: bool,
    /// The content after undoing `codings` (`None` without codings).
    pub decoded: Option<Vec<u8>>,
    /// Why decoding stopped before the end of `kept`, if it did.
    pub problem: Option<String>,
}

impl Body {
    /// The content: decoded when codings applied, else the kept bytes.
    pub fn content(&self) -> &[u8] {
        self.decoded.as_deref().unwrap_or(&self.kept)
    }
}

/// One request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Start line and headers.
    pub head: Head,
    /// The body.
    pub body: Body,
    /// Trailer fields.
    pub trailers: Vec<Header>,
    /// `CLOCK_MONOTONIC` ns when the head was complete.
    pub start_ns: u64,
    /// When the message ended (or was given up).
    pub end_ns: u64,
    /// Why the message did not complete, if it did not.
    pub aborted: Option<&'static str>,
}

/// A request and its response, as far as they were seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// HTTP/2 stream id, or the request's ordinal on an HTTP/1 connection.
    pub stream: StreamId,
    /// The request (absent when only the response was seen).
    pub request: Option<Message>,
    /// The response (absent when none came before the connection ended).
    pub response: Option<Message>,
    /// The response's events when it is `text/event-stream`.
    pub sse: Option<SseEvents>,
}

impl Exchange {
    /// Protocol version of the exchange.
    pub fn version(&self) -> Option<Version> {
        self.request
            .as_ref()
            .or(self.response.as_ref())
            .map(|m| m.head.version)
    }
}

/// Server-Sent Events of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SseEvents {
    /// The events, in order.
    pub events: Vec<SseEvent>,
    /// More events came than are kept.
    pub truncated: bool,
}

/// Bounds of the assembler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssemblyLimits {
    /// Body bytes kept per message.
    pub max_body_bytes: usize,
    /// Content decoding bounds.
    pub body: BodyLimits,
    /// Server-Sent Events kept per response.
    pub max_sse_events: usize,
    /// Exchanges in flight per connection.
    pub max_streams: usize,
}

/// What the assembler reports.
#[derive(Debug)]
pub enum Assembled<'a> {
    /// A request is complete (or was given up); its response may follow.
    Request(&'a Exchange),
    /// An exchange is over: the response ended, or the connection did.
    Exchange(Box<Exchange>),
    /// A WebSocket message.
    WebSocket {
        /// The upgrading exchange.
        stream: StreamId,
        /// Who sent it.
        side: Side,
        /// Opcode.
        opcode: u8,
        /// Payload (bounded).
        payload: &'a [u8],
        /// Longer than kept.
        truncated: bool,
        /// When it ended.
        ts_ns: u64,
    },
    /// A protocol or content-decoding error.
    Error {
        /// Side affected, if one.
        side: Option<Side>,
        /// Exchange affected, if one.
        stream: Option<StreamId>,
        /// Class.
        kind: ErrorKind,
        /// What (never payload bytes).
        detail: String,
    },
}

/// Most body bytes reserved ahead of their arrival.
const RESERVE_MAX: usize = 1 << 20;

struct Building {
    head: Head,
    start_ns: u64,
    body: Body,
    coding_error: Option<String>,
}

enum Slot {
    Empty,
    Building(Box<Building>),
    Done,
}

struct Open {
    exchange: Exchange,
    request: Slot,
    response: Slot,
}

/// The assembler of one connection.
pub struct Assembler {
    limits: AssemblyLimits,
    open: HashMap<StreamId, Open>,
    held: usize,
    last_ns: u64,
}

impl Assembler {
    /// An assembler with the given bounds.
    pub fn new(limits: AssemblyLimits) -> Self {
        Self {
            limits,
            open: HashMap::new(),
            held: 0,
            last_ns: 0,
        }
    }

    /// Body bytes held in messages being built.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Handles one part.
    pub fn part(&mut self, part: Part<'_>, out: &mut dyn FnMut(Assembled<'_>)) {
        match part {
            Part::Head {
                stream,
                side,
                head,
                ts_ns,
            } => self.head(stream, side, head, ts_ns, out),
            Part::Body { stream, side, data } => self.body(stream, side, data),
            Part::End {
                stream,
                side,
                trailers,
                ts_ns,
            } => {
                self.last_ns = self.last_ns.max(ts_ns);
                self.finish(stream, side, trailers, ts_ns, None, out);
            }
            Part::Abort {
                stream,
                side,
                reason,
            } => {
                let ts = self.last_ns;
                self.finish(stream, side, Vec::new(), ts, Some(reason), out);
            }
            Part::WebSocket {
                stream,
                side,
                opcode,
                payload,
                truncated,
                ts_ns,
            } => {
                self.last_ns = self.last_ns.max(ts_ns);
                out(Assembled::WebSocket {
                    stream,
                    side,
                    opcode,
                    payload,
                    truncated,
                    ts_ns,
                });
            }
            Part::Error {
                side,
                stream,
                kind,
                detail,
            } => out(Assembled::Error {
                side,
                stream,
                kind,
                detail,
            }),
        }
    }

    /// The connection ended: every exchange still open goes out as it is.
    pub fn close(&mut self, ts_ns: u64, out: &mut dyn FnMut(Assembled<'_>)) {
        self.last_ns = self.last_ns.max(ts_ns);
        let mut streams: Vec<StreamId> = self.open.keys().copied().collect();
        streams.sort_unstable();
        for stream in streams {
            for side in [Side::Client, Side::Server] {
                self.finish(
                    stream,
                    side,
                    Vec::new(),
                    ts_ns,
                    Some("connection ended"),
                    out,
                );
            }
            if let Some(o) = self.open.remove(&stream) {
                out(Assembled::Exchange(Box::new(o.exchange)));
            }
        }
        self.held = 0;
    }

    fn head(
        &mut self,
        stream: StreamId,
        side: Side,
        head: Head,
        ts_ns: u64,
        out: &mut dyn FnMut(Assembled<'_>),
    ) {
        self.last_ns = self.last_ns.max(ts_ns);
        if !self.open.contains_key(&stream) && self.open.len() >= self.limits.max_streams {
            out(Assembled::Error {
                side: Some(side),
                stream: Some(stream),
                kind: ErrorKind::Limit,
                detail: format!(
                    "more than {} exchanges in flight on the connection; stream ignored",
                    self.limits.max_streams
                ),
            });
            return;
        }
        let open = self.open.entry(stream).or_insert_with(|| Open {
            exchange: Exchange {
                stream,
                request: None,
                response: None,
                sse: None,
            },
            request: Slot::Empty,
            response: Slot::Empty,
        });
        let slot = match side {
            Side::Client => &mut open.request,
            Side::Server => &mut open.response,
        };
        if !matches!(slot, Slot::Empty) {
            out(Assembled::Error {
                side: Some(side),
                stream: Some(stream),
                kind: ErrorKind::Malformed,
                detail: "a second message head on one stream".into(),
            });
            return;
        }
        let (codings, coding_error) = match body::codings(head.values("content-encoding")) {
            Ok(c) => (c, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        // Room for the announced body up front saves the copies of growing into
        // it; capped, so a false Content-Length cannot reserve much.
        let announced = head
            .value("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let kept = Vec::with_capacity(announced.min(self.limits.max_body_bytes).min(RESERVE_MAX));
        *slot = Slot::Building(Box::new(Building {
            head,
            start_ns: ts_ns,
            body: Body {
                codings,
                kept,
                ..Body::default()
            },
            coding_error,
        }));
    }

    fn body(&mut self, stream: StreamId, side: Side, data: &[u8]) {
        let max = self.limits.max_body_bytes;
        let Some(open) = self.open.get_mut(&stream) else {
            return;
        };
        let slot = match side {
            Side::Client => &mut open.request,
            Side::Server => &mut open.response,
        };
        if let Slot::Building(b) = slot {
            b.body.length += data.len() as u64;
            let room = max.saturating_sub(b.body.kept.len());
            let take = room.min(data.len());
            b.body.kept.extend_from_slice(&data[..take]);
            self.held += take;
            if take < data.len() {
                b.body.truncated = true;
            }
        }
    }

    fn finish(
        &mut self,
        stream: StreamId,
        side: Side,
        trailers: Vec<Header>,
        ts_ns: u64,
        aborted: Option<&'static str>,
        out: &mut dyn FnMut(Assembled<'_>),
    ) {
        let limits = self.limits;
        let Some(open) = self.open.get_mut(&stream) else {
            return;
        };
        let slot = match side {
            Side::Client => &mut open.request,
            Side::Server => &mut open.response,
        };
        let Slot::Building(b) = std::mem::replace(slot, Slot::Done) else {
            return;
        };
        let b = *b;
        self.held = self.held.saturating_sub(b.body.kept.len());
        let (msg, problem) = complete(b, trailers, ts_ns, aborted, limits.body);
        if let Some((kind, detail)) = problem {
            out(Assembled::Error {
                side: Some(side),
                stream: Some(stream),
                kind,
                detail,
            });
        }
        match side {
            Side::Client => {
                open.exchange.request = Some(msg);
                out(Assembled::Request(&open.exchange));
            }
            Side::Server => {
                if is_event_stream(&msg.head) {
                    let (events, truncated) = sse::parse(msg.body.content(), limits.max_sse_events);
                    open.exchange.sse = Some(SseEvents { events, truncated });
                }
                open.exchange.response = Some(msg);
            }
        }
        // Over when the response is done and the request is not still arriving
        // (a server may answer before the request body is complete).
        if matches!(open.response, Slot::Done)
            && !matches!(open.request, Slot::Building(_))
            && let Some(o) = self.open.remove(&stream)
        {
            out(Assembled::Exchange(Box::new(o.exchange)));
        }
    }
}

fn is_event_stream(head: &Head) -> bool {
    head.value("content-type").is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
    })
}

/// Finishes a message: undoes its content codings within the bounds. Returns the
/// message and, when content decoding failed or hit a bound, an error to report.
fn complete(
    b: Building,
    trailers: Vec<Header>,
    ts_ns: u64,
    aborted: Option<&'static str>,
    limits: BodyLimits,
) -> (Message, Option<(ErrorKind, String)>) {
    let mut body = b.body;
    if aborted.is_some() {
        body.truncated = true;
    }
    let mut problem = None;
    if let Some(e) = b.coding_error {
        body.problem = Some(e.clone());
        problem = Some((ErrorKind::Unsupported, e));
    } else if !body.codings.is_empty() && !body.kept.is_empty() {
        let d = body::decode(&body.kept, &body.codings, limits);
        let stopped = d.stop.is_some();
        let why = match d.stop {
            None => None,
            // A cut body cannot decode to its end; that is not an error of its own.
            Some(Stop::InputEnded | Stop::Corrupt(_)) if body.truncated => None,
            Some(Stop::InputEnded) => Some((
                ErrorKind::Malformed,
                "compressed body ends early".to_owned(),
            )),
            Some(Stop::Corrupt(e)) => Some((
                ErrorKind::Malformed,
                format!("cannot decode {:?} body: {e}", body.codings),
            )),
            Some(Stop::SizeLimit) => Some((
                ErrorKind::Limit,
                format!(
                    "decoded body exceeds {} bytes; the rest is not inspected",
                    limits.max_decoded_bytes
                ),
            )),
            Some(Stop::Bomb { decoded, consumed }) => Some((
                ErrorKind::Limit,
                format!(
                    "decompression bomb stopped: {consumed} bytes expanded to over {decoded} \
                     (ratio above {}:1)",
                    limits.max_ratio
                ),
            )),
        };
        if stopped {
            body.truncated = true;
        }
        if let Some((_, detail)) = &why {
            body.problem = Some(detail.clone());
        }
        problem = why;
        body.decoded = Some(d.bytes);
    }
    (
        Message {
            head: b.head,
            body,
            trailers,
            start_ns: b.start_ns,
            end_ns: ts_ns,
            aborted,
        },
        problem,
    )
}
