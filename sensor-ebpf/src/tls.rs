//! Plaintext capture for OpenSSL-compatible `SSL_read`/`SSL_write` and their
//! `_ex` variants.

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns,
        generated::{bpf_get_attach_cookie, bpf_probe_read_user},
    },
    macros::{map, uprobe, uretprobe},
    maps::{LruHashMap, RingBuf},
    programs::{ProbeContext, RetProbeContext},
};
use sensor_common::{
    ABI_VERSION, ActiveCall, CHUNK_MAX, COMM_LEN, ConnCloseRecord, Counter,
    FD_CORRELATION_WINDOW_NS, FdSource, MAX_ACTIVE_CALLS, MAX_CAPTURE_PER_CALL, MAX_FULL_CHUNKS,
    MAX_WATCHED_PROCESSES, RecordKind, SSL_CTRL_SET_TLSEXT_HOSTNAME, ServerNameRecord,
    TAIL_BUCKETS, ThreadIo, TlsChunkHeader, TlsFunction, TlsResult, hold,
    probe::{EntryCookie, NO_REG, ReturnCookie, cookie_target},
};

use crate::counters;

/// Plaintext records for user space. Resized by the loader.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(sensor_common::DEFAULT_RING_BYTES, 0);

/// Arguments of SSL calls in flight, keyed by `pid_tgid`. LRU, so that entries
/// of calls that never reach their return probe (a thread that died, an error
/// path that skips the return site) age out instead of filling the map.
#[map]
pub(crate) static ACTIVE: LruHashMap<u64, ActiveCall> =
    LruHashMap::with_max_entries(MAX_ACTIVE_CALLS, 0);

/// Processes (tgid) that made SSL calls; the syscall tracepoints ignore others.
#[map]
pub(crate) static WATCHED: LruHashMap<u32, u8> =
    LruHashMap::with_max_entries(MAX_WATCHED_PROCESSES, 0);

/// Per-thread I/O memory of watched processes, keyed by tid.
#[map]
pub(crate) static THREAD_IO: LruHashMap<u32, ThreadIo> =
    LruHashMap::with_max_entries(MAX_ACTIVE_CALLS, 0);

/// Set to 1 by the loader when the kernel supports `bpf_get_attach_cookie` for
/// uprobes (5.15+). The verifier then sees a constant and never visits the helper
/// call on kernels that lack it.
#[unsafe(no_mangle)]
static TELLTALE_USE_COOKIE: u8 = 0;

/// Bytes of unread data in the ring buffer above which a submit wakes user space.
/// Below it records are submitted without a wakeup and user space polls on a
/// short timer: one wakeup per record costs several microseconds per call.
/// Set by the loader; 0 wakes on every record.
#[unsafe(no_mangle)]
static TELLTALE_WAKEUP_BYTES: u64 = 0;

