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
pub const ABI_VERSION: u16 = 2;

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
    /// A [`ServerNameRecord`]: a client set the TLS server name (SNI).
    ServerName = 3,
    /// A [`FdBindRecord`]: a connection's socket descriptor, learned late.
    FdBind = 4,
    /// A [`ProcessRecord`]: a process started a new program.
    Exec = 5,
    /// A [`ProcessRecord`]: a process that made SSL calls exited.
    Exit = 6,
}

/// A process lifecycle record (`Exec` or `Exit`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessRecord {
    /// [`RecordKind::Exec`] or [`RecordKind::Exit`].
    pub kind: u16,
    /// [`ABI_VERSION`].
    pub abi: u16,
    /// Process id.
    pub pid: u32,
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub ts_ns: u64,
}
const _: () = assert!(core::mem::size_of::<ProcessRecord>() == 16);

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers without padding.
unsafe impl aya::Pod for ProcessRecord {}

impl RecordKind {
    /// Decodes the kind stored in a record's first two bytes.
    pub const fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::TlsChunk),
            2 => Some(Self::ConnClose),
            3 => Some(Self::ServerName),
            4 => Some(Self::FdBind),
            5 => Some(Self::Exec),
            6 => Some(Self::Exit),
            _ => None,
        }
    }
}
