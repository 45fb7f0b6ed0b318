//! Fuzz target: see `telltale::fuzzing::http2`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| telltale::fuzzing::http2(data));
