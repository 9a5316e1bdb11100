//! Offline structural check of a DuckDB database file, as far as the file
//! format allows without DuckDB: the main header (magic, storage version,
//! checksum), both database headers' checksums, the live header's block
//! count against the file size, and the checksum of every block the live
//! checkpoint uses.
//!
//! Which blocks are used: every block id below the live header's block
//! count that is not on its free list. Free blocks keep stale or zeroed
//! bytes, so their checksums mean nothing. The free list is read from the
//! metadata chain the live header points to: metadata lives in 64
//! sub-blocks per block (`(block_size - 8) / 64` rounded down to 8 bytes
//! each, after the block's own checksum), each sub-block starting with the
//! disk pointer of the next one (all ones: none); the list is a u64 count
//! followed by that many i64 block ids. A file may hold fewer blocks than
//! the block count (DuckDB truncates free blocks at the end) or more
//! (blocks written for the next checkpoint by a live writer), but every
//! used block must lie inside it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::duckdb::{checksum, Headers, HEADER_AREA, HEADER_SIZE, MAGIC};

/// Metadata sub-blocks per block (DuckDB's `METADATA_BLOCK_COUNT`).
const METADATA_SUB_BLOCKS: u64 = 64;
/// Bytes in front of every block: its checksum.
const BLOCK_HEADER: u64 = 8;
/// A disk pointer meaning "none".
const INVALID_POINTER: u64 = u64::MAX;
/// Offset of the writer's library version string in the main header.
const LIBRARY_VERSION_AT: usize = 52;
/// Lowest storage version of the 1.x single-file format.
const OLDEST_STORAGE_VERSION: u64 = 64;
/// The storage version DuckDB writes for `latest`.
const LATEST_STORAGE_VERSION: u64 = 999;
/// At most this many problems are listed one by one.
const PROBLEMS_LISTED: usize = 8;

/// What the check found in one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbFileCheck {
    /// Storage version number from the main header.
    pub storage_version: u64,
    /// The writer's library version (`v2.0.0`), from the main header.
    pub library_version: String,
    /// The live header's checkpoint iteration.
    pub iteration: u64,
    /// The live header's block count.
    pub block_count: u64,
    /// The live header's block size.
    pub block_size: u64,
    /// Blocks on the live free list.
    pub free_blocks: u64,
    /// Used blocks whose checksum was verified.
    pub blocks_verified: u64,
    /// What is wrong, one line each (empty: sound). At most a few are
    /// listed; the last line then counts the rest.
    pub problems: Vec<String>,
}

impl DbFileCheck {
    /// Whether nothing is wrong.
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, p: String, total: &mut usize) {
        *total += 1;
        if self.problems.len() < PROBLEMS_LISTED {
            self.problems.push(p);
        }
    }
}

