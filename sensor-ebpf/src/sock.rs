//! From a descriptor of the current task to its socket's addresses, following
//! `task → files → fdtable → file → socket → sock` with offsets the loader read
//! from this kernel's BTF. Done once per connection, in the kernel, while the
//! process is certainly alive.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::map,
    maps::LruHashMap,
};
use sensor_common::{
    ABI_VERSION, Counter, FdBindRecord, FdSource, MAX_ACTIVE_CALLS, RecordKind, SockKey,
    SockOffsets,
};

use crate::{
    counters,
    tls::{EVENTS, wakeup_flags},
};

/// Field offsets of this kernel; set by the loader.
#[unsafe(no_mangle)]
static TELLTALE_SOCK_OFFSETS: SockOffsets = SockOffsets {
    valid: 0,
    task_files: 0,
    files_fdt: 0,
    fdt_fd: 0,
    fdt_max_fds: 0,
    file_private_data: 0,
    file_inode: 0,
    inode_mode: 0,
    socket_sk: 0,
    sk_protocol: 0,
    skc_family: 0,
    skc_num: 0,
    skc_dport: 0,
    skc_rcv_saddr: 0,
    skc_daddr: 0,
    skc_v6_rcv_saddr: 0,
    skc_v6_daddr: 0,
};

/// The descriptor last bound to each connection, so each is looked up once.
#[map]
pub(crate) static SOCKS: LruHashMap<SockKey, i32> =
    LruHashMap::with_max_entries(MAX_ACTIVE_CALLS, 0);

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

#[inline(always)]
fn read<T>(base: u64, off: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel validates the address and fails cleanly.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.ok()
}

#[inline(always)]
fn offsets_valid() -> bool {
    // SAFETY: reading a constant global.
    unsafe { core::ptr::read_volatile(&raw const TELLTALE_SOCK_OFFSETS.valid) != 0 }
}

/// Fills the address fields of `rec` from descriptor `fd` of the current task.
#[inline(always)]
fn fill_addresses(rec: &mut FdBindRecord, fd: i32) -> Option<()> {
    // SAFETY: reading a constant global.
    let o = unsafe { core::ptr::read_volatile(&raw const TELLTALE_SOCK_OFFSETS) };
    if o.valid == 0 || fd < 0 {
        return None;
    }
    // SAFETY: no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, o.task_files)?;
    let fdt: u64 = read(files, o.files_fdt)?;
    let max_fds: u32 = read(fdt, o.fdt_max_fds)?;
    if fd as u32 >= max_fds {
        return None;
    }
    let fd_array: u64 = read(fdt, o.fdt_fd)?;
    let file: u64 = read(fd_array, fd as u32 * 8)?;
    let inode: u64 = read(file, o.file_inode)?;
    let mode: u16 = read(inode, o.inode_mode)?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket: u64 = read(file, o.file_private_data)?;
    let sk: u64 = read(socket, o.socket_sk)?;
    let family: u16 = read(sk, o.skc_family)?;
    rec.protocol = if o.sk_protocol == u32::MAX {
        0
    } else {
        read(sk, o.sk_protocol)?
    };
    rec.local_port = read(sk, o.skc_num)?;
    rec.remote_port = u16::from_be(read(sk, o.skc_dport)?);
    match family {
        AF_INET => {
            let l: [u8; 4] = read(sk, o.skc_rcv_saddr)?;
            let r: [u8; 4] = read(sk, o.skc_daddr)?;
            rec.local_addr[..4].copy_from_slice(&l);
            rec.remote_addr[..4].copy_from_slice(&r);
        }
        AF_INET6 => {
            rec.local_addr = read(sk, o.skc_v6_rcv_saddr)?;
            rec.remote_addr = read(sk, o.skc_v6_daddr)?;
        }
        _ => return None,
    }
    rec.family = family as u8;
    Some(())
}

/// Tells user space that connection `conn` of the current process uses `fd`,
/// with the socket's addresses, unless it already knows. A descriptor found by
/// correlation (not used inside the SSL call itself) must be a socket whose
/// addresses can be read, else nothing is bound and false is returned (a
/// library may also read files or write event descriptors inside a call).
#[inline(always)]
pub(crate) fn bind(pid: u32, tid: u32, conn: u64, fd: i32, source: FdSource) -> bool {
    let key = SockKey { pid, _pad: 0, conn };
    // SAFETY: the value is copied.
    if unsafe { SOCKS.get(&key) }.copied() == Some(fd) {
        return true;
    }
    let mut rec = FdBindRecord {
        kind: RecordKind::FdBind as u16,
        abi: ABI_VERSION,
        fd,
        // SAFETY: no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid,
        tid,
        conn,
        source: source as u8,
        family: 0,
        protocol: 0,
        local_port: 0,
        remote_port: 0,
        local_addr: [0; 16],
        remote_addr: [0; 16],
    };
    if fill_addresses(&mut rec, fd).is_none() {
        // Without this kernel's offsets nothing can be checked: trust only a
        // descriptor used inside the call, and let user space look it up.
        if offsets_valid() || source != FdSource::Nested {
            return false;
        }
        rec.family = 0;
    }
    let _ = SOCKS.insert(&key, &fd, 0);
    let Some(mut entry) = EVENTS.reserve::<FdBindRecord>(0) else {
        counters::add(Counter::LostRecords, 1);
        return true;
    };
    entry.write(rec);
    entry.submit(wakeup_flags(size_of::<FdBindRecord>()));
    counters::add(Counter::Records, 1);
    true
}

/// The connection object was freed: a new one at the address must be looked up.
#[inline(always)]
pub(crate) fn forget(pid: u32, conn: u64) {
    let _ = SOCKS.remove(&SockKey { pid, _pad: 0, conn });
}
