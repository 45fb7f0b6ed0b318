//! Fuzz target: see `telltale::fuzzing::http1`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| telltale::fuzzing::http1(data));
