//! Process lifecycle: every `exec` (user space looks at the new program for a TLS
//! stack and refreshes its view of the process), and the exit of processes that
//! made SSL calls (user space forgets them; the kernel drops their per-thread
//! state here).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{ABI_VERSION, Counter, ProcessRecord, RecordKind};

use crate::{
    counters,
    tls::{ACTIVE, EVENTS, THREAD_IO, WATCHED, wakeup_flags},
};

#[inline(always)]
fn emit(kind: RecordKind, pid: u32) {
    let Some(mut entry) = EVENTS.reserve::<ProcessRecord>(0) else {
        counters::add(Counter::LostRecords, 1);
        return;
    };
    entry.write(ProcessRecord {
        kind: kind as u16,
        abi: ABI_VERSION,
        pid,
        // SAFETY: no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    });
    entry.submit(wakeup_flags(size_of::<ProcessRecord>()));
    counters::add(Counter::Records, 1);
}

/// `sched:sched_process_exec`: runs in the process after the new program is
/// mapped.
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // The new program is not the one whose calls were watched.
    let _ = WATCHED.remove(&pid);
    emit(RecordKind::Exec, pid);
    0
}

/// `sched:sched_process_exit`: runs for every exiting thread.
#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let (pid, tid) = ((id >> 32) as u32, id as u32);
    let _ = THREAD_IO.remove(&tid);
    let _ = ACTIVE.remove(&id);
    // SAFETY: presence check only.
    if pid == tid && unsafe { WATCHED.get(&pid) }.is_some() {
        let _ = WATCHED.remove(&pid);
        emit(RecordKind::Exit, pid);
    }
    0
}
