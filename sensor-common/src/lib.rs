//! Types that cross the kernel/user-space boundary.
//!
//! Everything here is `#[repr(C)]`, fixed-size and versioned: the kernel programs
//! in `sensor-ebpf` write these layouts into BPF maps and the ring buffer, and the
//! `telltale` binary reads them back. Any change to a layout must bump
//! [`ABI_VERSION`]; the compile-time assertions below catch accidental changes.
#![no_std]

pub mod probe;
pub mod tls;

pub use tls::*;

/// Version of the record layouts in this crate. Carried in every record header so
/// that user space refuses records from a kernel object built from other sources.
pub const ABI_VERSION: u16 = 1;

/// Length of a task's `comm` as the kernel stores it (including the NUL).
pub const COMM_LEN: usize = 16;

/// Kinds of record that the kernel programs put into the `EVENTS` ring buffer.
/// The first two bytes of every record are one of these values.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A [`TlsChunkHeader`] followed by `data_len` bytes of plaintext.
    TlsChunk = 1,
    /// A [`ConnCloseRecord`]: the library freed a connection object.
    ConnClose = 2,
}

impl RecordKind {
    /// Decodes the kind stored in a record's first two bytes.
    pub const fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::TlsChunk),
            2 => Some(Self::ConnClose),
            _ => None,
        }
    }
}
