//! Chunking: FastCDC cut points (`cairn_chunk::cdc::cut`, cairn's 16/64/256
//! KiB sizes, fed in 16 MiB windows as the engine does) and the DuckDB
//! block-aligned split (`cairn_chunk::duckdb::{block_ranges, cut_range}`),
//! on a real DuckDB file from a generated HitKeep data path.

use std::hint::black_box;

use cairn_chunk::cdc;
use cairn_chunk::duckdb::{block_ranges, cut_range, DEFAULT_BLOCK_SIZE};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const WINDOW: usize = 16 << 20;

fn cut_windows(data: &[u8]) -> usize {
    let p = cairn_benches::cdc_params();
    let mut at = 0usize;
    let mut n = 0;
    loop {
        let end = (at + WINDOW).min(data.len());
        let eof = end == data.len();
        let (cuts, next) = cdc::cut(&data[at..end], at as u64, p, eof);
        n += cuts.len();
        at = next as usize;
        if eof {
            return n;
        }
    }
}

fn bench(c: &mut Criterion) {
    let (what, data) = cairn_benches::sample(64 << 20);
    eprintln!("chunk: {} bytes of {what}", data.len());
    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("fastcdc_cut", |b| b.iter(|| cut_windows(black_box(&data))));
    g.bench_function("duckdb_split_4k", |b| {
        b.iter(|| {
            block_ranges(black_box(data.len() as u64), DEFAULT_BLOCK_SIZE)
                .map(|r| cut_range(&r, 4096).len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
