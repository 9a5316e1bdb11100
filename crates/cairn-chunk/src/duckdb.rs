//! DuckDB database files: recognising them, reading their headers, and
//! cutting them on boundaries aligned to their block layout.
//!
//! Layout (DuckDB 1.x/2.0 single-file storage):
//! ```text
//! 0       main header (4 KiB): checksum u64, "DUCK" at 8, storage version u64 ...
//! 4096    database header 1 (4 KiB): checksum u64, then iteration u64,
//!         meta block u64, free list u64, block count u64, block alloc size u64 ...
//! 8192    database header 2 (same); the one with the higher iteration is live
//! 12288   blocks of `block alloc size` (256 KiB) bytes, each starting with
//!         an 8-byte checksum of the rest of the block
//! ```
//! A checkpoint writes new blocks first and flips the header last.
//! Checksums are DuckDB's: 5381 xor-folded with `word * 0xbf58476d1ce4e5b9`
//! over the little-endian u64 words of the checksummed bytes.

use crate::Cut;

/// Where the data blocks start.
pub const HEADER_AREA: u64 = 12 * 1024;
/// Size of the main header and of each database header.
pub const HEADER_SIZE: usize = 4096;
/// The magic at offset 8.
pub const MAGIC: &[u8; 4] = b"DUCK";
/// Default block allocation size.
pub const DEFAULT_BLOCK_SIZE: u32 = 256 * 1024;

/// Whether the first bytes of a file mark a DuckDB database.
pub fn is_duckdb(prefix: &[u8]) -> bool {
    prefix.len() >= 12 && &prefix[8..12] == MAGIC
}

/// DuckDB's checksum over `bytes`.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut result: u64 = 5381;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        result ^= x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // DuckDB hashes a 1-7 byte tail with its string hash; headers and
        // blocks are multiples of 8 bytes, so a tail never occurs here.
        let mut x = [0u8; 8];
        x[..rest.len()].copy_from_slice(rest);
        result ^= u64::from_le_bytes(x).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
    result
}

/// A database header (offset 4096 or 8192), as far as cairn reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbHeader {
    /// Stored checksum.
    pub checksum: u64,
    /// Whether the stored checksum matches the header's bytes.
    pub checksum_ok: bool,
    /// Checkpoint iteration.
    pub iteration: u64,
    /// Pointer to the free list's first metadata sub-block (block id in
    /// the low 56 bits, sub-block index in the high 8; all ones: none).
    pub free_list: u64,
    /// Number of blocks in use by this header's checkpoint.
    pub block_count: u64,
    /// Block allocation size.
    pub block_size: u64,
}

impl DbHeader {
    /// Parses a 4 KiB database header.
    pub fn parse(h: &[u8]) -> Option<Self> {
        if h.len() < HEADER_SIZE {
            return None;
        }
        let u = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
        let stored = u(0);
        Some(Self {
            checksum: stored,
            checksum_ok: checksum(&h[8..HEADER_SIZE]) == stored,
            iteration: u(8),
            free_list: u(24),
            block_count: u(32),
            block_size: u(40),
        })
    }
}

/// Both database headers of a file and which one is live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    /// Header at 4096.
    pub h1: DbHeader,
    /// Header at 8192.
    pub h2: DbHeader,
}

impl Headers {
    /// Parses the 12 KiB header area.
    pub fn parse(area: &[u8]) -> Option<Self> {
        if area.len() < HEADER_AREA as usize {
            return None;
        }
        Some(Self {
            h1: DbHeader::parse(&area[4096..8192])?,
            h2: DbHeader::parse(&area[8192..12288])?,
        })
    }

    /// The header with the higher iteration.
    pub fn live(&self) -> DbHeader {
        if self.h2.iteration > self.h1.iteration {
            self.h2
        } else {
            self.h1
        }
    }

    /// The block size to split by: the live header's when it is a sane
    /// power of two, otherwise the default.
    pub fn block_size(&self) -> u32 {
        let live = self.live();
        if live.checksum_ok
            && live.block_size.is_power_of_two()
            && (16 * 1024..=16 << 20).contains(&live.block_size)
        {
            live.block_size as u32
        } else {
            DEFAULT_BLOCK_SIZE
        }
    }
}

/// One leaf of a DuckDB file's chunk list: the header area or a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRange {
    /// Offset of the area.
    pub offset: u64,
    /// Its length (the last block may be short).
    pub len: u64,
}

/// The leaves of a file of `file_len` bytes: the 12 KiB header area, then
/// one per block.
pub fn block_ranges(file_len: u64, block_size: u32) -> impl Iterator<Item = BlockRange> {
    let head = BlockRange {
        offset: 0,
        len: file_len.min(HEADER_AREA),
    };
    let bs = u64::from(block_size);
    let blocks = file_len.saturating_sub(HEADER_AREA).div_ceil(bs);
    std::iter::once(head)
        .filter(|r| r.len > 0)
        .chain((0..blocks).map(move |i| {
            let offset = HEADER_AREA + i * bs;
            BlockRange {
                offset,
                len: bs.min(file_len - offset),
            }
        }))
}

/// The chunks of one leaf: 4 KiB chunks in the header area (main header
/// and each database header apart), `chunk` bytes inside blocks.
pub fn cut_range(r: &BlockRange, chunk: u32) -> Vec<Cut> {
    let step = if r.offset < HEADER_AREA {
        HEADER_SIZE as u64
    } else {
        u64::from(chunk)
    };
    let mut cuts = Vec::with_capacity(r.len.div_ceil(step) as usize);
    let mut at = r.offset;
    let end = r.offset + r.len;
    while at < end {
        let len = step.min(end - at);
        cuts.push(Cut {
            offset: at,
            len: len as u32,
        });
        at += len;
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_file_exactly() {
        for len in [
            0u64,
            100,
            12288,
            12289,
            12288 + 262_144,
            12288 + 262_144 * 3 + 5,
        ] {
            let mut at = 0;
            for r in block_ranges(len, 262_144) {
                assert_eq!(r.offset, at);
                let cuts = cut_range(&r, 16 * 1024);
                assert_eq!(cuts.first().unwrap().offset, r.offset);
                assert_eq!(cuts.last().unwrap().end(), r.offset + r.len);
                at += r.len;
            }
            assert_eq!(at, len);
        }
    }

    #[test]
    fn chunks_are_aligned() {
        let cuts: Vec<Cut> = block_ranges(12288 + 262_144 * 2, 262_144)
            .flat_map(|r| cut_range(&r, 4096))
            .collect();
        assert!(cuts.iter().all(|c| c.offset % 4096 == 0 && c.len == 4096));
        assert_eq!(cuts.len(), 3 + 128);
    }

    #[test]
    fn recognises_magic() {
        let mut h = vec![0u8; 16];
        assert!(!is_duckdb(&h));
        h[8..12].copy_from_slice(b"DUCK");
        assert!(is_duckdb(&h));
        assert!(!is_duckdb(&h[..10]));
    }
}
