//! HTTP/2 wire parser (RFC 9113) with HPACK header decoding (RFC 7541).
//!
//! [`Http2`] follows one connection from the client preface on and reports each
//! stream's request and response as [`Part`]s. It is a passive observer: it
//! checks what it needs to stay in step with the endpoints (framing, the order
//! of header-block frames, HPACK) and what it needs to report sound messages
//! (pseudo-headers), and leaves the rest of the RFC to the endpoints.
//!
//! Design decisions:
//!
//! - **Framing.** Frames are read as they arrive. DATA payloads stream straight
//!   from the input as [`Part::Body`] (padding stripped), so a large DATA frame
//!   costs no buffer; any other frame is held until complete (at most
//!   [`WireLimits::max_frame_bytes`]) unless one read holds all of it. A frame
//!   over that bound is a connection error: its length cannot be trusted to be
//!   skipped cheaply, and skipping a HEADERS frame would lose HPACK state anyway.
//! - **Errors.** Anything that loses framing or HPACK state (bad frame layout, a
//!   header block that fails to decode, lost bytes) is a connection error:
//!   one [`Part::Error`] with `side: None`, [`Part::Abort`] for every unfinished
//!   message, and the connection is not decoded any more. A stream error (bad
//!   pseudo-headers, a header limit, a stream over `max_streams`) reports a
//!   [`Part::Error`] with that stream, aborts its unfinished messages and ignores
//!   its later frames; its header blocks are still decoded so HPACK stays in step.
//! - **Aborts.** When a stream ends early (RST_STREAM, GOAWAY, stream error,
//!   close, connection error), every message of it that has not ended gets a
//!   [`Part::Abort`], including a response that has not started: the exchange
//!   layer then knows no response will come.
//! - **Header table size.** SETTINGS_HEADER_TABLE_SIZE sent by one side bounds
//!   the dynamic table of the other side's encoder. The encoder may apply a new
//!   value as soon as it receives it, but is only bound by it once its SETTINGS
//!   ACK is sent, so from a SETTINGS frame until the ACK in the other direction
//!   both the old and the new value are valid: the decoder allows the larger.
//!   The table itself changes only through dynamic table size updates in header
//!   blocks, which the HPACK decoder applies. The allowance is capped at
//!   [`MAX_TABLE_SIZE`] to bound memory; an update beyond the cap (but within
//!   what the peer allowed) is a [`ErrorKind::Limit`] connection error. An ACK
//!   that arrives with no SETTINGS outstanding (capture reordered across the two
//!   directions) is ignored, which only keeps the allowance generous.
//! - **Header block size.** A header block split over CONTINUATION frames is
//!   assembled up to [`WireLimits::max_header_bytes`]; beyond that it cannot be
//!   kept, so it cannot be decoded, so HPACK state is lost: connection error
//!   ([`ErrorKind::Limit`]). A block in a single frame is already in memory, so
//!   an oversized one is still decoded and only its stream fails. The decoded
//!   list (name and value bytes, pseudo-headers included) is bounded by the same
//!   value and by [`WireLimits::max_header_count`] (regular fields); fields past
//!   a bound are decoded but not kept, and the stream fails with
//!   [`ErrorKind::Limit`].
//! - **Huffman-coded strings.** `loona-hpack` builds a fresh Huffman code table
//!   (a map of 257 entries) for every Huffman-coded string it decodes, so a
//!   block of many tiny Huffman strings (two every three bytes) cost 6-20 µs
//!   per string: a hostile 64 KiB block took a quarter of a second, and an
//!   ordinary first request a millisecond. Before a block reaches the decoder,
//!   [`without_huffman`] decodes each Huffman string with one long-lived table
//!   and rewrites it as a plain literal; the HPACK decoder still does
//!   everything else (indexes, dynamic table, size updates, errors, which stay
//!   the same). The residual cost is the crate's bit-by-bit decoding of the
//!   Huffman bytes themselves, the same per byte for hostile and ordinary
//!   blocks; the rewritten block, held only while the block is decoded, is at
//!   about 8/5 of the block's size at most (a byte more per string).
//! - **Server push.** PUSH_PROMISE header blocks are decoded (HPACK state) but
//!   promised requests and pushed responses are not reported: the exchange
//!   model pairs client requests with responses, and a push is neither.
//! - **Leniency.** Field names are lower-cased rather than rejected, and
//!   connection-specific fields pass through; split `cookie` fields are
//!   reported as sent. CONNECT (also extended CONNECT) is reported as
//!   [`ErrorKind::Unsupported`] for its stream: its DATA is a tunnel.
//! - **Stream lifecycle.** Client streams have increasing odd ids, so a stream
//!   at or below the highest id seen that is not tracked is closed, reset or
//!   refused, and its frames are ignored without remembering it. Streams the
//!   server opens (pushes) are never tracked.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use std::cell::RefCell;

use loona_hpack::Decoder;
use loona_hpack::decoder::DecoderError;
use loona_hpack::huffman::HuffmanDecoder;

use super::{ErrorKind, Head, Header, Part, Side, Start, Version, WireLimits, WireParser};

/// The client connection preface that starts every HTTP/2 connection.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Largest HPACK dynamic table a decoder accepts, whatever the peer allowed:
/// the table lives as long as the connection, so it is bounded here. 64 KiB is
/// what the largest common clients (browsers) announce.
const MAX_TABLE_SIZE: usize = 64 * 1024;

const FRAME_HEADER_LEN: usize = 9;

// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

// Frame flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;
/// Stream dependency (4) and weight (1) of the HEADERS PRIORITY flag.
const PRIORITY_LEN: usize = 5;

const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
/// SETTINGS_HEADER_TABLE_SIZE until a SETTINGS frame says otherwise.
const DEFAULT_TABLE_SIZE: usize = 4096;
/// SETTINGS frames awaiting an ACK that are remembered; an endpoint has one or
/// two outstanding, and older ones are taken as acknowledged.
const MAX_PENDING_SETTINGS: usize = 8;
/// A frame buffer larger than this is freed after use rather than kept, so one
/// large frame does not pin memory for the connection's lifetime.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Pseudo-header fields, in the order of [`Fields::pseudo`].
const PSEUDO: [&str; 6] = [
    ":method",
    ":scheme",
    ":authority",
    ":path",
    ":status",
    ":protocol",
];

/// HTTP/2 on one connection: frames, HPACK (one dynamic table per direction)
/// and stream state, reported as [`Part`]s with the stream id as `stream`.
///
/// Output does not depend on how the input of a side is split into feeds,
/// except for where [`Part::Body`] pieces are cut.
pub struct Http2 {
    limits: WireLimits,
    client: Direction,
    server: Direction,
    /// Preface bytes of the client side verified so far.
    preface_seen: usize,
    /// Streams being followed, by id.
    streams: BTreeMap<u32, Stream>,
    /// Highest client stream id seen, followed or not.
    last_client_stream: u32,
    /// Nothing more is decoded (connection error, gap or close).
    dead: bool,
}

/// The state of one direction of the connection.
struct Direction {
    rx: Rx,
    /// Payload of the frame being read, when it spans reads.
    buf: Vec<u8>,
    /// Header block waiting for CONTINUATION frames.
    block: Option<Block>,
    /// HPACK decoder for the header blocks this side sends.
    decoder: Decoder<'static>,
    /// Header table sizes this side announced (they bound the peer's encoder).
    announced: TableBound,
    /// The first frame has been seen (it must be SETTINGS).
    started: bool,
}

/// Where the frame reader of one direction is.
#[derive(Debug, Clone, Copy)]
enum Rx {
    /// Reading a frame header; `have` bytes of it are in `bytes`.
    Header {
        bytes: [u8; FRAME_HEADER_LEN],
        have: usize,
    },
    /// Reading the payload of a frame other than DATA.
    Payload(Frame),
    /// Streaming the payload of a DATA frame.
    Data(DataRx),
}

impl Default for Rx {
    fn default() -> Self {
        Self::Header {
            bytes: [0; FRAME_HEADER_LEN],
            have: 0,
        }
    }
}

/// Progress through a DATA frame payload.
#[derive(Debug, Clone, Copy)]
struct DataRx {
    frame: Frame,
    /// Payload bytes not read yet.
    left: usize,
    /// Padding at the end of the payload; `None` while the pad length byte of a
    /// PADDED frame is still to come.
    pad: Option<usize>,
}

/// A frame header.
#[derive(Debug, Clone, Copy)]
struct Frame {
    len: usize,
    ty: u8,
    flags: u8,
    stream: u32,
}

impl Frame {
    fn parse(b: &[u8; FRAME_HEADER_LEN]) -> Self {
        Self {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            ty: b[3],
            flags: b[4],
            // The top bit is reserved and must be ignored.
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A header block being assembled from HEADERS or PUSH_PROMISE + CONTINUATION.
struct Block {
    stream: u32,
    kind: BlockKind,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum BlockKind {
    Headers { end_stream: bool },
    PushPromise,
}

/// SETTINGS_HEADER_TABLE_SIZE values one side announced, oldest first.
#[derive(Debug)]
struct TableBound {
    /// The value the peer has acknowledged.
    acked: usize,
    /// The value after each SETTINGS frame not acknowledged yet.
    pending: VecDeque<usize>,
}

impl TableBound {
    fn new() -> Self {
        Self {
            acked: DEFAULT_TABLE_SIZE,
            pending: VecDeque::new(),
        }
    }

    /// A SETTINGS frame was sent; `value` is its header table size, if it has
    /// one. A frame without one still takes an ACK, which changes nothing.
    fn announce(&mut self, value: Option<usize>) {
        let value = value.unwrap_or_else(|| self.latest());
        if self.pending.len() >= MAX_PENDING_SETTINGS {
            self.acknowledge();
        }
        self.pending.push_back(value);
    }

    /// The peer acknowledged the oldest outstanding SETTINGS frame.
    fn acknowledge(&mut self) {
        if let Some(value) = self.pending.pop_front() {
            self.acked = value;
        }
    }

    fn latest(&self) -> usize {
        self.pending.back().copied().unwrap_or(self.acked)
    }

    /// The largest table the peer's encoder may use now.
    fn allowed(&self) -> usize {
        self.pending.iter().copied().fold(self.acked, usize::max)
    }
}

impl Direction {
    fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(DEFAULT_TABLE_SIZE);
        Self {
            rx: Rx::default(),
            buf: Vec::new(),
            block: None,
            decoder,
            announced: TableBound::new(),
            started: false,
        }
    }

    /// Bytes held: a partial frame header or payload and an unfinished block.
    fn held(&self) -> usize {
        let header = match self.rx {
            Rx::Header { have, .. } => have,
            _ => 0,
        };
        header + self.buf.len() + self.block.as_ref().map_or(0, |b| b.bytes.len())
    }

    /// Forgets what is buffered (the connection is no longer decoded).
    fn release(&mut self) {
        self.rx = Rx::default();
        self.buf = Vec::new();
        self.block = None;
    }
}

/// Where one message (request or response) of a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    /// Not started (a response before its HEADERS).
    Idle,
    /// Only interim (1xx) responses so far; they are not reported.
    Interim,
    /// Head reported; body and trailers may follow.
    Open,
    /// Ended or aborted.
    Done,
}

/// A stream being followed. Its request is reported, so it starts `Open`.
#[derive(Debug, Clone, Copy)]
struct Stream {
    request: Msg,
    response: Msg,
}

impl Stream {
    fn msg(&self, side: Side) -> Msg {
        match side {
            Side::Client => self.request,
            Side::Server => self.response,
        }
    }

    fn msg_mut(&mut self, side: Side) -> &mut Msg {
        match side {
            Side::Client => &mut self.request,
            Side::Server => &mut self.response,
        }
    }
}

/// Why a header block cannot be reported.
#[derive(Debug)]
struct Problem {
    kind: ErrorKind,
    what: Cow<'static, str>,
}

impl Problem {
    fn malformed(what: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: ErrorKind::Malformed,
            what: what.into(),
        }
    }

    fn limit(what: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: ErrorKind::Limit,
            what: what.into(),
        }
    }
}

/// A decoded response head: interim ones are not reported.
enum ResponseHead {
    Interim,
    Final(Head),
}

/// The fields of one header block, collected as HPACK decodes them.
struct Fields {
    limits: WireLimits,
    /// Values of [`PSEUDO`].
    pseudo: [Option<String>; 6],
    headers: Vec<Header>,
    /// A regular field was seen (pseudo-headers must come first).
    seen_regular: bool,
    /// Decoded name and value bytes so far.
    bytes: usize,
    /// The first reason the block cannot be reported; fields after it are
    /// decoded (HPACK state) but not kept.
    problem: Option<Problem>,
}

impl Fields {
    fn new(limits: WireLimits) -> Self {
        Self {
            limits,
            pseudo: Default::default(),
            headers: Vec::new(),
            seen_regular: false,
            bytes: 0,
            problem: None,
        }
    }

    /// One decoded field.
    fn add(&mut self, name: &[u8], value: &[u8]) {
        self.bytes = self.bytes.saturating_add(name.len() + value.len());
        if self.problem.is_some() {
            return;
        }
        let added = if self.bytes > self.limits.max_header_bytes {
            Err(Problem::limit(format!(
                "decoded header list over {} bytes",
                self.limits.max_header_bytes
            )))
        } else if name.first() == Some(&b':') {
            self.add_pseudo(name, value)
        } else {
            self.add_regular(name, value)
        };
        if let Err(problem) = added {
            self.reject(problem);
        }
    }

