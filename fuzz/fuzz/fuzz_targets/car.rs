//! libFuzzer driver of `lode_fuzz::targets::car`.
//!
//! The CAR parsers lode uses may panic on malformed framing, and lode catches that
//! (`lode_market::car::scan_car`). libFuzzer's hook would abort at the panic, caught or not, so
//! this target's hook stays silent: a panic that escapes lode still aborts, in libfuzzer-sys.
#![no_main]
libfuzzer_sys::fuzz_target!(
    init: std::panic::set_hook(Box::new(|_| {})),
    |data: &[u8]| lode_fuzz::targets::car(data)
);
