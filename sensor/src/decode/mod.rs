//! Protocol-decode stage: turns each connection's reassembled plaintext into HTTP
//! requests and responses (HTTP/1.1, HTTP/2 with HPACK, WebSocket), with content
//! decoding (gzip, deflate, br, zstd) and Server-Sent Events.
//!
//! Wire parsers ([`http1`], [`http2`]) report [`Part`]s; the exchange layer
//! assembles them into messages under hard bounds. Nothing here panics on hostile
//! input: a malformed stream becomes an error record for its connection and leaves
//! every other connection alone.

mod http1;
mod http2;
mod part;
mod ws;

pub use part::{ErrorKind, Head, Header, Part, Side, Start, StreamId, Version, WireLimits};

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

pub use http1::Http1;
pub use http2::{Http2, PREFACE as HTTP2_PREFACE};
