//! libFuzzer driver of `lode_fuzz::targets::signed_message`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lode_fuzz::targets::signed_message(data));