/// Checks the DuckDB file `file` of `len` bytes. I/O errors other than
/// reading past the end are returned; everything the file itself gets
/// wrong is a problem in the result.
pub fn check_db_file(file: &File, len: u64) -> io::Result<DbFileCheck> {
    let mut out = DbFileCheck::default();
    let mut total = 0usize;
    if len < HEADER_AREA {
        out.problem(
            format!("file is {len} bytes, shorter than DuckDB's {HEADER_AREA}-byte header area"),
            &mut total,
        );
        return Ok(out);
    }
    let mut head = vec![0u8; HEADER_AREA as usize];
    file.read_exact_at(&mut head, 0)?;
    let main = &head[..HEADER_SIZE];
    if &main[8..12] != MAGIC {
        out.problem("main header: no DUCK magic at offset 8".into(), &mut total);
        return Ok(out);
    }
    out.storage_version = u64::from_le_bytes(main[12..20].try_into().expect("8 bytes"));
    out.library_version =
        String::from_utf8_lossy(&main[LIBRARY_VERSION_AT..LIBRARY_VERSION_AT + 32])
            .trim_end_matches('\0')
            .to_string();
    let stored = u64::from_le_bytes(main[..8].try_into().expect("8 bytes"));
    if checksum(&main[8..]) != stored {
        out.problem("main header: checksum mismatch".into(), &mut total);
    }
    if !(OLDEST_STORAGE_VERSION..=LATEST_STORAGE_VERSION).contains(&out.storage_version) {
        out.problem(
            format!(
                "main header: unknown storage version {} (DuckDB 1.x/2.x write {OLDEST_STORAGE_VERSION} and up, or {LATEST_STORAGE_VERSION})",
                out.storage_version
            ),
            &mut total,
        );
    }
    let headers = Headers::parse(&head).expect("12 KiB header area");
    for (name, h) in [
        ("database header 1", headers.h1),
        ("database header 2", headers.h2),
    ] {
        if !h.checksum_ok {
            out.problem(format!("{name}: checksum mismatch"), &mut total);
        }
    }
    let live = headers.live();
    out.iteration = live.iteration;
    out.block_count = live.block_count;
    out.block_size = live.block_size;
    if !live.checksum_ok {
        return Ok(out);
    }
    let bs = live.block_size;
    if !(bs.is_power_of_two() && (16 * 1024..=16 << 20).contains(&bs)) {
        out.problem(
            format!("live header: implausible block size {bs}"),
            &mut total,
        );
        return Ok(out);
    }
    let blocks_in_file = (len - HEADER_AREA) / bs;
    // A block count the file cannot come close to holding is damage, not
    // free blocks truncated away.
    if live.block_count > blocks_in_file.saturating_mul(2) + 64 {
        out.problem(
            format!(
                "live header: block count {} but the file ({len} bytes) holds {blocks_in_file} blocks",
                live.block_count
            ),
            &mut total,
        );
        return Ok(out);
    }
    let free = match read_free_list(file, len, live.free_list, bs, live.block_count) {
        Ok(f) => f,
        Err(why) => {
            out.problem(format!("free list: {why}"), &mut total);
            return Ok(out);
        }
    };
    out.free_blocks = free.len() as u64;
    let mut block = vec![0u8; bs as usize];
    let mut beyond = Vec::new();
    for id in 0..live.block_count {
        if free.binary_search(&id).is_ok() {
            continue;
        }
        if id >= blocks_in_file {
            beyond.push(id);
            continue;
        }
        file.read_exact_at(&mut block, HEADER_AREA + id * bs)?;
        let stored = u64::from_le_bytes(block[..8].try_into().expect("8 bytes"));
        if checksum(&block[8..]) == stored {
            out.blocks_verified += 1;
        } else {
            out.problem(format!("block {id}: checksum mismatch"), &mut total);
        }
    }
    if !beyond.is_empty() {
        out.problem(
            format!(
                "live header: block count {} but {} used block(s) (first {}) lie beyond the end of the file ({len} bytes, {blocks_in_file} blocks)",
                live.block_count,
                beyond.len(),
                beyond[0]
            ),
            &mut total,
        );
    }
    if total > out.problems.len() {
        let more = total - out.problems.len();
        out.problems.push(format!("... and {more} more"));
    }
    Ok(out)
}

/// Reads the free list the live header points to: sorted block ids.
fn read_free_list(
    file: &File,
    len: u64,
    pointer: u64,
    block_size: u64,
    block_count: u64,
) -> Result<Vec<u64>, String> {
    if pointer == INVALID_POINTER {
        return Ok(Vec::new());
    }
    let mut reader = MetadataReader::new(file, len, block_size, block_count, pointer)?;
    let count = reader.u64()?;
    if count > block_count {
        return Err(format!(
            "{count} free blocks listed but the block count is {block_count}"
        ));
    }
    let mut free = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let id = reader.u64()?;
        if id >= block_count {
            return Err(format!(
                "free block {} is outside the block count {block_count}",
                id as i64
            ));
        }
        free.push(id);
    }
    free.sort_unstable();
    free.dedup();
    Ok(free)
}

/// Reads a chain of metadata sub-blocks like DuckDB's `MetadataReader`.
struct MetadataReader<'f> {
    file: &'f File,
    len: u64,
    block_size: u64,
    block_count: u64,
    sub_block_size: u64,
    /// The current sub-block's bytes.
    current: Vec<u8>,
    /// Read position in it.
    at: u64,
    /// Disk pointer of the next sub-block.
    next: u64,
    /// Sub-blocks visited, to stop a cycle.
    visited: u64,
}

impl<'f> MetadataReader<'f> {
    fn new(
        file: &'f File,
        len: u64,
        block_size: u64,
        block_count: u64,
        pointer: u64,
    ) -> Result<Self, String> {
        let sub_block_size = (block_size - BLOCK_HEADER) / METADATA_SUB_BLOCKS / 8 * 8;
        let mut r = Self {
            file,
            len,
            block_size,
            block_count,
            sub_block_size,
            current: vec![0u8; sub_block_size as usize],
            at: 0,
            next: pointer,
            visited: 0,
        };
        r.advance()?;
        Ok(r)
    }

