//! FastCDC (2020 algorithm, normalization level 1) over windows.
//!
//! FastCDC restarts its rolling hash at every cut, so cutting a window
//! that starts at a previous cut gives the same cut points as cutting the
//! whole file: the engine feeds windows and carries the uncut tail over.

use fastcdc::v2020::{FastCDC, Normalization};

use crate::Cut;

/// FastCDC sizes.
#[derive(Clone, Copy, Debug)]
pub struct CdcParams {
    /// Minimum chunk size.
    pub min: u32,
    /// Average chunk size.
    pub avg: u32,
    /// Maximum chunk size.
    pub max: u32,
}

/// Cuts `data`, which starts at file offset `base`. When `at_eof` is false
/// the last chunk is not final (the file goes on), so it is left out: the
/// returned offset is where the next window must start.
pub fn cut(data: &[u8], base: u64, p: CdcParams, at_eof: bool) -> (Vec<Cut>, u64) {
    let mut cuts = Vec::with_capacity(data.len() / p.avg as usize + 1);
    let chunker = FastCDC::with_level(data, p.min, p.avg, p.max, Normalization::Level1);
    for c in chunker {
        cuts.push(Cut {
            offset: base + c.offset as u64,
            len: c.length as u32,
        });
    }
    if !at_eof {
        cuts.pop();
    }
    let next = cuts.last().map_or(base, Cut::end);
    (cuts, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    const P: CdcParams = CdcParams {
        min: 16 * 1024,
        avg: 64 * 1024,
        max: 256 * 1024,
    };

    /// Golden cut points: if this fails, the chunker changed and with it
    /// the store format. Do not update the numbers; pin the crate instead.
    #[test]
    fn golden_cut_points() {
        let data = pseudo_random(1 << 20, 42);
        let (cuts, next) = cut(&data, 0, P, true);
        let lens: Vec<u32> = cuts.iter().map(|c| c.len).collect();
        assert_eq!(next, 1 << 20);
        assert_eq!(lens, GOLDEN);
    }
    const GOLDEN: &[u32] = &[
        40186, 174507, 43098, 47806, 69210, 70077, 20351, 65828, 18356, 18515, 79741, 72494,
        174193, 32974, 74593, 46647,
    ];

    #[test]
    fn windows_cut_like_the_whole() {
        let data = pseudo_random(3 << 20, 7);
        let (whole, _) = cut(&data, 0, P, true);
        let mut pieces = Vec::new();
        let mut at = 0u64;
        let window = 700 * 1024;
        loop {
            let end = (at as usize + window).min(data.len());
            let eof = end == data.len();
            let (cuts, next) = cut(&data[at as usize..end], at, P, eof);
            pieces.extend(cuts);
            at = next;
            if eof {
                break;
            }
        }
        assert_eq!(pieces, whole);
    }
}
