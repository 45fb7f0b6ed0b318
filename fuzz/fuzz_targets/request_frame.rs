//! Fuzz target: see `telltale::fuzzing::request_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| telltale::fuzzing::request_frame(data));
