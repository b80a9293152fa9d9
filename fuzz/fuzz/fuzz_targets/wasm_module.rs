//! libFuzzer driver of `lode_fuzz::targets::wasm_module`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lode_fuzz::targets::wasm_module(data));
