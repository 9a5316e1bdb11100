//! Ingest of one file: read → chunk → hash → dedup → compress → pack.
//!
//! A file is read in windows (8 MiB, 2 MiB for DuckDB files), so memory
//! is bounded by the window and the frames in flight, not by the file. Within a window, chunk
//! hashing and frame compression run in parallel on rayon. DuckDB files
//! (`DUCK` at offset 8) are read with `pread` (a live writer may shrink
//! them) and cut on their block layout; other large files are mapped and
//! cut with FastCDC. The file is stat'ed before and after; if it changed
//! while read, it is read again (bounded), so no torn content is recorded.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use cairn_chunk::cdc::{self, CdcParams};
use cairn_chunk::duckdb::{self, Headers};
use cairn_chunk::window::{Access, FileWindows};
use cairn_chunk::Cut;
use cairn_format::pack::{self, BlobKind, FrameChunk};
use cairn_format::{
    ChunkId, ChunkList, ChunkListHasher, ContentLayout, FileContent, ListChild, StoreConfig,
};

use crate::delta::{self, DeltaBase};
use crate::error::{FormatContext, IoContext, Result, StoreError};
use crate::packer::ChunkSink;
use crate::reader::{ChunkReader, FrameCache};
use crate::tree::{Grouping, LeafCursor, ListWriter};

/// Window of a FastCDC pass: more than the largest chunk the config allows
/// (4 MiB), so a window always holds a cut.
const CDC_WINDOW: usize = 8 << 20;
/// Window of a DuckDB file (two in flight per file being read). Measured on
/// the medium benchmark data path: 1 MiB 0.66-0.76 s, 2 MiB 0.60-0.64 s,
/// 4 MiB 0.65-0.71 s, 8 MiB 0.71-0.81 s for a first snapshot (a window
/// that stays in cache between hashing and compressing it).
const DB_WINDOW: usize = 2 << 20;
const MAP_MIN: u64 = 1 << 20;
const TRIES: u32 = 7;
/// A DuckDB file is read whole at least once every this many snapshots
/// (the ones between take unchanged blocks from the snapshot before).
pub(crate) const FULL_READ_EVERY: u32 = 24;
/// Bytes of a DuckDB block covered by one chunk-list leaf.
const LEAF_SPAN: usize = 64 * 1024;

/// Ingests files into a sink.
pub(crate) struct Ingest<'a, 's> {
    pub sink: &'a ChunkSink<'s>,
    /// Reads a delta's base back from the store.
    pub reader: &'a ChunkReader<'s>,
    pub config: &'a StoreConfig,
    pub bytes_read: &'a AtomicU64,
    pub on_bytes: &'a (dyn Fn(u64) + Sync),
}

/// Why one read attempt did not give a stable result.
enum Attempt {
    Done(FileContent),
    Changed,
}

fn changed(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::UnexpectedEof
}

/// Bytes of a DuckDB file's header area.
pub(crate) const HEADER_AREA: usize = duckdb::HEADER_AREA as usize;

/// The live header's iteration in a DuckDB header area, if it parses.
pub(crate) fn header_iteration(head: &[u8]) -> Option<u64> {
    if !duckdb::is_duckdb(head) {
        return None;
    }
    Headers::parse(head).map(|h| h.live().iteration)
}