    /// Marks the block as not reportable and frees what was kept of it.
    fn reject(&mut self, problem: Problem) {
        if self.problem.is_none() {
            self.problem = Some(problem);
        }
        self.headers = Vec::new();
    }

    fn add_pseudo(&mut self, name: &[u8], value: &[u8]) -> Result<(), Problem> {
        if self.seen_regular {
            return Err(Problem::malformed("pseudo-header after a regular field"));
        }
        let Some(i) = PSEUDO.iter().position(|p| p.as_bytes() == name) else {
            // The name is payload: it is not repeated in the detail.
            return Err(Problem::malformed("unknown pseudo-header"));
        };
        if self.pseudo[i].is_some() {
            return Err(Problem::malformed(format!("duplicate {}", PSEUDO[i])));
        }
        let Ok(value) = std::str::from_utf8(value) else {
            return Err(Problem::malformed(format!("{} is not UTF-8", PSEUDO[i])));
        };
        self.pseudo[i] = Some(value.to_owned());
        Ok(())
    }

    fn add_regular(&mut self, name: &[u8], value: &[u8]) -> Result<(), Problem> {
        self.seen_regular = true;
        if self.headers.len() >= self.limits.max_header_count {
            return Err(Problem::limit(format!(
                "more than {} header fields",
                self.limits.max_header_count
            )));
        }
        match std::str::from_utf8(name) {
            Ok("") => Err(Problem::malformed("empty field name")),
            Ok(name) => {
                self.headers.push(Header::new(name, value));
                Ok(())
            }
            Err(_) => Err(Problem::malformed("field name is not UTF-8")),
        }
    }

    /// The head of a request.
    fn into_request(self) -> Result<Head, Problem> {
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        let [method, scheme, authority, path, status, protocol] = self.pseudo;
        if status.is_some() {
            return Err(Problem::malformed(":status in a request"));
        }
        let method = method.ok_or_else(|| Problem::malformed("request without :method"))?;
        if method == "CONNECT" {
            return Err(Problem {
                kind: ErrorKind::Unsupported,
                what: "CONNECT tunnel not decoded".into(),
            });
        }
        if protocol.is_some() {
            return Err(Problem::malformed(":protocol outside CONNECT"));
        }
        let scheme = scheme.ok_or_else(|| Problem::malformed("request without :scheme"))?;
        let path = path
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Problem::malformed("request without :path"))?;
        Ok(Head {
            start: Start::Request {
                method,
                target: path,
                authority,
                scheme: Some(scheme),
            },
            version: Version::Http2,
            headers: self.headers,
        })
    }

    /// The head of a response, final or interim.
    fn into_response(self) -> Result<ResponseHead, Problem> {
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        let [method, scheme, authority, path, status, protocol] = self.pseudo;
        if method.is_some()
            || scheme.is_some()
            || authority.is_some()
            || path.is_some()
            || protocol.is_some()
        {
            return Err(Problem::malformed("request pseudo-header in a response"));
        }
        let status = status.ok_or_else(|| Problem::malformed("response without :status"))?;
        match parse_status(&status) {
            None => Err(Problem::malformed("invalid :status")),
            // HTTP/2 has no protocol upgrade (RFC 9113 §8.6).
            Some(101) => Err(Problem::malformed("status 101 in HTTP/2")),
            Some(100..=199) => Ok(ResponseHead::Interim),
            Some(status) => Ok(ResponseHead::Final(Head {
                start: Start::Response { status },
                version: Version::Http2,
                headers: self.headers,
            })),
        }
    }

    /// The fields of a trailing header block.
    fn into_trailers(self) -> Result<Vec<Header>, Problem> {
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        if self.pseudo.iter().any(Option::is_some) {
            return Err(Problem::malformed("pseudo-header in trailers"));
        }
        Ok(self.headers)
    }
}

thread_local! {
    /// The Huffman code table, built once: `loona-hpack` builds one for every
    /// Huffman-coded string it decodes.
    static HUFFMAN: RefCell<HuffmanDecoder> = RefCell::new(HuffmanDecoder::new());
}

/// `block` with every Huffman-coded string literal rewritten as the plain
/// literal it decodes to, or `None` when there is nothing to rewrite. Only
/// string literals change: every other byte is copied, so the HPACK decoder
/// reads the same fields, indexes and table size updates from the result. The
/// rewriting stops at the first representation that is truncated or holds an
/// invalid Huffman string, and copies the rest as it is, so the HPACK decoder
/// meets the same error at the same place.
fn without_huffman(block: &[u8]) -> Option<Vec<u8>> {
    HUFFMAN.with_borrow_mut(|huffman| {
        let mut out: Option<Vec<u8>> = None;
        let mut pos = 0;
        while let Some(&first) = block.get(pos) {
            let rest = &block[pos..];
            // RFC 7541 §6: the representation, and the prefix of its integer.
            let (prefix, literal) = match first {
                f if f & 0x80 != 0 => (7, false), // indexed field
                f if f & 0x40 != 0 => (6, true),  // literal, incremental indexing
                f if f & 0x20 != 0 => (5, false), // dynamic table size update
                _ => (4, true),                   // literal, not indexed or never
            };
            let Some((index, head)) = hpack_integer(rest, prefix) else {
                break;
            };
            let mut strings: [Option<HpackString<'_>>; 2] = [None, None];
            let mut len = head;
            if literal {
                let count = if index == 0 { 2 } else { 1 };
                for slot in strings.iter_mut().take(count) {
                    let Some(s) = hpack_string(&rest[len..]) else {
                        break;
                    };
                    len += s.raw.len();
                    *slot = Some(s);
                }
                if strings.iter().flatten().count() < count {
                    break;
                }
            }
            let representation = &rest[..len];
            if !strings.iter().flatten().any(|s| s.huffman) {
                if let Some(out) = out.as_mut() {
                    out.extend_from_slice(representation);
                }
                pos += len;
                continue;
            }
            let out = out.get_or_insert_with(|| {
                let mut v = Vec::with_capacity(block.len() + block.len() / 2);
                v.extend_from_slice(&block[..pos]);
                v
            });
            let mark = out.len();
            out.extend_from_slice(&rest[..head]);
            let mut failed = false;
            for s in strings.iter().flatten() {
                if !s.huffman {
                    out.extend_from_slice(s.raw);
                    continue;
                }
                let Ok(plain) = huffman.decode(s.octets) else {
                    failed = true;
                    break;
                };
                hpack_length(out, plain.len());
                out.extend_from_slice(&plain);
            }
            if failed {
                out.truncate(mark);
                break;
            }
            pos += len;
        }
        let mut out = out?;
        out.extend_from_slice(&block[pos..]);
        Some(out)
    })
}

/// A string literal of a header block (RFC 7541 §5.2).
struct HpackString<'a> {
    /// The whole literal: length and octets.
    raw: &'a [u8],
    huffman: bool,
    /// The octets, as sent.
    octets: &'a [u8],
}

/// The string literal at the start of `buf`, if it is whole.
fn hpack_string(buf: &[u8]) -> Option<HpackString<'_>> {
    let huffman = buf.first()? & 0x80 != 0;
    let (len, head) = hpack_integer(buf, 7)?;
    let end = head.checked_add(len).filter(|&end| end <= buf.len())?;
    Some(HpackString {
        raw: &buf[..end],
        huffman,
        octets: &buf[head..end],
    })
}

