#![no_main]
//! Checks: `cairn_fuzz::checks_index::check_index_roundtrip_codec`
//! (fuzz/checks_index.rs): index records encoded from arbitrary values (a
//! pack's entries as an `entries` value, pack records, pack number and
//! snapshot keys) match a reference encoder and decode back to them. The
//! sled-level check of the same input, `check_index_roundtrip`
//! (`Index::add_pack` / `lookup` / `contains` / `chunk_count` / `packs` /
//! `remove_pack`), runs in the corpus replay test.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cairn_fuzz::checks_index::check_index_roundtrip_codec(data)
});
