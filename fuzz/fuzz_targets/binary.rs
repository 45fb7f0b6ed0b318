//! Fuzz target: see `telltale::fuzzing::binary`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| telltale::fuzzing::binary(data));
