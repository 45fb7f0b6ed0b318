//! HTTP/1.x parser (placeholder, being written).
use super::{Part, Side, WireLimits, WireParser};

/// HTTP/1.0 and 1.1 on one connection.
pub struct Http1 {
    _limits: WireLimits,
}

impl Http1 {
    /// A parser for a new connection.
    pub fn new(limits: WireLimits) -> Self {
        Self { _limits: limits }
    }
}

impl WireParser for Http1 {
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
