//! TLS plaintext capture: the record header, the per-call state the entry probes
//! keep for the return probes, and the kernel's loss counters.

use crate::COMM_LEN;

/// Largest number of plaintext bytes in one ring-buffer record. A message larger
/// than this is split into ordered chunks (see [`TlsChunkHeader::offset`]).
/// 16 KiB is the TLS record size limit, so most calls fit in one chunk.
pub const CHUNK_MAX: usize = 16 * 1024;

/// Number of full chunks one probe invocation emits before the final, smaller
/// chunk: with [`CHUNK_MAX`] this bounds one captured call to 4 MiB. Bytes past
/// that are counted in [`Counter::TruncatedBytes`], never silently dropped.
pub const MAX_FULL_CHUNKS: u32 = 255;

/// Largest number of bytes captured from one SSL call.
pub const MAX_CAPTURE_PER_CALL: u64 = (MAX_FULL_CHUNKS as u64 + 1) * CHUNK_MAX as u64;

/// Sizes of the data area of the final chunk of a message. The kernel reserves the
/// smallest that fits, so a 40-byte write does not occupy 16 KiB of ring buffer.
pub const TAIL_BUCKETS: [usize; 5] = [128, 512, 2048, 8192, CHUNK_MAX];

/// Default size of the `EVENTS` ring buffer in bytes (a power of two, a multiple of
/// the page size). User space may resize it before loading.
pub const DEFAULT_RING_BYTES: u32 = 64 * 1024 * 1024;

/// Maximum number of SSL calls in flight at once (between entry and return probe)
/// across all threads of the host.
pub const MAX_ACTIVE_CALLS: u32 = 65_536;

/// The TLS-library function a chunk was captured from.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFunction {
    /// `int SSL_write(SSL *ssl, const void *buf, int num)` (OpenSSL, BoringSSL)
    SslWrite = 1,
    /// `int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written)`
    SslWriteEx = 2,
    /// `int SSL_read(SSL *ssl, void *buf, int num)`
    SslRead = 3,
    /// `int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)`
    SslReadEx = 4,
    /// `ssize_t gnutls_record_send(gnutls_session_t, const void *data, size_t)`
    GnutlsRecordSend = 5,
    /// `ssize_t gnutls_record_recv(gnutls_session_t, void *data, size_t)`
    GnutlsRecordRecv = 6,
    /// `PRInt32 PR_Write(PRFileDesc *fd, const void *buf, PRInt32 amount)`
    /// (NSPR; captured only for file descriptors whose top layer is NSS's SSL)
    PrWrite = 7,
    /// `PRInt32 PR_Read(PRFileDesc *fd, void *buf, PRInt32 amount)`
    PrRead = 8,
    /// `PRInt32 PR_Send(PRFileDesc *fd, const void *buf, PRInt32 amount, …)`
    PrSend = 9,
    /// `PRInt32 PR_Recv(PRFileDesc *fd, void *buf, PRInt32 amount, …)`
    PrRecv = 10,
    /// Go's `func (c *tls.Conn) Write(b []byte) (int, error)` (register ABI)
    GoWrite = 11,
    /// Go's `func (c *tls.Conn) Read(b []byte) (int, error)` (register ABI)
    GoRead = 12,
}

/// How a function reports the number of bytes it transferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsResult {
    /// An `int`: the byte count when > 0.
    Int,
    /// `_ex` style: returns 1 on success, the count is in a `size_t *` argument.
    IntWithCountOut,
    /// A `ssize_t`: the byte count when > 0.
    Ssize,
}

impl TlsFunction {
    /// OpenSSL's (and BoringSSL's) functions, in attach order.
    pub const OPENSSL: [Self; 4] = [
        Self::SslWrite,
        Self::SslWriteEx,
        Self::SslRead,
        Self::SslReadEx,
    ];

    /// GnuTLS's functions.
    pub const GNUTLS: [Self; 2] = [Self::GnutlsRecordSend, Self::GnutlsRecordRecv];

    /// NSPR's I/O functions, through which NSS's SSL layer is used.
    pub const NSPR: [Self; 4] = [Self::PrWrite, Self::PrRead, Self::PrSend, Self::PrRecv];

    /// Go's crypto/tls methods.
    pub const GO: [Self; 2] = [Self::GoWrite, Self::GoRead];

