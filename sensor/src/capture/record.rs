//! Parsing of raw ring-buffer records into typed chunks.

use sensor_common::{
    ABI_VERSION, COMM_LEN, ConnCloseRecord, Direction, FdBindRecord, FdSource, RecordKind,
    SERVER_NAME_MAX, ServerNameRecord, TLS_CHUNK_HEADER_LEN, TlsChunkHeader, TlsFunction,
};

/// One record from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// Plaintext.
    Chunk(Chunk<'a>),
    /// A connection object was freed.
    Close(Close),
    /// A client set the server name (SNI) of a connection.
    ServerName(ServerName),
    /// The socket descriptor of a connection, learned after its data.
    FdBind(FdBind),
    /// A process started a new program.
    Exec(Exec),
    /// Process `pid`, which made SSL calls, exited.
    Exit(u32),
    /// A process connected to a TLS port (first time per destination).
    Connect(Connect),
    /// A thread was stopped at a TLS write, waiting for a decision.
    Hold(Hold),
}

/// A process stopped at the entry of a TLS write (see `sensor-ebpf`'s hold.rs):
/// it stays stopped until user space continues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// Process id.
    pub pid: u32,
    /// Thread id of the writer.
    pub tid: u32,
    /// Real uid.
    pub uid: u32,
    /// The write function.
    pub function: TlsFunction,
    /// The kernel's judgement of the process when it held it: `None` when not
    /// judged yet.
    pub selected: Option<bool>,
    /// The connection's socket descriptor, when the kernel knows it.
    pub fd: Option<i32>,
    /// The connection object.
    pub conn: u64,
    /// User address of the plaintext in the process.
    pub buf: u64,
    /// Its length; `None` when the probe's site could not tell.
    pub len: Option<u64>,
    /// `CLOCK_MONOTONIC` ns when the process was stopped.
    pub ts_ns: u64,
}

/// Process `pid` started the program at `path` (as passed to `execve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// Process id.
    pub pid: u32,
    /// The program's path, when the kernel could read it.
    pub path: Option<std::path::PathBuf>,
}

/// Process `pid` connected a socket to `remote`, a TLS port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Process id.
    pub pid: u32,
    /// The socket descriptor.
    pub fd: i32,
    /// The destination.
    pub remote: std::net::SocketAddr,
    /// `comm` of the thread that connected.
    pub comm: String,
    /// `CLOCK_MONOTONIC` ns.
    pub ts_ns: u64,
}

/// The descriptor `fd` of process `pid` carries connection `conn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBind {
    /// Process id.
    pub pid: u32,
    /// The `SSL *`.
    pub conn: u64,
    /// The descriptor.
    pub fd: i32,
    /// How the descriptor was tied to the connection.
    pub source: FdSource,
    /// Local and remote address and the IP protocol (0 if unknown), when the
    /// kernel could read them.
    pub addrs: Option<(std::net::SocketAddr, std::net::SocketAddr, u16)>,
}

/// The server name a client set on `conn` in process `pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName {
    /// Process id.
    pub pid: u32,
    /// The `SSL *`.
    pub conn: u64,
    /// The name (lossily decoded; DNS names are ASCII).
    pub name: String,
}

/// The end of a connection: `SSL_free` on `conn` in process `pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// Process id.
    pub pid: u32,
    /// The freed `SSL *`.
    pub conn: u64,
    /// `CLOCK_MONOTONIC` ns of the call.
    pub ts_ns: u64,
}

/// One chunk of plaintext from one SSL call, as the kernel delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Process id (initial PID namespace).
    pub pid: u32,
    /// Thread id (initial PID namespace).
    pub tid: u32,
    /// Real uid of the caller.
    pub uid: u32,
    /// Real gid of the caller.
    pub gid: u32,
    /// `comm` of the calling thread.
    pub comm: [u8; COMM_LEN],
    /// The library's connection object address (`SSL *`).
    pub conn: u64,
    /// Attach cookie naming the target the probe sat in (0 if unknown).
    pub target: u64,
    /// Function the bytes were captured from.
    pub function: TlsFunction,
    /// Direction of the bytes.
    pub direction: Direction,
    /// `CLOCK_MONOTONIC` time of the call's return, in nanoseconds.
    pub ts_ns: u64,
    /// Bytes the whole call transferred.
    pub total_len: u64,
    /// Offset of `data` within the call's message.
    pub offset: u64,
    /// The connection's socket descriptor, or -1 when not known.
    pub fd: i32,
    /// How `fd` was learned.
    pub fd_source: FdSource,
    /// The plaintext bytes of this chunk.
    pub data: &'a [u8],
}

/// Why a ring-buffer record was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Shorter than the fixed header.
    #[error("record of {0} bytes is shorter than a header")]
    Short(usize),
    /// Unknown record kind.
    #[error("unknown record kind {0}")]
    Kind(u16),
    /// Built from other sources than this binary.
    #[error("record ABI version {found}, expected {ABI_VERSION}")]
    Abi {
        /// Version found in the record.
        found: u16,
    },
    /// Field values outside their domain.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

