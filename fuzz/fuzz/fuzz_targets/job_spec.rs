//! libFuzzer driver of `lode_fuzz::targets::job_spec`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lode_fuzz::targets::job_spec(data));