    /// Decodes a function id from a record.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::SslWrite,
            2 => Self::SslWriteEx,
            3 => Self::SslRead,
            4 => Self::SslReadEx,
            5 => Self::GnutlsRecordSend,
            6 => Self::GnutlsRecordRecv,
            7 => Self::PrWrite,
            8 => Self::PrRead,
            9 => Self::PrSend,
            10 => Self::PrRecv,
            11 => Self::GoWrite,
            12 => Self::GoRead,
            _ => return None,
        })
    }

    /// The function's symbol name (for Go, its name in the `.gopclntab`).
    pub const fn symbol(self) -> &'static str {
        match self {
            Self::SslWrite => "SSL_write",
            Self::SslWriteEx => "SSL_write_ex",
            Self::SslRead => "SSL_read",
            Self::SslReadEx => "SSL_read_ex",
            Self::GnutlsRecordSend => "gnutls_record_send",
            Self::GnutlsRecordRecv => "gnutls_record_recv",
            Self::PrWrite => "PR_Write",
            Self::PrRead => "PR_Read",
            Self::PrSend => "PR_Send",
            Self::PrRecv => "PR_Recv",
            Self::GoWrite => "crypto/tls.(*Conn).Write",
            Self::GoRead => "crypto/tls.(*Conn).Read",
        }
    }

    /// Direction of the plaintext this function carries.
    pub const fn direction(self) -> Direction {
        match self {
            Self::SslWrite
            | Self::SslWriteEx
            | Self::GnutlsRecordSend
            | Self::PrWrite
            | Self::PrSend
            | Self::GoWrite => Direction::Egress,
            Self::SslRead
            | Self::SslReadEx
            | Self::GnutlsRecordRecv
            | Self::PrRead
            | Self::PrRecv
            | Self::GoRead => Direction::Ingress,
        }
    }

    /// True for the `_ex` variants, which return 1 on success and report the byte
    /// count through a `size_t *` argument.
    pub const fn is_ex(self) -> bool {
        matches!(self, Self::SslWriteEx | Self::SslReadEx)
    }

    /// How the function reports its byte count (Go's is an `int` in `rax` at
    /// its return instructions).
    pub const fn result(self) -> TlsResult {
        match self {
            Self::SslWriteEx | Self::SslReadEx => TlsResult::IntWithCountOut,
            Self::GnutlsRecordSend | Self::GnutlsRecordRecv | Self::GoWrite | Self::GoRead => {
                TlsResult::Ssize
            }
            _ => TlsResult::Int,
        }
    }
}

/// Which way the plaintext travels, seen from the process that made the call.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Written by the process: about to be encrypted and sent.
    Egress = 0,
    /// Read by the process: received and decrypted.
    Ingress = 1,
}

impl Direction {
    /// Decodes a direction from a record.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Egress),
            1 => Some(Self::Ingress),
            _ => None,
        }
    }
}

/// Header of a [`crate::RecordKind::TlsChunk`] record; `data_len` bytes of plaintext
/// follow it directly in the record.
///
/// One successful SSL call of `total_len` bytes produces records with `offset`
/// 0, [`CHUNK_MAX`], 2×[`CHUNK_MAX`], … in order, all from the same thread.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlsChunkHeader {
    /// [`crate::RecordKind::TlsChunk`].
    pub kind: u16,
    /// [`crate::ABI_VERSION`].
    pub abi: u16,
    /// [`Direction`] as `u8`.
    pub direction: u8,
    /// [`TlsFunction`] as `u8`.
    pub function: u8,
    /// [`FdSource`] as `u8`: how `fd` was learned.
    pub fd_source: u8,
    /// Reserved, zero.
    pub _pad: u8,
    /// Number of plaintext bytes following this header.
    pub data_len: u32,
    /// The socket descriptor the connection uses, or -1 when not (yet) known.
    pub fd: i32,
    /// `CLOCK_MONOTONIC` nanoseconds when the call returned.
    pub ts_ns: u64,
    /// Thread-group id (the process id) in the initial PID namespace.
    pub pid: u32,
    /// Thread id in the initial PID namespace.
    pub tid: u32,
    /// Real user id of the calling task.
    pub uid: u32,
    /// Real group id of the calling task.
    pub gid: u32,
    /// Address of the library's connection object (`SSL *`): with `pid`, it names
    /// the connection.
    pub conn: u64,
    /// Attach cookie: the user-space id of the attached target (library or
    /// executable), or 0 where the kernel cannot pass cookies.
    pub target: u64,
    /// Bytes the call transferred (its whole message).
    pub total_len: u64,
    /// Offset of this chunk's first byte within the message.
    pub offset: u64,
    /// `comm` of the calling thread, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// Size of [`TlsChunkHeader`] in bytes.
