//! Probes of the TLS stacks that are not OpenSSL-compatible: GnuTLS, NSS (through
//! NSPR's I/O functions) and Go's crypto/tls. They share the capture path of
//! tls.rs (per-call state, ordered chunks, counters) and differ in how they find
//! their arguments and results.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, uprobe, uretprobe},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use sensor_common::{
    ActiveCall, Counter, GNUTLS_NAME_DNS, GO_CONN_OFFSETS, GoCallKey, MAX_ACTIVE_CALLS,
    MAX_WATCHED_PROCESSES, NSPR_IDENTITY_OFFSET, TlsFunction, probe::cookie_target,
};

use crate::{
    counters,
    tls::{ACTIVE, WATCHED, attach_cookie, emit_call, emit_close, emit_server_name, enter, exit},
};

/// NSS's SSL layer identity per process (NSPR hands identities out at run
/// time), learned when `SSL_ImportFD` returns.
#[map]
static NSS_SSL_IDENTITY: LruHashMap<u32, i32> =
    LruHashMap::with_max_entries(MAX_WATCHED_PROCESSES, 0);

/// Go calls in flight, keyed by goroutine: a goroutine may return on another
/// thread than it entered on.
#[map]
static GO_ACTIVE: LruHashMap<GoCallKey, ActiveCall> =
    LruHashMap::with_max_entries(MAX_ACTIVE_CALLS, 0);

// ---------------------------------------------------------------- GnuTLS

/// `gnutls_server_name_set(session, GNUTLS_NAME_DNS, name, len)`.
#[uprobe]
pub fn gnutls_sni_enter(ctx: ProbeContext) -> u32 {
    let name_type: u64 = ctx.arg(1).unwrap_or(0);
    if name_type != GNUTLS_NAME_DNS {
        return 0;
    }
    emit_server_name(
        ctx.arg(0).unwrap_or(0),
        ctx.arg(2).unwrap_or(0),
        Some(ctx.arg(3).unwrap_or(0)),
    );
    0
}

// ------------------------------------------------------------------ NSS