/// Submit flags for the record of `size` bytes just reserved: wake user space
/// only when this record takes the unread data across the threshold. While a
/// busy reader stays behind, forcing a wakeup on every record would cost each
/// SSL call several microseconds; the reader's timer catches up instead.
#[inline(always)]
pub(crate) fn wakeup_flags(size: usize) -> u64 {
    // SAFETY: reading a constant global.
    let threshold = unsafe { core::ptr::read_volatile(&raw const TELLTALE_WAKEUP_BYTES) };
    if threshold == 0 {
        return 0;
    }
    // Unread bytes, this reservation (and its 8-byte header) included.
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if avail >= threshold && avail < threshold + size as u64 + 8 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[repr(C)]
struct Chunk<const N: usize> {
    hdr: TlsChunkHeader,
    data: [u8; N],
}

#[inline(always)]
pub(crate) fn attach_cookie<C: EbpfContext>(ctx: &C) -> u64 {
    // SAFETY: reading a constant global; volatile keeps the compiler from folding it.
    if unsafe { core::ptr::read_volatile(&raw const TELLTALE_USE_COOKIE) } != 0 {
        // SAFETY: ctx is the program's context pointer.
        unsafe { bpf_get_attach_cookie(ctx.as_ptr()) }
    } else {
        0
    }
}

/// Reads general-purpose register `n` (hardware numbering) of the probed task.
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn reg(ctx: &ProbeContext, n: u8) -> u64 {
    // The verifier only allows fixed-offset loads from the context, and the
    // compiler would turn a `match` on `n` into one load at a computed offset.
    // So: copy the registers with volatile fixed-offset loads (which cannot be
    // merged), then index the copy on the stack.
    // SAFETY: `regs` is the program's context, valid for the whole call.
    let r = unsafe { &*ctx.regs };
    let rd = |p: &u64| unsafe { core::ptr::read_volatile(p) };
    let all: [u64; 16] = [
        rd(&r.rax),
        rd(&r.rcx),
        rd(&r.rdx),
        rd(&r.rbx),
        rd(&r.rsp),
        rd(&r.rbp),
        rd(&r.rsi),
        rd(&r.rdi),
        rd(&r.r8),
        rd(&r.r9),
        rd(&r.r10),
        rd(&r.r11),
        rd(&r.r12),
        rd(&r.r13),
        rd(&r.r14),
        rd(&r.r15),
    ];
    all[(n & 15) as usize]
}

#[inline(always)]
pub(crate) fn enter(ctx: &ProbeContext, function: TlsFunction) {
    let cookie = attach_cookie(ctx);
    // Probes placed past the first instruction learn from their cookie where
    // the arguments are; other architectures only use first-instruction probes.
    #[cfg(bpf_target_arch = "x86_64")]
    let (conn, buf, len_out, num) = {
        let c = EntryCookie::decode(cookie);
        let num = if c.num == NO_REG {
            hold::LEN_UNKNOWN
        } else {
            reg(ctx, c.num)
        };
        (reg(ctx, c.conn), reg(ctx, c.buf), reg(ctx, c.len_out), num)
    };
    #[cfg(not(bpf_target_arch = "x86_64"))]
    let (conn, buf, len_out, num): (u64, u64, u64, u64) = {
        let _ = EntryCookie::decode(cookie);
        (
            ctx.arg(0).unwrap_or(0),
            ctx.arg(1).unwrap_or(0),
            ctx.arg(3).unwrap_or(0),
            ctx.arg(2).unwrap_or(0),
        )
    };
    let len_out = if function.is_ex() { len_out } else { 0 };
    let id = bpf_get_current_pid_tgid();
    if crate::hold::enabled() && function.direction() == sensor_common::Direction::Egress {
        // `SSL_write` takes an `int`; the upper half of its register is undefined.
        let len = match function.result() {
            TlsResult::Int if num != hold::LEN_UNKNOWN => num as u32 as i32 as i64 as u64,
            _ => num,
        };
        crate::hold::maybe_hold(id, conn, buf, len, function);
    }
    store_call(
        id,
        &ActiveCall {
            conn,
            buf,
            len_out,
            target: cookie_target(cookie),
            function: function as u8,
            _pad: [0; 3],
            fd: -1,
        },
    );
}

/// Remembers a call of thread `id` for its return probe and marks its process
/// as watched for the syscall tracepoints.
#[inline(always)]
pub(crate) fn store_call(id: u64, call: &ActiveCall) {
    let tgid = (id >> 32) as u32;
    // SAFETY: only checks presence.
    if unsafe { WATCHED.get(&tgid) }.is_none() {
        let _ = WATCHED.insert(&tgid, &1, 0);
    }
    if ACTIVE.insert(&id, call, 0).is_err() {
        counters::add(Counter::ActiveFull, 1);
    }
}

/// Takes this thread's entry state for `function`.
#[inline(always)]
pub(crate) fn take_call(id: u64, function: TlsFunction) -> Option<ActiveCall> {
    // SAFETY: the value is copied out before the entry is removed.
    let Some(call) = (unsafe { ACTIVE.get(&id) }).copied() else {
        counters::add(Counter::OrphanReturns, 1);
        return None;
    };
    let _ = ACTIVE.remove(&id);
    if call.function != function as u8 {
        // Another SSL function's state: an entry was missed in between.
        counters::add(Counter::OrphanReturns, 1);
        return None;
    }
    Some(call)
}

/// Return probe (uretprobe) of any of the four functions.
#[inline(always)]
pub(crate) fn exit(ctx: &RetProbeContext, function: TlsFunction) {
    let id = bpf_get_current_pid_tgid();
    let Some(call) = take_call(id, function) else {
        return;
    };
    let ret = ctx.ret::<u64>();
    let len = match function.result() {
        TlsResult::IntWithCountOut => {
            // `int` 1 on success; the upper half of rax is undefined.
            if ret as i32 != 1 || call.len_out == 0 {
                return;
            }
            // SAFETY: bpf_probe_read_user validates the user pointer.
            match unsafe { aya_ebpf::helpers::bpf_probe_read_user(call.len_out as *const u64) } {
                Ok(n) => n,
                Err(_) => {
                    counters::add(Counter::ReadFaults, 1);
                    return;
                }
            }
        }
        TlsResult::Int => {
            let n = ret as i32;
            if n <= 0 {
                return;
            }
            n as u64
        }
        TlsResult::Ssize => {
            let n = ret as i64;
            if n <= 0 {
                return;
            }
            n as u64
        }
    };
    emit_call(id, &call, function, len);
}

/// Return-site probe of `SSL_write`/`SSL_read`: after the internal call, with
/// its `int` result in a register and the byte count in a stack slot (both
/// named by the cookie).
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn return_site(ctx: &ProbeContext, function: TlsFunction) {
    let id = bpf_get_current_pid_tgid();
    let Some(call) = take_call(id, function) else {
        return;
    };
    let Some(c) = ReturnCookie::decode(attach_cookie(ctx)) else {
        // Without a cookie the probe cannot know where its data is; user space
        // never attaches it then.
        return;
    };
    if (reg(ctx, c.result) as i32) <= 0 {
        return;
    }
    let slot = reg(ctx, sensor_common::probe::reg::RSP) + c.count_slot as u64;
    // SAFETY: bpf_probe_read_user validates the user pointer.
    let len = match unsafe { aya_ebpf::helpers::bpf_probe_read_user(slot as *const u64) } {
        Ok(n) => n,
        Err(_) => {
            counters::add(Counter::ReadFaults, 1);
            return;
        }
    };
    emit_call(id, &call, function, len);
}

#[cfg(not(bpf_target_arch = "x86_64"))]
#[inline(always)]
fn return_site(_ctx: &ProbeContext, _function: TlsFunction) {}

/// Emits the `len` bytes a successful call transferred.
#[inline(always)]
pub(crate) fn emit_call(id: u64, call: &ActiveCall, function: TlsFunction, len: u64) {
    if len == 0 {
        return;
    }
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let (fd, fd_source) = socket_of(id, call, function, now);
    let hdr = TlsChunkHeader {
        kind: RecordKind::TlsChunk as u16,
        abi: ABI_VERSION,
        direction: function.direction() as u8,
        function: function as u8,
        fd_source: fd_source as u8,
        _pad: 0,
        data_len: 0,
        fd,
        ts_ns: now,
        pid: (id >> 32) as u32,
        tid: id as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        conn: call.conn,
        target: call.target,
        total_len: len,
        offset: 0,
        comm: bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]),
    };
    counters::add(Counter::Calls, 1);
    emit_message(&hdr, call.buf, len);
}