pub const TLS_CHUNK_HEADER_LEN: usize = core::mem::size_of::<TlsChunkHeader>();
const _: () = assert!(TLS_CHUNK_HEADER_LEN == 88);
const _: () = assert!(TLS_CHUNK_HEADER_LEN.is_multiple_of(8));

/// Emitted when a process frees a connection object (`SSL_free`). The same
/// address is often reused for the next connection, so user space needs this to
/// tell two connections at one address apart.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnCloseRecord {
    /// [`crate::RecordKind::ConnClose`].
    pub kind: u16,
    /// [`crate::ABI_VERSION`].
    pub abi: u16,
    /// Reserved, zero.
    pub _pad: u32,
    /// `CLOCK_MONOTONIC` nanoseconds of the call.
    pub ts_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The freed `SSL *`.
    pub conn: u64,
}
const _: () = assert!(core::mem::size_of::<ConnCloseRecord>() == 32);

/// Name of the function whose entry marks the end of a connection.
pub const SSL_FREE_SYMBOL: &str = "SSL_free";

/// `long SSL_ctrl(SSL *ssl, int cmd, long larg, void *parg)`: with
/// [`SSL_CTRL_SET_TLSEXT_HOSTNAME`] it sets the server name a client sends (the
/// `SSL_set_tlsext_host_name` macro expands to this call).
pub const SSL_CTRL_SYMBOL: &str = "SSL_ctrl";

/// `SSL_ctrl` command that sets the SNI host name.
pub const SSL_CTRL_SET_TLSEXT_HOSTNAME: i32 = 55;

/// Longest server name captured (DNS names are at most 253 bytes).
pub const SERVER_NAME_MAX: usize = 256;

/// Name of GnuTLS's session destructor: the end of a connection.
pub const GNUTLS_DEINIT_SYMBOL: &str = "gnutls_deinit";

/// `int gnutls_server_name_set(session, type, const void *name, size_t len)`:
/// the server name a GnuTLS client sends (not NUL-terminated).
pub const GNUTLS_SNI_SYMBOL: &str = "gnutls_server_name_set";

/// `GNUTLS_NAME_DNS`, the only name type `gnutls_server_name_set` defines.
pub const GNUTLS_NAME_DNS: u64 = 1;

/// `PRFileDesc *SSL_ImportFD(PRFileDesc *model, PRFileDesc *fd)` (NSS's libssl3):
/// pushes the SSL layer on top of `fd` and returns `fd`, whose top layer then
/// has the SSL layer's identity. Its return teaches the kernel that identity.
pub const NSS_IMPORT_SYMBOL: &str = "SSL_ImportFD";

/// `SECStatus SSL_SetURL(PRFileDesc *fd, const char *url)`: the server name an
/// NSS client checks and sends.
pub const NSS_SET_URL_SYMBOL: &str = "SSL_SetURL";

/// `PRStatus PR_Close(PRFileDesc *fd)`: the end of an NSS connection when `fd`
/// is an SSL layer.
pub const NSPR_CLOSE_SYMBOL: &str = "PR_Close";

/// Offset of `PRDescIdentity identity` in NSPR's `struct PRFileDesc` on LP64
/// (`methods`, `secret`, `lower`, `higher`, `dtor` are five pointers before it;
/// prio.h, unchanged since NSPR 4.0).
pub const NSPR_IDENTITY_OFFSET: u64 = 40;

/// Offsets followed from Go's `*tls.Conn` (in `rax` at `Read`/`Write`) to the
/// socket descriptor: `tls.Conn.conn` is a `net.Conn` interface whose data word
/// (at +8) points at a `net.TCPConn`, whose first field (`conn.fd`) points at a
/// `net.netFD`, which starts with `poll.FD { fdmu fdMutex (16 bytes); Sysfd int }`.
/// Stable since Go 1.9. The result is used only when the kernel confirms that
/// the descriptor is a socket.
pub const GO_CONN_OFFSETS: [u64; 3] = [8, 0, 16];

/// Key of a Go call in flight: goroutines move between threads, so Go's entry
/// state is keyed by the goroutine (`g`, in `r14` under the register ABI)
/// instead of the thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoCallKey {
    /// Process id.
    pub pid: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// Address of the goroutine's `runtime.g`.
    pub g: u64,
}

