#![no_main]
//! Checks: `cairn_fuzz::checks_index::check_index_roundtrip`
//! (fuzz/checks_index.rs), on one index per process in a temporary folder.

use std::sync::OnceLock;

use cairn_index::Index;

struct Shared {
    index: Index,
    _dir: tempfile::TempDir,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("cairn-fuzz-index-")
            .tempdir()
            .expect("temporary folder");
        let (index, _) = Index::open(
            &dir.path().join("index"),
            cairn_fuzz::checks_index::STORE_ID,
        )
        .expect("open index");
        Shared { index, _dir: dir }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cairn_fuzz::checks_index::check_index_roundtrip(&shared().index, data)
});
