//! Fuzz target: see `telltale::fuzzing::llm_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| telltale::fuzzing::llm_request(data));