/// The socket carrying a call's bytes, bound (and announced to user space) once
/// per connection: a socket used inside the call; else, for memory-BIO stacks,
/// the socket the thread read just before an `SSL_read`; for an `SSL_write`
/// without socket I/O, the thread's next socket write names it (see io.rs).
#[inline(always)]
fn socket_of(id: u64, call: &ActiveCall, function: TlsFunction, now: u64) -> (i32, FdSource) {
    let (pid, tid) = ((id >> 32) as u32, id as u32);
    let source = match function {
        TlsFunction::GoWrite | TlsFunction::GoRead => FdSource::ConnObject,
        _ => FdSource::Nested,
    };
    if call.fd >= 0 && crate::sock::bind(pid, tid, call.conn, call.fd, source) {
        return (call.fd, source);
    }
    if source == FdSource::ConnObject {
        return (-1, FdSource::Unknown);
    }
    let io = THREAD_IO.get_ptr_mut(&tid);
    match function.direction() {
        sensor_common::Direction::Ingress => {
            if let Some(io) = io {
                // SAFETY: a valid map value for this thread.
                let (fd, at) = unsafe { ((*io).last_read_fd, (*io).last_read_ns) };
                if fd >= 0
                    && now - at < FD_CORRELATION_WINDOW_NS
                    && crate::sock::bind(pid, tid, call.conn, fd, FdSource::PrecedingRead)
                {
                    return (fd, FdSource::PrecedingRead);
                }
            }
        }
        sensor_common::Direction::Egress => {
            let pending = ThreadIo {
                last_read_fd: -1,
                _pad: 0,
                last_read_ns: 0,
                pending_conn: call.conn,
                pending_ns: now,
            };
            match io {
                // SAFETY: a valid map value for this thread.
                Some(io) => unsafe {
                    (*io).pending_conn = call.conn;
                    (*io).pending_ns = now;
                },
                None => {
                    let _ = THREAD_IO.insert(&tid, &pending, 0);
                }
            }
        }
    }
    (-1, FdSource::Unknown)
}

