//! Fuzz target: see `telltale::fuzzing::content`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| telltale::fuzzing::content(data));
