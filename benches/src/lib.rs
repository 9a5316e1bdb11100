//! Shared helpers for cairn's benchmarks (see `BENCHMARKS.md`).
//!
//! The micro-benchmarks in `benches/benches/` run on realistic bytes: a
//! HitKeep-shaped data path made by `tests/hitkeep_gen.py` (real DuckDB
//! files, Parquet archives, PNGs, JSON). The data path is taken from
//! `CAIRN_BENCH_DATA` when set, otherwise generated once (seeded) under
//! `target/bench-data/`. If Python's `duckdb` is missing the generator
//! fails and the benchmarks fall back to synthetic bytes, saying so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (the parent of `benches/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// Every regular file under `dir`, in sorted (walk) order.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries.into_iter().rev() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Whether the file starts like a DuckDB database (`DUCK` at offset 8).
pub fn is_duckdb(bytes: &[u8]) -> bool {
    cairn_chunk::duckdb::is_duckdb(bytes)
}

/// A generated data path, made once: `name` under `target/bench-data`,
/// created with `hitkeep_gen.py create --scale SCALE --seed 1`
/// (and `--target-bytes` when given). `CAIRN_BENCH_DATA` overrides it.
/// Returns `None` when it cannot be generated.
pub fn data_path(name: &str, scale: &str, target_bytes: Option<u64>) -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CAIRN_BENCH_DATA") {
        return Some(PathBuf::from(p));
    }
    let root = repo_root();
    let dir = root.join("target").join("bench-data").join(name);
    let done = dir.with_extension("done");
    if done.exists() && dir.is_dir() {
        return Some(dir);
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.parent().expect("parent")).ok()?;
    eprintln!(
        "bench data: generating {} ({scale}, {:?} bytes) with tests/hitkeep_gen.py ...",
        dir.display(),
        target_bytes
    );
    let mut cmd = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
    cmd.arg(root.join("tests/hitkeep_gen.py"))
        .arg("create")
        .arg(&dir)
        .args(["--scale", scale, "--seed", "1"]);
    if let Some(b) = target_bytes {
        cmd.args(["--target-bytes", &b.to_string()]);
    }
    match cmd.status() {
        Ok(s) if s.success() => {
            fs::write(&done, b"ok").ok()?;
            Some(dir)
        }
        other => {
            eprintln!("bench data: generator failed ({other:?}); using synthetic bytes");
            None
        }
    }
}

/// Deterministic bytes that compress roughly like analytics data
/// (repeated vocabulary, small integers, some noise): the fallback when no
/// generated data path is available.
pub fn synthetic(len: usize) -> Vec<u8> {
    let words: &[&[u8]] = &[
        b"/pricing",
        b"/docs/api/events",
        b"Chrome",
        b"Safari",
        b"en-US",
        b"de-DE",
        b"https://www.google.com/",
        b"desktop",
        b"mobile",
        b"LCP",
        b"INP",
        b"/blog/",
    ];
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 4 {
            0 => out.extend_from_slice(&x.to_le_bytes()),
            1 => out.extend_from_slice(&((x >> 40) as u32 & 0xffff).to_le_bytes()),
            _ => out.extend_from_slice(words[(x >> 20) as usize % words.len()]),
        }
    }
    out.truncate(len);
    out
}

/// The bytes of every file of `dir`, concatenated in walk order, at most
/// `limit` bytes.
pub fn concat(dir: &Path, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for f in files(dir) {
        if out.len() >= limit {
            break;
        }
        if let Ok(b) = fs::read(&f) {
            out.extend_from_slice(&b);
        }
    }
    out.truncate(limit);
    out
}

/// The largest DuckDB file of `dir`, read whole.
pub fn largest_duckdb(dir: &Path) -> Option<(PathBuf, Vec<u8>)> {
    let mut best: Option<(PathBuf, u64)> = None;
    for f in files(dir) {
        let mut head = [0u8; 16];
        let Ok(file) = fs::File::open(&f) else {
            continue;
        };
        if std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, 0).is_err()
            || !is_duckdb(&head)
        {
            continue;
        }
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if best.as_ref().is_none_or(|b| len > b.1) {
            best = Some((f, len));
        }
    }
    let (p, _) = best?;
    let bytes = fs::read(&p).ok()?;
    Some((p, bytes))
}

/// Sample bytes for the micro-benchmarks: the largest DuckDB file of a
/// small generated data path (at most `limit` bytes), or synthetic bytes.
/// Returns a description of the source too.
pub fn sample(limit: usize) -> (String, Vec<u8>) {
    if let Some(dir) = data_path("small-seed1", "small", None) {
        if let Some((p, mut b)) = largest_duckdb(&dir) {
            b.truncate(limit);
            return (format!("DuckDB file {}", p.display()), b);
        }
    }
    ("synthetic".into(), synthetic(limit))
}

/// The sample cut into the 4 KiB chunks cairn uses inside DuckDB blocks.
pub fn duckdb_chunks(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    use cairn_chunk::duckdb::{block_ranges, cut_range, DEFAULT_BLOCK_SIZE};
    block_ranges(bytes.len() as u64, DEFAULT_BLOCK_SIZE)
        .flat_map(|r| cut_range(&r, 4096))
        .map(|c| c.offset as usize..c.end() as usize)
        .collect()
}

/// The sample cut with FastCDC at cairn's default sizes (16/64/256 KiB).
pub fn cdc_chunks(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let (cuts, _) = cairn_chunk::cdc::cut(bytes, 0, cdc_params(), true);
    cuts.iter()
        .map(|c| c.offset as usize..c.end() as usize)
        .collect()
}

/// cairn's default FastCDC sizes, from the store config.
pub fn cdc_params() -> cairn_chunk::cdc::CdcParams {
    let c = cairn_format::ChunkingParams::default();
    cairn_chunk::cdc::CdcParams {
        min: c.cdc_min,
        avg: c.cdc_avg,
        max: c.cdc_max,
    }
}

/// Megabytes (10^6) per second.
pub fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}