/// Emits `len` bytes at user address `buf` as ordered chunks.
#[inline(always)]
fn emit_message(hdr: &TlsChunkHeader, buf: u64, len: u64) {
    let capture = if len > MAX_CAPTURE_PER_CALL {
        counters::add(Counter::TruncatedCalls, 1);
        counters::add(Counter::TruncatedBytes, len - MAX_CAPTURE_PER_CALL);
        MAX_CAPTURE_PER_CALL
    } else {
        len
    };
    const FULL: u64 = CHUNK_MAX as u64;
    let mut off: u64 = 0;
    let mut i: u32 = 0;
    while i < MAX_FULL_CHUNKS {
        if capture - off <= FULL {
            break;
        }
        if !emit_chunk::<CHUNK_MAX>(hdr, buf, off, FULL as u32) {
            counters::add(Counter::LostBytes, capture - off);
            return;
        }
        off += FULL;
        i += 1;
    }
    let rest = capture - off;
    let ok = if rest <= TAIL_BUCKETS[0] as u64 {
        emit_chunk::<{ TAIL_BUCKETS[0] }>(hdr, buf, off, rest as u32)
    } else if rest <= TAIL_BUCKETS[1] as u64 {
        emit_chunk::<{ TAIL_BUCKETS[1] }>(hdr, buf, off, rest as u32)
    } else if rest <= TAIL_BUCKETS[2] as u64 {
        emit_chunk::<{ TAIL_BUCKETS[2] }>(hdr, buf, off, rest as u32)
    } else if rest <= TAIL_BUCKETS[3] as u64 {
        emit_chunk::<{ TAIL_BUCKETS[3] }>(hdr, buf, off, rest as u32)
    } else {
        emit_chunk::<{ TAIL_BUCKETS[4] }>(hdr, buf, off, rest as u32)
    };
    if !ok {
        counters::add(Counter::LostBytes, rest);
    }
}