/// Emitted when a client sets the server name (SNI) of a connection.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ServerNameRecord {
    /// [`crate::RecordKind::ServerName`].
    pub kind: u16,
    /// [`crate::ABI_VERSION`].
    pub abi: u16,
    /// Bytes of `name` used (without the NUL).
    pub len: u16,
    /// Reserved, zero.
    pub _pad: u16,
    /// `CLOCK_MONOTONIC` nanoseconds of the call.
    pub ts_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The `SSL *`.
    pub conn: u64,
    /// The name, NUL-padded.
    pub name: [u8; SERVER_NAME_MAX],
}
const _: () = assert!(core::mem::size_of::<ServerNameRecord>() == 32 + SERVER_NAME_MAX);

/// What an entry probe remembers for its return probe, keyed by `pid_tgid`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ActiveCall {
    /// `SSL *` argument.
    pub conn: u64,
    /// Buffer argument.
    pub buf: u64,
    /// `size_t *` out-argument of the `_ex` variants, else 0.
    pub len_out: u64,
    /// Attach cookie of the entry probe.
    pub target: u64,
    /// [`TlsFunction`] as `u8`.
    pub function: u8,
    /// Reserved, zero.
    pub _pad: [u8; 3],
    /// First descriptor read or written by a syscall of this thread during the
    /// call, or -1.
    pub fd: i32,
}
const _: () = assert!(core::mem::size_of::<ActiveCall>() == 40);

/// How the kernel learned which descriptor carries a connection's bytes.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdSource {
    /// Not known.
    Unknown = 0,
    /// A read/write/send/recv syscall made by the thread inside the SSL call
    /// (libraries that do their own socket I/O: curl, Python, nginx).
    Nested = 1,
    /// The thread's last read before an `SSL_read` that made no syscall
    /// (memory-BIO stacks such as node: the socket is read first, then decrypted).
    PrecedingRead = 2,
    /// The thread's first write after an `SSL_write` that made no syscall
    /// (memory-BIO stacks: encrypt first, then write the socket).
    FollowingWrite = 3,
    /// Read from the library's own connection object (Go's `tls.Conn` holds its
    /// `net.Conn`, whose `netFD` holds the descriptor).
    ConnObject = 4,
}

impl FdSource {
    /// Decodes a source from a record.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Nested,
            2 => Self::PrecedingRead,
            3 => Self::FollowingWrite,
            4 => Self::ConnObject,
            _ => Self::Unknown,
        }
    }
}

/// Emitted the first time a connection's socket descriptor is learned (and again
/// if it changes), with the socket's addresses read in the kernel at that moment
/// (so short-lived processes are covered too).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FdBindRecord {
    /// [`crate::RecordKind::FdBind`].
    pub kind: u16,
    /// [`crate::ABI_VERSION`].
    pub abi: u16,
    /// The descriptor.
    pub fd: i32,
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub ts_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The `SSL *`.
    pub conn: u64,
    /// [`FdSource`] as `u8`.
    pub source: u8,
    /// Address family of the socket (2 = IPv4, 10 = IPv6), 0 when its addresses
    /// could not be read.
    pub family: u8,
    /// IP protocol (6 = TCP, 17 = UDP), 0 when unknown.
    pub protocol: u16,
    /// Local port (host order).
    pub local_port: u16,
    /// Remote port (host order).
    pub remote_port: u16,
    /// Local address: 4 bytes for IPv4, else 16.
    pub local_addr: [u8; 16],
    /// Remote address.
    pub remote_addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<FdBindRecord>() == 72);

/// Byte offsets of the kernel fields the socket lookup reads, found by user space
/// in the kernel's BTF and passed in as a constant. `valid == 0` disables the
/// lookup (no BTF, or a field missing on this kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockOffsets {
    /// Non-zero when every offset below is known.
    pub valid: u32,
    /// `task_struct.files`
    pub task_files: u32,
    /// `files_struct.fdt`
    pub files_fdt: u32,
    /// `fdtable.fd`
    pub fdt_fd: u32,
    /// `fdtable.max_fds`
    pub fdt_max_fds: u32,
    /// `file.private_data` (the `struct socket` of a socket file)
    pub file_private_data: u32,
    /// `file.f_inode`
    pub file_inode: u32,
    /// `inode.i_mode`
    pub inode_mode: u32,
    /// `socket.sk`
    pub socket_sk: u32,
    /// `sock.sk_protocol`, or `u32::MAX` where it is a bitfield.
    pub sk_protocol: u32,
    /// `sock_common.skc_family`
    pub skc_family: u32,
    /// `sock_common.skc_num` (local port, host order)
    pub skc_num: u32,
    /// `sock_common.skc_dport` (remote port, network order)
    pub skc_dport: u32,
    /// `sock_common.skc_rcv_saddr`
    pub skc_rcv_saddr: u32,
    /// `sock_common.skc_daddr`
    pub skc_daddr: u32,
    /// `sock_common.skc_v6_rcv_saddr`
    pub skc_v6_rcv_saddr: u32,
    /// `sock_common.skc_v6_daddr`
    pub skc_v6_daddr: u32,
}

