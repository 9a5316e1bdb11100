#![no_main]
//! Checks: `cairn_fuzz::checks_format::check_id_from_str` (fuzz/checks_format.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_fuzz::checks_format::check_id_from_str(data));
