//! Per-CPU loss and activity counters, summed by user space.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{macros::map, maps::PerCpuArray};
use sensor_common::Counter;

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Adds `n` to counter `c` on this CPU.
#[inline(always)]
pub fn add(c: Counter, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
        // A uprobe program can be preempted by another task running it on the same
        // CPU, so even a per-CPU slot needs an atomic add to lose nothing.
        // core's atomic types have no read-modify-write on the BPF target; the
        // intrinsic lowers to BPF's atomic add.
        // SAFETY: the map value is a valid, aligned u64 for the map's lifetime.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, n) };
    }
}
