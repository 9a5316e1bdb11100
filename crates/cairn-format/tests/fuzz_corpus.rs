//! Replays the fuzz corpora of cairn-format's decoders (`fuzz/corpus/<target>/`)
//! through the same checks the cargo-fuzz targets run (`fuzz/checks_format.rs`),
//! so a plain `cargo test` exercises every saved input: no panic, and
//! decode(encode(x)) == x wherever a decode succeeds.

#[path = "../../../fuzz/checks_format.rs"]
mod checks_format;

use std::path::{Path, PathBuf};

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
fn every_corpus_input_passes_its_target_check() {
    let mut failures = Vec::new();
    let mut total = 0;
    for &(target, check) in checks_format::TARGETS {
        for file in corpus_files(target) {
            let data = std::fs::read(&file).expect("read corpus file");
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failures.push(format!("{target}: {}", file.display()));
            }
            total += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} corpus inputs fail their target check:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
