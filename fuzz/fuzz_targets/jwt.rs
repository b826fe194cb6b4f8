#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| amphi_core::fuzzing::jwt(data));
