//! Replays the fuzz corpora of cairn-index (`fuzz/corpus/index_roundtrip/`
//! and `fuzz/corpus/index_records/`) through the same checks the cargo-fuzz
//! targets run (`fuzz/checks_index.rs`), so a plain `cargo test` exercises
//! every saved input: through the record codec checks the fuzz targets run,
//! and through the sled-level checks, which open a real index.

#[path = "../../../fuzz/checks_index.rs"]
mod checks_index;

use std::path::{Path, PathBuf};

use cairn_index::Index;

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

#[test]
fn index_roundtrip_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = Index::open(&dir.path().join("index"), checks_index::STORE_ID).unwrap();
    // One index for the whole corpus, as in the fuzz target: each input
    // leaves it empty for the next.
    for file in corpus_files("index_roundtrip") {
        let data = std::fs::read(&file).unwrap();
        checks_index::check_index_roundtrip(&index, &data);
    }
}

#[test]
fn index_records_corpus() {
    let dir = tempfile::tempdir().unwrap();
    for file in corpus_files("index_records") {
        let data = std::fs::read(&file).unwrap();
        checks_index::check_index_records(dir.path(), &data);
    }
}

#[test]
fn index_roundtrip_corpus_codec() {
    for file in corpus_files("index_roundtrip") {
        let data = std::fs::read(&file).unwrap();
        checks_index::check_index_roundtrip_codec(&data);
    }
}

#[test]
fn index_records_corpus_codec() {
    for file in corpus_files("index_records") {
        let data = std::fs::read(&file).unwrap();
        checks_index::check_index_records_codec(&data);
    }
}
