//! The read end of the store: fetches a chunk by id through a
//! [`ChunkLocator`] (the index, or prune's catalog of pack trailers),
//! decodes its frame, and checks its bytes hash to its id.
//!
//! A remote store costs a request per read, so a reader of one can fetch
//! ahead: [`ChunkReader::prefetch`] takes the chunks a file needs next,
//! finds their frames, merges neighbouring frames of a pack into one byte
//! range, and fetches the ranges in parallel on a pool of its own.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;

use rayon::prelude::*;

use cairn_format::pack;
use cairn_format::{ChunkId, PackId};
use cairn_index::{ChunkLocation, Index};

use crate::error::{IoContext, Result, StoreError};
use crate::files::StoreFiles;
use crate::store::Store;

/// Where chunks are: the index, or any other map from ids to locations.
pub trait ChunkLocator: Sync {
    /// The location of `id`, if known.
    fn locate(&self, id: &ChunkId) -> Result<Option<ChunkLocation>>;
}

impl ChunkLocator for Index {
    fn locate(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        // Trees and chunk lists are found among the metadata entries
        // without building the map of every chunk.
        Ok(self.lookup_any(id)?)
    }
}

/// Per-thread cache: the last pack file opened, the last frame decoded, and
/// frames fetched ahead (still compressed) by [`ChunkReader::prefetch`].
#[derive(Default)]
pub struct FrameCache {
    file: Option<(PackId, File)>,
    frame: Option<(PackId, u64, Vec<u8>)>,
    ahead: HashMap<(PackId, u64), Vec<u8>>,
}

/// Parallel requests a reader of a remote store keeps in flight.
const REMOTE_FETCHES: usize = 8;
/// Neighbouring frames closer than this are fetched as one range (the gap
/// is read and dropped).
const MERGE_GAP: u64 = 256 * 1024;
/// The longest merged range.
const MAX_RANGE: u64 = 8 << 20;

/// One ranged read of a pack covering neighbouring frames.
struct FetchRange {
    pack: PackId,
    start: u64,
    end: u64,
    /// The frames in it: (offset, length).
    frames: Vec<(u64, u64)>,
}

/// Reads verified chunks from a store.
pub struct ChunkReader<'s> {
    files: &'s StoreFiles,
    locator: &'s dyn ChunkLocator,
    /// Threads for parallel ranged reads (remote stores only), started
    /// by the first prefetch.
    fetch_pool: std::sync::OnceLock<Option<rayon::ThreadPool>>,
}

impl<'s> ChunkReader<'s> {
    /// A reader over `store`, locating chunks through its index.
    pub fn new(store: &'s Store) -> Self {
        Self::with_locator(store.files(), store.index())
    }

    /// A reader over the packs of `files`, locating chunks with `locator`.
    pub fn with_locator(files: &'s StoreFiles, locator: &'s dyn ChunkLocator) -> Self {
        Self {
            files,
            locator,
            fetch_pool: std::sync::OnceLock::new(),
        }
    }

    /// Whether [`prefetch`](Self::prefetch) does anything (the store is
    /// remote).
    pub fn fetches_ahead(&self) -> bool {
        self.files.remote().is_some()
    }

