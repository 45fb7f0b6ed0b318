//! Fuzz target: see `telltale::fuzzing::decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| telltale::fuzzing::decoder(data));
