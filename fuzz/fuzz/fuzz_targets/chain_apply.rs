//! libFuzzer driver of `lode_fuzz::targets::chain_apply`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lode_fuzz::targets::chain_apply(data));
