#![no_main]
//! Checks: `cairn_fuzz::checks_index::check_index_records_codec`
//! (fuzz/checks_index.rs): arbitrary bytes decoded as every index record
//! kind, against a reference decoder. The sled-level check of the same
//! input, `check_index_records`, runs in the corpus replay test.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cairn_fuzz::checks_index::check_index_records_codec(data)
});