/// Parses one record from the `EVENTS` ring buffer.
pub fn parse(buf: &[u8]) -> Result<Record<'_>, RecordError> {
    let kind_abi = buf.get(..4).ok_or(RecordError::Short(buf.len()))?;
    let kind = u16::from_ne_bytes([kind_abi[0], kind_abi[1]]);
    let abi = u16::from_ne_bytes([kind_abi[2], kind_abi[3]]);
    if abi != ABI_VERSION {
        return Err(RecordError::Abi { found: abi });
    }
    match RecordKind::from_u16(kind) {
        Some(RecordKind::TlsChunk) => parse_chunk(buf).map(Record::Chunk),
        Some(RecordKind::ConnClose) => parse_close(buf).map(Record::Close),
        Some(RecordKind::ServerName) => parse_server_name(buf).map(Record::ServerName),
        Some(RecordKind::FdBind) => parse_fd_bind(buf).map(Record::FdBind),
        Some(RecordKind::Exec) => parse_exec(buf).map(Record::Exec),
        Some(RecordKind::Exit) => parse_process(buf).map(Record::Exit),
        Some(RecordKind::Connect) => parse_connect(buf).map(Record::Connect),
        Some(RecordKind::Hold) => parse_hold(buf).map(Record::Hold),
        None => Err(RecordError::Kind(kind)),
    }
}

/// Copies a record struct out of the start of `buf`.
fn read_record<T: aya::Pod>(buf: &[u8]) -> Result<T, RecordError> {
    if buf.len() < std::mem::size_of::<T>() {
        return Err(RecordError::Short(buf.len()));
    }
    // SAFETY: the length was checked; read_unaligned copes with any alignment,
    // and `Pod` types are valid for every bit pattern.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) })
}

fn parse_close(buf: &[u8]) -> Result<Close, RecordError> {
    let r: ConnCloseRecord = read_record(buf)?;
    Ok(Close {
        pid: r.pid,
        conn: r.conn,
        ts_ns: r.ts_ns,
    })
}

fn parse_process(buf: &[u8]) -> Result<u32, RecordError> {
    let r: sensor_common::ProcessRecord = read_record(buf)?;
    Ok(r.pid)
}

fn parse_exec(buf: &[u8]) -> Result<Exec, RecordError> {
    use std::os::unix::ffi::OsStrExt;
    let r: sensor_common::ExecRecord = read_record(buf)?;
    let len = usize::from(r.path_len).min(sensor_common::EXEC_PATH_MAX);
    let bytes = &r.path[..len];
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(len);
    let path =
        (end > 0).then(|| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&bytes[..end])));
    Ok(Exec { pid: r.pid, path })
}

fn parse_hold(buf: &[u8]) -> Result<Hold, RecordError> {
    let r: sensor_common::HoldRecord = read_record(buf)?;
    let function = TlsFunction::from_u8(r.function)
        .ok_or(RecordError::Malformed("hold of an unknown function"))?;
    Ok(Hold {
        pid: r.pid,
        tid: r.tid,
        uid: r.uid,
        function,
        selected: match r.state {
            sensor_common::hold::EXEMPT => Some(false),
            sensor_common::hold::SELECTED => Some(true),
            _ => None,
        },
        fd: (r.fd >= 0).then_some(r.fd),
        conn: r.conn,
        buf: r.buf,
        len: (r.len != sensor_common::hold::LEN_UNKNOWN).then_some(r.len),
        ts_ns: r.ts_ns,
    })
}

fn parse_connect(buf: &[u8]) -> Result<Connect, RecordError> {
    let r: sensor_common::ConnectRecord = read_record(buf)?;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let a = r.addr;
    let ip = match r.family {
        2 => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
        10 => {
            let v6 = Ipv6Addr::from(a);
            v6.to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6))
        }
        _ => {
            return Err(RecordError::Malformed(
                "connect record of an unknown family",
            ));
        }
    };
    Ok(Connect {
        pid: r.pid,
        fd: r.fd,
        remote: SocketAddr::new(ip, r.port),
        comm: comm_str(&r.comm),
        ts_ns: r.ts_ns,
    })
}

fn parse_fd_bind(buf: &[u8]) -> Result<FdBind, RecordError> {
    let r: FdBindRecord = read_record(buf)?;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let ip = |a: [u8; 16]| match r.family {
        2 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
        10 => {
            let v6 = Ipv6Addr::from(a);
            Some(
                v6.to_ipv4_mapped()
                    .map(IpAddr::V4)
                    .unwrap_or(IpAddr::V6(v6)),
            )
        }
        _ => None,
    };
    let addrs = match (ip(r.local_addr), ip(r.remote_addr)) {
        (Some(l), Some(rm)) => Some((
            SocketAddr::new(l, r.local_port),
            SocketAddr::new(rm, r.remote_port),
            r.protocol,
        )),
        _ => None,
    };
    Ok(FdBind {
        pid: r.pid,
        conn: r.conn,
        fd: r.fd,
        source: FdSource::from_u8(r.source),
        addrs,
    })
}

