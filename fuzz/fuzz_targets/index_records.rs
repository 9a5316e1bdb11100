#![no_main]
//! Checks: `cairn_fuzz::checks_index::check_index_records_codec`
//! (fuzz/checks_index.rs): arbitrary bytes decoded as every index record
//! kind (as an `entries` value: `entry_count`, `entry_id` and
//! `decode_entry` of every entry; pack records; pack number, pack id and
//! snapshot keys), against a reference decoder. The sled-level check of
//! the same input, `check_index_records` (raw `entries`, `packs`, `packno`
//! and `snapshots` records read through `Index::open` and its lookups),
//! runs in the corpus replay test.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cairn_fuzz::checks_index::check_index_records_codec(data)
});