/// The length of the file at `path` and its hash as a snapshot records it
/// for a file of `layout`: blake3 of the bytes, or for a listed DuckDB
/// file the hash of the chunk list ingest would make of it (cut on its
/// blocks into `duckdb_chunk`-byte chunks). Reads the file once.
pub(crate) fn file_hash(
    path: &Path,
    layout: &ContentLayout,
    duckdb_chunk: u32,
) -> std::io::Result<(u64, [u8; 32])> {
    let mut f = File::open(path)?;
    let size = f.metadata()?.len();
    let block_size = match layout {
        // A block size no DuckDB file has (a damaged record) is an error,
        // not a division by zero.
        ContentLayout::DuckDbListed { block_size, .. }
            if !block_size.is_power_of_two() || !(4096..=1 << 30).contains(block_size) =>
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the snapshot records a block size of {block_size}"),
            ));
        }
        ContentLayout::DuckDbListed { block_size, .. } => *block_size,
        _ => {
            let mut h = blake3::Hasher::new();
            h.update_reader(&mut f)?;
            return Ok((h.count(), *h.finalize().as_bytes()));
        }
    };
    let mut h = ChunkListHasher::default();
    let mut buf = Vec::new();
    for range in duckdb::block_ranges(size, block_size) {
        buf.resize(range.len as usize, 0);
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, range.offset)?;
        for cut in duckdb::cut_range(&range, duckdb_chunk) {
            let at = (cut.offset - range.offset) as usize;
            let bytes = &buf[at..at + cut.len as usize];
            h.push(&ChunkId::of(bytes), bytes.len() as u64);
        }
    }
    Ok((size, h.finalize()))
}

/// Whether a file's size, mtime and ctime are the same in both stats.
fn same_stat(before: &std::fs::Metadata, after: &std::fs::Metadata) -> bool {
    after.len() == before.len()
        && after.mtime() == before.mtime()
        && after.mtime_nsec() == before.mtime_nsec()
        && after.ctime() == before.ctime()
        && after.ctime_nsec() == before.ctime_nsec()
}

/// The error that makes [`Ingest::file`] read the file again.
fn changed_error(path: &Path, why: &str) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        cause: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, why.to_string()),
    }
}

impl Ingest<'_, '_> {
    /// Reads the file at `path` into the store and returns its content record.
    pub fn file(&self, path: &Path) -> Result<FileContent> {
        self.file_after(path, None)
    }

    /// [`file`](Self::file), with the parent snapshot's content of the
    /// file when it was a DuckDB file: the blocks whose head has not
    /// changed are taken from it unread.
    pub fn file_after(&self, path: &Path, parent: Option<&FileContent>) -> Result<FileContent> {
        let mut bad_header = None;
        for attempt in 0..TRIES {
            if attempt > 0 {
                // Back off: 10, 20, 40 ... ms, so a checkpoint can finish.
                std::thread::sleep(std::time::Duration::from_millis(10 << (attempt - 1)));
            }
            match self.attempt(path, &mut bad_header, parent)? {
                Attempt::Done(c) => return Ok(c),
                Attempt::Changed => continue,
            }
        }
        Err(StoreError::SourceUnstable {
            path: path.to_owned(),
            tries: TRIES,
        })
    }

    /// Reads the file at `path` into the store as a patch against `base`
    /// when that is at most half the file's size, else as [`file`](Self::file)
    /// does. The base comes from its local copy when that still matches,
    /// else from the store; the patch is checked to rebuild the file
    /// before it is stored.
    pub fn file_against(&self, path: &Path, base: &DeltaBase) -> Result<FileContent> {
        match self.try_delta(path, base)? {
            Some(c) => Ok(c),
            None => self.file(path),
        }
    }

