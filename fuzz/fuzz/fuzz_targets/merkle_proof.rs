//! libFuzzer driver of `lode_fuzz::targets::merkle_proof`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lode_fuzz::targets::merkle_proof(data));
