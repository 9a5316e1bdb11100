#![no_main]
//! Checks: `cairn_fuzz::checks_index::check_index_records`
//! (fuzz/checks_index.rs), in one temporary folder per process.

use std::sync::OnceLock;

fn scratch() -> &'static tempfile::TempDir {
    static SCRATCH: OnceLock<tempfile::TempDir> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("cairn-fuzz-records-")
            .tempdir()
            .expect("temporary folder")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cairn_fuzz::checks_index::check_index_records(scratch().path(), data)
});