    fn try_delta(&self, path: &Path, base: &DeltaBase) -> Result<Option<FileContent>> {
        let file = File::open(path).at(path)?;
        let before = file.metadata().at(path)?;
        let size = before.len();
        // Not a regular file any more (replaced since the walk): the
        // ordinary read deals with it.
        if !before.is_file() || !delta::may_patch(&base.content, size) {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(size as usize);
        std::io::Read::read_to_end(&mut std::io::Read::take(&file, size + 1), &mut bytes)
            .at(path)?;
        let after = file.metadata().at(path)?;
        if bytes.len() as u64 != size || !same_stat(&before, &after) {
            // Changing: the ordinary read retries and gives up cleanly.
            return Ok(None);
        }
        let hash = *blake3::hash(&bytes).as_bytes();
        let context = || path.display().to_string();
        let mut cache = FrameCache::default();
        // A base with a chunk gone (a repair dropped a damaged one) is not
        // built on: the file is stored as its bytes, which heals it.
        if !delta::whole_in_store(self.reader, &mut cache, &base.content, &context) {
            return Ok(None);
        }
        if hash == base.content.hash && size == base.content.size {
            // Unchanged since the run before: the same record, no patch.
            self.count(bytes.len());
            return Ok(Some(base.content.clone()));
        }
        if let Some(rec) = self.sink.known_file(&hash)? {
            if rec.size == size {
                self.count(bytes.len());
                return Ok(Some(rec));
            }
        }
        let Some(patch) = self.patch(base, &bytes, &mut cache, &context) else {
            return Ok(None);
        };
        self.count(bytes.len());
        let record = base.content.encode().what("delta base record")?;
        let base_id = self.sink.put_meta(record)?;
        let max = self.config.chunking.cdc_max.max(1);
        let cuts: Vec<Cut> = (0..patch.len() as u64)
            .step_by(max as usize)
            .map(|offset| Cut {
                offset,
                len: (patch.len() as u64 - offset).min(u64::from(max)) as u32,
            })
            .collect();
        let mut list = ListWriter::new(self.sink, Grouping::Content);
        for child in self.store_chunks(&patch, 0, &cuts, false, path)? {
            list.push(child)?;
        }
        let content = FileContent {
            size,
            hash,
            layout: ContentLayout::Delta {
                base: base_id,
                depth: delta::depth_over(&base.content),
            },
            chunks: list.finish()?,
        };
        // Not remembered for whole-file dedup: another file with these
        // bytes would take on this file's chain of bases.
        Ok(Some(content))
    }

    /// The patch from `base` to `bytes`, when it can be made, is at most
    /// half the file, and gives the file back. A base that cannot be had
    /// (damaged, or not its hash) or zstd failing is no reason to fail the
    /// import: `None`, and the file is stored as its bytes. The base is
    /// held under a [`delta::MemoryPermit`], with no rayon work inside.
    fn patch(
        &self,
        base: &DeltaBase,
        bytes: &[u8],
        cache: &mut FrameCache,
        context: &dyn Fn() -> String,
    ) -> Option<Vec<u8>> {
        let _permit = delta::MemoryPermit::base();
        let base_bytes = delta::base_bytes(self.reader, cache, base, context).ok()?;
        let patch = cairn_format::delta::encode_patch(&base_bytes, bytes).ok()?;
        if patch.len() > bytes.len() / 2 {
            return None;
        }
        // A patch that would not give the file back is never stored.
        let rebuilt = cairn_format::delta::apply_patch(&base_bytes, &patch, bytes.len() as u64);
        (rebuilt.ok()? == bytes).then_some(patch)
    }

    /// One read. `bad_header` carries a DuckDB header area whose live
    /// checksum did not match from one attempt to the next: a header caught
    /// mid-write is retried, but one that is the same, and still wrong, on
    /// two reads is how the file is (damaged, or a format cairn does not
    /// know) and is recorded as it is rather than dropped.
    fn attempt(
        &self,
        path: &Path,
        bad_header: &mut Option<Vec<u8>>,
        parent: Option<&FileContent>,
    ) -> Result<Attempt> {
        let file = File::open(path).at(path)?;
        let before = file.metadata().at(path)?;
        let size = before.len();
        let mut prefix = [0u8; 16];
        let is_db = size >= duckdb::HEADER_AREA
            && std::os::unix::fs::FileExt::read_exact_at(&file, &mut prefix, 0).is_ok()
            && duckdb::is_duckdb(&prefix);
        let access = if is_db || size < MAP_MIN {
            Access::Read
        } else {
            Access::Map
        };
        let mut windows = FileWindows::new(file, access);
        let result = if is_db {
            self.duckdb(&mut windows, size, path, bad_header, parent)
        } else if size <= u64::from(self.config.chunking.whole_file_max) {
            self.whole(&mut windows, size, path)
        } else {
            self.cdc(&mut windows, size, path)
        };
        let content = match result {
            Ok(c) => c,
            Err(StoreError::Io { cause, .. }) if changed(&cause) => return Ok(Attempt::Changed),
            Err(e) => return Err(e),
        };
        let after = windows.file().metadata().at(path)?;
        // A DuckDB file is consistent when its header area did not change
        // while its blocks were read (checked in `duckdb`) and it did not
        // shrink: writes into free blocks for the next checkpoint do not
        // matter, the live header does not reference them.
        let stable = if is_db {
            after.len() >= size
        } else {
            same_stat(&before, &after)
        };
        Ok(if stable {
            Attempt::Done(content)
        } else {
            Attempt::Changed
        })
    }

    fn count(&self, n: usize) {
        self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        (self.on_bytes)(n as u64);
    }

    fn whole(&self, w: &mut FileWindows, size: u64, path: &Path) -> Result<FileContent> {
        let bytes = w.window(0, size as usize).at(path)?;
        self.count(bytes.len());
        let hash = *blake3::hash(&bytes).as_bytes();
        let cuts = [Cut {
            offset: 0,
            len: size as u32,
        }];
        let children = if size == 0 {
            Vec::new()
        } else {
            self.store_chunks(&bytes, 0, &cuts, false, path)?
        };
        Ok(FileContent {
            size,
            hash,
            layout: ContentLayout::Whole,
            chunks: ChunkList::Inline(children),
        })
    }

    fn cdc(&self, w: &mut FileWindows, size: u64, path: &Path) -> Result<FileContent> {
        let verify = matches!(w_access(w), Access::Map);
        // Whole-file dedup first: a file seen before (moved, copied,
        // restored) is not cut or compressed again.
        let mut hasher = blake3::Hasher::new();
        let mut at = 0u64;
        while at < size {
            let len = (size - at).min(CDC_WINDOW as u64) as usize;
            let bytes = w.window(at, len).at(path)?;
            hasher.update_rayon(&bytes);
            at += len as u64;
        }
        let hash = *hasher.finalize().as_bytes();
        if let Some(rec) = self.sink.known_file(&hash)? {
            if rec.size == size {
                self.count(size as usize);
                return Ok(rec);
            }
        }
        let c = &self.config.chunking;
        let params = CdcParams {
            min: c.cdc_min,
            avg: c.cdc_avg,
            max: c.cdc_max,
        };
        let mut list = ListWriter::new(self.sink, Grouping::Content);
        let mut hasher = blake3::Hasher::new();
        let mut at = 0u64;
        while at < size {
            let len = (size - at).min(CDC_WINDOW as u64) as usize;
            let eof = at + len as u64 == size;
            let bytes = w.window(at, len).at(path)?;
            let (cuts, next) = cdc::cut(&bytes, at, params, eof);
            if next == at {
                return Err(StoreError::Usage(format!(
                    "{}: chunker made no progress at offset {at}",
                    path.display()
                )));
            }
            let used = &bytes[..(next - at) as usize];
            hasher.update_rayon(used);
            self.count(used.len());
            for child in self.store_chunks(&bytes, at, &cuts, verify, path)? {
                list.push(child)?;
            }
            at = next;
        }
        if *hasher.finalize().as_bytes() != hash {
            // The file changed between the two passes.
            return Err(changed_error(path, "changed"));
        }
        let content = FileContent {
            size,
            hash,
            layout: ContentLayout::Cdc,
            chunks: list.finish()?,
        };
        self.sink.remember_file(&content)?;
        Ok(content)
    }

    fn duckdb(
        &self,
        w: &mut FileWindows,
        size: u64,
        path: &Path,
        bad_header: &mut Option<Vec<u8>>,
        parent: Option<&FileContent>,
    ) -> Result<FileContent> {
        let mut head = vec![0u8; duckdb::HEADER_AREA as usize];
        w.read_at(&mut head, 0).at(path)?;
        let headers = Headers::parse(&head).ok_or_else(|| {
            StoreError::Usage(format!("{}: DuckDB header area unreadable", path.display()))
        })?;
        if !headers.live().checksum_ok && bad_header.as_deref() != Some(&head[..]) {
            // A header caught half-written: try again.
            *bad_header = Some(head);
            return Err(changed_error(path, "live header checksum mismatch"));
        }
        let block_size = headers.block_size();
        // A checkpoint that finished between the size was taken and the
        // header was read: the live header names blocks past the length
        // being read. Read again with the new length.
        let live = headers.live();
        let needed = duckdb::HEADER_AREA
            .saturating_add(live.block_count.saturating_mul(u64::from(block_size)));
        if live.checksum_ok && needed > size && w.file().metadata().at(path)?.len() > size {
            return Err(changed_error(path, "grew while its header was read"));
        }
        let ranges: Vec<_> = duckdb::block_ranges(size, block_size).collect();
        let per_window = (DB_WINDOW / block_size as usize).max(1);
        if let Some(parent) = parent.filter(|_| live.checksum_ok) {
            if let Some(c) = self.duckdb_partial(w, size, path, &head, &headers, parent)? {
                return Ok(c);
            }
        }
        let mut list = ListWriter::new(self.sink, Grouping::Positional);
        // The file's hash is its chunk list's: each chunk is hashed once,
        // for its id, and never the whole file a second time.
        let mut hasher = ChunkListHasher::default();
        // The next window is read while this one is hashed, compressed and
        // packed (two buffers of DB_WINDOW bytes).
        let groups: Vec<&[duckdb::BlockRange]> = ranges.chunks(per_window).collect();
        let read = |group: Option<&&[duckdb::BlockRange]>, buf: &mut Vec<u8>| {
            let Some(group) = group else {
                return Ok(());
            };
            buf.resize(group.iter().map(|r| r.len as usize).sum(), 0);
            w.read_at(buf, group[0].offset)
        };
        let (mut current, mut next) = (Vec::new(), Vec::new());
        read(groups.first(), &mut current).at(path)?;
        for (i, group) in groups.iter().enumerate() {
            let (read_next, stored) = rayon::join(
                || read(groups.get(i + 1), &mut next),
                || self.duckdb_window(block_size, group, &current, &mut list, &mut hasher, path),
            );
            stored?;
            read_next.at(path)?;
            std::mem::swap(&mut current, &mut next);
        }
        // The header must not have moved on while the blocks were read:
        // a checkpoint in between could leave blocks of two states.
        let mut head_after = vec![0u8; duckdb::HEADER_AREA as usize];
        w.read_at(&mut head_after, 0).at(path)?;
        if head_after != head {
            return Err(changed_error(path, "checkpointed"));
        }
        Ok(FileContent {
            size,
            hash: hasher.finalize(),
            layout: ContentLayout::DuckDbListed {
                block_size,
                iteration: headers.live().iteration,
                partial: 0,
            },
            chunks: list.finish()?,
        })
    }

    /// A DuckDB file read against its parent snapshot's content: a block
    /// at the same offset and of the same length whose 8-byte head (the
    /// checksum DuckDB writes with the block) is the parent's block tag,
    /// and not 0, is taken from the parent, leaf by leaf, unread; the
    /// header area and every other block are read and cut as usual. The
    /// header area must not change meanwhile. `None` (read it all) when
    /// the parent cannot serve: another block size, its list not block
    /// aligned or unreadable, or [`FULL_READ_EVERY`] partial reads in a row.
    fn duckdb_partial(
        &self,
        w: &mut FileWindows,
        size: u64,
        path: &Path,
        head: &[u8],
        headers: &Headers,
        parent: &FileContent,
    ) -> Result<Option<FileContent>> {
        let block_size = headers.block_size();
        let ContentLayout::DuckDbListed {
            block_size: parent_block_size,
            partial,
            ..
        } = parent.layout
        else {
            return Ok(None);
        };
        if parent_block_size != block_size || partial >= FULL_READ_EVERY - 1 {
            return Ok(None);
        }
        let context = || format!("parent of {}", path.display());
        let mut cache = FrameCache::default();
        let Ok(Some(mut leaves)) =
            LeafCursor::new(self.reader, &parent.chunks, &mut cache, &context)
        else {
            return Ok(None);
        };
        let mut parent_ranges = duckdb::block_ranges(parent.size, block_size);
        let per_window = (DB_WINDOW / block_size as usize).max(1);
        let mut list = ListWriter::new(self.sink, Grouping::Positional);
        let mut hasher = ChunkListHasher::default();
        let mut pending: Vec<duckdb::BlockRange> = Vec::new();
        let mut buf = Vec::new();
        let mut flush = |pending: &mut Vec<duckdb::BlockRange>,
                         list: &mut ListWriter,
                         hasher: &mut ChunkListHasher|
         -> Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            buf.resize(pending.iter().map(|r| r.len as usize).sum(), 0);
            w.read_at(&mut buf, pending[0].offset).at(path)?;
            self.duckdb_window(block_size, pending, &buf, list, hasher, path)?;
            pending.clear();
            Ok(())
        };
        for r in duckdb::block_ranges(size, block_size) {
            // The parent's leaves of its block `i`, which starts where this
            // file's block `i` does.
            let mut block_leaves = Vec::new();
            let pr = parent_ranges.next();
            if let Some(pr) = &pr {
                let mut covered = 0u64;
                while covered < pr.len {
                    let Ok(Some((tag, leaf))) = leaves.next_leaf(&mut cache, &context) else {
                        return Ok(None);
                    };
                    covered += leaf.children.iter().map(|c| c.len).sum::<u64>();
                    block_leaves.push((tag, leaf));
                }
                if covered != pr.len {
                    return Ok(None);
                }
            }
            let tag = block_leaves.first().map_or(0, |(t, _)| *t);
            // A whole block at the same place whose head is the parent's
            // (verified) tag, and whose chunks are all still indexed (a
            // repair may have dropped one: reading the block stores it
            // again).
            let same_place = pr.is_some_and(|pr| pr.offset == r.offset && pr.len == r.len);
            let unchanged = same_place
                && r.offset >= duckdb::HEADER_AREA
                && r.len == u64::from(block_size)
                && tag != 0
                && {
                    let mut h = [0u8; 8];
                    w.read_at(&mut h, r.offset).at(path)?;
                    u64::from_le_bytes(h) == tag
                }
                && {
                    let ids: Vec<ChunkId> = block_leaves
                        .iter()
                        .flat_map(|(_, leaf)| leaf.children.iter().map(|c| c.id))
                        .collect();
                    !self.sink.peek(&ids)?.contains(&true)
                };
            if !unchanged {
                pending.push(r);
                if pending.len() >= per_window {
                    flush(&mut pending, &mut list, &mut hasher)?;
                }
                continue;
            }
            flush(&mut pending, &mut list, &mut hasher)?;
            for (leaf_tag, leaf) in block_leaves {
                for child in leaf.children {
                    hasher.push(&child.id, child.len);
                    list.push(child)?;
                }
                list.end_leaf(leaf_tag)?;
            }
            (self.on_bytes)(r.len);
        }
        flush(&mut pending, &mut list, &mut hasher)?;
        let mut head_after = vec![0u8; duckdb::HEADER_AREA as usize];
        w.read_at(&mut head_after, 0).at(path)?;
        if head_after != head {
            return Err(changed_error(path, "checkpointed"));
        }
        Ok(Some(FileContent {
            size,
            hash: hasher.finalize(),
            layout: ContentLayout::DuckDbListed {
                block_size,
                iteration: headers.live().iteration,
                partial: partial.saturating_add(1),
            },
            chunks: list.finish()?,
        }))
    }