    /// Fetches the frames of `ids` into `cache` (remote stores only), in
    /// parallel byte ranges; [`with_chunk`](Self::with_chunk) then takes
    /// them from there. A frame that fails here is fetched (and its error
    /// reported) again by `with_chunk`.
    pub fn prefetch(
        &self,
        ids: &[ChunkId],
        cache: &mut FrameCache,
        context: &dyn Fn() -> String,
    ) -> Result<()> {
        if !self.fetches_ahead() {
            return Ok(());
        }
        let pool = self.fetch_pool.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(REMOTE_FETCHES)
                .thread_name(|i| format!("cairn-fetch-{i}"))
                .build()
                .ok()
        });
        // What an earlier window fetched and did not use is dropped.
        cache.ahead.clear();
        let mut frames: BTreeMap<PackId, BTreeMap<u64, u64>> = BTreeMap::new();
        for id in ids {
            let loc = self.locate(id, context)?;
            let key = (loc.pack, loc.frame_offset);
            let decoded = matches!(&cache.frame, Some((p, o, _)) if (*p, *o) == key);
            if !decoded && !cache.ahead.contains_key(&key) {
                frames
                    .entry(loc.pack)
                    .or_default()
                    .insert(loc.frame_offset, u64::from(loc.frame_len));
            }
        }
        let mut ranges: Vec<FetchRange> = Vec::new();
        for (pack, offsets) in frames {
            for (off, len) in offsets {
                match ranges.last_mut() {
                    Some(r)
                        if r.pack == pack
                            && off >= r.end
                            && off - r.end <= MERGE_GAP
                            && off + len - r.start <= MAX_RANGE =>
                    {
                        r.end = off + len;
                        r.frames.push((off, len));
                    }
                    _ => ranges.push(FetchRange {
                        pack,
                        start: off,
                        end: off + len,
                        frames: vec![(off, len)],
                    }),
                }
            }
        }
        let fetch = || -> Vec<(FetchRange, Result<Vec<u8>>)> {
            ranges
                .into_par_iter()
                .map(|r| {
                    let bytes = self
                        .files
                        .read_pack_range(&r.pack, r.start, r.end - r.start);
                    (r, bytes)
                })
                .collect()
        };
        let fetched = match pool {
            Some(pool) => pool.install(fetch),
            None => fetch(),
        };
        for (r, bytes) in fetched {
            let Ok(bytes) = bytes else { continue };
            for (off, len) in r.frames {
                let s = (off - r.start) as usize;
                cache
                    .ahead
                    .insert((r.pack, off), bytes[s..s + len as usize].to_vec());
            }
        }
        Ok(())
    }

    /// Where `id` is, or [`StoreError::ChunkMissing`] naming `context`.
    pub fn locate(&self, id: &ChunkId, context: &dyn Fn() -> String) -> Result<ChunkLocation> {
        self.locator
            .locate(id)?
            .ok_or_else(|| StoreError::ChunkMissing {
                id: id.to_hex(),
                context: context(),
            })
    }

    /// Calls `f` with the chunk's verified bytes.
    pub fn with_chunk<T>(
        &self,
        id: &ChunkId,
        cache: &mut FrameCache,
        context: &dyn Fn() -> String,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<T> {
        let loc = self.locate(id, context)?;
        let damaged = |detail: String| StoreError::ChunkDamaged {
            id: id.to_hex(),
            pack: loc.pack.to_hex(),
            detail,
        };
        let cached =
            matches!(&cache.frame, Some((p, o, _)) if *p == loc.pack && *o == loc.frame_offset);
        if !cached {
            // Not removed: a window can come back to a frame (a block
            // repeated in a file points to the same chunk).
            let frame = if let Some(f) = cache.ahead.get(&(loc.pack, loc.frame_offset)) {
                f.clone()
            } else if self.files.remote().is_some() {
                // The network failing is not damage: its error passes on.
                match self.files.read_frame(
                    &loc.pack,
                    loc.kind,
                    loc.frame_offset,
                    u64::from(loc.frame_len),
                ) {
                    Ok(f) => f,
                    Err(e @ StoreError::Remote(_)) => return Err(e),
                    Err(e) => return Err(damaged(format!("frame unreadable: {e}"))),
                }
            } else {
                if !matches!(&cache.file, Some((p, _)) if *p == loc.pack) {
                    let path = self.files.pack_path(&loc.pack);
                    let f = File::open(&path).at(&path)?;
                    cache.file = Some((loc.pack, f));
                }
                let (_, file) = cache.file.as_ref().expect("opened");
                let mut frame = vec![0u8; loc.frame_len as usize];
                file.read_exact_at(&mut frame, loc.frame_offset)
                    .map_err(|e| damaged(format!("frame unreadable: {e}")))?;
                frame
            };
            let raw = pack::decode_frame(&frame).map_err(|e| damaged(e.to_string()))?;
            cache.frame = Some((loc.pack, loc.frame_offset, raw));
        }
        let (_, _, raw) = cache.frame.as_ref().expect("decoded");
        let start = loc.offset as usize;
        let bytes = raw
            .get(start..start + loc.len as usize)
            .ok_or_else(|| damaged("chunk lies outside its frame".into()))?;
        if ChunkId::of(bytes) != *id {
            return Err(damaged("content does not match its id".into()));
        }
        Ok(f(bytes))
    }

    /// The chunk's verified bytes, copied.
    pub fn read(
        &self,
        id: &ChunkId,
        cache: &mut FrameCache,
        context: &dyn Fn() -> String,
    ) -> Result<Vec<u8>> {
        self.with_chunk(id, cache, context, <[u8]>::to_vec)
    }
}
