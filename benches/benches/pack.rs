//! Packing: building a pack with `cairn_format::pack::PackBuilder` into
//! memory, from frames encoded beforehand (the builder's own cost: framing,
//! trailer, blake3 of the pack) and from raw 4 KiB chunks (chunk ids,
//! encode and build: what the packer does per new frame, minus the file
//! I/O and fsync).

use std::hint::black_box;

use cairn_format::pack::{encode_frame, BlobKind, FrameChunk, PackBuilder};
use cairn_format::ChunkId;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

type Frame = (Vec<u8>, Vec<FrameChunk>);

/// Groups 4 KiB chunks into 64 KiB frames and encodes them at level 3.
fn frames(data: &[u8]) -> Vec<Frame> {
    let chunks = cairn_benches::duckdb_chunks(data);
    chunks
        .chunks(16)
        .map(|group| {
            let raw = &data[group[0].start..group[group.len() - 1].end];
            let ids = group
                .iter()
                .map(|r| {
                    (
                        ChunkId::of(&data[r.clone()]),
                        BlobKind::Data,
                        r.len() as u32,
                    )
                })
                .collect();
            (encode_frame(raw, 3).expect("frame"), ids)
        })
        .collect()
}

fn build(frames: &[Frame], cap: usize) -> u64 {
    let mut b = PackBuilder::new(Vec::with_capacity(cap)).expect("pack");
    for (f, ids) in frames {
        b.add_frame(f, ids).expect("frame");
    }
    let (_, _, len, _) = b.finish().expect("finish");
    len
}

fn bench(c: &mut Criterion) {
    let (what, data) = cairn_benches::sample(32 << 20);
    eprintln!("pack: {} bytes of {what}", data.len());
    let encoded = frames(&data);
    let stored: usize = encoded.iter().map(|f| f.0.len()).sum();
    let mut g = c.benchmark_group("pack");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("build_from_encoded_frames", |b| {
        b.iter(|| build(black_box(&encoded), stored + (1 << 20)))
    });
    g.bench_function("hash_encode_and_build", |b| {
        b.iter(|| build(&frames(black_box(&data)), stored + (1 << 20)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