/// Reserves one record with an `N`-byte data area and fills it with `len` bytes
/// from `buf + off`. Returns false when the record could not be delivered.
#[inline(always)]
fn emit_chunk<const N: usize>(hdr: &TlsChunkHeader, buf: u64, off: u64, len: u32) -> bool {
    let Some(mut entry) = EVENTS.reserve::<Chunk<N>>(0) else {
        counters::add(Counter::LostRecords, 1);
        return false;
    };
    // Re-bound for the verifier: the copy must provably fit the data area.
    let n = if len as usize > N { N as u32 } else { len };
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` points at a reserved record of size_of::<Chunk<N>>() bytes;
    // bpf_probe_read_user validates the user address and writes at most n ≤ N bytes.
    let rc = unsafe {
        let mut h = *hdr;
        h.offset = off;
        h.data_len = n;
        (&raw mut (*rec).hdr).write(h);
        bpf_probe_read_user(
            (&raw mut (*rec).data).cast::<c_void>(),
            n,
            (buf + off) as *const c_void,
        )
    };
    if rc != 0 {
        entry.discard(0);
        counters::add(Counter::ReadFaults, 1);
        return false;
    }
    entry.submit(wakeup_flags(size_of::<Chunk<N>>()));
    counters::add(Counter::Records, 1);
    counters::add(Counter::Bytes, n as u64);
    true
}

/// `void SSL_free(SSL *ssl)` (and `gnutls_deinit(session)`): the connection
/// ends; its address may be reused.
#[uprobe]
pub fn ssl_free_enter(ctx: ProbeContext) -> u32 {
    let conn: u64 = ctx.arg(0).unwrap_or(0);
    if conn != 0 {
        emit_close(bpf_get_current_pid_tgid(), conn);
    }
    0
}

/// Tells user space that connection `conn` of thread `id`'s process ended.
#[inline(always)]
pub(crate) fn emit_close(id: u64, conn: u64) {
    crate::sock::forget((id >> 32) as u32, conn);
    crate::hold::forget_conn((id >> 32) as u32, conn);
    let Some(mut entry) = EVENTS.reserve::<ConnCloseRecord>(0) else {
        counters::add(Counter::LostRecords, 1);
        return;
    };
    entry.write(ConnCloseRecord {
        kind: RecordKind::ConnClose as u16,
        abi: ABI_VERSION,
        _pad: 0,
        // SAFETY: no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid: (id >> 32) as u32,
        tid: id as u32,
        conn,
    });
    entry.submit(wakeup_flags(size_of::<ConnCloseRecord>()));
    counters::add(Counter::Records, 1);
}

/// `SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, name)`:
/// the server name a client asks for. Other commands return at once.
#[uprobe]
pub fn ssl_ctrl_enter(ctx: ProbeContext) -> u32 {
    let cmd: u64 = ctx.arg(1).unwrap_or(0);
    let name_type: u64 = ctx.arg(2).unwrap_or(1);
    if cmd as i32 != SSL_CTRL_SET_TLSEXT_HOSTNAME || name_type != 0 {
        return 0;
    }
    emit_server_name(ctx.arg(0).unwrap_or(0), ctx.arg(3).unwrap_or(0), None);
    0
}

/// Emits the server name at user address `name` for connection `conn`: a
/// NUL-terminated string, or `len` bytes when given.
#[inline(always)]
pub(crate) fn emit_server_name(conn: u64, name: u64, len: Option<u64>) {
    if conn == 0 || name == 0 || len == Some(0) {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<ServerNameRecord>(0) else {
        counters::add(Counter::LostRecords, 1);
        return;
    };
    let rec = entry.as_mut_ptr();
    let id = bpf_get_current_pid_tgid();
    const MAX: u64 = sensor_common::SERVER_NAME_MAX as u64 - 1;
    // SAFETY: `rec` points at a reserved record; the copies are bounded by the
    // destination's size and the helpers validate the user pointer.
    let copied: i64 = unsafe {
        (&raw mut (*rec).kind).write(RecordKind::ServerName as u16);
        (&raw mut (*rec).abi).write(ABI_VERSION);
        (&raw mut (*rec)._pad).write(0);
        (&raw mut (*rec).ts_ns).write(bpf_ktime_get_ns());
        (&raw mut (*rec).pid).write((id >> 32) as u32);
        (&raw mut (*rec).tid).write(id as u32);
        (&raw mut (*rec).conn).write(conn);
        match len {
            None => {
                // Counts the NUL.
                let n = aya_ebpf::helpers::generated::bpf_probe_read_user_str(
                    (&raw mut (*rec).name).cast::<c_void>(),
                    sensor_common::SERVER_NAME_MAX as u32,
                    name as *const c_void,
                );
                n - 1
            }
            Some(len) => {
                let n = if len > MAX { MAX } else { len };
                let rc = bpf_probe_read_user(
                    (&raw mut (*rec).name).cast::<c_void>(),
                    (n & MAX) as u32,
                    name as *const c_void,
                );
                if rc == 0 { (n & MAX) as i64 } else { -1 }
            }
        }
    };
    if copied <= 0 {
        entry.discard(0);
        counters::add(Counter::ReadFaults, 1);
        return;
    }
    // SAFETY: as above.
    unsafe { (&raw mut (*rec).len).write(copied as u16) };
    entry.submit(wakeup_flags(size_of::<ServerNameRecord>()));
    counters::add(Counter::Records, 1);
}

macro_rules! probes {
    ($($enter:ident, $exit:ident => $f:expr;)*) => {$(
        #[uprobe]
        pub fn $enter(ctx: ProbeContext) -> u32 {
            enter(&ctx, $f);
            0
        }
        #[uretprobe]
        pub fn $exit(ctx: RetProbeContext) -> u32 {
            exit(&ctx, $f);
            0
        }
    )*};
}

/// Return site of `SSL_write` (see user space's site analysis).
#[uprobe]
pub fn ssl_write_ret_site(ctx: ProbeContext) -> u32 {
    return_site(&ctx, TlsFunction::SslWrite);
    0
}

/// Return site of `SSL_read`.
#[uprobe]
pub fn ssl_read_ret_site(ctx: ProbeContext) -> u32 {
    return_site(&ctx, TlsFunction::SslRead);
    0
}

probes! {
    ssl_write_enter, ssl_write_exit => TlsFunction::SslWrite;
    ssl_write_ex_enter, ssl_write_ex_exit => TlsFunction::SslWriteEx;
    ssl_read_enter, ssl_read_exit => TlsFunction::SslRead;
    ssl_read_ex_enter, ssl_read_ex_exit => TlsFunction::SslReadEx;
    gnutls_send_enter, gnutls_send_exit => TlsFunction::GnutlsRecordSend;
    gnutls_recv_enter, gnutls_recv_exit => TlsFunction::GnutlsRecordRecv;
}
