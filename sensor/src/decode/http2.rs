//! HTTP/2 parser (placeholder, being written).
use super::{Part, Side, WireLimits, WireParser};

/// HTTP/2 on one connection.
pub struct Http2 {
    _limits: WireLimits,
}

impl Http2 {
    /// A parser for a new connection.
    pub fn new(limits: WireLimits) -> Self {
        Self { _limits: limits }
    }
}

impl WireParser for Http2 {
    fn feed(&mut self, _side: Side, _data: &[u8], _ts_ns: u64, _out: &mut dyn FnMut(Part<'_>)) {
        todo!()
    }
    fn gap(&mut self, _side: Side, _out: &mut dyn FnMut(Part<'_>)) {
        todo!()
    }
    fn close(&mut self, _ts_ns: u64, _out: &mut dyn FnMut(Part<'_>)) {
        todo!()
    }
    fn buffered(&self) -> usize {
        0
    }
}

/// The client connection preface that starts every HTTP/2 connection.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
