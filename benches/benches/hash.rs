//! Hashing: blake3 of chunks, as chunk ids are computed
//! (`cairn_format::ChunkId::of`), for the 4 KiB chunks of DuckDB blocks and
//! for FastCDC chunks (64 KiB average), on one thread and on the rayon pool;
//! and the whole-file hash (`blake3::Hasher::update_rayon`).

use std::hint::black_box;
use std::ops::Range;

use cairn_format::ChunkId;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rayon::prelude::*;

fn seq(data: &[u8], chunks: &[Range<usize>]) -> u8 {
    chunks
        .iter()
        .map(|r| ChunkId::of(&data[r.clone()]).0[0])
        .fold(0, |a, b| a ^ b)
}

fn par(data: &[u8], chunks: &[Range<usize>]) -> u8 {
    chunks
        .par_iter()
        .map(|r| ChunkId::of(&data[r.clone()]).0[0])
        .reduce(|| 0, |a, b| a ^ b)
}

fn bench(c: &mut Criterion) {
    let (what, data) = cairn_benches::sample(64 << 20);
    eprintln!(
        "hash: {} bytes of {what}; rayon threads: {}",
        data.len(),
        rayon::current_num_threads()
    );
    let duck = cairn_benches::duckdb_chunks(&data);
    let cdc = cairn_benches::cdc_chunks(&data);
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("blake3_4k_chunks_1thread", |b| {
        b.iter(|| seq(black_box(&data), &duck))
    });
    g.bench_function("blake3_4k_chunks_rayon", |b| {
        b.iter(|| par(black_box(&data), &duck))
    });
    g.bench_function("blake3_cdc_chunks_1thread", |b| {
        b.iter(|| seq(black_box(&data), &cdc))
    });
    g.bench_function("blake3_cdc_chunks_rayon", |b| {
        b.iter(|| par(black_box(&data), &cdc))
    });
    g.bench_function("blake3_whole_update_rayon", |b| {
        b.iter(|| {
            let mut h = blake3::Hasher::new();
            h.update_rayon(black_box(&data));
            h.finalize()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