fn parse_server_name(buf: &[u8]) -> Result<ServerName, RecordError> {
    let r: ServerNameRecord = read_record(buf)?;
    let len = usize::from(r.len).min(SERVER_NAME_MAX);
    let bytes = &r.name[..len];
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(len);
    Ok(ServerName {
        pid: r.pid,
        conn: r.conn,
        name: String::from_utf8_lossy(&bytes[..end]).into_owned(),
    })
}

fn parse_chunk(buf: &[u8]) -> Result<Chunk<'_>, RecordError> {
    let h: TlsChunkHeader = read_record(buf)?;
    let function = TlsFunction::from_u8(h.function).ok_or(RecordError::Malformed("function"))?;
    let direction = Direction::from_u8(h.direction).ok_or(RecordError::Malformed("direction"))?;
    if direction != function.direction() {
        return Err(RecordError::Malformed("direction does not match function"));
    }
    let data_len = h.data_len as usize;
    let data = buf
        .get(TLS_CHUNK_HEADER_LEN..TLS_CHUNK_HEADER_LEN + data_len)
        .ok_or(RecordError::Malformed("data_len beyond record"))?;
    let end = h
        .offset
        .checked_add(data_len as u64)
        .ok_or(RecordError::Malformed("offset overflow"))?;
    if end > h.total_len {
        return Err(RecordError::Malformed("chunk beyond message length"));
    }
    Ok(Chunk {
        pid: h.pid,
        tid: h.tid,
        uid: h.uid,
        gid: h.gid,
        comm: h.comm,
        conn: h.conn,
        target: h.target,
        function,
        direction,
        ts_ns: h.ts_ns,
        total_len: h.total_len,
        offset: h.offset,
        fd: h.fd,
        fd_source: FdSource::from_u8(h.fd_source),
        data,
    })
}

/// Renders a kernel `comm` (NUL-padded) as a string.
pub fn comm_str(comm: &[u8; COMM_LEN]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(h: &TlsChunkHeader, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; TLS_CHUNK_HEADER_LEN];
        // SAFETY: v has room for one header.
        unsafe { std::ptr::write_unaligned(v.as_mut_ptr().cast(), *h) };
        v.extend_from_slice(data);
        v
    }

    pub(crate) fn header(offset: u64, data_len: u32, total: u64) -> TlsChunkHeader {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(b"curl");
        TlsChunkHeader {
            kind: RecordKind::TlsChunk as u16,
            abi: ABI_VERSION,
            direction: Direction::Egress as u8,
            function: TlsFunction::SslWrite as u8,
            fd_source: 0,
            _pad: 0,
            data_len,
            fd: -1,
            ts_ns: 42,
            pid: 10,
            tid: 11,
            uid: 1000,
            gid: 1000,
            conn: 0xdead_beef,
            target: 3,
            total_len: total,
            offset,
            comm,
        }
    }

    #[test]
    fn parses_a_valid_record() {
        let r = record(&header(0, 5, 5), b"hello");
        let Ok(Record::Chunk(c)) = parse(&r) else {
            panic!("a chunk")
        };
        assert_eq!(c.data, b"hello");
        assert_eq!(c.pid, 10);
        assert_eq!(c.function, TlsFunction::SslWrite);
        assert_eq!(comm_str(&c.comm), "curl");
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(parse(&[0u8; 3]), Err(RecordError::Short(3)));
        let mut close = vec![0u8; 32];
        close[..2].copy_from_slice(&(RecordKind::ConnClose as u16).to_ne_bytes());
        close[2..4].copy_from_slice(&ABI_VERSION.to_ne_bytes());
        assert!(matches!(parse(&close), Ok(Record::Close(_))));
        assert_eq!(parse(&close[..20]), Err(RecordError::Short(20)));
        let mut sni = vec![0u8; std::mem::size_of::<ServerNameRecord>()];
        sni[..2].copy_from_slice(&(RecordKind::ServerName as u16).to_ne_bytes());
        sni[2..4].copy_from_slice(&ABI_VERSION.to_ne_bytes());
        sni[4..6].copy_from_slice(&9u16.to_ne_bytes());
        sni[32..41].copy_from_slice(b"api.x.com");
        let Ok(Record::ServerName(n)) = parse(&sni) else {
            panic!("server name record")
        };
        assert_eq!(n.name, "api.x.com");
        sni[4..6].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert!(parse(&sni).is_ok(), "an oversized length is clamped");
        let mut h = header(0, 5, 5);
        h.abi = 99;
        assert_eq!(
            parse(&record(&h, b"hello")),
            Err(RecordError::Abi { found: 99 })
        );
        let h = header(0, 10, 10);
        assert!(matches!(
            parse(&record(&h, b"hello")),
            Err(RecordError::Malformed(_))
        ));
        let h = header(8, 5, 10);
        assert!(matches!(
            parse(&record(&h, b"hello")),
            Err(RecordError::Malformed(_))
        ));
        let mut h = header(0, 5, 5);
        h.direction = Direction::Ingress as u8;
        assert!(matches!(
            parse(&record(&h, b"hello")),
            Err(RecordError::Malformed(_))
        ));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        use proptest::prelude::*;
        proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..256))| {
            let _ = parse(&bytes);
        });
    }
}
