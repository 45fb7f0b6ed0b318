//! Empty library target: lets `telltale` name this crate as a build dependency so
//! that cargo rebuilds the kernel programs whenever they change. The programs
//! themselves are the `telltale-ebpf` binary, built for the BPF target.
#![no_std]