/// Whether NSPR descriptor `fd` of the current process is NSS's SSL layer.
#[inline(always)]
fn is_ssl_layer(fd: u64) -> bool {
    if fd == 0 {
        return false;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is copied.
    let Some(ssl) = (unsafe { NSS_SSL_IDENTITY.get(&tgid) }).copied() else {
        return false;
    };
    // SAFETY: bpf_probe_read_user validates the user pointer.
    unsafe { bpf_probe_read_user((fd + NSPR_IDENTITY_OFFSET) as *const i32) }
        .is_ok_and(|id| id == ssl)
}

/// Return of `SSL_ImportFD`: the descriptor it returns has the SSL layer on top.
#[uretprobe]
pub fn nss_import_exit(ctx: RetProbeContext) -> u32 {
    let fd = ctx.ret::<u64>();
    if fd == 0 {
        return 0;
    }
    // SAFETY: bpf_probe_read_user validates the user pointer.
    let Ok(identity) = (unsafe { bpf_probe_read_user((fd + NSPR_IDENTITY_OFFSET) as *const i32) })
    else {
        counters::add(Counter::ReadFaults, 1);
        return 0;
    };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = NSS_SSL_IDENTITY.insert(&tgid, &identity, 0);
    0
}

/// `SSL_SetURL(fd, url)`: the server name of an NSS connection.
#[uprobe]
pub fn sni_arg1_enter(ctx: ProbeContext) -> u32 {
    emit_server_name(ctx.arg(0).unwrap_or(0), ctx.arg(1).unwrap_or(0), None);
    0
}

/// `PR_Close(fd)` of an SSL layer ends its connection.
#[uprobe]
pub fn nspr_close_enter(ctx: ProbeContext) -> u32 {
    let fd: u64 = ctx.arg(0).unwrap_or(0);
    if is_ssl_layer(fd) {
        emit_close(bpf_get_current_pid_tgid(), fd);
    }
    0
}

/// Entry of an NSPR I/O function: remembered only for SSL layers. Every other
/// descriptor (files, pipes, plain sockets) costs one map lookup and one read.
#[inline(always)]
fn nspr_enter(ctx: &ProbeContext, function: TlsFunction) {
    if is_ssl_layer(ctx.arg(0).unwrap_or(0)) {
        enter(ctx, function);
    }
}

/// Return of an NSPR I/O function: only calls whose entry was remembered are
/// ours, so a missing entry is expected here and not an orphan.
#[inline(always)]
fn nspr_exit(ctx: &RetProbeContext, function: TlsFunction) {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: presence check; the value is read by `exit`.
    match unsafe { ACTIVE.get(&id) } {
        Some(call) if call.function == function as u8 => exit(ctx, function),
        _ => {}
    }
}

macro_rules! nspr_probes {
    ($($enter:ident, $exit:ident => $f:expr;)*) => {$(
        #[uprobe]
        pub fn $enter(ctx: ProbeContext) -> u32 {
            nspr_enter(&ctx, $f);
            0
        }
        #[uretprobe]
        pub fn $exit(ctx: RetProbeContext) -> u32 {
            nspr_exit(&ctx, $f);
            0
        }
    )*};
}

nspr_probes! {
    pr_write_enter, pr_write_exit => TlsFunction::PrWrite;
    pr_read_enter, pr_read_exit => TlsFunction::PrRead;
    pr_send_enter, pr_send_exit => TlsFunction::PrSend;
    pr_recv_enter, pr_recv_exit => TlsFunction::PrRecv;
}

// ------------------------------------------------------------------- Go

/// The socket descriptor behind a Go `*tls.Conn` (see [`GO_CONN_OFFSETS`]), or
/// -1. Only trusted once the kernel confirms it is a socket.
#[inline(always)]
fn go_fd(conn: u64) -> i32 {
    let [iface_data, netfd, sysfd] = GO_CONN_OFFSETS;
    // SAFETY (all three): bpf_probe_read_user validates the user pointers.
    let Ok(tcp) = (unsafe { bpf_probe_read_user((conn + iface_data) as *const u64) }) else {
        return -1;
    };
    let Ok(fd) = (unsafe { bpf_probe_read_user((tcp + netfd) as *const u64) }) else {
        return -1;
    };
    match unsafe { bpf_probe_read_user((fd + sysfd) as *const i64) } {
        Ok(n) if (0..=i32::MAX as i64).contains(&n) => n as i32,
        _ => -1,
    }
}

/// The goroutine-keyed state of the current call.
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn go_key(ctx: &ProbeContext) -> GoCallKey {
    GoCallKey {
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        g: crate::tls::reg(ctx, sensor_common::probe::reg::R14),
    }
}

/// Entry of `(*tls.Conn).Write`/`Read` under Go's register ABI: the receiver
/// in `rax`, the slice's pointer in `rbx` (its length in `rcx`, unused: the
/// result says how much was transferred).
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn go_enter(ctx: &ProbeContext, function: TlsFunction) {
    use sensor_common::probe::reg;
    let conn = crate::tls::reg(ctx, reg::RAX);
    let call = ActiveCall {
        conn,
        buf: crate::tls::reg(ctx, reg::RBX),
        len_out: 0,
        target: cookie_target(attach_cookie(ctx)),
        function: function as u8,
        _pad: [0; 3],
        fd: go_fd(conn),
    };
    let key = go_key(ctx);
    // SAFETY: presence check only.
    if unsafe { WATCHED.get(&key.pid) }.is_none() {
        let _ = WATCHED.insert(&key.pid, &1, 0);
    }
    if GO_ACTIVE.insert(&key, &call, 0).is_err() {
        counters::add(Counter::ActiveFull, 1);
    }
}

/// A `RET` of `(*tls.Conn).Write`/`Read`: `n` is in `rax`.
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn go_return(ctx: &ProbeContext, function: TlsFunction) {
    let key = go_key(ctx);
    // SAFETY: the value is copied out before the entry is removed.
    let Some(call) = (unsafe { GO_ACTIVE.get(&key) }).copied() else {
        counters::add(Counter::OrphanReturns, 1);
        return;
    };
    let _ = GO_ACTIVE.remove(&key);
    if call.function != function as u8 {
        counters::add(Counter::OrphanReturns, 1);
        return;
    }
    let n = crate::tls::reg(ctx, sensor_common::probe::reg::RAX) as i64;
    if n > 0 {
        emit_call(bpf_get_current_pid_tgid(), &call, function, n as u64);
    }
}

#[cfg(not(bpf_target_arch = "x86_64"))]
#[inline(always)]
fn go_enter(_ctx: &ProbeContext, _function: TlsFunction) {}

#[cfg(not(bpf_target_arch = "x86_64"))]
#[inline(always)]
fn go_return(_ctx: &ProbeContext, _function: TlsFunction) {}

macro_rules! go_probes {
    ($($enter:ident, $ret:ident => $f:expr;)*) => {$(
        #[uprobe]
        pub fn $enter(ctx: ProbeContext) -> u32 {
            go_enter(&ctx, $f);
            0
        }
        #[uprobe]
        pub fn $ret(ctx: ProbeContext) -> u32 {
            go_return(&ctx, $f);
            0
        }
    )*};
}

go_probes! {
    go_write_enter, go_write_ret => TlsFunction::GoWrite;
    go_read_enter, go_read_ret => TlsFunction::GoRead;
}
