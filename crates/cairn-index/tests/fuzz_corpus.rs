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

/// One `index_records` record: tree selector, key length, key, value
/// length, value.
fn raw_record(tree: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut r = vec![tree, key.len() as u8];
    r.extend_from_slice(key);
    r.push(value.len() as u8);
    r.extend_from_slice(value);
    r
}

/// One 53-byte entry record, written out from the layout.
fn raw_entry(
    id: [u8; 32],
    kind: u8,
    frame_offset: u64,
    frame_len: u32,
    offset: u32,
    len: u32,
) -> Vec<u8> {
    let mut e = id.to_vec();
    e.push(kind);
    e.extend_from_slice(&frame_offset.to_le_bytes());
    e.extend_from_slice(&frame_len.to_le_bytes());
    e.extend_from_slice(&offset.to_le_bytes());
    e.extend_from_slice(&len.to_le_bytes());
    e
}

/// `index_records` inputs in the version-2 layout (`entries` records keyed
/// by pack number), through the same checks as the corpus. The corpus was
/// grown on the version-1 layout (tree 0 held 32-byte chunk-id keys), so
/// none of its files has a well-formed `entries` tree; these reach the
/// lookup paths behind it.
#[test]
fn index_records_entries_layout_inputs() {
    let id = |b: u8| [b; 32];
    // Same first 8 bytes as `id(1)`, different id.
    let mut twin = id(1);
    twin[20] = 9;
    let pack_a = [0xAA; 32];
    let pack_b = [0xBB; 32];
    let pack_c = [0xCC; 32];
    // Pack numbers 7 and 256: in big-endian keys 256 sorts (and is) after 7,
    // read little-endian it would be before.
    let (no_a, no_b, no_c) = (3u32.to_be_bytes(), 7u32.to_be_bytes(), 256u32.to_be_bytes());
    let pack_rec = |no: u32, len: u64| [&no.to_le_bytes()[..], &len.to_le_bytes()].concat();
    let entries_a = [
        raw_entry(id(1), 1, 16, 100, 0, 40),
        raw_entry(id(2), 0, 16, 100, 40, 8),
        raw_entry(id(1), 0, 116, 12, 0, 12),
        raw_entry(twin, 0, 128, 9, 1, 2),
    ]
    .concat();
    let entries_b = [
        raw_entry(id(2), 1, 5, 6, 7, 8),
        raw_entry(id(3), 0, u64::MAX, u32::MAX, u32::MAX, u32::MAX),
    ]
    .concat();
    let entries_c = [
        raw_entry(id(2), 0, 1, 2, 3, 4),
        raw_entry(id(4), 1, 0, 0, 0, 0),
    ]
    .concat();
    let packs = [
        raw_record(0, &no_a, &entries_a),
        raw_record(0, &no_b, &entries_b),
        raw_record(0, &no_c, &entries_c),
        raw_record(1, &pack_a, &pack_rec(3, 1000)),
        raw_record(1, &pack_b, &pack_rec(7, 2000)),
        raw_record(1, &pack_c, &pack_rec(256, 3000)),
        raw_record(2, &no_a, &pack_a),
        raw_record(2, &no_b, &pack_b),
        raw_record(2, &no_c, &pack_c),
        raw_record(3, &1_772_971_200i64.to_be_bytes(), b"manifest"),
    ]
    .concat();
    let with = |flags: u8, extra: &[Vec<u8>]| {
        let mut input = vec![flags];
        input.extend_from_slice(&packs);
        for r in extra {
            input.extend_from_slice(r);
        }
        input
    };
    let mut bad_kind = entries_c.clone();
    bad_kind[32] = 2;
    let mut bad_kind_other = entries_c.clone();
    bad_kind_other[53 + 32] = 7;
    let inputs = [
        // Well formed: three packs, ids in several of them.
        with(0, &[]),
        // Not ready: cleared on open.
        with(1, &[]),
        with(2, &[]),
        with(4, &[]),
        // An empty pack.
        with(0, &[raw_record(0, &9u32.to_be_bytes(), &[])]),
        // The newest pack of id 2 has no `packno` record, or a short one.
        with(0, &[raw_record(2, &no_c, &pack_c[..31])]),
        {
            let mut input = vec![0];
            input.extend_from_slice(&raw_record(0, &no_a, &entries_a));
            input.extend_from_slice(&raw_record(0, &no_c, &entries_c));
            input.extend_from_slice(&raw_record(2, &no_a, &pack_a));
            input
        },
        // A bad kind byte in the newest entry of id 2; in id 4's only.
        with(0, &[raw_record(0, &no_c, &bad_kind)]),
        with(0, &[raw_record(0, &no_c, &bad_kind_other)]),
        // A bad kind byte in an older entry of id 2 (pack 7).
        with(
            0,
            &[raw_record(
                0,
                &no_b,
                &[&bad_kind[..53], &entries_b[53..]].concat(),
            )],
        ),
        // Damaged `entries` keys and values: nothing can be looked up.
        with(0, &[raw_record(0, &[0, 0, 5], &entries_b)]),
        with(0, &[raw_record(0, &[0, 0, 0, 0, 5], &[])]),
        with(0, &[raw_record(0, &no_b, &entries_b[..105])]),
        with(0, &[raw_record(0, &no_b, &[&entries_b[..], &[0]].concat())]),
    ];
    let dir = tempfile::tempdir().unwrap();
    for input in &inputs {
        checks_index::check_index_records(dir.path(), input);
        checks_index::check_index_records_codec(input);
    }
}
