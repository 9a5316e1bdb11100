//! The DuckDB facts cairn's block-aligned splitting relies on, checked on
//! real database files written by DuckDB itself (`tests/hitkeep_gen.py`,
//! tiny scale, then one hour of simulated traffic):
//! - the header area parses, the live database header's checksum holds
//!   under cairn's implementation of DuckDB's checksum, and its block
//!   size is 256 KiB;
//! - every block starts with the checksum of the rest of it (or is all
//!   zeros, never written);
//! - between two versions of a file, a block whose first 8 bytes (its
//!   checksum) are unchanged is byte-identical, so the checksum can stand
//!   for the block.
//!
//! Requires python3 with the `duckdb` package (scripts/setup.sh installs it).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_chunk::duckdb::{self, Headers, DEFAULT_BLOCK_SIZE, HEADER_AREA};

fn generator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/hitkeep_gen.py")
}

fn gen(args: &[&str]) {
    let probe = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 with the duckdb package is required for this test \
             (scripts/setup.sh installs it): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 is required for this test: {e}"),
    }
    let out = Command::new("python3")
        .arg(generator())
        .args(args)
        .output()
        .expect("run the generator");
    assert!(
        out.status.success(),
        "generator {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every DuckDB file under `dir` (`DUCK` at offset 8), relative paths.
fn duckdb_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            duckdb_files(root, &p, out);
        } else if m.is_file() {
            let bytes = fs::read(&p).unwrap();
            if duckdb::is_duckdb(&bytes[..bytes.len().min(16)]) {
                out.push(p.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
}

fn block_size() -> usize {
    DEFAULT_BLOCK_SIZE as usize
}

/// Header facts of one version of one file; returns its live iteration.
fn check_headers(name: &str, bytes: &[u8]) -> u64 {
    assert!(
        bytes.len() >= HEADER_AREA as usize,
        "{name}: shorter than its headers"
    );
    let h = Headers::parse(&bytes[..HEADER_AREA as usize]).expect("header area parses");
    let live = h.live();
    assert!(
        live.checksum_ok,
        "{name}: live header checksum fails: {h:?}"
    );
    assert_eq!(live.block_size, 262_144, "{name}: {h:?}");
    assert_eq!(h.block_size(), 262_144, "{name}: {h:?}");
    live.iteration
}

/// Every block starts with DuckDB's checksum of the rest, or is all zeros.
fn check_block_checksums(name: &str, bytes: &[u8]) {
    for (i, block) in bytes[HEADER_AREA as usize..]
        .chunks_exact(block_size())
        .enumerate()
    {
        let stored = u64::from_le_bytes(block[..8].try_into().unwrap());
        let ok = duckdb::checksum(&block[8..]) == stored || block.iter().all(|&b| b == 0);
        assert!(ok, "{name}: block {i} does not carry its checksum");
    }
}

#[test]
fn real_duckdb_blocks_are_identified_by_their_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    gen(&[
        "create",
        data.to_str().unwrap(),
        "--scale",
        "tiny",
        "--seed",
        "21",
    ]);
    let mut dbs = Vec::new();
    duckdb_files(&data, &data, &mut dbs);
    dbs.sort();
    // The control plane and one database per tenant (tiny scale: 3).
    assert!(dbs.len() >= 4, "DuckDB files found: {dbs:?}");
    let before: Vec<Vec<u8>> = dbs
        .iter()
        .map(|p| fs::read(data.join(p)).unwrap())
        .collect();
    gen(&[
        "age",
        data.to_str().unwrap(),
        "--hours",
        "1",
        "--seed",
        "22",
    ]);

    let (mut same, mut changed, mut files_changed) = (0, 0, 0);
    for (rel, old) in dbs.iter().zip(&before) {
        let name = rel.display().to_string();
        let new = fs::read(data.join(rel)).unwrap();
        let it_old = check_headers(&format!("{name} (before)"), old);
        let it_new = check_headers(&format!("{name} (after)"), &new);
        check_block_checksums(&format!("{name} (before)"), old);
        check_block_checksums(&format!("{name} (after)"), &new);

        let blocks = |b: &[u8]| -> Vec<Vec<u8>> {
            b[HEADER_AREA as usize..]
                .chunks_exact(block_size())
                .map(<[u8]>::to_vec)
                .collect()
        };
        let (ob, nb) = (blocks(old), blocks(&new));
        let mut this_changed = 0;
        for (i, (o, n)) in ob.iter().zip(&nb).enumerate() {
            if o[..8] == n[..8] {
                assert!(
                    o == n,
                    "{name}: block {i} (offset {}) keeps its checksum {:016x} but its bytes changed",
                    HEADER_AREA as usize + i * block_size(),
                    u64::from_le_bytes(o[..8].try_into().unwrap())
                );
                same += 1;
            } else {
                this_changed += 1;
            }
        }
        changed += this_changed;
        if this_changed > 0 || ob.len() != nb.len() {
            files_changed += 1;
            assert!(
                it_new > it_old,
                "{name}: blocks changed but the live iteration went {it_old} -> {it_new}"
            );
        }
    }
    // The check must not be vacuous: an hour of traffic rewrites some
    // blocks and leaves others as they were.
    assert!(same > 0, "no block kept its checksum");
    assert!(changed > 0, "no block changed");
    assert!(
        files_changed > 0,
        "no database changed in an hour of traffic"
    );
}
