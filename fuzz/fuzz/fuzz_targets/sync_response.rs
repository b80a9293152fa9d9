//! libFuzzer driver of `lode_fuzz::targets::sync_response`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lode_fuzz::targets::sync_response(data));
