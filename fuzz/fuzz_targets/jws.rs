#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_scope_fuzz::harness::jws(data));