    /// Stores one window of a DuckDB file (`bytes`, the blocks of `group`)
    /// and adds its chunks to `list`, one leaf per LEAF_SPAN of a block.
    fn duckdb_window(
        &self,
        block_size: u32,
        group: &[duckdb::BlockRange],
        bytes: &[u8],
        list: &mut ListWriter,
        hasher: &mut ChunkListHasher,
        path: &Path,
    ) -> Result<()> {
        let chunk = self.config.chunking.duckdb_chunk;
        let off = group[0].offset;
        let block_size = u64::from(block_size);
        self.count(bytes.len());
        let per_range: Vec<Vec<Cut>> = group.iter().map(|r| duckdb::cut_range(r, chunk)).collect();
        let cuts: Vec<Cut> = per_range.iter().flatten().copied().collect();
        // The file's hash is its chunk list's, so the cuts must cover the
        // window exactly: nothing else would notice bytes left out.
        let mut at = off;
        for c in &cuts {
            if c.offset != at {
                return Err(StoreError::Usage(format!(
                    "{}: DuckDB cuts leave a gap at offset {at}",
                    path.display()
                )));
            }
            at = c.end();
        }
        if at != off + bytes.len() as u64 {
            return Err(StoreError::Usage(format!(
                "{}: DuckDB cuts end at {at}, the window at {}",
                path.display(),
                off + bytes.len() as u64
            )));
        }
        let mut children = self
            .store_chunks(bytes, off, &cuts, false, path)?
            .into_iter();
        for child in children.as_slice() {
            hasher.push(&child.id, child.len);
        }
        for (r, rc) in group.iter().zip(&per_range) {
            // The block's own checksum, only when its bytes verify against
            // it: a later snapshot takes a block whose head still equals
            // the tag unread, so a block caught half-written (a free block
            // a checkpoint is filling) must not carry one.
            let tag = if r.offset >= duckdb::HEADER_AREA && r.len == block_size {
                let s = (r.offset - off) as usize;
                let block = &bytes[s..s + r.len as usize];
                let head = u64::from_le_bytes(block[..8].try_into().expect("8 bytes"));
                if duckdb::checksum(&block[8..]) == head {
                    head
                } else {
                    0
                }
            } else {
                0
            };
            // Leaves cover LEAF_SPAN bytes of a block: a changed block
            // rewrites the leaf holding its checksum and the leaves
            // holding changed pages, not a list of the whole block.
            let per_leaf = (LEAF_SPAN / chunk as usize).max(1);
            for (k, part) in children
                .by_ref()
                .take(rc.len())
                .collect::<Vec<_>>()
                .chunks(per_leaf)
                .enumerate()
            {
                for child in part {
                    list.push(*child)?;
                }
                list.end_leaf(if k == 0 { tag } else { 0 })?;
            }
        }
        Ok(())
    }

