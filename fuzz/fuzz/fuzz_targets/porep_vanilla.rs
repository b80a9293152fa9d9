//! libFuzzer driver of `lode_fuzz::targets::porep_vanilla`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lode_fuzz::targets::porep_vanilla(data));
