//! Cut points are part of the store format, so they must be a function of
//! the bytes alone: FastCDC cuts do not depend on how the file is fed in
//! windows (any window sizes of at least twice the maximum chunk, varying
//! from window to window) nor on the base offset, and they tile the input
//! exactly. DuckDB ranges tile any file length exactly, and their chunks
//! are aligned to the start of their block and never cross it.
//!
//! Case counts scale with `CAIRN_PROPTEST_CASES` (default 16).

use proptest::prelude::*;

use cairn_chunk::cdc::{cut, CdcParams};
use cairn_chunk::duckdb::{self, block_ranges, cut_range, Headers};
use cairn_chunk::Cut;

fn cases(factor: u32) -> u32 {
    std::env::var("CAIRN_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16)
        * factor
}

/// Pseudo-random bytes, with stretches copied from earlier in the buffer
/// so content-defined boundaries repeat, and runs of one byte (where
/// FastCDC falls back to the maximum chunk size).
fn data_strategy() -> impl Strategy<Value = Vec<u8>> {
    (any::<u64>(), 0usize..1_500_000, 0u8..3).prop_map(|(seed, len, shape)| {
        let mut x = seed | 1;
        let mut v: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as u8
            })
            .collect();
        match shape {
            1 if len > 250_000 => {
                // Repeat the first 100 000 bytes further on.
                let (a, b) = v.split_at_mut(100_000);
                b[50_000..150_000].copy_from_slice(a);
            }
            2 if len > 64 => {
                let (s, e) = (len / 4, len / 2);
                v[s..e].fill(0);
            }
            _ => {}
        }
        v
    })
}

/// Parameters FastCDC accepts (avg 256 B ..= 4 MiB, max 1 KiB ..= 16 MiB),
/// kept small enough that the data holds many chunks; plus cairn's default.
fn params_strategy() -> impl Strategy<Value = CdcParams> {
    prop_oneof![
        Just(CdcParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        }),
        (8u32..=16, 0u32..=3, 0u32..=3).prop_map(|(avg_log, min_div, max_mul)| {
            let avg = 1u32 << avg_log;
            let min = (avg >> (min_div + 1)).max(64);
            let max = (avg << (max_mul + 1)).max(1024);
            CdcParams { min, avg, max }
        }),
    ]
}

/// Asserts `cuts` tile `[base, base + len)` with chunks FastCDC may make.
fn assert_tiles(cuts: &[Cut], base: u64, len: u64, p: CdcParams) -> Result<(), TestCaseError> {
    let mut at = base;
    for (i, c) in cuts.iter().enumerate() {
        prop_assert_eq!(c.offset, at, "gap or overlap at cut {}", i);
        prop_assert!(c.len > 0, "empty cut {}", i);
        prop_assert!(c.len <= p.max, "cut {} of {} > max {}", i, c.len, p.max);
        if i + 1 < cuts.len() {
            prop_assert!(c.len >= p.min, "cut {} of {} < min {}", i, c.len, p.min);
        }
        at = c.end();
    }
    prop_assert_eq!(at, base + len, "cuts do not reach the end");
    Ok(())
}

/// Feeds `data` the way the engine does: windows starting at the previous
/// window's last final cut, `sizes[i]` bytes each (cycled).
fn cut_in_windows(data: &[u8], base: u64, p: CdcParams, sizes: &[usize]) -> Vec<Cut> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut k = 0;
    loop {
        let end = (at + sizes[k % sizes.len()]).min(data.len());
        k += 1;
        let eof = end == data.len();
        let (cuts, next) = cut(&data[at..end], base + at as u64, p, eof);
        assert!(eof || next > base + at as u64, "no progress at {at}");
        out.extend(cuts);
        at = (next - base) as usize;
        if eof {
            return out;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2), ..ProptestConfig::default() })]

    #[test]
    fn cdc_cuts_depend_on_the_bytes_only(
        data in data_strategy(),
        p in params_strategy(),
        base in 0u64..(1 << 40),
        factors in prop::collection::vec((2usize..6, 0usize..100_000), 1..6),
    ) {
        let len = data.len() as u64;
        let (whole, next) = cut(&data, 0, p, true);
        prop_assert_eq!(next, len);
        assert_tiles(&whole, 0, len, p)?;

        // Deterministic.
        let (again, _) = cut(&data, 0, p, true);
        prop_assert_eq!(&again, &whole);

        // Independent of the base offset.
        let (shifted, next) = cut(&data, base, p, true);
        prop_assert_eq!(next, base + len);
        let unshifted: Vec<Cut> = shifted
            .iter()
            .map(|c| Cut { offset: c.offset - base, len: c.len })
            .collect();
        prop_assert_eq!(&unshifted, &whole);

        // Independent of window sizes (each at least twice the maximum chunk).
        let sizes: Vec<usize> = factors
            .iter()
            .map(|&(f, extra)| f * p.max as usize + extra)
            .collect();
        let windowed = cut_in_windows(&data, 0, p, &sizes);
        prop_assert_eq!(&windowed, &whole, "window sizes {:?}", sizes);
        let windowed = cut_in_windows(&data, base, p, &sizes);
        prop_assert_eq!(&windowed, &shifted);

        // Not at EOF: a prefix of the final cuts, and `next` is its end.
        let (partial, next) = cut(&data, 0, p, false);
        prop_assert_eq!(&whole[..partial.len()], &partial[..]);
        prop_assert_eq!(next, partial.last().map_or(0, Cut::end));
        if !whole.is_empty() {
            prop_assert_eq!(partial.len(), whole.len() - 1);
        }
    }
}

