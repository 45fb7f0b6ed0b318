//! Syscall tracepoints that name the socket behind a TLS connection.
//!
//! Libraries that do their own socket I/O (curl, Python, nginx) read or write the
//! socket inside `SSL_read`/`SSL_write`: the first such syscall of the thread
//! during the call names the descriptor. Memory-BIO stacks (node) do socket I/O
//! outside the call, on the same thread: the read just before an `SSL_read`, and
//! the write just after an `SSL_write`. Only processes that made SSL calls are
//! looked at; everyone else returns after one map lookup.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{FD_CORRELATION_WINDOW_NS, FdSource, ThreadIo};

use crate::{
    sock,
    tls::{ACTIVE, THREAD_IO, WATCHED},
};

/// Offset of the first syscall argument in a `syscalls:sys_enter_*` record.
const ARG0: usize = 16;

#[inline(always)]
fn on_io(ctx: &TracePointContext, is_write: bool) {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    let tid = id as u32;
    // SAFETY: presence check only.
    if unsafe { WATCHED.get(&tgid) }.is_none() {
        return;
    }
    // SAFETY: ARG0 lies within every sys_enter_* record.
    let Ok(fd) = (unsafe { ctx.read_at::<u64>(ARG0) }) else {
        return;
    };
    let fd = fd as i32;
    if fd < 0 {
        return;
    }
    if let Some(call) = ACTIVE.get_ptr_mut(&id) {
        // SAFETY: a valid map value for this thread.
        unsafe {
            if (*call).fd < 0 {
                (*call).fd = fd;
            }
        }
        return;
    }
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let io = THREAD_IO.get_ptr_mut(&tid);
    if !is_write {
        match io {
            // SAFETY: a valid map value for this thread.
            Some(io) => unsafe {
                (*io).last_read_fd = fd;
                (*io).last_read_ns = now;
            },
            None => {
                let fresh = ThreadIo {
                    last_read_fd: fd,
                    _pad: 0,
                    last_read_ns: now,
                    pending_conn: 0,
                    pending_ns: 0,
                };
                let _ = THREAD_IO.insert(&tid, &fresh, 0);
            }
        }
        return;
    }
    let Some(io) = io else {
        return;
    };
    // SAFETY: a valid map value for this thread.
    let (conn, since) = unsafe { ((*io).pending_conn, (*io).pending_ns) };
    if conn == 0 {
        return;
    }
    if now - since >= FD_CORRELATION_WINDOW_NS {
        // SAFETY: as above.
        unsafe { (*io).pending_conn = 0 };
        return;
    }
    // A write to something else (an eventfd, a pipe) leaves the wait pending.
    if sock::bind(tgid, tid, conn, fd, FdSource::FollowingWrite) {
        // SAFETY: as above.
        unsafe { (*io).pending_conn = 0 };
    }
}

macro_rules! io_tracepoints {
    ($($name:ident => $write:expr;)*) => {$(
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            on_io(&ctx, $write);
            0
        }
    )*};
}

io_tracepoints! {
    sys_enter_read => false;
    sys_enter_readv => false;
    sys_enter_recvfrom => false;
    sys_enter_recvmsg => false;
    sys_enter_write => true;
    sys_enter_writev => true;
    sys_enter_sendto => true;
    sys_enter_sendmsg => true;
}
