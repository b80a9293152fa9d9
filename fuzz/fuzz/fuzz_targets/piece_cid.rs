//! libFuzzer driver of `lode_fuzz::targets::piece_cid`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lode_fuzz::targets::piece_cid(data));
