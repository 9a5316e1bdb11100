//! Compression: `cairn_format::pack::encode_frame` on 64 KiB frames (the
//! store's default `frame_target`) of a real DuckDB file, at zstd level 3
//! (the default) and, for comparison, 1 and 6. Prints the compression ratio.

use std::hint::black_box;

use cairn_format::pack::encode_frame;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let (what, data) = cairn_benches::sample(32 << 20);
    let frame = cairn_format::Compression::default().frame_target as usize;
    eprintln!(
        "compress: {} bytes of {what}, {frame}-byte frames",
        data.len()
    );
    let mut g = c.benchmark_group("compress");
    g.throughput(Throughput::Bytes(data.len() as u64));
    for level in [1, 3, 6] {
        let stored: usize = data
            .chunks(frame)
            .map(|f| encode_frame(f, level).expect("frame").len())
            .sum();
        eprintln!(
            "compress: level {level}: {} -> {} bytes (ratio {:.2})",
            data.len(),
            stored,
            data.len() as f64 / stored as f64
        );
        g.bench_with_input(
            BenchmarkId::new("encode_frame_64k", level),
            &level,
            |b, &level| {
                b.iter(|| {
                    black_box(&data)
                        .chunks(frame)
                        .map(|f| encode_frame(f, level).expect("frame").len())
                        .sum::<usize>()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