    fn advance(&mut self) -> Result<(), String> {
        let pointer = self.next;
        if pointer == INVALID_POINTER {
            return Err("the metadata chain ends before the list does".into());
        }
        self.visited += 1;
        if self.visited > self.block_count.saturating_mul(METADATA_SUB_BLOCKS) + 1 {
            return Err("the metadata chain loops".into());
        }
        let block = pointer & ((1 << 56) - 1);
        let index = pointer >> 56;
        if block >= self.block_count || index >= METADATA_SUB_BLOCKS {
            return Err(format!(
                "metadata pointer to block {block} sub-block {index} is out of range"
            ));
        }
        let offset =
            HEADER_AREA + block * self.block_size + BLOCK_HEADER + index * self.sub_block_size;
        if offset + self.sub_block_size > self.len {
            return Err(format!(
                "metadata block {block} lies beyond the end of the file"
            ));
        }
        self.file
            .read_exact_at(&mut self.current, offset)
            .map_err(|e| format!("reading metadata block {block}: {e}"))?;
        self.next = u64::from_le_bytes(self.current[..8].try_into().expect("8 bytes"));
        self.at = 8;
        Ok(())
    }

    /// The next 8 bytes of the list, which may continue in the next
    /// sub-block.
    fn u64(&mut self) -> Result<u64, String> {
        let mut out = [0u8; 8];
        let mut filled = 0usize;
        while filled < 8 {
            if self.at >= self.sub_block_size {
                self.advance()?;
            }
            let take = (8 - filled).min((self.sub_block_size - self.at) as usize);
            let from = self.at as usize;
            out[filled..filled + take].copy_from_slice(&self.current[from..from + take]);
            filled += take;
            self.at += take as u64;
        }
        Ok(u64::from_le_bytes(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const BS: u64 = 16 * 1024;

    fn seal(bytes: &mut [u8]) {
        let c = checksum(&bytes[8..]);
        bytes[..8].copy_from_slice(&c.to_le_bytes());
    }

    /// A minimal well-formed file: `blocks` blocks, block 0 holding the
    /// free list `free` in its first metadata sub-block.
    fn file(blocks: u64, free: &[u64]) -> Vec<u8> {
        let mut f = vec![0u8; (HEADER_AREA + blocks * BS) as usize];
        f[8..12].copy_from_slice(MAGIC);
        f[12..20].copy_from_slice(&999u64.to_le_bytes());
        seal(&mut f[..4096]);
        for (at, iteration) in [(4096usize, 1u64), (8192, 2)] {
            let h = &mut f[at..at + 4096];
            h[8..16].copy_from_slice(&iteration.to_le_bytes());
            let fl: u64 = if free.is_empty() { u64::MAX } else { 0 };
            h[24..32].copy_from_slice(&fl.to_le_bytes());
            h[32..40].copy_from_slice(&blocks.to_le_bytes());
            h[40..48].copy_from_slice(&BS.to_le_bytes());
            seal(h);
        }
        let meta = HEADER_AREA as usize + 8;
        f[meta..meta + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        f[meta + 8..meta + 16].copy_from_slice(&(free.len() as u64).to_le_bytes());
        for (i, id) in free.iter().enumerate() {
            let at = meta + 16 + i * 8;
            f[at..at + 8].copy_from_slice(&id.to_le_bytes());
        }
        for b in 0..blocks {
            let at = (HEADER_AREA + b * BS) as usize;
            if !free.contains(&b) {
                seal(&mut f[at..at + BS as usize]);
            }
        }
        f
    }

    fn check(bytes: &[u8]) -> DbFileCheck {
        let mut t = tempfile::tempfile().unwrap();
        t.write_all(bytes).unwrap();
        check_db_file(&t, bytes.len() as u64).unwrap()
    }

    #[test]
    fn a_sound_file_passes_and_free_blocks_are_skipped() {
        let c = check(&file(4, &[2]));
        assert!(c.is_sound(), "{:?}", c.problems);
        assert_eq!((c.blocks_verified, c.free_blocks), (3, 1));
    }

    #[test]
    fn damage_is_named() {
        let mut f = file(4, &[2]);
        f[HEADER_AREA as usize + 3 * BS as usize + 100] ^= 1;
        assert_eq!(check(&f).problems, vec!["block 3: checksum mismatch"]);
        let mut f = file(4, &[]);
        f[4096 + 200] ^= 1;
        assert_eq!(
            check(&f).problems,
            vec!["database header 1: checksum mismatch"]
        );
        let f = file(4, &[]);
        let short = &f[..(HEADER_AREA + 2 * BS) as usize];
        assert!(check(short).problems[0].contains("beyond the end of the file"));
        let mut f = file(4, &[]);
        f[8] = b'X';
        assert!(check(&f).problems[0].contains("no DUCK magic"));
    }

    #[test]
    fn a_truncated_free_tail_is_fine() {
        let f = file(4, &[3]);
        let c = check(&f[..(HEADER_AREA + 3 * BS) as usize]);
        assert!(c.is_sound(), "{:?}", c.problems);
    }
}
