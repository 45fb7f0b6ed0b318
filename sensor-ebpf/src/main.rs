//! Telltale's kernel programs.
//!
//! Uprobes on the SSL libraries' read and write functions copy the plaintext of
//! every successful call into the `EVENTS` ring buffer. Entry probes remember the
//! arguments per thread; return probes, once the byte count is known, emit the
//! bytes in ordered chunks. Every byte that cannot be delivered is counted in
//! `COUNTERS`, which user space reports.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod counters;
mod hold;
mod io;
mod lifecycle;
mod net;
mod sock;
mod stacks;
mod tls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path to here.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