fn pow2(lo: u32, hi: u32) -> impl Strategy<Value = u32> {
    (lo..=hi).prop_map(|e| 1u32 << e)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(16), ..ProptestConfig::default() })]

    /// Ranges tile the file: the header area, then one range per block.
    /// Chunks tile each range, start at its start, step by 4 KiB in the
    /// header area and by `chunk` in blocks, and never cross a range.
    #[test]
    fn duckdb_ranges_and_chunks_tile_any_length(
        block in pow2(14, 24),
        chunk in pow2(12, 18),
        blocks in 0u64..40,
        extra in 0u64..(1 << 24),
        small in any::<bool>(),
    ) {
        let file_len = if small {
            extra % (duckdb::HEADER_AREA + 2)
        } else {
            duckdb::HEADER_AREA + blocks * u64::from(block) + extra % u64::from(block)
        };
        let ranges: Vec<_> = block_ranges(file_len, block).collect();
        let mut at = 0u64;
        for (i, r) in ranges.iter().enumerate() {
            prop_assert_eq!(r.offset, at, "range {}", i);
            prop_assert!(r.len > 0, "empty range {}", i);
            if i == 0 {
                prop_assert_eq!(r.len, file_len.min(duckdb::HEADER_AREA));
            } else {
                prop_assert_eq!(r.offset, duckdb::HEADER_AREA + (i as u64 - 1) * u64::from(block));
                if i + 1 < ranges.len() {
                    prop_assert_eq!(r.len, u64::from(block));
                } else {
                    prop_assert!(r.len <= u64::from(block));
                }
            }
            let step = if r.offset < duckdb::HEADER_AREA {
                duckdb::HEADER_SIZE as u64
            } else {
                u64::from(chunk)
            };
            let cuts = cut_range(r, chunk);
            let mut c_at = r.offset;
            for (j, c) in cuts.iter().enumerate() {
                prop_assert_eq!(c.offset, c_at, "range {} chunk {}", i, j);
                prop_assert_eq!((c.offset - r.offset) % step, 0);
                prop_assert!(c.len > 0);
                if j + 1 < cuts.len() {
                    prop_assert_eq!(u64::from(c.len), step);
                } else {
                    prop_assert!(u64::from(c.len) <= step);
                }
                c_at = c.end();
            }
            prop_assert_eq!(c_at, r.offset + r.len, "range {} not covered", i);
            at += r.len;
        }
        prop_assert_eq!(at, file_len);
        // Block count as the file's length implies it.
        let want_blocks = file_len.saturating_sub(duckdb::HEADER_AREA).div_ceil(u64::from(block));
        prop_assert_eq!(ranges.len() as u64, u64::from(file_len > 0) + want_blocks);
    }

    /// Any 12 KiB parse without panicking; the block size to split by is
    /// always a sane power of two, and is the live header's own value
    /// exactly when that header's checksum holds and the value is sane.
    #[test]
    fn duckdb_headers_parse_anything_and_pick_a_sane_block_size(
        noise in prop::collection::vec(any::<u8>(), duckdb::HEADER_AREA as usize),
        field in prop_oneof![
            pow2(10, 26).prop_map(u64::from),
            any::<u64>(),
        ],
        iters in (any::<u32>(), any::<u32>()),
        which_valid in 0u8..4,
    ) {
        let mut area = noise;
        for (k, base) in [4096usize, 8192].into_iter().enumerate() {
            let iter = u64::from(if k == 0 { iters.0 } else { iters.1 });
            area[base + 8..base + 16].copy_from_slice(&iter.to_le_bytes());
            area[base + 40..base + 48].copy_from_slice(&field.to_le_bytes());
            if which_valid & (1 << k) != 0 {
                let sum = duckdb::checksum(&area[base + 8..base + 4096]);
                area[base..base + 8].copy_from_slice(&sum.to_le_bytes());
            }
        }
        let h = Headers::parse(&area).expect("12 KiB parse");
        prop_assert_eq!(h.h1.iteration, u64::from(iters.0));
        prop_assert_eq!(h.h2.iteration, u64::from(iters.1));
        prop_assert_eq!(h.h1.block_size, field);
        let live_is_h2 = iters.1 > iters.0;
        prop_assert_eq!(h.live(), if live_is_h2 { h.h2 } else { h.h1 });
        let live_valid = which_valid & (1 << u8::from(live_is_h2)) != 0;
        prop_assert_eq!(h.live().checksum_ok, live_valid);
        let bs = h.block_size();
        prop_assert!(bs.is_power_of_two() && (16 * 1024..=16 << 20).contains(&bs));
        let sane = field.is_power_of_two() && (16 * 1024..=16 << 20).contains(&field);
        if live_valid && sane {
            prop_assert_eq!(u64::from(bs), field);
        } else {
            prop_assert_eq!(bs, duckdb::DEFAULT_BLOCK_SIZE);
        }
        // Short input is refused, not a panic.
        prop_assert!(Headers::parse(&area[..area.len() - 1]).is_none());
    }
}