/// The integer with a `prefix`-bit prefix at the start of `buf` and its length
/// in bytes (RFC 7541 §5.1), read as `loona-hpack` reads it: at most five
/// bytes, else it is an error (`None`, as for a truncated one).
fn hpack_integer(buf: &[u8], prefix: u32) -> Option<(usize, usize)> {
    let mask = (1u8 << prefix) - 1;
    let mut value = usize::from(buf.first()? & mask);
    if value < usize::from(mask) {
        return Some((value, 1));
    }
    for (i, &b) in buf.iter().enumerate().skip(1).take(4) {
        value += usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The length of a plain (not Huffman-coded) string literal.
fn hpack_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x7f {
        out.push(len as u8);
        return;
    }
    out.push(0x7f);
    let mut rest = len - 0x7f;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A three-digit status code (100–999).
fn parse_status(s: &str) -> Option<u16> {
    let ok = s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
    ok.then(|| s.parse().ok()).flatten()
}

/// The payload of a PADDED frame without its pad length byte and padding.
fn unpad(frame: Frame, payload: &[u8]) -> Option<&[u8]> {
    if !frame.has(PADDED) {
        return Some(payload);
    }
    let (&pad, rest) = payload.split_first()?;
    let end = rest.len().checked_sub(usize::from(pad))?;
    rest.get(..end)
}

fn frame_name(ty: u8) -> &'static str {
    match ty {
        DATA => "DATA",
        HEADERS => "HEADERS",
        PRIORITY => "PRIORITY",
        RST_STREAM => "RST_STREAM",
        SETTINGS => "SETTINGS",
        PUSH_PROMISE => "PUSH_PROMISE",
        PING => "PING",
        GOAWAY => "GOAWAY",
        WINDOW_UPDATE => "WINDOW_UPDATE",
        CONTINUATION => "CONTINUATION",
        _ => "unknown frame",
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Server => "server",
    }
}

impl Http2 {
    /// A parser for a new connection, to be fed the client side from its
    /// preface ([`PREFACE`]) on and the server side from its first frame on.
    pub fn new(limits: WireLimits) -> Self {
        Self {
            limits,
            client: Direction::new(),
            server: Direction::new(),
            preface_seen: 0,
            streams: BTreeMap::new(),
            last_client_stream: 0,
            dead: false,
        }
    }

    fn dir(&mut self, side: Side) -> &mut Direction {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// Checks the preface at the start of the client side; returns the bytes
    /// after it, or `None` if they are not HTTP/2.
    fn eat_preface<'d>(
        &mut self,
        data: &'d [u8],
        out: &mut dyn FnMut(Part<'_>),
    ) -> Option<&'d [u8]> {
        let expected = PREFACE.get(self.preface_seen..).unwrap_or_default();
        let n = expected.len().min(data.len());
        if data[..n] != expected[..n] {
            self.fail(
                ErrorKind::Malformed,
                "client did not start with the HTTP/2 preface".into(),
                out,
            );
            return None;
        }
        self.preface_seen += n;
        Some(&data[n..])
    }

    /// Reads from `data`; returns how many bytes were used (at least one unless
    /// `data` is empty).
    fn step(&mut self, side: Side, data: &[u8], ts: u64, out: &mut dyn FnMut(Part<'_>)) -> usize {
        match self.dir(side).rx {
            Rx::Header { mut bytes, have } => {
                let n = (FRAME_HEADER_LEN - have).min(data.len());
                bytes[have..have + n].copy_from_slice(&data[..n]);
                if have + n < FRAME_HEADER_LEN {
                    self.dir(side).rx = Rx::Header {
                        bytes,
                        have: have + n,
                    };
                } else {
                    self.dir(side).rx = Rx::default();
                    self.on_frame_header(side, Frame::parse(&bytes), ts, out);
                }
                n
            }
            Rx::Payload(frame) => self.step_payload(side, frame, data, ts, out),
            Rx::Data(rx) => self.step_data(side, rx, data, ts, out),
        }
    }

    fn step_payload(
        &mut self,
        side: Side,
        frame: Frame,
        data: &[u8],
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) -> usize {
        let dir = self.dir(side);
        let n = (frame.len - dir.buf.len()).min(data.len());
        if dir.buf.is_empty() && n == frame.len {
            // The whole payload is in this read: use it in place.
            dir.rx = Rx::default();
            self.on_frame(side, frame, &data[..n], ts, out);
            return n;
        }
        dir.buf.extend_from_slice(&data[..n]);
        if dir.buf.len() == frame.len {
            dir.rx = Rx::default();
            let payload = std::mem::take(&mut dir.buf);
            self.on_frame(side, frame, &payload, ts, out);
            self.recycle(side, payload);
        }
        n
    }

    /// Gives a used payload buffer back for the next frame, unless it is large.
    fn recycle(&mut self, side: Side, mut buf: Vec<u8>) {
        if !self.dead && buf.capacity() <= KEEP_CAPACITY {
            buf.clear();
            self.dir(side).buf = buf;
        }
    }

    fn step_data(
        &mut self,
        side: Side,
        mut rx: DataRx,
        data: &[u8],
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) -> usize {
        let mut used = 0;
        let pad = match rx.pad {
            Some(pad) => pad,
            None => {
                let Some(&pad) = data.first() else { return 0 };
                used = 1;
                rx.left -= 1;
                if usize::from(pad) > rx.left {
                    let detail = format!(
                        "DATA padding exceeds its frame on stream {}",
                        rx.frame.stream
                    );
                    self.fail(ErrorKind::Malformed, detail, out);
                    return used;
                }
                usize::from(pad)
            }
        };
        // Once part of the padding is skipped, fewer than `pad` bytes are left.
        let body = rx.left.saturating_sub(pad).min(data.len() - used);
        if body > 0 {
            self.body(side, rx.frame.stream, &data[used..used + body], out);
            used += body;
            rx.left -= body;
        }
        // Once the body is out only padding is left: skip what is here of it.
        let skip = rx.left.min(data.len() - used);
        used += skip;
        rx.left -= skip;
        if rx.left == 0 {
            self.dir(side).rx = Rx::default();
            self.finish_data(side, rx.frame, ts, out);
        } else {
            rx.pad = Some(pad);
            self.dir(side).rx = Rx::Data(rx);
        }
        used
    }

    fn on_frame_header(
        &mut self,
        side: Side,
        frame: Frame,
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        if let Err(detail) = self.check_sequence(side, frame) {
            return self.fail(ErrorKind::Malformed, detail, out);
        }
        if frame.len > self.limits.max_frame_bytes {
            let detail = format!(
                "{} frame of {} bytes over the {}-byte limit on stream {}",
                frame_name(frame.ty),
                frame.len,
                self.limits.max_frame_bytes,
                frame.stream
            );
            return self.fail(ErrorKind::Limit, detail, out);
        }
        if frame.ty == DATA {
            self.on_data_header(side, frame, ts, out);
        } else if frame.len == 0 {
            self.on_frame(side, frame, &[], ts, out);
        } else {
            self.dir(side).rx = Rx::Payload(frame);
        }
    }

    /// Checks the frames that must come first or next: SETTINGS opens each
    /// direction, and a header block allows only its CONTINUATION frames.
    fn check_sequence(&mut self, side: Side, frame: Frame) -> Result<(), String> {
        let dir = self.dir(side);
        if !dir.started {
            dir.started = true;
            if frame.ty != SETTINGS || frame.has(ACK) {
                return Err(format!(
                    "{} side did not start with SETTINGS (got {})",
                    side_name(side),
                    frame_name(frame.ty)
                ));
            }
        }
        match &dir.block {
            Some(block) if frame.ty != CONTINUATION || frame.stream != block.stream => {
                Err(format!(
                    "CONTINUATION of stream {} expected, got {} on stream {}",
                    block.stream,
                    frame_name(frame.ty),
                    frame.stream
                ))
            }
            None if frame.ty == CONTINUATION => Err(format!(
                "CONTINUATION without a header block on stream {}",
                frame.stream
            )),
            _ => Ok(()),
        }
    }

    fn on_data_header(&mut self, side: Side, frame: Frame, ts: u64, out: &mut dyn FnMut(Part<'_>)) {
        if frame.stream == 0 {
            return self.fail(ErrorKind::Malformed, "DATA on stream 0".into(), out);
        }
        let padded = frame.has(PADDED);
        if padded && frame.len == 0 {
            let detail = format!("PADDED DATA without pad length on stream {}", frame.stream);
            return self.fail(ErrorKind::Malformed, detail, out);
        }
        let outside = self
            .streams
            .get(&frame.stream)
            .map(|s| s.msg(side) != Msg::Open);
        if outside == Some(true) {
            let what = "DATA outside a message";
            self.stream_error(side, frame.stream, ErrorKind::Malformed, what.into(), out);
        }
        if frame.len == 0 {
            self.finish_data(side, frame, ts, out);
        } else {
            self.dir(side).rx = Rx::Data(DataRx {
                frame,
                left: frame.len,
                pad: if padded { None } else { Some(0) },
            });
        }
    }

    /// Body bytes of the message `side` sends on `stream`, if it is followed.
    fn body(&mut self, side: Side, stream: u32, data: &[u8], out: &mut dyn FnMut(Part<'_>)) {
        if self
            .streams
            .get(&stream)
            .is_some_and(|s| s.msg(side) == Msg::Open)
        {
            out(Part::Body {
                stream: stream.into(),
                side,
                data,
            });
        }
    }

    fn finish_data(&mut self, side: Side, frame: Frame, ts: u64, out: &mut dyn FnMut(Part<'_>)) {
        if frame.has(END_STREAM) {
            self.end_message(side, frame.stream, Vec::new(), ts, out);
        }
    }

    /// A complete frame other than DATA.
    fn on_frame(
        &mut self,
        side: Side,
        frame: Frame,
        payload: &[u8],
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        match frame.ty {
            HEADERS => self.on_headers(side, frame, payload, ts, out),
            CONTINUATION => self.on_continuation(side, frame, payload, ts, out),
            PUSH_PROMISE => self.on_push_promise(side, frame, payload, ts, out),
            RST_STREAM => self.on_rst_stream(frame, payload, out),
            SETTINGS => self.on_settings(side, frame, payload, out),
            GOAWAY => self.on_goaway(side, payload, out),
            // PRIORITY, PING, WINDOW_UPDATE and unknown types carry nothing the
            // decode needs, and their length already kept the framing in step.
            _ => {}
        }
    }

    fn on_headers(
        &mut self,
        side: Side,
        frame: Frame,
        payload: &[u8],
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        if frame.stream == 0 {
            return self.fail(ErrorKind::Malformed, "HEADERS on stream 0".into(), out);
        }
        let skip = if frame.has(PRIORITY_FLAG) {
            PRIORITY_LEN
        } else {
            0
        };
        let Some(fragment) = unpad(frame, payload).and_then(|p| p.get(skip..)) else {
            let detail = format!(
                "HEADERS padding exceeds its frame on stream {}",
                frame.stream
            );
            return self.fail(ErrorKind::Malformed, detail, out);
        };
        let kind = BlockKind::Headers {
            end_stream: frame.has(END_STREAM),
        };
        self.begin_block(side, frame, kind, fragment, ts, out);
    }

    fn on_push_promise(
        &mut self,
        side: Side,
        frame: Frame,
        payload: &[u8],
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        if side == Side::Client || frame.stream == 0 {
            let detail = format!(
                "PUSH_PROMISE from the {} on stream {}",
                side_name(side),
                frame.stream
            );
            return self.fail(ErrorKind::Malformed, detail, out);
        }
        // The promised stream id precedes the fragment.
        let Some(fragment) = unpad(frame, payload).and_then(|p| p.get(4..)) else {
            let detail = format!("PUSH_PROMISE too short on stream {}", frame.stream);
            return self.fail(ErrorKind::Malformed, detail, out);
        };
        self.begin_block(side, frame, BlockKind::PushPromise, fragment, ts, out);
    }

    /// The first fragment of a header block: decode it now if it is whole,
    /// otherwise keep it for its CONTINUATION frames.
    fn begin_block(
        &mut self,
        side: Side,
        frame: Frame,
        kind: BlockKind,
        fragment: &[u8],
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        if frame.has(END_HEADERS) {
            return self.finish_block(side, frame.stream, kind, fragment, ts, out);
        }
        if fragment.len() > self.limits.max_header_bytes {
            return self.block_too_large(frame.stream, out);
        }
        self.dir(side).block = Some(Block {
            stream: frame.stream,
            kind,
            bytes: fragment.to_vec(),
        });
    }

    fn on_continuation(
        &mut self,
        side: Side,
        frame: Frame,
        payload: &[u8],
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        let max = self.limits.max_header_bytes;
        // check_sequence let this frame through only with a block of its stream.
        let Some(block) = self.dir(side).block.as_mut() else {
            return;
        };
        if block.bytes.len() + payload.len() > max {
            return self.block_too_large(frame.stream, out);
        }
        block.bytes.extend_from_slice(payload);
        if !frame.has(END_HEADERS) {
            return;
        }
        if let Some(block) = self.dir(side).block.take() {
            self.finish_block(side, block.stream, block.kind, &block.bytes, ts, out);
        }
    }

    /// A header block that cannot be kept cannot be decoded, and without it
    /// HPACK state is lost.
    fn block_too_large(&mut self, stream: u32, out: &mut dyn FnMut(Part<'_>)) {
        let detail = format!(
            "header block over {} bytes across CONTINUATION frames on stream {stream}",
            self.limits.max_header_bytes
        );
        self.fail(ErrorKind::Limit, detail, out);
    }

    /// A complete header block: decode it (always, for HPACK state), then
    /// report it as the stream's state makes it.
    fn finish_block(
        &mut self,
        side: Side,
        stream: u32,
        kind: BlockKind,
        block: &[u8],
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        let mut fields = Fields::new(self.limits);
        let plain = without_huffman(block);
        let decoded = self
            .dir(side)
            .decoder
            .decode_with_cb(plain.as_deref().unwrap_or(block), |name, value| {
                fields.add(&name, &value)
            });
        if let Err(e) = decoded {
            return self.hpack_failed(side, stream, e, out);
        }
        if block.len() > self.limits.max_header_bytes {
            fields.reject(Problem::limit(format!(
                "header block over {} bytes",
                self.limits.max_header_bytes
            )));
        }
        match (kind, side) {
            (BlockKind::Headers { end_stream }, Side::Client) => {
                self.on_request_block(stream, end_stream, fields, ts, out);
            }
            (BlockKind::Headers { end_stream }, Side::Server) => {
                self.on_response_block(stream, end_stream, fields, ts, out);
            }
            // Decoded only to keep HPACK in step: pushes are not reported.
            (BlockKind::PushPromise, _) => {}
        }
    }

    fn hpack_failed(
        &mut self,
        side: Side,
        stream: u32,
        e: DecoderError,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        let over_cap = self.dir(side.peer()).announced.allowed() > MAX_TABLE_SIZE;
        let kind = if e == DecoderError::InvalidMaxDynamicSize && over_cap {
            ErrorKind::Limit
        } else {
            ErrorKind::Malformed
        };
        let detail = format!(
            "HPACK decoding of a {} header block failed on stream {stream}: {e}",
            side_name(side)
        );
        self.fail(kind, detail, out);
    }

    fn on_request_block(
        &mut self,
        stream: u32,
        end_stream: bool,
        fields: Fields,
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        let side = Side::Client;
        if stream.is_multiple_of(2) {
            let detail = format!("client HEADERS on even stream {stream}");
            return self.fail(ErrorKind::Malformed, detail, out);
        }
        if let Some(s) = self.streams.get(&stream) {
            if s.request == Msg::Open {
                return self.on_trailers(side, stream, end_stream, fields, ts, out);
            }
            let what = "HEADERS after END_STREAM";
            return self.stream_error(side, stream, ErrorKind::Malformed, what.into(), out);
        }
        if stream <= self.last_client_stream {
            return; // closed, reset or refused: ignored
        }
        self.last_client_stream = stream;
        if self.streams.len() >= self.limits.max_streams {
            let what = format!("more than {} open streams", self.limits.max_streams);
            return self.stream_error(side, stream, ErrorKind::Limit, what.into(), out);
        }
        match fields.into_request() {
            Err(p) => self.stream_error(side, stream, p.kind, p.what, out),
            Ok(head) => {
                let open = Stream {
                    request: Msg::Open,
                    response: Msg::Idle,
                };
                self.streams.insert(stream, open);
                self.head(side, stream, head, ts, out);
                if end_stream {
                    self.end_message(side, stream, Vec::new(), ts, out);
                }
            }
        }
    }

    fn on_response_block(
        &mut self,
        stream: u32,
        end_stream: bool,
        fields: Fields,
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        let side = Side::Server;
        // A pushed stream, or one not followed.
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        match s.response {
            Msg::Open => self.on_trailers(side, stream, end_stream, fields, ts, out),
            Msg::Done => {
                let what = "HEADERS after END_STREAM";
                self.stream_error(side, stream, ErrorKind::Malformed, what.into(), out);
            }
            Msg::Idle | Msg::Interim => match fields.into_response() {
                Err(p) => self.stream_error(side, stream, p.kind, p.what, out),
                Ok(ResponseHead::Interim) if end_stream => {
                    let what = "interim response with END_STREAM";
                    self.stream_error(side, stream, ErrorKind::Malformed, what.into(), out);
                }
                Ok(ResponseHead::Interim) => s.response = Msg::Interim,
                Ok(ResponseHead::Final(head)) => {
                    s.response = Msg::Open;
                    self.head(side, stream, head, ts, out);
                    if end_stream {
                        self.end_message(side, stream, Vec::new(), ts, out);
                    }
                }
            },
        }
    }

    fn on_trailers(
        &mut self,
        side: Side,
        stream: u32,
        end_stream: bool,
        fields: Fields,
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        if !end_stream {
            let what = "trailing HEADERS without END_STREAM";
            return self.stream_error(side, stream, ErrorKind::Malformed, what.into(), out);
        }
        match fields.into_trailers() {
            Err(p) => self.stream_error(side, stream, p.kind, p.what, out),
            Ok(trailers) => self.end_message(side, stream, trailers, ts, out),
        }
    }

    fn on_rst_stream(&mut self, frame: Frame, payload: &[u8], out: &mut dyn FnMut(Part<'_>)) {
        if frame.stream == 0 || payload.len() != 4 {
            let detail = format!("invalid RST_STREAM on stream {}", frame.stream);
            return self.fail(ErrorKind::Malformed, detail, out);
        }
        if let Some(s) = self.streams.remove(&frame.stream) {
            abort_stream(frame.stream, s, "stream reset", out);
        }
    }

    fn on_settings(
        &mut self,
        side: Side,
        frame: Frame,
        payload: &[u8],
        out: &mut dyn FnMut(Part<'_>),
    ) {
        if frame.stream != 0 {
            let detail = format!("SETTINGS on stream {}", frame.stream);
            return self.fail(ErrorKind::Malformed, detail, out);
        }
        if frame.has(ACK) {
            if !payload.is_empty() {
                let detail = "SETTINGS ACK with a payload".into();
                return self.fail(ErrorKind::Malformed, detail, out);
            }
            // `side` acknowledges what its peer announced: from here on, the
            // encoder of `side` is bound by it alone.
            self.dir(side.peer()).announced.acknowledge();
            return self.apply_table_bound(side);
        }
        let (entries, rest) = payload.as_chunks::<6>();
        if !rest.is_empty() {
            let detail = format!("SETTINGS of {} bytes, not a multiple of 6", payload.len());
            return self.fail(ErrorKind::Malformed, detail, out);
        }
        // The last value of a setting in a frame is the one that applies.
        let table_size = entries
            .iter()
            .rev()
            .find(|&&[a, b, ..]| u16::from_be_bytes([a, b]) == SETTINGS_HEADER_TABLE_SIZE)
            .map(|&[_, _, a, b, c, d]| u32::from_be_bytes([a, b, c, d]))
            .map(|v| usize::try_from(v).unwrap_or(usize::MAX));
        self.dir(side).announced.announce(table_size);
        self.apply_table_bound(side.peer());
    }

    /// Sets the largest dynamic table size update the decoder of `encoder`'s
    /// header blocks accepts, from what its peer announced.
    fn apply_table_bound(&mut self, encoder: Side) {
        let allowed = self.dir(encoder.peer()).announced.allowed();
        self.dir(encoder)
            .decoder
            .set_max_allowed_table_size(allowed.min(MAX_TABLE_SIZE));
    }

    /// A server GOAWAY names the last stream it will process: later streams
    /// will not complete. (A client GOAWAY concerns pushes, not followed.)
    fn on_goaway(&mut self, side: Side, payload: &[u8], out: &mut dyn FnMut(Part<'_>)) {
        let Some(id) = payload.get(..4) else {
            return;
        };
        if side != Side::Server {
            return;
        }
        let last = u32::from_be_bytes([id[0], id[1], id[2], id[3]]) & 0x7fff_ffff;
        let refused = self.streams.split_off(&(last + 1));
        for (id, s) in refused {
            abort_stream(id, s, "refused by GOAWAY", out);
        }
    }

    fn head(
        &mut self,
        side: Side,
        stream: u32,
        head: Head,
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        out(Part::Head {
            stream: stream.into(),
            side,
            head,
            ts_ns: ts,
        });
    }

    /// The message `side` sends on `stream` ended; the stream is forgotten once
    /// both messages have.
    fn end_message(
        &mut self,
        side: Side,
        stream: u32,
        trailers: Vec<Header>,
        ts: u64,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if s.msg(side) != Msg::Open {
            return;
        }
        *s.msg_mut(side) = Msg::Done;
        if s.request == Msg::Done && s.response == Msg::Done {
            self.streams.remove(&stream);
        }
        out(Part::End {
            stream: stream.into(),
            side,
            trailers,
            ts_ns: ts,
        });
    }

    /// Reports a stream error and stops following the stream.
    fn stream_error(
        &mut self,
        side: Side,
        stream: u32,
        kind: ErrorKind,
        what: Cow<'static, str>,
        out: &mut dyn FnMut(Part<'_>),
    ) {
        out(Part::Error {
            side: Some(side),
            stream: Some(stream.into()),
            kind,
            detail: format!("{what} on stream {stream}"),
        });
        if let Some(s) = self.streams.remove(&stream) {
            abort_stream(stream, s, "stream error", out);
        }
    }

    /// Reports a connection error and stops decoding the connection.
    fn fail(&mut self, kind: ErrorKind, detail: String, out: &mut dyn FnMut(Part<'_>)) {
        out(Part::Error {
            side: None,
            stream: None,
            kind,
            detail,
        });
        let reason = if kind == ErrorKind::Gap {
            "bytes lost"
        } else {
            "connection error"
        };
        self.shut_down(reason, out);
    }

    /// Aborts every unfinished message and frees the buffers.
    fn shut_down(&mut self, reason: &'static str, out: &mut dyn FnMut(Part<'_>)) {
        self.dead = true;
        for (id, s) in std::mem::take(&mut self.streams) {
            abort_stream(id, s, reason, out);
        }
        self.client.release();
        self.server.release();
    }
}

/// Reports [`Part::Abort`] for the messages of a stream that have not ended.
fn abort_stream(id: u32, stream: Stream, reason: &'static str, out: &mut dyn FnMut(Part<'_>)) {
    for side in [Side::Client, Side::Server] {
        if stream.msg(side) != Msg::Done {
            out(Part::Abort {
                stream: id.into(),
                side,
                reason,
            });
        }
    }
}

impl WireParser for Http2 {
    fn feed(&mut self, side: Side, data: &[u8], ts_ns: u64, out: &mut dyn FnMut(Part<'_>)) {
        if self.dead {
            return;
        }
        let mut data = data;
        if side == Side::Client && self.preface_seen < PREFACE.len() {
            match self.eat_preface(data, out) {
                Some(rest) => data = rest,
                None => return,
            }
        }
        while !data.is_empty() && !self.dead {
            let used = self.step(side, data, ts_ns, out);
            if used == 0 {
                break; // cannot happen; never spin
            }
            data = &data[used..];
        }
    }

    fn gap(&mut self, side: Side, out: &mut dyn FnMut(Part<'_>)) {
        if self.dead {
            return;
        }
        let detail = format!(
            "{} bytes lost: HTTP/2 framing and HPACK state cannot be recovered",
            side_name(side)
        );
        self.fail(ErrorKind::Gap, detail, out);
    }

    fn close(&mut self, _ts_ns: u64, out: &mut dyn FnMut(Part<'_>)) {
        if !self.dead {
            self.shut_down("connection closed", out);
        }
    }

    fn buffered(&self) -> usize {
        self.client.held() + self.server.held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::Encoder;
    use loona_hpack::encoder::encode_integer;
    use proptest::prelude::*;

    /// A [`Part`], owned, so tests can collect and compare them.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Head(u64, Side, Head, u64),
        Body(u64, Side, Vec<u8>),
        End(u64, Side, Vec<Header>, u64),
        Abort(u64, Side, &'static str),
        Error(Option<Side>, Option<u64>, ErrorKind, String),
    }

    impl Ev {
        fn of(part: Part<'_>) -> Self {
            match part {
                Part::Head {
                    stream,
                    side,
                    head,
                    ts_ns,
                } => Self::Head(stream, side, head, ts_ns),
                Part::Body { stream, side, data } => Self::Body(stream, side, data.to_vec()),
                Part::End {
                    stream,
                    side,
                    trailers,
                    ts_ns,
                } => Self::End(stream, side, trailers, ts_ns),
                Part::Abort {
                    stream,
                    side,
                    reason,
                } => Self::Abort(stream, side, reason),
                Part::Error {
                    side,
                    stream,
                    kind,
                    detail,
                } => Self::Error(side, stream, kind, detail),
                Part::WebSocket { .. } => panic!("HTTP/2 reported a WebSocket message"),
            }
        }
    }

    /// Joins adjacent body parts of one message: how bodies are cut is not
    /// part of the contract.
    fn normalize(events: Vec<Ev>) -> Vec<Ev> {
        let mut out: Vec<Ev> = Vec::new();
        for ev in events {
            if let (Some(Ev::Body(s0, d0, acc)), Ev::Body(s1, d1, more)) = (out.last_mut(), &ev)
                && (*s0, *d0) == (*s1, *d1)
            {
                acc.extend_from_slice(more);
                continue;
            }
            out.push(ev);
        }
        out
    }

    use Side::{Client, Server};
    const EH: u8 = END_HEADERS;
    const ES: u8 = END_STREAM;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len())
            .expect("test frame fits")
            .to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], ty, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
        let payload: Vec<u8> = entries
            .iter()
            .flat_map(|(id, v)| [id.to_be_bytes().as_slice(), &v.to_be_bytes()].concat())
            .collect();
        frame(SETTINGS, 0, 0, &payload)
    }

    fn ack() -> Vec<u8> {
        frame(SETTINGS, ACK, 0, &[])
    }

    fn data(flags: u8, stream: u32, body: &[u8]) -> Vec<u8> {
        frame(DATA, flags, stream, body)
    }

    /// `payload` with a pad length byte before and `pad` zero bytes after.
    fn padded(payload: &[u8], pad: u8) -> Vec<u8> {
        [&[pad], payload, &vec![0; usize::from(pad)]].concat()
    }

    fn encode(enc: &mut Encoder<'static>, fields: &[(&str, &str)]) -> Vec<u8> {
        enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// An HPACK dynamic table size update instruction.
    fn size_update(size: usize) -> Vec<u8> {
        let mut b = encode_integer(size, 5);
        b[0] |= 0x20;
        b
    }

    fn fields_of(fields: &[(&str, &str)]) -> Vec<Header> {
        fields.iter().map(|(n, v)| Header::new(n, *v)).collect()
    }

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Head {
        Head {
            start: Start::Request {
                method: method.into(),
                target: path.into(),
                authority: Some("api.example.com".into()),
                scheme: Some("https".into()),
            },
            version: Version::Http2,
            headers: fields_of(headers),
        }
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> Head {
        Head {
            start: Start::Response { status },
            version: Version::Http2,
            headers: fields_of(headers),
        }
    }

    const GET: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "api.example.com"),
        (":path", "/v1/models"),
        ("accept", "*/*"),
    ];
    const POST: &[(&str, &str)] = &[
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "api.example.com"),
        (":path", "/v1/messages"),
        ("content-type", "application/json"),
    ];
    const OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/plain")];

    fn get_head() -> Head {
        req("GET", "/v1/models", &[("accept", "*/*")])
    }
    fn post_head() -> Head {
        req(
            "POST",
            "/v1/messages",
            &[("content-type", "application/json")],
        )
    }
    fn ok_head() -> Head {
        resp(200, &[("content-type", "text/plain")])
    }

    fn stream_err(stream: u64, side: Side, kind: ErrorKind, detail: &str) -> Ev {
        Ev::Error(Some(side), Some(stream), kind, detail.into())
    }
    fn conn_err(kind: ErrorKind, detail: &str) -> Ev {
        Ev::Error(None, None, kind, detail.into())
    }
    fn end(stream: u64, side: Side, ts: u64) -> Ev {
        Ev::End(stream, side, Vec::new(), ts)
    }
    fn body(stream: u64, side: Side, b: &[u8]) -> Ev {
        Ev::Body(stream, side, b.to_vec())
    }

    /// A connection past its preface and SETTINGS exchange, with an HPACK
    /// encoder per side; each feed gets the next timestamp (1, 2, …).
    struct Conn {
        parser: Http2,
        events: Vec<Ev>,
        client_enc: Encoder<'static>,
        server_enc: Encoder<'static>,
        ts: u64,
    }

    impl Conn {
        fn new() -> Self {
            Self::with(WireLimits::default())
        }

        fn with(limits: WireLimits) -> Self {
            let mut c = Self::bare(limits);
            c.feed_at(Client, &[PREFACE, &settings(&[])].concat(), 0);
            c.feed_at(Server, &[settings(&[]), ack()].concat(), 0);
            c.feed_at(Client, &ack(), 0);
            assert_eq!(c.take(), []);
            c
        }

        /// Nothing fed yet.
        fn bare(limits: WireLimits) -> Self {
            Self {
                parser: Http2::new(limits),
                events: Vec::new(),
                client_enc: Encoder::new(),
                server_enc: Encoder::new(),
                ts: 0,
            }
        }

        fn feed_at(&mut self, side: Side, bytes: &[u8], ts: u64) {
            let events = &mut self.events;
            self.parser
                .feed(side, bytes, ts, &mut |p| events.push(Ev::of(p)));
        }

        fn feed(&mut self, side: Side, bytes: &[u8]) -> u64 {
            self.ts += 1;
            self.feed_at(side, bytes, self.ts);
            self.ts
        }

        fn client(&mut self, bytes: &[u8]) -> u64 {
            self.feed(Client, bytes)
        }

        fn server(&mut self, bytes: &[u8]) -> u64 {
            self.feed(Server, bytes)
        }

        fn gap(&mut self, side: Side) {
            let events = &mut self.events;
            self.parser.gap(side, &mut |p| events.push(Ev::of(p)));
        }

        fn close(&mut self) {
            let events = &mut self.events;
            self.parser.close(99, &mut |p| events.push(Ev::of(p)));
        }

        fn take(&mut self) -> Vec<Ev> {
            normalize(std::mem::take(&mut self.events))
        }

        /// A HEADERS frame the client sends, its block encoded now.
        fn request(&mut self, stream: u32, flags: u8, fields: &[(&str, &str)]) -> Vec<u8> {
            frame(
                HEADERS,
                flags,
                stream,
                &encode(&mut self.client_enc, fields),
            )
        }

        fn response(&mut self, stream: u32, flags: u8, fields: &[(&str, &str)]) -> Vec<u8> {
            frame(
                HEADERS,
                flags,
                stream,
                &encode(&mut self.server_enc, fields),
            )
        }

        /// Feeds more after a connection error and checks it is ignored.
        fn assert_dead(&mut self) {
            let more = self.request(1, EH | ES, GET);
            self.client(&more);
            self.server(&more);
            self.close();
            assert_eq!(self.take(), []);
            assert_eq!(self.parser.buffered(), 0);
        }
    }

    #[test]
    fn get_with_response_body() {
        let mut c = Conn::new();
        let r = c.request(1, EH | ES, GET);
        let t1 = c.client(&r);
        let r = c.response(1, EH, OK);
        let t2 = c.server(&[r, data(0, 1, b"hel"), data(ES, 1, b"lo")].concat());
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, get_head(), t1),
                end(1, Client, t1),
                Ev::Head(1, Server, ok_head(), t2),
                body(1, Server, b"hello"),
                end(1, Server, t2),
            ]
        );
        assert!(c.parser.streams.is_empty());
        assert_eq!(c.parser.buffered(), 0);
    }

    #[test]
    fn padding_and_priority_are_stripped() {
        let mut c = Conn::new();
        let block = encode(&mut c.client_enc, POST);
        let mut payload = vec![0x80, 0, 0, 3, 15]; // exclusive dependency on 3, weight 16
        payload.extend_from_slice(&block);
        let headers = frame(
            HEADERS,
            EH | PADDED | PRIORITY_FLAG,
            1,
            &padded(&payload, 7),
        );
        let t1 = c.client(&headers);
        let t2 = c.client(&frame(DATA, PADDED, 1, &padded(b"{\"a\":", 4)));
        let t3 = c.client(&frame(DATA, PADDED, 1, &padded(b"1}", 0)));
        // A frame of padding only, then an empty END_STREAM frame.
        let t4 = c.client(&[frame(DATA, PADDED, 1, &padded(b"", 9)), data(ES, 1, b"")].concat());
        assert_eq!((t2, t3), (2, 3));
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, post_head(), t1),
                body(1, Client, b"{\"a\":1}"),
                end(1, Client, t4),
            ]
        );
    }

    #[test]
    fn padding_longer_than_frame_is_connection_error() {
        let mut c = Conn::new();
        c.client(&frame(DATA, PADDED, 1, &[5, 1, 2]));
        assert_eq!(
            c.take(),
            [conn_err(
                ErrorKind::Malformed,
                "DATA padding exceeds its frame on stream 1"
            )]
        );
        c.assert_dead();

        let mut c = Conn::new();
        let block = encode(&mut c.client_enc, GET);
        let mut payload = vec![200];
        payload.extend_from_slice(&block);
        c.client(&frame(HEADERS, EH | PADDED, 1, &payload));
        assert_eq!(
            c.take(),
            [conn_err(
                ErrorKind::Malformed,
                "HEADERS padding exceeds its frame on stream 1"
            )]
        );
    }

    #[test]
    fn continuation_assembles_a_header_block() {
        let mut c = Conn::new();
        let block = encode(&mut c.client_enc, POST);
        let (a, rest) = block.split_at(4);
        let (b, d) = rest.split_at(5);
        c.client(&frame(HEADERS, PADDED, 1, &padded(a, 3)));
        assert_eq!(c.parser.buffered(), 4);
        c.client(&frame(CONTINUATION, 0, 1, b));
        assert_eq!(c.parser.buffered(), 9);
        let t = c.client(&frame(CONTINUATION, EH, 1, d));
        assert_eq!(c.parser.buffered(), 0);
        // A response whose block also spans two frames.
        let block = encode(&mut c.server_enc, OK);
        let (a, b) = block.split_at(1);
        let ts = c.server(&[frame(HEADERS, ES, 1, a), frame(CONTINUATION, EH, 1, b)].concat());
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, post_head(), t),
                Ev::Head(1, Server, ok_head(), ts),
                end(1, Server, ts),
            ]
        );
    }

    #[test]
    fn anything_but_continuation_in_a_block_is_connection_error() {
        let mut c = Conn::new();
        let r = c.request(1, EH, POST);
        c.client(&r);
        let block = encode(&mut c.client_enc, GET);
        c.client(&frame(HEADERS, 0, 3, &block));
        c.client(&data(0, 1, b"secret"));
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, post_head(), 1),
                conn_err(
                    ErrorKind::Malformed,
                    "CONTINUATION of stream 3 expected, got DATA on stream 1"
                ),
                Ev::Abort(1, Client, "connection error"),
                Ev::Abort(1, Server, "connection error"),
            ]
        );
        c.assert_dead();

        let mut c = Conn::new();
        let block = encode(&mut c.client_enc, GET);
        c.client(&frame(HEADERS, 0, 3, &block));
        c.client(&frame(CONTINUATION, EH, 5, &[]));
        assert_eq!(
            c.take(),
            [conn_err(
                ErrorKind::Malformed,
                "CONTINUATION of stream 3 expected, got CONTINUATION on stream 5"
            )]
        );

        let mut c = Conn::new();
        c.server(&frame(CONTINUATION, EH, 1, &[0x88]));
        assert_eq!(
            c.take(),
            [conn_err(
                ErrorKind::Malformed,
                "CONTINUATION without a header block on stream 1"
            )]
        );
    }

    #[test]
    fn multiplexed_streams() {
        let mut c = Conn::new();
        let mut input = Vec::new();
        for stream in [1, 3, 5] {
            input.extend(c.request(stream, EH, POST));
        }
        for (i, stream) in [5, 1, 3, 5, 3, 1].into_iter().enumerate() {
            let flags = if i >= 3 { ES } else { 0 };
            input.extend(data(flags, stream, format!("{stream}.{i};").as_bytes()));
        }
        let t1 = c.client(&input);
        let mut output = Vec::new();
        for stream in [3, 5, 1] {
            output.extend(c.response(stream, EH, OK));
        }
        output.extend(data(ES, 1, b"one"));
        output.extend(data(0, 3, b"th"));
        output.extend(data(ES, 5, b"five"));
        output.extend(data(ES, 3, b"ree"));
        let t2 = c.server(&output);
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, post_head(), t1),
                Ev::Head(3, Client, post_head(), t1),
                Ev::Head(5, Client, post_head(), t1),
                body(5, Client, b"5.0;"),
                body(1, Client, b"1.1;"),
                body(3, Client, b"3.2;"),
                body(5, Client, b"5.3;"),
                end(5, Client, t1),
                body(3, Client, b"3.4;"),
                end(3, Client, t1),
                body(1, Client, b"1.5;"),
                end(1, Client, t1),
                Ev::Head(3, Server, ok_head(), t2),
                Ev::Head(5, Server, ok_head(), t2),
                Ev::Head(1, Server, ok_head(), t2),
                body(1, Server, b"one"),
                end(1, Server, t2),
                body(3, Server, b"th"),
                body(5, Server, b"five"),
                end(5, Server, t2),
                body(3, Server, b"ree"),
                end(3, Server, t2),
            ]
        );
        assert!(c.parser.streams.is_empty());
    }

    #[test]
    fn rst_stream_aborts_unfinished_messages() {
        let mut c = Conn::new();
        let r1 = c.request(1, EH, POST);
        let r3 = c.request(3, EH | ES, GET);
        c.client(&[r1, data(0, 1, b"part"), r3].concat());
        let r = c.response(1, EH, OK);
        c.server(&r);
        let rst = |stream| frame(RST_STREAM, 0, stream, &8u32.to_be_bytes());
        c.client(&rst(1));
        c.server(&rst(3));
        // Frames still in flight for the reset streams are ignored.
        c.client(&data(ES, 1, b"late"));
        let r = c.response(3, EH | ES, OK);
        c.server(&[data(ES, 1, b"late"), r, rst(3)].concat());
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, post_head(), 1),
                body(1, Client, b"part"),
                Ev::Head(3, Client, get_head(), 1),
                end(3, Client, 1),
                Ev::Head(1, Server, ok_head(), 2),
                Ev::Abort(1, Client, "stream reset"),
                Ev::Abort(1, Server, "stream reset"),
                Ev::Abort(3, Server, "stream reset"),
            ]
        );
        // A RST_STREAM of the wrong size breaks the framing rules.
        c.client(&frame(RST_STREAM, 0, 1, &[0, 0, 8]));
        assert_eq!(
            c.take(),
            [conn_err(
                ErrorKind::Malformed,
                "invalid RST_STREAM on stream 1"
            )]
        );
    }

    #[test]
    fn trailers_end_messages() {
        let mut c = Conn::new();
        let r = c.request(1, EH, POST);
        let trailer = [("x-checksum", "abc")];
        let t = c.request(1, EH | ES, &trailer);
        let t1 = c.client(&[r, data(0, 1, b"{}"), t].concat());
        let r = c.response(
            1,
            EH,
            &[(":status", "200"), ("content-type", "application/grpc")],
        );
        let t = c.response(1, EH | ES, &[("grpc-status", "0"), ("grpc-message", "")]);
        let t2 = c.server(&[r, data(0, 1, b"\0\0\0\0\0"), t].concat());
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, post_head(), t1),
                body(1, Client, b"{}"),
                Ev::End(1, Client, fields_of(&trailer), t1),
                Ev::Head(
                    1,
                    Server,
                    resp(200, &[("content-type", "application/grpc")]),
                    t2
                ),
                body(1, Server, b"\0\0\0\0\0"),
                Ev::End(
                    1,
                    Server,
                    fields_of(&[("grpc-status", "0"), ("grpc-message", "")]),
                    t2
                ),
            ]
        );
    }

    #[test]
    fn bad_trailers_are_stream_errors() {
        let mut c = Conn::new();
        let r = c.request(1, EH, POST);
        let t = c.request(1, EH, &[("x-checksum", "abc")]);
        c.client(&[r, t].concat());
        let r = c.request(3, EH, POST);
        let t = c.request(3, EH | ES, &[(":path", "/x")]);
        c.client(&[r, t].concat());
        let r = c.request(5, EH | ES, GET);
        c.client(&r);
        let r = c.request(5, EH | ES, &[("x", "y")]);
        c.client(&r);
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, post_head(), 1),
                stream_err(
                    1,
                    Client,
                    ErrorKind::Malformed,
                    "trailing HEADERS without END_STREAM on stream 1"
                ),
                Ev::Abort(1, Client, "stream error"),
                Ev::Abort(1, Server, "stream error"),
                Ev::Head(3, Client, post_head(), 2),
                stream_err(
                    3,
                    Client,
                    ErrorKind::Malformed,
                    "pseudo-header in trailers on stream 3"
                ),
                Ev::Abort(3, Client, "stream error"),
                Ev::Abort(3, Server, "stream error"),
                Ev::Head(5, Client, get_head(), 3),
                end(5, Client, 3),
                stream_err(
                    5,
                    Client,
                    ErrorKind::Malformed,
                    "HEADERS after END_STREAM on stream 5"
                ),
                Ev::Abort(5, Server, "stream error"),
            ]
        );
    }

    #[test]
    fn interim_responses_are_not_reported() {
        let mut c = Conn::new();
        let r = c.request(1, EH, &[POST, &[("expect", "100-continue")]].concat());
        c.client(&r);
        let r = c.response(1, EH, &[(":status", "100")]);
        c.server(&r);
        c.client(&data(ES, 1, b"x"));
        let r1 = c.response(1, EH, &[(":status", "103"), ("link", "</a.css>")]);
        let r2 = c.response(1, EH | ES, &[(":status", "204")]);
        let t = c.server(&[r1, r2].concat());
        let mut head = post_head();
        head.headers.push(Header::new("expect", "100-continue"));
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, head, 1),
                body(1, Client, b"x"),
                end(1, Client, 3),
                Ev::Head(1, Server, resp(204, &[]), t),
                end(1, Server, t),
            ]
        );

        for (status, flags, detail) in [
            (
                "100",
                EH | ES,
                "interim response with END_STREAM on stream 1",
            ),
            ("101", EH, "status 101 in HTTP/2 on stream 1"),
        ] {
            let mut c = Conn::new();
            let r = c.request(1, EH | ES, GET);
            c.client(&r);
            let r = c.response(1, flags, &[(":status", status)]);
            c.server(&r);
            let events = c.take();
            assert_eq!(
                events[2..],
                [
                    stream_err(1, Server, ErrorKind::Malformed, detail),
                    Ev::Abort(1, Server, "stream error"),
                ]
            );
        }
    }

    #[test]
    fn push_promise_is_decoded_but_not_reported() {
        let mut c = Conn::new();
        let r = c.request(1, EH | ES, GET);
        c.client(&r);
        // The promised request inserts fields in the server encoder's table,
        // which the response then references: skipping the block would break.
        let promised = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "api.example.com"),
            (":path", "/style.css"),
            ("x-pushed", "yes"),
        ];
        let block = encode(&mut c.server_enc, &promised);
        let (a, b) = block.split_at(6);
        let pp = [&2u32.to_be_bytes(), a].concat();
        let push = [
            frame(PUSH_PROMISE, PADDED, 1, &padded(&pp, 2)),
            frame(CONTINUATION, EH, 1, b),
        ]
        .concat();
        let fields = [(":status", "200"), ("x-pushed", "yes")];
        let r = c.response(1, EH, &fields);
        assert_eq!(
            r[r.len() - 1],
            0x80 | 62,
            "the response references the push's field"
        );
        let pushed = c.response(2, EH, OK);
        let t = c.server(&[push, r, pushed, data(ES, 2, b"css"), data(ES, 1, b"ok")].concat());
        assert_eq!(
            c.take()[2..],
            [
                Ev::Head(1, Server, resp(200, &[("x-pushed", "yes")]), t),
                body(1, Server, b"ok"),
                end(1, Server, t),
            ]
        );

        let mut c = Conn::new();
        c.client(&frame(PUSH_PROMISE, EH, 1, &[0, 0, 0, 2, 0x82]));
        assert_eq!(
            c.take(),
            [conn_err(
                ErrorKind::Malformed,
                "PUSH_PROMISE from the client on stream 1"
            )]
        );
    }

    /// RFC 7541 C.4: requests with Huffman-coded strings and dynamic table use.
    #[test]
    fn huffman_and_dynamic_table_rfc7541_vectors() {
        let blocks: [&[u8]; 3] = [
            b"\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff",
            b"\x82\x86\x84\xbe\x58\x86\xa8\xeb\x10\x64\x9c\xbf",
            b"\x82\x87\x85\xbf\x40\x88\x25\xa8\x49\xe9\x5b\xa9\x7d\x7f\x89\x25\xa8\x49\xe9\x5b\xb8\xe8\xb4\xbf",
        ];
        let mut c = Conn::new();
        for (i, block) in (1u32..).step_by(2).zip(blocks) {
            c.client(&frame(HEADERS, EH | ES, i, block));
        }
        let head = |scheme: &str, path: &str, headers: &[(&str, &str)]| Head {
            start: Start::Request {
                method: "GET".into(),
                target: path.into(),
                authority: Some("www.example.com".into()),
                scheme: Some(scheme.into()),
            },
            version: Version::Http2,
            headers: fields_of(headers),
        };
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, head("http", "/", &[]), 1),
                end(1, Client, 1),
                Ev::Head(
                    3,
                    Client,
                    head("http", "/", &[("cache-control", "no-cache")]),
                    2
                ),
                end(3, Client, 2),
                Ev::Head(
                    5,
                    Client,
                    head("https", "/index.html", &[("custom-key", "custom-value")]),
                    3
                ),
                end(5, Client, 3),
            ]
        );
    }

    /// Two large fields that fit an 8 KiB table but not the default 4 KiB one.
    fn big_fields() -> Vec<(&'static str, String)> {
        vec![("x-a", "a".repeat(3000)), ("x-b", "b".repeat(3000))]
    }

    fn request_with(
        c: &mut Conn,
        stream: u32,
        extra: &[(&'static str, String)],
        prefix: &[u8],
    ) -> Vec<u8> {
        let mut fields: Vec<(&str, &str)> = GET.to_vec();
        fields.extend(extra.iter().map(|(n, v)| (*n, v.as_str())));
        let block = [prefix, &encode(&mut c.client_enc, &fields)].concat();
        frame(HEADERS, EH | ES, stream, &block)
    }

    #[test]
    fn header_table_size_setting_allows_a_larger_table() {
        let mut c = Conn::new();
        c.server(&settings(&[(SETTINGS_HEADER_TABLE_SIZE, 8192)]));
        c.client(&ack());
        c.client_enc.set_max_table_size(8192);
        let big = big_fields();
        let r1 = request_with(&mut c, 1, &big, &size_update(8192));
        let r3 = request_with(&mut c, 3, &big, &[]);
        assert!(r3.len() < 64, "the second request indexes both fields");
        c.client(&[r1, r3].concat());
        let events = c.take();
        assert_eq!(events.len(), 4, "{events:?}");
        let Ev::Head(3, Client, head, _) = &events[2] else {
            panic!("{events:?}")
        };
        assert_eq!(head.value("x-b").map(str::len), Some(3000));
    }

    #[test]
    fn table_size_update_beyond_the_setting_is_connection_error() {
        let mut c = Conn::new();
        let r = request_with(&mut c, 1, &[], &size_update(8192));
        c.client(&r);
        let detail = "HPACK decoding of a client header block failed on stream 1: \
                      Dynamic table size exceeds the maximum size";
        assert_eq!(c.take(), [conn_err(ErrorKind::Malformed, detail)]);
        c.assert_dead();
    }

    #[test]
    fn smaller_table_size_binds_only_after_ack() {
        // Until the client acknowledges, the old size is still valid.
        let mut c = Conn::new();
        c.server(&settings(&[(SETTINGS_HEADER_TABLE_SIZE, 0)]));
        let r = request_with(&mut c, 1, &[], &size_update(4096));
        c.client(&r);
        assert_eq!(c.take().len(), 2);
        c.client(&ack());
        let r = request_with(&mut c, 3, &[], &size_update(0));
        c.client(&r);
        assert_eq!(c.take().len(), 2);
        let r = request_with(&mut c, 5, &[], &size_update(4096));
        c.client(&r);
        let events = c.take();
        assert!(
            matches!(
                &events[..],
                [Ev::Error(None, None, ErrorKind::Malformed, _), ..]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn table_size_beyond_the_cap_is_limit() {
        let mut c = Conn::new();
        c.server(&settings(&[(SETTINGS_HEADER_TABLE_SIZE, 1 << 20)]));
        c.client(&ack());
        let r = request_with(&mut c, 1, &[], &size_update(MAX_TABLE_SIZE));
        c.client(&r);
        assert_eq!(c.take().len(), 2);
        let r = request_with(&mut c, 3, &[], &size_update(1 << 20));
        c.client(&r);
        let events = c.take();
        assert!(
            matches!(
                &events[..],
                [Ev::Error(None, None, ErrorKind::Limit, _), ..]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn table_bound_tracks_outstanding_settings() {
        let mut t = TableBound::new();
        assert_eq!(t.allowed(), 4096);
        t.announce(Some(100));
        t.announce(None);
        t.announce(Some(9000));
        assert_eq!(t.allowed(), 9000);
        t.acknowledge();
        t.acknowledge();
        assert_eq!((t.acked, t.allowed()), (100, 9000));
        t.acknowledge();
        t.acknowledge(); // an ACK with nothing outstanding changes nothing
        assert_eq!(t.allowed(), 9000);
        for _ in 0..100 {
            t.announce(Some(1));
        }
        assert_eq!(t.pending.len(), MAX_PENDING_SETTINGS);
        assert_eq!(t.allowed(), 1);
    }

    #[test]
    fn control_and_unknown_frames_are_ignored() {
        let mut c = Conn::new();
        let r = c.request(1, EH, POST);
        let input = [
            r,
            frame(PING, 0, 0, &[1; 8]),
            frame(WINDOW_UPDATE, 0, 0, &[0, 1, 0, 0]),
            frame(WINDOW_UPDATE, 0, 1, &[0, 1, 0, 0]),
            frame(PRIORITY, 0, 1, &[0, 0, 0, 0, 7]),
            frame(0xfa, 0xff, 1, b"unknown extension"),
            data(ES, 1, b"x"),
            frame(GOAWAY, 0, 0, &[0; 8]),
        ]
        .concat();
        c.client(&input);
        let r = c.response(1, EH | ES, OK);
        c.server(&[frame(PING, ACK, 0, &[1; 8]), r].concat());
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, post_head(), 1),
                body(1, Client, b"x"),
                end(1, Client, 1),
                Ev::Head(1, Server, ok_head(), 2),
                end(1, Server, 2),
            ]
        );
    }

    #[test]
    fn server_goaway_aborts_later_streams() {
        let mut c = Conn::new();
        let r1 = c.request(1, EH | ES, GET);
        let r3 = c.request(3, EH, POST);
        c.client(&[r1, r3].concat());
        let r = c.response(1, EH | ES, OK);
        c.server(&[frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]), r].concat());
        assert_eq!(
            c.take()[3..],
            [
                Ev::Abort(3, Client, "refused by GOAWAY"),
                Ev::Abort(3, Server, "refused by GOAWAY"),
                Ev::Head(1, Server, ok_head(), 2),
                end(1, Server, 2),
            ]
        );
    }

    #[test]
    fn frame_over_limit_is_connection_error() {
        let limits = WireLimits {
            max_frame_bytes: 100,
            ..WireLimits::default()
        };
        let mut c = Conn::with(limits);
        let r = c.request(1, EH, POST);
        c.client(&[r, data(0, 1, &[b'a'; 100])].concat());
        c.client(&data(ES, 1, &[b'b'; 101])[..20]);
        assert_eq!(
            c.take()[1..],
            [
                body(1, Client, &[b'a'; 100]),
                conn_err(
                    ErrorKind::Limit,
                    "DATA frame of 101 bytes over the 100-byte limit on stream 1"
                ),
                Ev::Abort(1, Client, "connection error"),
                Ev::Abort(1, Server, "connection error"),
            ]
        );
        c.assert_dead();
    }

    #[test]
    fn streams_over_limit_are_ignored_but_keep_hpack_in_step() {
        let limits = WireLimits {
            max_streams: 2,
            ..WireLimits::default()
        };
        let mut c = Conn::with(limits);
        let r1 = c.request(1, EH, POST);
        let r3 = c.request(3, EH | ES, GET);
        c.client(&[r1, r3].concat());
        // Stream 5 is refused; its block adds `x-five` to the table.
        let r5 = c.request(5, EH, &[POST, &[("x-five", "5")]].concat());
        c.client(&[r5, data(ES, 5, b"ignored")].concat());
        let r = c.response(5, EH | ES, OK);
        c.server(&r);
        c.client(&data(ES, 1, b""));
        let r = c.response(1, EH | ES, OK);
        c.server(&r);
        let r7 = c.request(7, EH | ES, &[GET, &[("x-five", "5")]].concat());
        assert_eq!(r7[r7.len() - 1], 0x80 | 62);
        c.client(&r7);
        let mut head7 = get_head();
        head7.headers.push(Header::new("x-five", "5"));
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, post_head(), 1),
                Ev::Head(3, Client, get_head(), 1),
                end(3, Client, 1),
                stream_err(
                    5,
                    Client,
                    ErrorKind::Limit,
                    "more than 2 open streams on stream 5"
                ),
                end(1, Client, 4),
                Ev::Head(1, Server, ok_head(), 5),
                end(1, Server, 5),
                Ev::Head(7, Client, head7, 6),
                end(7, Client, 6),
            ]
        );
    }

    #[test]
    fn header_count_limit_is_stream_error() {
        let limits = WireLimits {
            max_header_count: 2,
            ..WireLimits::default()
        };
        let mut c = Conn::with(limits);
        let extra = [("x-1", "1"), ("x-2", "2"), ("x-3", "3")];
        let r = c.request(1, EH | ES, &[GET, &extra[..1]].concat());
        let bad = c.request(3, EH | ES, &[GET, &extra].concat());
        // References the fields the rejected block added to the table.
        let after = c.request(5, EH | ES, &[&GET[..4], &extra[1..]].concat());
        c.client(&[r, bad, after].concat());
        let expect = |fields: &[(&str, &str)]| req("GET", "/v1/models", fields);
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, expect(&[("accept", "*/*"), ("x-1", "1")]), 1),
                end(1, Client, 1),
                stream_err(
                    3,
                    Client,
                    ErrorKind::Limit,
                    "more than 2 header fields on stream 3"
                ),
                Ev::Head(5, Client, expect(&extra[1..]), 1),
                end(5, Client, 1),
            ]
        );
    }

    #[test]
    fn decoded_size_limit_bounds_indexed_fields() {
        let limits = WireLimits {
            max_header_bytes: 300,
            ..WireLimits::default()
        };
        let mut c = Conn::with(limits);
        let big = "b".repeat(150);
        let one = [GET, &[("x-big", big.as_str())]].concat();
        let r1 = c.request(1, EH | ES, &one);
        // Two one-byte references to the same 155-byte field.
        let two = [GET, &[("x-big", big.as_str()), ("x-big", big.as_str())]].concat();
        let r3 = c.request(3, EH | ES, &two);
        assert!(r3.len() < 100, "compressed block well under the limit");
        c.client(&[r1, r3].concat());
        let events = c.take();
        assert_eq!(
            events[2..],
            [stream_err(
                3,
                Client,
                ErrorKind::Limit,
                "decoded header list over 300 bytes on stream 3"
            )]
        );
    }

    #[test]
    fn compressed_block_limit() {
        let limits = WireLimits {
            max_header_bytes: 100,
            ..WireLimits::default()
        };
        // In one frame the block is decoded (HPACK in step), the stream fails.
        let mut c = Conn::with(limits);
        let updates = size_update(4096).repeat(40);
        let r1 = request_with(&mut c, 1, &[], &updates);
        let r3 = request_with(&mut c, 3, &[], &[]);
        c.client(&[r1, r3].concat());
        assert_eq!(
            c.take(),
            [
                stream_err(
                    1,
                    Client,
                    ErrorKind::Limit,
                    "header block over 100 bytes on stream 1"
                ),
                Ev::Head(3, Client, get_head(), 1),
                end(3, Client, 1),
            ]
        );
        // Across CONTINUATION frames it cannot be kept, so HPACK state is lost.
        let mut c = Conn::with(limits);
        let block = [updates, encode(&mut c.client_enc, GET)].concat();
        let (a, b) = block.split_at(60);
        c.client(&[frame(HEADERS, 0, 1, a), frame(CONTINUATION, EH, 1, b)].concat());
        assert_eq!(
            c.take(),
            [conn_err(
                ErrorKind::Limit,
                "header block over 100 bytes across CONTINUATION frames on stream 1"
            )]
        );
        c.assert_dead();
    }

    #[test]
    fn malformed_request_heads_are_stream_errors() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(":scheme", "https"), (":path", "/")],
                "request without :method",
            ),
            (
                &[(":method", "GET"), (":path", "/")],
                "request without :scheme",
            ),
            (
                &[(":method", "GET"), (":scheme", "https")],
                "request without :path",
            ),
            (
                &[(":method", "GET"), (":scheme", "https"), (":path", "")],
                "request without :path",
            ),
            (
                &[(":method", "GET"), (":method", "GET")],
                "duplicate :method",
            ),
            (
                &[(":method", "GET"), (":status", "200")],
                ":status in a request",
            ),
            (
                &[(":method", "GET"), (":sk-secret", "x")],
                "unknown pseudo-header",
            ),
            (
                &[("accept", "*/*"), (":method", "GET")],
                "pseudo-header after a regular field",
            ),
            (&[(":method", "GET"), ("", "x")], "empty field name"),
            (
                &[(":method", "GET"), (":protocol", "websocket")],
                ":protocol outside CONNECT",
            ),
        ];
        for (fields, what) in cases {
            let mut c = Conn::new();
            let bad = c.request(1, EH, fields);
            let good = c.request(3, EH | ES, GET);
            c.client(&[bad, data(ES, 1, b"ignored"), good].concat());
            assert_eq!(
                c.take(),
                [
                    stream_err(
                        1,
                        Client,
                        ErrorKind::Malformed,
                        &format!("{what} on stream 1")
                    ),
                    Ev::Head(3, Client, get_head(), 1),
                    end(3, Client, 1),
                ],
                "{fields:?}"
            );
        }
        // Values that are not UTF-8 cannot be a method or a name.
        let mut c = Conn::new();
        let block = [&[0x82, 0x87, 0x84][..], &[0x10, 1, 0xff, 1, b'x']].concat();
        c.client(&frame(HEADERS, EH | ES, 1, &block));
        assert_eq!(
            c.take(),
            [stream_err(
                1,
                Client,
                ErrorKind::Malformed,
                "field name is not UTF-8 on stream 1"
            )]
        );
    }

    #[test]
    fn malformed_response_heads_are_stream_errors() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("content-type", "text/plain")],
                "response without :status",
            ),
            (&[(":status", "20")], "invalid :status"),
            (&[(":status", "abc")], "invalid :status"),
            (&[(":status", "099")], "invalid :status"),
            (
                &[(":status", "200"), (":path", "/")],
                "request pseudo-header in a response",
            ),
        ];
        for (fields, what) in cases {
            let mut c = Conn::new();
            let r = c.request(1, EH | ES, GET);
            c.client(&r);
            let bad = c.response(1, EH, fields);
            c.server(&[bad, data(ES, 1, b"ignored")].concat());
            assert_eq!(
                c.take()[2..],
                [
                    stream_err(
                        1,
                        Server,
                        ErrorKind::Malformed,
                        &format!("{what} on stream 1")
                    ),
                    Ev::Abort(1, Server, "stream error"),
                ],
                "{fields:?}"
            );
        }
    }

    #[test]
    fn data_before_response_head_is_stream_error() {
        let mut c = Conn::new();
        let r = c.request(1, EH, POST);
        c.client(&r);
        c.server(&data(ES, 1, b"early"));
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, post_head(), 1),
                stream_err(
                    1,
                    Server,
                    ErrorKind::Malformed,
                    "DATA outside a message on stream 1"
                ),
                Ev::Abort(1, Client, "stream error"),
                Ev::Abort(1, Server, "stream error"),
            ]
        );
    }

    #[test]
    fn connect_is_unsupported() {
        let mut c = Conn::new();
        let fields = [(":method", "CONNECT"), (":authority", "db.internal:5432")];
        let r = c.request(1, EH, &fields);
        c.client(&[r, data(0, 1, b"tunnel bytes")].concat());
        let r = c.response(1, EH, OK);
        c.server(&[r, data(0, 1, b"tunnel bytes")].concat());
        assert_eq!(
            c.take(),
            [stream_err(
                1,
                Client,
                ErrorKind::Unsupported,
                "CONNECT tunnel not decoded on stream 1"
            )]
        );
    }

    #[test]
    fn connection_errors() {
        let hpack_garbage = frame(HEADERS, EH, 1, &[0xbf]); // index 63, table empty
        let cases: Vec<(Side, Vec<u8>, &str)> = vec![
            (
                Client,
                frame(HEADERS, EH, 0, &[0x82]),
                "HEADERS on stream 0",
            ),
            (Server, data(0, 0, b"x"), "DATA on stream 0"),
            (
                Client,
                data(PADDED, 1, b""),
                "PADDED DATA without pad length on stream 1",
            ),
            (
                Client,
                frame(HEADERS, EH | ES, 2, &[0x82, 0x87, 0x84]),
                "client HEADERS on even stream 2",
            ),
            (
                Client,
                frame(SETTINGS, 0, 0, &[0; 5]),
                "SETTINGS of 5 bytes, not a multiple of 6",
            ),
            (
                Server,
                frame(SETTINGS, ACK, 0, &[0; 6]),
                "SETTINGS ACK with a payload",
            ),
            (Server, frame(SETTINGS, 0, 1, &[]), "SETTINGS on stream 1"),
            (
                Client,
                frame(RST_STREAM, 0, 0, &[0; 4]),
                "invalid RST_STREAM on stream 0",
            ),
            (
                Server,
                frame(PUSH_PROMISE, EH, 1, &[0, 0]),
                "PUSH_PROMISE too short on stream 1",
            ),
            (
                Client,
                hpack_garbage,
                "HPACK decoding of a client header block failed on stream 1: Header index out of bounds",
            ),
        ];
        for (side, bytes, detail) in cases {
            let mut c = Conn::new();
            c.feed(side, &bytes);
            assert_eq!(
                c.take(),
                [conn_err(ErrorKind::Malformed, detail)],
                "{detail}"
            );
            c.assert_dead();
        }
    }

    #[test]
    fn each_side_must_start_right() {
        let mut c = Conn::bare(WireLimits::default());
        c.client(b"PRI * HTTP/2.0\r\n");
        c.client(b"\r\nXX");
        assert_eq!(
            c.take(),
            [conn_err(
                ErrorKind::Malformed,
                "client did not start with the HTTP/2 preface"
            )]
        );
        c.assert_dead();

        let mut c = Conn::bare(WireLimits::default());
        c.client(&[PREFACE, &ack()].concat());
        assert_eq!(
            c.take(),
            [conn_err(
                ErrorKind::Malformed,
                "client side did not start with SETTINGS (got SETTINGS)"
            )]
        );

        // An HTTP/1.1 server answering a prior-knowledge client.
        let mut c = Conn::bare(WireLimits::default());
        c.client(&[PREFACE, &settings(&[])].concat());
        c.server(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        assert_eq!(
            c.take(),
            [conn_err(
                ErrorKind::Malformed,
                "server side did not start with SETTINGS (got unknown frame)"
            )]
        );
    }

    #[test]
    fn gap_stops_decoding() {
        let mut c = Conn::new();
        let r1 = c.request(1, EH | ES, GET);
        let r3 = c.request(3, EH, POST);
        c.client(&[r1, r3].concat());
        c.server(&[0, 0]);
        assert_eq!(c.parser.buffered(), 2);
        c.take();
        c.gap(Server);
        assert_eq!(
            c.take(),
            [
                conn_err(
                    ErrorKind::Gap,
                    "server bytes lost: HTTP/2 framing and HPACK state cannot be recovered"
                ),
                Ev::Abort(1, Server, "bytes lost"),
                Ev::Abort(3, Client, "bytes lost"),
                Ev::Abort(3, Server, "bytes lost"),
            ]
        );
        c.gap(Client);
        c.assert_dead();
    }

    #[test]
    fn close_aborts_unfinished_messages() {
        let mut c = Conn::new();
        let r1 = c.request(1, EH | ES, GET);
        let r3 = c.request(3, EH, POST);
        let r5 = c.request(5, EH | ES, GET);
        c.client(&[r1, r3, r5].concat());
        let r = c.response(5, EH | ES, OK);
        c.server(&r);
        c.take();
        c.close();
        assert_eq!(
            c.take(),
            [
                Ev::Abort(1, Server, "connection closed"),
                Ev::Abort(3, Client, "connection closed"),
                Ev::Abort(3, Server, "connection closed"),
            ]
        );
        c.assert_dead();
    }

    #[test]
    fn buffered_counts_partial_frames() {
        let mut c = Conn::new();
        let r = c.request(1, EH, POST);
        c.client(&r[..5]);
        assert_eq!(c.parser.buffered(), 5);
        c.client(&r[5..12]);
        assert_eq!(
            c.parser.buffered(),
            3,
            "header parsed, 3 payload bytes held"
        );
        c.client(&r[12..]);
        assert_eq!(c.parser.buffered(), 0);
        // DATA is streamed, not held.
        let d = data(ES, 1, &[b'x'; 1000]);
        c.client(&d[..500]);
        assert_eq!(c.parser.buffered(), 0);
        c.client(&d[500..]);
        assert_eq!(
            c.take()[1..],
            [body(1, Client, &[b'x'; 1000]), end(1, Client, 5)]
        );
    }

    /// Bytes between Node.js 20's http2 client and server (both nghttp2) over
    /// h2c, recorded by a relay: a GET and a POST multiplexed on one connection,
    /// Huffman-coded fields with dynamic table references, response trailers,
    /// GOAWAY from both ends.
    const CAPTURE: &[(Side, &str)] = &[
        (
            Side::Client,
            "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a00000004000000000000002f01050000000182048863b858a4f216847f418b089d5c0b8170dc65f782ef861f088aba51d85b1447559254277a8720eb4db61580ff00002901040000000383048963b858a4a840e62a3fbf865f8b1d75d0620d263d4c7441ea1f088aba51d85b144755925427bf00000d0000000000037b226d6f64656c223a226d222c",
        ),
        (Side::Server, "000000040000000000"),
        (
            Side::Server,
            "000000040100000000000033010400000001885f87497ca58ae819aa4089f2b585ed6950958d2784b0bda2076197dd6d5f4a09f5349fba82009c502edc69fb8d3aa62d1bff00000600010000000168656c6c6f0a",
        ),
        (Side::Client, "000000040100000000"),
        (
            Side::Client,
            "00000e000100000003226d65737361676573223a5b5d7d",
        ),
        (
            Side::Server,
            "000016010400000003885f8b1d75d0620d263d4c7441ea7f0184b0bda20fc00000140000000000037b226f6b223a747275652c22676f74223a32377d",
        ),
        (Side::Server, "00000d0105000000034087f2b26c19a82d9f8390f517"),
        (
            Side::Client,
            "00000807000000000000000000000000000000080700000000000000000000000000",
        ),
        (
            Side::Server,
            "00000807000000000000000003000000000000080700000000000000000300000000",
        ),
    ];

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn real_capture() {
        let mut c = Conn::bare(WireLimits::default());
        for (side, hex) in CAPTURE {
            c.feed(*side, &unhex(hex));
        }
        c.close();
        let request = |method: &str, path: &str, headers: &[(&str, &str)]| Head {
            start: Start::Request {
                method: method.into(),
                target: path.into(),
                authority: Some("127.0.0.1:39817".into()),
                scheme: Some("http".into()),
            },
            version: Version::Http2,
            headers: fields_of(headers),
        };
        let auth = [
            ("authorization", "Bearer sk-test"),
            ("user-agent", "capture/1"),
        ];
        let date = ("date", "Sun, 29 Nov 2026 17:49:47 GMT");
        let json = ("content-type", "application/json");
        assert_eq!(
            c.take(),
            [
                Ev::Head(1, Client, request("GET", "/v1/models", &auth), 1),
                end(1, Client, 1),
                Ev::Head(
                    3,
                    Client,
                    request("POST", "/v1/messages", &[&[json][..], &auth].concat()),
                    1
                ),
                body(3, Client, b"{\"model\":\"m\","),
                Ev::Head(
                    1,
                    Server,
                    resp(
                        200,
                        &[
                            ("content-type", "text/plain"),
                            ("x-request-id", "req_0"),
                            date
                        ]
                    ),
                    3
                ),
                body(1, Server, b"hello\n"),
                end(1, Server, 3),
                body(3, Client, b"\"messages\":[]}"),
                end(3, Client, 5),
                Ev::Head(
                    3,
                    Server,
                    resp(200, &[json, ("x-request-id", "req_1"), date]),
                    6
                ),
                body(3, Server, b"{\"ok\":true,\"got\":27}"),
                Ev::End(3, Server, fields_of(&[("x-trailer", "done")]), 7),
            ]
        );
    }

    /// A connection exercising most of the parser: settings with a table size
    /// change, multiplexing, CONTINUATION, padding, 1xx, trailers, push, reset,
    /// control frames, Huffman blocks.
    fn conversation() -> Vec<(Side, Vec<u8>)> {
        let mut c = Conn::bare(WireLimits::default());
        let mut feeds = vec![
            (Client, [PREFACE, &settings(&[(3, 100)])].concat()),
            (
                Server,
                [
                    settings(&[(SETTINGS_HEADER_TABLE_SIZE, 8192), (4, 65535)]),
                    ack(),
                ]
                .concat(),
            ),
        ];
        c.client_enc.set_max_table_size(8192);
        let r1 = request_with(&mut c, 1, &big_fields(), &size_update(8192));
        let block = encode(&mut c.client_enc, POST);
        let (a, b) = block.split_at(3);
        let mut client = [ack(), r1, frame(HEADERS, PADDED, 3, &padded(a, 5))].concat();
        client.extend(frame(CONTINUATION, EH, 3, b));
        client.extend(frame(DATA, PADDED, 3, &padded(&[b'p'; 300], 20)));
        client.extend(frame(PING, 0, 0, &[7; 8]));
        feeds.push((Client, client));
        let r = c.response(3, EH, &[(":status", "100")]);
        let r1 = c.response(1, EH, OK);
        feeds.push((Server, [r, r1, data(0, 1, &[b'r'; 1000])].concat()));
        let r5 = request_with(&mut c, 5, &big_fields(), &[]);
        let trailer = c.request(3, EH | ES, &[("x-sum", "1")]);
        feeds.push((Client, [data(0, 3, &[b'q'; 2000]), r5, trailer].concat()));
        let promise = encode(&mut c.server_enc, &[(":method", "GET"), (":path", "/p")]);
        let r3 = c.response(3, EH, &[(":status", "201"), ("location", "/x")]);
        let t3 = c.response(3, EH | ES, &[("grpc-status", "0")]);
        let server = [
            frame(PUSH_PROMISE, EH, 1, &[&[0, 0, 0, 2], &promise[..]].concat()),
            r3,
            frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]),
            data(ES, 1, b"end"),
            t3,
            frame(RST_STREAM, 0, 5, &[0, 0, 0, 8]),
        ]
        .concat();
        feeds.push((Server, server));
        let rfc = b"\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff";
        feeds.push((Client, frame(HEADERS, EH | ES, 7, rfc)));
        feeds
    }

    /// Feeds `feeds`, each cut into pieces of the sizes in `cuts` (cycled).
    fn run(feeds: &[(Side, Vec<u8>)], cuts: &[usize], limits: WireLimits) -> (Vec<Ev>, usize) {
        let mut c = Conn::bare(limits);
        let mut sizes = cuts.iter().copied().cycle();
        let mut max_buffered = 0;
        for (ts, (side, bytes)) in (1..).zip(feeds) {
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = sizes.next().unwrap_or(usize::MAX).clamp(1, rest.len());
                c.feed_at(*side, &rest[..n], ts);
                max_buffered = max_buffered.max(c.parser.buffered());
                rest = &rest[n..];
            }
        }
        c.close();
        (c.take(), max_buffered)
    }

    #[test]
    fn conversation_decodes_and_one_byte_feeds_agree() {
        let feeds = conversation();
        let (whole, _) = run(&feeds, &[usize::MAX], WireLimits::default());
        let errors: Vec<_> = whole
            .iter()
            .filter(|e| matches!(e, Ev::Error(..)))
            .collect();
        assert_eq!(errors, [] as [&Ev; 0]);
        let heads = whole.iter().filter(|e| matches!(e, Ev::Head(..))).count();
        let ends = whole.iter().filter(|e| matches!(e, Ev::End(..))).count();
        let aborts = whole.iter().filter(|e| matches!(e, Ev::Abort(..))).count();
        // Requests 1, 3, 5, 7 and responses 1, 3 complete; the responses of 5
        // (reset) and 7 (closed) abort.
        assert_eq!((heads, ends, aborts), (6, 6, 2));
        assert_eq!(run(&feeds, &[1], WireLimits::default()).0, whole);
    }

    proptest! {
        #[test]
        fn splits_do_not_change_the_result(cuts in prop::collection::vec(1usize..300, 1..40)) {
            let feeds = conversation();
            let (whole, _) = run(&feeds, &[usize::MAX], WireLimits::default());
            prop_assert_eq!(run(&feeds, &cuts, WireLimits::default()).0, whole);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            client in prop::collection::vec(any::<u8>(), 0..3000),
            server in prop::collection::vec(any::<u8>(), 0..3000),
            cuts in prop::collection::vec(1usize..500, 1..20),
        ) {
            let limits = small_limits();
            let feeds = vec![
                (Client, [PREFACE, &settings(&[])].concat()),
                (Server, settings(&[])),
                (Client, client),
                (Server, server),
            ];
            let (_, max_buffered) = run(&feeds, &cuts, limits);
            prop_assert!(max_buffered <= bound(limits));
        }

        /// Well-framed frames of any type, flags and payload: this gets far
        /// deeper than random bytes, into HPACK and the stream states.
        #[test]
        fn arbitrary_frames_never_panic_and_stay_bounded(
            frames in prop::collection::vec(
                (any::<bool>(), 0u8..11, any::<u8>(), 0u32..8, prop::collection::vec(any::<u8>(), 0..80)),
                0..60,
            ),
            cuts in prop::collection::vec(1usize..100, 1..20),
        ) {
            let limits = small_limits();
            let mut feeds = vec![
                (Client, [PREFACE, &settings(&[])].concat()),
                (Server, settings(&[])),
            ];
            for (client, ty, flags, stream, payload) in frames {
                let side = if client { Client } else { Server };
                feeds.push((side, frame(ty, flags, stream, &payload)));
            }
            let (events, max_buffered) = run(&feeds, &cuts, limits);
            prop_assert!(max_buffered <= bound(limits));
            // Details are about the frames, never their bytes.
            for e in events {
                if let Ev::Error(_, _, _, detail) = e {
                    prop_assert!(detail.is_ascii() && detail.len() < 200);
                }
            }
        }
    }

    fn small_limits() -> WireLimits {
        WireLimits {
            max_header_count: 8,
            max_header_bytes: 200,
            max_streams: 3,
            max_frame_bytes: 256,
            max_ws_message_bytes: 0,
        }
    }

    /// The most [`Http2::buffered`] may report: a frame header and payload per
    /// side, and a header block per side.
    fn bound(limits: WireLimits) -> usize {
        2 * (FRAME_HEADER_LEN + limits.max_frame_bytes + limits.max_header_bytes)
    }

    /// The Huffman-coded string literals of a well-formed header block.
    fn huffman_strings(block: &[u8]) -> usize {
        let (mut pos, mut count) = (0, 0);
        while let Some(&first) = block.get(pos) {
            let (prefix, literal) = match first {
                f if f & 0x80 != 0 => (7, false),
                f if f & 0x40 != 0 => (6, true),
                f if f & 0x20 != 0 => (5, false),
                _ => (4, true),
            };
            let (index, head) = hpack_integer(&block[pos..], prefix).expect("integer");
            pos += head;
            let strings = match (literal, index) {
                (false, _) => 0,
                (true, 0) => 2,
                (true, _) => 1,
            };
            for _ in 0..strings {
                let s = hpack_string(&block[pos..]).expect("string");
                count += usize::from(s.huffman);
                pos += s.raw.len();
            }
        }
        count
    }

    /// A hostile block of 43,690 empty Huffman strings: the HPACK decoder used
    /// to build a Huffman code table for each (a quarter of a second). Now it
    /// gets a block without a single Huffman string, so it builds none; the
    /// outcome and the HPACK state are as before.
    #[test]
    fn hostile_huffman_block_builds_no_code_table_per_string() {
        let n = 64 * 1024 / 3;
        let hostile = [0x00, 0x80, 0x80].repeat(n);
        assert_eq!(huffman_strings(&hostile), 2 * n);
        let plain = without_huffman(&hostile).expect("rewritten");
        assert_eq!(huffman_strings(&plain), 0);
        assert_eq!(plain, [0x00, 0x00, 0x00].repeat(n));

        let mut c = Conn::new();
        c.client(&frame(HEADERS, EH | ES, 1, &hostile));
        let block = encode(&mut c.client_enc, GET);
        let t = c.client(&frame(HEADERS, EH | ES, 3, &block));
        assert_eq!(
            c.take(),
            [
                stream_err(
                    1,
                    Client,
                    ErrorKind::Malformed,
                    "empty field name on stream 1"
                ),
                Ev::Head(3, Client, get_head(), t),
                end(3, Client, t),
            ]
        );
    }

    #[test]
    fn without_huffman_rewrites_only_huffman_strings() {
        // No Huffman string: nothing to rewrite.
        assert_eq!(without_huffman(b"\x82\x86\x84\x41\x03abc"), None);
        assert_eq!(without_huffman(b""), None);
        // RFC 7541 C.4.1 against C.3.1: the same request, Huffman-coded or not.
        let huffman = b"\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff";
        let plain = b"\x82\x86\x84\x41\x0fwww.example.com";
        assert_eq!(without_huffman(huffman).as_deref(), Some(&plain[..]));
        // A long value gets a multi-byte length; a bad string stops the
        // rewriting there and the rest is copied as it is.
        let mut long = vec![0x00, 0x81, 0x07]; // name "0"
        long.extend([0xff, 33]); // value: Huffman, 127 + 33 bytes
        long.extend([0x00; 160]); // 256 '0's of 5 bits
        let bad = [0x00, 0x81, 0xff, 0x81, 0x00]; // a name of 8 padding bits
        let block = [&long[..], &bad[..]].concat();
        let mut want = vec![0x00, 0x01, b'0', 0x7f, 0x81, 0x01]; // 127 + 129
        want.extend([b'0'; 256]);
        want.extend(bad);
        assert_eq!(without_huffman(&block), Some(want));
    }

    type HpackResult = Result<Vec<(Vec<u8>, Vec<u8>)>, DecoderError>;
    /// One representation: kind, index, name, value, Huffman-coded name, value.
    type Rep = (u8, usize, Vec<u8>, Vec<u8>, bool, bool);

    /// What a fresh decoder makes of `block`, then of references to the first
    /// dynamic table entries (its state afterwards).
    fn hpack_outcome(block: &[u8]) -> Vec<HpackResult> {
        let mut d = Decoder::new();
        d.set_max_allowed_table_size(DEFAULT_TABLE_SIZE);
        let mut out = vec![d.decode(block)];
        for i in 62..70u8 {
            out.push(d.decode(&[0x80 | i]));
        }
        out
    }

    /// A header block built from representations of every kind, strings
    /// Huffman-coded or not.
    fn hpack_block(reps: &[Rep]) -> Vec<u8> {
        let string = |out: &mut Vec<u8>, s: &[u8], huffman: bool| {
            let mut h = Vec::new();
            let (flag, octets) = if huffman {
                httlib_huffman::encode(s, &mut h).expect("encodable");
                (0x80, &h[..])
            } else {
                (0, s)
            };
            let mut len = encode_integer(octets.len(), 7);
            len[0] |= flag;
            out.extend(len);
            out.extend_from_slice(octets);
        };
        let mut out = Vec::new();
        for (kind, index, name, value, hn, hv) in reps {
            let (prefix, flag) =
                [(7, 0x80), (6, 0x40), (5, 0x20), (4, 0x10), (4, 0x00)][usize::from(*kind % 5)];
            let index = if prefix == 5 { index * 64 } else { *index };
            let mut head = encode_integer(index, prefix);
            head[0] |= flag;
            out.extend(head);
            if prefix == 6 || prefix == 4 {
                if index == 0 {
                    string(&mut out, name, *hn);
                }
                string(&mut out, value, *hv);
            }
        }
        out
    }

    proptest! {
        /// The rewriting changes nothing the HPACK decoder sees: fields,
        /// errors and dynamic table come out the same, for well-formed blocks
        /// with a byte changed or not, and for arbitrary bytes.
        #[test]
        fn huffman_rewriting_does_not_change_hpack_results(
            reps in prop::collection::vec(
                (
                    0u8..5,
                    prop_oneof![Just(0usize), 0usize..80],
                    prop::collection::vec(any::<u8>(), 0..20),
                    prop::collection::vec(any::<u8>(), 0..140),
                    any::<bool>(),
                    any::<bool>(),
                ),
                0..10,
            ),
            flip in prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
            noise in prop::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut block = hpack_block(&reps);
            if let Some((at, x)) = flip.filter(|_| !block.is_empty()) {
                let i = at.index(block.len());
                block[i] ^= x;
            }
            for block in [block, noise] {
                let plain = without_huffman(&block);
                if let Some(plain) = &plain {
                    prop_assert!(plain.len() <= block.len() * 8 / 5 + block.len() / 2 + 1);
                }
                let rewritten = plain.as_deref().unwrap_or(&block);
                prop_assert_eq!(hpack_outcome(rewritten), hpack_outcome(&block));
            }
        }
    }
}
