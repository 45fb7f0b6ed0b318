//! Which network flow a TLS connection rides on: from the process's socket
//! descriptor to local and remote address and port (through `/proc/PID/fd` and
//! the process's own network namespace view, `/proc/PID/net/tcp{,6}`), and the
//! flow's Community ID.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::Engine as _;
use serde::Serialize;
use sha1::{Digest, Sha1};

/// The flow of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SocketInfo {
    /// The descriptor in the process.
    pub fd: i32,
    /// `tcp` or `udp` (IPv4 or IPv6); `ip` when the protocol is not known.
    pub transport: &'static str,
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// Community ID v1 (seed 0) of the flow, for joining with network data.
    pub community_id: String,
}

impl SocketInfo {
    /// A flow of IP protocol `protocol` (6 TCP, 17 UDP, 0 unknown).
    pub fn new(fd: i32, protocol: u16, local: SocketAddr, remote: SocketAddr) -> Self {
        let (transport, proto) = match protocol {
            6 => ("tcp", 6),
            17 => ("udp", 17),
            // Telltale hooks TLS over streams: without a protocol, TCP is the
            // best guess for the Community ID, and `transport` says it is one.
            _ => ("ip", 6),
        };
        Self {
            fd,
            transport,
            local,
            remote,
            community_id: community_id(local, remote, proto),
        }
    }
}

/// Resolves `fd` of `pid` to its TCP flow, or says why not.
pub fn resolve(pid: u32, fd: i32) -> Result<SocketInfo, String> {
    let link =
        std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).map_err(|e| format!("fd {fd}: {e}"))?;
    let link = link.to_string_lossy();
    let inode = socket_inode(&link).ok_or_else(|| format!("fd {fd} is not a socket ({link})"))?;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        if let Some((local, remote)) = find_inode(&text, inode) {
            return Ok(SocketInfo::new(fd, 6, local, remote));
        }
    }
    Err(format!(
        "socket {inode} (fd {fd}) is not a TCP socket of the process's namespace"
    ))
}

/// The inode of a descriptor link `socket:[N]`.
pub(crate) fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The socket descriptors of process `pid`, with their inodes.
pub(crate) fn socket_fds(pid: u32) -> std::io::Result<Vec<(i32, u64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        let fd = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok());
        if let (Some(fd), Ok(link)) = (fd, std::fs::read_link(entry.path()))
            && let Some(inode) = link.to_str().and_then(socket_inode)
        {
            out.push((fd, inode));
        }
    }
    Ok(out)
}

/// A row of a `/proc/PID/net/{tcp,tcp6,udp,udp6}` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The kernel's state number (TCP: 1 is ESTABLISHED).
    pub state: u8,
    pub inode: u64,
}

/// TCP state ESTABLISHED in the tables.
pub(crate) const TCP_ESTABLISHED: u8 = 1;

/// The rows of a socket table (malformed rows are skipped).
pub(crate) fn table_rows(table: &str) -> impl Iterator<Item = TableRow> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        Some(TableRow {
            local: parse_addr(f.get(1)?)?,
            remote: parse_addr(f.get(2)?)?,
            state: u8::from_str_radix(f.get(3)?, 16).ok()?,
            inode: f.get(9)?.parse().ok()?,
        })
    })
}

/// Finds the row of `inode` in a `/proc/net/tcp` or `tcp6` table.
pub(crate) fn find_inode(table: &str, inode: u64) -> Option<(SocketAddr, SocketAddr)> {
    table_rows(table)
        .find(|r| r.inode == inode)
        .map(|r| (r.local, r.remote))
}

/// Process `pid`'s established TCP connections (in its network namespace):
/// descriptor and remote address, by descriptor.
pub fn established_tcp(pid: u32) -> std::io::Result<Vec<(i32, SocketAddr)>> {
    let fds = socket_fds(pid)?;
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for row in table_rows(&text).filter(|r| r.state == TCP_ESTABLISHED) {
            out.extend(
                fds.iter()
                    .filter(|(_, inode)| *inode == row.inode)
                    .map(|(fd, _)| (*fd, row.remote)),
            );
        }
    }
    out.sort_unstable_by_key(|(fd, _)| *fd);
    Ok(out)
}

/// Parses `0100007F:1F90` (IPv4) or a 32-hex-digit IPv6 address with port. The
/// kernel prints each 32-bit word in host (little-endian) order.
pub(crate) fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_le_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(b);
            // Report IPv4-mapped addresses as IPv4, as tools joining on them expect.
            v6.to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Community ID v1 with seed 0 (https://github.com/corelight/community-id-spec).
pub fn community_id(a: SocketAddr, b: SocketAddr, proto: u8) -> String {
    let bytes = |ip: IpAddr| match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    let (ka, kb) = ((bytes(a.ip()), a.port()), (bytes(b.ip()), b.port()));
    let (src, dst) = if ka <= kb { (ka, kb) } else { (kb, ka) };
    let mut h = Sha1::new();
    h.update(0u16.to_be_bytes());
    h.update(&src.0);
    h.update(&dst.0);
    h.update([proto, 0]);
    h.update(src.1.to_be_bytes());
    h.update(dst.1.to_be_bytes());
    format!(
        "1:{}",
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_addresses() {
        assert_eq!(
            parse_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_addr("00000000000000000000000001000000:01BB"),
            Some("[::1]:443".parse().unwrap())
        );
        assert_eq!(
            parse_addr("0000000000000000FFFF00000100007F:0050"),
            Some("127.0.0.1:80".parse().unwrap()),
            "IPv4-mapped"
        );
        assert_eq!(parse_addr("zz:1"), None);
        assert_eq!(parse_addr("0100007F"), None);
    }

    #[test]
    fn finds_a_row_by_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1
   1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0
";
        let (l, r) = find_inode(table, 4242).expect("row");
        assert_eq!(l, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(r, "127.0.0.1:54321".parse().unwrap());
        assert!(find_inode(table, 5).is_none());
        assert!(find_inode("garbage\nmore garbage\n", 5).is_none());
    }

    /// Test vectors from the Community ID specification's reference data.
    #[test]
    fn community_id_matches_the_specification() {
        let a: SocketAddr = "128.232.110.120:34855".parse().unwrap();
        let b: SocketAddr = "66.35.250.204:80".parse().unwrap();
        assert_eq!(community_id(a, b, 6), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        assert_eq!(community_id(b, a, 6), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
    }

    #[test]
    fn lists_established_connections_by_descriptor() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        use std::os::fd::AsRawFd;
        let mine = established_tcp(std::process::id()).expect("own sockets");
        assert!(mine.contains(&(client.as_raw_fd(), listener.local_addr().unwrap())));
        assert!(mine.contains(&(server.as_raw_fd(), client.local_addr().unwrap())));
        // The listening socket is not established.
        assert!(!mine.iter().any(|(fd, _)| *fd == listener.as_raw_fd()));
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
    }

    #[test]
    fn resolves_a_real_loopback_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        use std::os::fd::AsRawFd;
        let info = resolve(std::process::id(), client.as_raw_fd()).expect("resolves");
        assert_eq!(info.remote, listener.local_addr().unwrap());
        assert_eq!(info.local, client.local_addr().unwrap());
        let err = resolve(std::process::id(), 0).map(|_| ()).unwrap_err();
        assert!(err.contains("fd 0"), "{err}");
    }
}