    /// Hashes the chunks of one window, stores the new ones, and returns
    /// the list children in order. With `verify` (mapped windows) each new
    /// chunk is copied and re-hashed before it is claimed, so bytes that
    /// changed under the mapping are never stored under a wrong id.
    fn store_chunks(
        &self,
        bytes: &[u8],
        base: u64,
        cuts: &[Cut],
        verify: bool,
        path: &Path,
    ) -> Result<Vec<ListChild>> {
        let slice = |c: &Cut| &bytes[(c.offset - base) as usize..(c.end() - base) as usize];
        let ids: Vec<ChunkId> = cuts.par_iter().map(|c| ChunkId::of(slice(c))).collect();
        let maybe_new = self.sink.peek(&ids)?;
        let candidates: Vec<usize> = (0..cuts.len()).filter(|&i| maybe_new[i]).collect();
        let target = self.config.compression.frame_target as usize;
        let len_of = |i: usize| cuts[i].len as usize;
        let concat = |group: &[usize]| -> Vec<u8> {
            let mut raw = Vec::with_capacity(group.iter().map(|&i| len_of(i)).sum());
            for &i in group {
                raw.extend_from_slice(slice(&cuts[i]));
            }
            raw
        };
        // (chunk indices, raw bytes) per frame, in file order.
        let frames: Vec<(Vec<usize>, Vec<u8>)> = if verify {
            // Mapped bytes may change under us: copy, check the copy still
            // hashes to the id, and only then claim.
            let groups = group_frames(&candidates, len_of, target);
            let raws: Vec<Vec<u8>> = groups.par_iter().map(|g| concat(g)).collect();
            let intact = groups.par_iter().zip(&raws).all(|(g, raw)| {
                let mut at = 0;
                g.iter().all(|&i| {
                    let ok = ChunkId::of(&raw[at..at + len_of(i)]) == ids[i];
                    at += len_of(i);
                    ok
                })
            });
            if !intact {
                return Err(changed_error(path, "changed"));
            }
            let claimed = self
                .sink
                .claim(&candidates.iter().map(|&i| ids[i]).collect::<Vec<_>>())?;
            let won: HashSet<usize> = candidates
                .iter()
                .zip(&claimed)
                .filter(|(_, &c)| c)
                .map(|(&i, _)| i)
                .collect();
            groups
                .into_iter()
                .zip(raws)
                .filter_map(|(g, raw)| {
                    if g.iter().all(|i| won.contains(i)) {
                        return Some((g, raw));
                    }
                    // Another file claimed some of these meanwhile: keep the rest.
                    let mut keep = Vec::new();
                    let mut bytes = Vec::new();
                    let mut at = 0;
                    for &i in &g {
                        if won.contains(&i) {
                            keep.push(i);
                            bytes.extend_from_slice(&raw[at..at + len_of(i)]);
                        }
                        at += len_of(i);
                    }
                    (!keep.is_empty()).then_some((keep, bytes))
                })
                .collect()
        } else {
            // A private buffer: claim first, copy once into each frame.
            let claimed = self
                .sink
                .claim(&candidates.iter().map(|&i| ids[i]).collect::<Vec<_>>())?;
            let won: Vec<usize> = candidates
                .iter()
                .zip(&claimed)
                .filter(|(_, &c)| c)
                .map(|(&i, _)| i)
                .collect();
            group_frames(&won, len_of, target)
                .into_iter()
                .map(|g| (g, Vec::new()))
                .collect()
        };
        let level = self.config.compression.zstd_level;
        let encoded: Vec<Result<Vec<u8>>> = frames
            .par_iter()
            .map(|(g, raw)| {
                let owned;
                let first = &cuts[g[0]];
                let last = &cuts[g[g.len() - 1]];
                let contiguous = last.end() - first.offset
                    == g.iter().map(|&i| u64::from(cuts[i].len)).sum::<u64>();
                let raw = if !raw.is_empty() {
                    raw
                } else if contiguous {
                    // Neighbouring chunks of the window: compressed where
                    // they lie, not copied first.
                    &bytes[(first.offset - base) as usize..(last.end() - base) as usize]
                } else {
                    owned = concat(g);
                    &owned
                };
                pack::encode_frame(raw, level).what(path.display())
            })
            .collect();
        for ((g, _), frame) in frames.iter().zip(encoded) {
            let chunks: Vec<FrameChunk> = g
                .iter()
                .map(|&i| (ids[i], BlobKind::Data, cuts[i].len))
                .collect();
            self.sink.add_data_frame(&frame?, &chunks)?;
        }
        Ok(cuts
            .iter()
            .zip(&ids)
            .map(|(c, id)| ListChild {
                id: *id,
                len: u64::from(c.len),
                tag: 0,
            })
            .collect())
    }
}

fn w_access(w: &FileWindows) -> Access {
    w.access()
}

/// Groups chunk indices, in order, into frames of about `target` bytes.
fn group_frames(
    indices: &[usize],
    len_of: impl Fn(usize) -> usize,
    target: usize,
) -> Vec<Vec<usize>> {
    let mut frames = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut cur_len = 0;
    for &i in indices {
        let len = len_of(i);
        if !cur.is_empty() && cur_len + len > target {
            frames.push(std::mem::take(&mut cur));
            cur_len = 0;
        }
        cur.push(i);
        cur_len += len;
    }
    if !cur.is_empty() {
        frames.push(cur);
    }
    frames
}
