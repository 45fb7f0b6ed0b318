//! What the wire-level parsers (HTTP/1.1, HTTP/2, WebSocket) report: message
//! heads, body bytes, ends and errors, in the order they appear on the wire.
//! [`super::exchange`] assembles them into requests and responses.

use serde::Serialize;

/// Which end of a connection sent some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The end that sends requests.
    Client,
    /// The end that sends responses.
    Server,
}

impl Side {
    /// The other end.
    pub fn peer(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }
}

/// HTTP version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Version {
    /// HTTP/1.0
    #[serde(rename = "HTTP/1.0")]
    Http10,
    /// HTTP/1.1
    #[serde(rename = "HTTP/1.1")]
    Http11,
    /// HTTP/2
    #[serde(rename = "HTTP/2")]
    Http2,
}

/// One header field. HTTP/2 pseudo-headers are not headers: they are in [`Start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Field name, lower-cased.
    pub name: String,
    /// Field value as sent (not necessarily UTF-8).
    pub value: Vec<u8>,
}

impl Header {
    /// A header from a name (lower-cased here) and a value.
    pub fn new(name: &str, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.to_ascii_lowercase(),
            value: value.into(),
        }
    }
}

/// First line of an HTTP/1 message, or the pseudo-headers of an HTTP/2 one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A request.
    Request {
        /// Method (`POST`).
        method: String,
        /// Request target as sent: origin form (`/v1/messages?beta=true`), absolute
        /// form (through a proxy), authority form (`CONNECT`) or `*`. HTTP/2: `:path`.
        target: String,
        /// HTTP/2 `:authority` (HTTP/1 carries it in the `host` header).
        authority: Option<String>,
        /// HTTP/2 `:scheme`.
        scheme: Option<String>,
    },
    /// A final response (interim 1xx responses other than 101 are not reported).
    Response {
        /// Status code.
        status: u16,
    },
}

/// A message head: start line (or pseudo-headers) and header fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Request or response line.
    pub start: Start,
    /// Protocol version.
    pub version: Version,
    /// Header fields in wire order, names lower-cased.
    pub headers: Vec<Header>,
}

impl Head {
    /// Values of the headers named `name` (lower-case), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| h.value.as_slice())
    }

    /// The first header named `name` (lower-case), as text if it is UTF-8.
    pub fn value<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.values(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Identifies an exchange within a connection: the HTTP/2 stream id, or on
/// HTTP/1 the ordinal of the request (1, 2, …); the n-th final response gets the
/// n-th request's ordinal, so pipelined exchanges pair up.
pub type StreamId = u64;

/// Why a parser reports an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The bytes break the protocol.
    Malformed,
    /// A configured bound was reached (header count or size, frame size, streams).
    Limit,
    /// Bytes are missing (lost in capture, or the sensor joined mid-connection).
    Gap,
    /// Valid, but not something the decoder follows (a CONNECT tunnel, h2c upgrade).
    Unsupported,
}

/// What a wire-level parser reports, in wire order.
#[derive(Debug, PartialEq, Eq)]
pub enum Part<'a> {
    /// A message starts.
    Head {
        /// Exchange within the connection.
        stream: StreamId,
        /// Who sent it.
        side: Side,
        /// The head.
        head: Head,
        /// Time of the bytes that completed the head (`CLOCK_MONOTONIC` ns).
        ts_ns: u64,
    },
    /// Body bytes with transfer framing removed (chunked encoding, HTTP/2 DATA
    /// framing and padding) but content encoding (gzip, …) still applied.
    Body {
        /// Exchange within the connection.
        stream: StreamId,
        /// Who sent it.
        side: Side,
        /// The bytes.
        data: &'a [u8],
    },
    /// A message ended normally (after its last body byte).
    End {
        /// Exchange within the connection.
        stream: StreamId,
        /// Who sent it.
        side: Side,
        /// Trailer fields (chunked trailers, HTTP/2 trailing HEADERS).
        trailers: Vec<Header>,
        /// Time of the bytes that ended it.
        ts_ns: u64,
    },
    /// The message of `side` on `stream` will not complete (RST_STREAM, a gap, the
    /// connection closed early). Its parts so far stay valid. It may come without
    /// a `Head` when the head itself was cut (HTTP/1 still counts it as a request,
    /// so that the response to it pairs correctly).
    Abort {
        /// Exchange within the connection.
        stream: StreamId,
        /// Whose message.
        side: Side,
        /// Why, in a few words.
        reason: &'static str,
    },
    /// One whole WebSocket message: fragments joined, client masking removed.
    WebSocket {
        /// The exchange that upgraded the connection.
        stream: StreamId,
        /// Who sent it.
        side: Side,
        /// Opcode of the message (1 text, 2 binary, 8 close, 9 ping, 10 pong).
        opcode: u8,
        /// Payload, at most the configured bound.
        payload: &'a [u8],
        /// The payload was longer than the bound; `payload` is its start.
        truncated: bool,
        /// Time of the bytes that ended it.
        ts_ns: u64,
    },
    /// A protocol error. With `stream`, only that exchange is affected; without,
    /// that side of the connection (or the whole connection, with `side: None`)
    /// is not decoded until the parser finds its footing again, if it can (HTTP/1
    /// resynchronises at the next request or status line; HTTP/2 cannot).
    Error {
        /// Affected side, if one.
        side: Option<Side>,
        /// Affected exchange, if one.
        stream: Option<StreamId>,
        /// Class of error.
        kind: ErrorKind,
        /// What was wrong, for the `decode.error` record (never plaintext).
        detail: String,
    },
}

/// Bounds the wire-level parsers enforce; reaching one yields a [`Part::Error`]
/// with [`ErrorKind::Limit`], never unbounded memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// Header fields per message (each of head and trailers).
    pub max_header_count: usize,
    /// Bytes of one head: HTTP/1 start line + fields; HTTP/2 header block, both
    /// compressed (HEADERS + CONTINUATION) and decoded.
    pub max_header_bytes: usize,
    /// Exchanges in flight per connection: open HTTP/2 streams, or HTTP/1
    /// requests waiting for their response.
    pub max_streams: usize,
    /// Largest HTTP/2 frame payload buffered whole (HTTP/1 bodies and WebSocket
    /// frames stream through without being buffered).
    pub max_frame_bytes: usize,
    /// WebSocket message bytes kept; longer messages are reported truncated.
    pub max_ws_message_bytes: usize,
}

impl Default for WireLimits {
    fn default() -> Self {
        Self {
            max_header_count: 256,
            max_header_bytes: 64 * 1024,
            max_streams: 256,
            max_frame_bytes: 1 << 20,
            max_ws_message_bytes: 1 << 20,
        }
    }
}