/// Key of the kernel's per-connection descriptor memory.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockKey {
    /// Process id.
    pub pid: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// The `SSL *`.
    pub conn: u64,
}

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers without padding holes.
unsafe impl aya::Pod for SockKey {}

/// Per-thread I/O memory of watched processes, for memory-BIO stacks.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ThreadIo {
    /// Descriptor of the thread's last read outside an SSL call, or -1.
    pub last_read_fd: i32,
    /// Reserved, zero.
    pub _pad: u32,
    /// When that read happened.
    pub last_read_ns: u64,
    /// Connection of an `SSL_write` that made no syscall, awaiting the thread's
    /// next write; 0 when none.
    pub pending_conn: u64,
    /// When that `SSL_write` returned.
    pub pending_ns: u64,
}

/// How long a preceding read or a pending write stays attributable (ns).
pub const FD_CORRELATION_WINDOW_NS: u64 = 50_000_000;

/// Processes that have made SSL calls: the syscall tracepoints look only at them.
pub const MAX_WATCHED_PROCESSES: u32 = 16_384;

/// Indices into the per-CPU `COUNTERS` array. Every path on which the kernel side
/// gives up on data increments one of these, so user space can report all loss.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Successful SSL calls whose plaintext the probes started to capture.
    Calls = 0,
    /// Records written to the ring buffer.
    Records = 1,
    /// Plaintext bytes written to the ring buffer.
    Bytes = 2,
    /// Records that could not be reserved because the ring buffer was full.
    LostRecords = 3,
    /// Plaintext bytes in those records, plus the rest of their message.
    LostBytes = 4,
    /// Reads of the caller's buffer that faulted (the record is discarded).
    ReadFaults = 5,
    /// Calls whose entry state could not be stored (`ACTIVE` map full).
    ActiveFull = 6,
    /// Calls longer than [`MAX_CAPTURE_PER_CALL`].
    TruncatedCalls = 7,
    /// Bytes past [`MAX_CAPTURE_PER_CALL`] that were not captured.
    TruncatedBytes = 8,
    /// Return probes that found no entry state (entry missed or evicted).
    OrphanReturns = 9,
    /// TLS writes held (their process stopped) for user space to decide on.
    Holds = 10,
    /// Writes that should have been held but were not: the ring buffer had no
    /// room for the hold record, or the stop signal could not be sent.
    HoldsMissed = 11,
}

impl Counter {
    /// Number of counters; the size of the `COUNTERS` array.
    pub const COUNT: u32 = 12;

    /// All counters, in index order.
    pub const ALL: [Self; Self::COUNT as usize] = [
        Self::Calls,
        Self::Records,
        Self::Bytes,
        Self::LostRecords,
        Self::LostBytes,
        Self::ReadFaults,
        Self::ActiveFull,
        Self::TruncatedCalls,
        Self::TruncatedBytes,
        Self::OrphanReturns,
        Self::Holds,
        Self::HoldsMissed,
    ];

    /// Stable snake_case name used in `sensor.status` events.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Calls => "calls",
            Self::Records => "records",
            Self::Bytes => "bytes",
            Self::LostRecords => "lost_records",
            Self::LostBytes => "lost_bytes",
            Self::ReadFaults => "read_faults",
            Self::ActiveFull => "active_full",
            Self::TruncatedCalls => "truncated_calls",
            Self::TruncatedBytes => "truncated_bytes",
            Self::OrphanReturns => "orphan_returns",
            Self::Holds => "holds",
            Self::HoldsMissed => "holds_missed",
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are #[repr(C)] structs of integers with no padding holes that
    // could carry uninitialised bytes (padding is explicit and zeroed).
    unsafe impl aya::Pod for super::ActiveCall {}
    unsafe impl aya::Pod for super::TlsChunkHeader {}
    unsafe impl aya::Pod for super::ConnCloseRecord {}
    unsafe impl aya::Pod for super::ServerNameRecord {}
    unsafe impl aya::Pod for super::FdBindRecord {}
    unsafe impl aya::Pod for super::SockOffsets {}
    unsafe impl aya::Pod for super::GoCallKey {}
}
