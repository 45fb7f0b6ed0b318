//! Process lifecycle: every `exec` (user space looks at the new program for a TLS
//! stack and refreshes its view of the process), and the exit of processes that
//! made SSL calls (user space forgets them; the kernel drops their per-thread
//! state here).

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{ABI_VERSION, Counter, EXEC_PATH_MAX, ExecRecord, ProcessRecord, RecordKind};

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

/// Offset of `__data_loc char[] filename` in a `sched_process_exec` record: a
/// u32 whose low half is the string's offset in the record.
const EXEC_FILENAME_LOC: usize = 8;

/// `sched:sched_process_exec`: runs in the process after the new program is
/// mapped.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // The new program is not the one whose calls were watched, nor the one
    // enforcement judged.
    let _ = WATCHED.remove(&pid);
    crate::hold::forget(pid);
    let Some(mut entry) = EVENTS.reserve::<ExecRecord>(0) else {
        counters::add(Counter::LostRecords, 1);
        return 0;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: the data_loc field lies within the record.
    let loc = unsafe { ctx.read_at::<u32>(EXEC_FILENAME_LOC) }.unwrap_or(0);
    let name = ctx.as_ptr() as u64 + u64::from(loc & 0xffff);
    // SAFETY: `rec` points at a reserved record; the string copy is bounded by
    // the destination and the helper validates the kernel address.
    let n = unsafe {
        (&raw mut (*rec).kind).write(RecordKind::Exec as u16);
        (&raw mut (*rec).abi).write(ABI_VERSION);
        (&raw mut (*rec).pid).write(pid);
        (&raw mut (*rec).ts_ns).write(bpf_ktime_get_ns());
        (&raw mut (*rec)._pad).write([0; 3]);
        if loc == 0 {
            0
        } else {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
                (&raw mut (*rec).path).cast(),
                EXEC_PATH_MAX as u32,
                name as *const core::ffi::c_void,
            )
        }
    };
    // SAFETY: as above; n counts the NUL.
    unsafe { (&raw mut (*rec).path_len).write(if n > 1 { (n - 1) as u16 } else { 0 }) };
    entry.submit(wakeup_flags(size_of::<ExecRecord>()));
    counters::add(Counter::Records, 1);
    0
}

/// `sched:sched_process_exit`: runs for every exiting thread.
#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let (pid, tid) = ((id >> 32) as u32, id as u32);
    let _ = THREAD_IO.remove(&tid);
    let _ = ACTIVE.remove(&id);
    if pid == tid {
        crate::hold::forget(pid);
    }
    // SAFETY: presence check only.
    if pid == tid && unsafe { WATCHED.get(&pid) }.is_some() {
        let _ = WATCHED.remove(&pid);
        emit(RecordKind::Exit, pid);
    }
    0
}
