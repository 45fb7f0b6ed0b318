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
pub const ABI_VERSION: u16 = 3;

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
    /// An [`ExecRecord`]: a process started a new program.
    Exec = 5,
    /// A [`ProcessRecord`]: a process that made SSL calls exited.
    Exit = 6,
    /// A [`ConnectRecord`]: a process connected to a TLS port.
    Connect = 7,
    /// A [`HoldRecord`]: a thread was stopped at the entry of a TLS write for
    /// user space to decide on.
    Hold = 8,
}

/// Most destination ports user space can mark as TLS ports (443, 8443, …).
pub const MAX_TLS_PORTS: u32 = 64;

/// Most (process, destination) pairs remembered to report a connect once.
pub const MAX_CONNECTS_SEEN: u32 = 16_384;

/// A process connected a socket to a port user space marked as a TLS port: the
/// first such connect per process and destination, so that user space can tell
/// whether that process's TLS is visible.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectRecord {
    /// [`RecordKind::Connect`].
    pub kind: u16,
    /// [`ABI_VERSION`].
    pub abi: u16,
    /// Process id.
    pub pid: u32,
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub ts_ns: u64,
    /// Address family (2 = IPv4, 10 = IPv6).
    pub family: u16,
    /// Destination port (host order).
    pub port: u16,
    /// The socket descriptor.
    pub fd: i32,
    /// Destination address (IPv4 in the first four bytes).
    pub addr: [u8; 16],
    /// `comm` of the calling thread.
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<ConnectRecord>() == 56);

/// Key of the kernel's memory of reported connects.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectKey {
    /// Process id.
    pub pid: u32,
    /// Destination port.
    pub port: u16,
    /// Address family.
    pub family: u16,
    /// Destination address.
    pub addr: [u8; 16],
}

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers without padding.
unsafe impl aya::Pod for ConnectRecord {}

/// Longest program path carried by an [`ExecRecord`].
pub const EXEC_PATH_MAX: usize = 256;

/// A process started a new program: its pid and the path it executed (as
/// given to `execve`, so possibly relative), so that user space can inspect the
/// program even when the process has already exited.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    /// [`RecordKind::Exec`].
    pub kind: u16,
    /// [`ABI_VERSION`].
    pub abi: u16,
    /// Process id.
    pub pid: u32,
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub ts_ns: u64,
    /// Bytes of `path` used (without the NUL); 0 when it could not be read.
    pub path_len: u16,
    /// Reserved, zero.
    pub _pad: [u16; 3],
    /// The path, NUL-padded.
    pub path: [u8; EXEC_PATH_MAX],
}
const _: () = assert!(core::mem::size_of::<ExecRecord>() == 24 + EXEC_PATH_MAX);

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers without padding holes.
unsafe impl aya::Pod for ExecRecord {}

/// A process lifecycle record (`Exit`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessRecord {
    /// [`RecordKind::Exit`].
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

/// Processes whose enforcement state (held or exempt) the kernel remembers.
pub const MAX_HOLD_PROCESSES: u32 = 65_536;

/// Values of the `HOLD` map, keyed by process id. A process absent from the map
/// has not been judged yet: its TLS writes are held, so that user space can
/// judge it before anything it writes leaves.
pub mod hold {
    /// Judged: no blocking policy selects the process; never held.
    pub const EXEMPT: u8 = 0;
    /// Judged: a blocking policy selects the process; every TLS write is held.
    pub const SELECTED: u8 = 1;
    /// Not judged, but held once already: user space is judging it. Set by the
    /// kernel so that a guard that finds the sensor gone knows to continue it.
    pub const PENDING: u8 = 2;
    /// `SIGSTOP`.
    pub const SIGSTOP: u32 = 19;
    /// `len` of a [`super::HoldRecord`] when the probe could not tell the
    /// write's length (its site has the count in no register).
    pub const LEN_UNKNOWN: u64 = u64::MAX;
}

/// A thread was stopped (with its whole process) at the entry of a TLS write:
/// the bytes it is about to encrypt are at `buf`, `len` long, in its memory.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HoldRecord {
    /// [`RecordKind::Hold`].
    pub kind: u16,
    /// [`ABI_VERSION`].
    pub abi: u16,
    /// [`crate::TlsFunction`] being held.
    pub function: u8,
    /// The `HOLD` map's value for the process when held; 0xff when absent (not
    /// judged yet).
    pub state: u8,
    /// Reserved, zero.
    pub _pad: u16,
    /// The connection's socket descriptor when the kernel knows it, else -1.
    pub fd: i32,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real uid.
    pub uid: u32,
    /// `CLOCK_MONOTONIC` nanoseconds when the thread was stopped.
    pub ts_ns: u64,
    /// The connection object (`SSL *`, `gnutls_session_t`).
    pub conn: u64,
    /// User address of the plaintext.
    pub buf: u64,
    /// Bytes at `buf`, or [`hold::LEN_UNKNOWN`].
    pub len: u64,
}
const _: () = assert!(core::mem::size_of::<HoldRecord>() == 56);

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers without padding holes.
unsafe impl aya::Pod for HoldRecord {}

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
            7 => Some(Self::Connect),
            8 => Some(Self::Hold),
            _ => None,
        }
    }
}
