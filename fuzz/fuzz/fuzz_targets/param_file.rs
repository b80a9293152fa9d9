//! libFuzzer driver of `lode_fuzz::targets::param_file`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lode_fuzz::targets::param_file(data));
