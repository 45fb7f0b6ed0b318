//! Holding a TLS write for a decision. For processes a blocking policy selects
//! (and for processes user space has not judged yet), the entry probe of a
//! write stops the process with `SIGSTOP` before the library encrypts anything
//! and tells user space where the plaintext is; user space reads it, decides,
//! and continues the process (after shutting the connection's socket down when
//! the request must not leave). Processes judged exempt cost one map lookup;
//! without any blocking policy the loader leaves `TELLTALE_HOLD` at 0 and the
//! verifier removes the whole path.

use aya_ebpf::{
    bindings::BPF_RB_FORCE_WAKEUP,
    helpers::{bpf_get_current_uid_gid, bpf_ktime_get_ns, generated::bpf_send_signal},
    macros::map,
    maps::LruHashMap,
};
use sensor_common::{
    ABI_VERSION, Counter, HoldRecord, MAX_ACTIVE_CALLS, MAX_HOLD_PROCESSES, RecordKind, SockKey,
    TlsFunction, hold,
};

use crate::{counters, sock::SOCKS, tls::EVENTS};

/// Set to 1 by the loader when a blocking policy is configured.
#[unsafe(no_mangle)]
static TELLTALE_HOLD: u8 = 0;

/// Judged processes: [`hold::EXEMPT`] or [`hold::SELECTED`], keyed by tgid.
/// User space fills it; the exec tracepoint removes a process's entry (its
/// new program is judged anew) and the exit tracepoint forgets it.
#[map]
pub(crate) static HOLD: LruHashMap<u32, u8> = LruHashMap::with_max_entries(MAX_HOLD_PROCESSES, 0);

/// Connections of selected processes whose writes need no decision (user
/// space found they carry no HTTP/1 requests and go to no known AI endpoint):
/// not held any more. Removed when the connection object is freed.
#[map]
pub(crate) static HOLD_SKIP: LruHashMap<SockKey, u8> =
    LruHashMap::with_max_entries(MAX_ACTIVE_CALLS, 0);

#[inline(always)]
pub(crate) fn enabled() -> bool {
    // SAFETY: reading a constant global; volatile keeps it from being folded
    // before the loader sets it.
    unsafe { core::ptr::read_volatile(&raw const TELLTALE_HOLD) != 0 }
}

/// Forgets process `tgid`'s judgement (it exec'd or exited).
#[inline(always)]
pub(crate) fn forget(tgid: u32) {
    if enabled() {
        let _ = HOLD.remove(&tgid);
    }
}

/// Connection `conn` of process `tgid` was freed.
#[inline(always)]
pub(crate) fn forget_conn(tgid: u32, conn: u64) {
    if enabled() {
        let key = SockKey {
            pid: tgid,
            _pad: 0,
            conn,
        };
        let _ = HOLD_SKIP.remove(&key);
    }
}

/// At the entry of a write of `len` bytes at `buf` on `conn` by thread `id`:
/// stops the process unless it was judged exempt.
#[inline(always)]
pub(crate) fn maybe_hold(id: u64, conn: u64, buf: u64, len: u64, function: TlsFunction) {
    let tgid = (id >> 32) as u32;
    // SAFETY: the value is copied out at once.
    let state = match unsafe { HOLD.get(&tgid) } {
        Some(&hold::EXEMPT) => return,
        Some(&s) => s,
        None => 0xff,
    };
    let key = SockKey {
        pid: tgid,
        _pad: 0,
        conn,
    };
    if state == 0xff {
        // Marks the process for the guard (see the user-space enforce module).
        let _ = HOLD.insert(&tgid, &hold::PENDING, 0);
    } else {
        // SAFETY: presence check only.
        if unsafe { HOLD_SKIP.get(&key) }.is_some() {
            return;
        }
    }
    // Room for the record first: a process must never be stopped without user
    // space learning of it.
    let Some(mut entry) = EVENTS.reserve::<HoldRecord>(0) else {
        counters::add(Counter::HoldsMissed, 1);
        return;
    };
    // SAFETY: signals the current task's process; fails cleanly.
    if unsafe { bpf_send_signal(hold::SIGSTOP) } != 0 {
        entry.discard(0);
        counters::add(Counter::HoldsMissed, 1);
        return;
    }
    // SAFETY: copied out at once.
    let fd = unsafe { SOCKS.get(&key) }.copied().unwrap_or(-1);
    entry.write(HoldRecord {
        kind: RecordKind::Hold as u16,
        abi: ABI_VERSION,
        function: function as u8,
        state,
        _pad: 0,
        fd,
        pid: tgid,
        tid: id as u32,
        uid: bpf_get_current_uid_gid() as u32,
        // SAFETY: no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        conn,
        buf,
        len,
    });
    // The process waits: wake user space now.
    entry.submit(BPF_RB_FORCE_WAKEUP as u64);
    counters::add(Counter::Holds, 1);
    counters::add(Counter::Records, 1);
}
