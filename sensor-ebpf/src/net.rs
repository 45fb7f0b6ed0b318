//! Connects to TLS ports, for coverage: user space checks whether the process
//! that opened the connection has a TLS stack the probes see, and says so when
//! it has not. Only the first connect of a process to a destination is reported.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
    },
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap},
    programs::TracePointContext,
};
use sensor_common::{
    ABI_VERSION, COMM_LEN, ConnectKey, ConnectRecord, Counter, MAX_CONNECTS_SEEN, MAX_TLS_PORTS,
    RecordKind,
};

use crate::{
    counters,
    tls::{EVENTS, wakeup_flags},
};

/// Destination ports (host order) whose connects are reported; filled by user
/// space. Empty: nothing is reported.
#[map]
static TLS_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_TLS_PORTS, 0);

/// Connects already reported.
#[map]
static CONNECTS_SEEN: LruHashMap<ConnectKey, u8> =
    LruHashMap::with_max_entries(MAX_CONNECTS_SEEN, 0);

/// Offsets of `connect(fd, uservaddr, addrlen)`'s arguments in a
/// `syscalls:sys_enter_connect` record.
const ARG_FD: usize = 16;
const ARG_ADDR: usize = 24;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// `syscalls:sys_enter_connect`.
#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    // SAFETY: both offsets lie within the record of this tracepoint.
    let (Ok(fd), Ok(addr)) = (unsafe { ctx.read_at::<u64>(ARG_FD) }, unsafe {
        ctx.read_at::<u64>(ARG_ADDR)
    }) else {
        return 0;
    };
    // sockaddr_in / sockaddr_in6: family (u16), port (big-endian u16), then the
    // IPv4 address at +4 or the IPv6 address at +8.
    // SAFETY: bpf_probe_read_user validates the user pointer.
    let Ok(head) = (unsafe { bpf_probe_read_user(addr as *const [u8; 4]) }) else {
        return 0;
    };
    let family = u16::from_ne_bytes([head[0], head[1]]);
    let port = u16::from_be_bytes([head[2], head[3]]);
    // SAFETY: presence check only.
    if (family != AF_INET && family != AF_INET6) || unsafe { TLS_PORTS.get(&port) }.is_none() {
        return 0;
    }
    let mut ip = [0u8; 16];
    // SAFETY: as above.
    let read = unsafe {
        if family == AF_INET {
            bpf_probe_read_user((addr + 4) as *const [u8; 4]).map(|a| ip[..4].copy_from_slice(&a))
        } else {
            bpf_probe_read_user((addr + 8) as *const [u8; 16]).map(|a| ip = a)
        }
    };
    if read.is_err() {
        return 0;
    }
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let key = ConnectKey {
        pid,
        port,
        family,
        addr: ip,
    };
    // SAFETY: presence check only.
    if unsafe { CONNECTS_SEEN.get(&key) }.is_some() {
        return 0;
    }
    let _ = CONNECTS_SEEN.insert(&key, &1, 0);
    let Some(mut entry) = EVENTS.reserve::<ConnectRecord>(0) else {
        counters::add(Counter::LostRecords, 1);
        return 0;
    };
    entry.write(ConnectRecord {
        kind: RecordKind::Connect as u16,
        abi: ABI_VERSION,
        pid,
        // SAFETY: no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        family,
        port,
        fd: fd as i32,
        addr: ip,
        comm: bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]),
    });
    entry.submit(wakeup_flags(size_of::<ConnectRecord>()));
    counters::add(Counter::Records, 1);
    0
}
