//! The read end of the store: fetches a chunk by id through a
//! [`ChunkLocator`] (the index, or prune's catalog of pack trailers),
//! decodes its frame, and checks its bytes hash to its id.

use std::fs::File;
use std::os::unix::fs::FileExt;

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
        Ok(self.lookup(id)?)
    }
}

/// Per-thread cache: the last pack file opened and the last frame decoded.
#[derive(Default)]
pub struct FrameCache {
    file: Option<(PackId, File)>,
    frame: Option<(PackId, u64, Vec<u8>)>,
}

/// Reads verified chunks from a store.
pub struct ChunkReader<'s> {
    files: &'s StoreFiles,
    locator: &'s dyn ChunkLocator,
}

impl<'s> ChunkReader<'s> {
    /// A reader over `store`, locating chunks through its index.
    pub fn new(store: &'s Store) -> Self {
        Self::with_locator(store.files(), store.index())
    }

    /// A reader over the packs of `files`, locating chunks with `locator`.
    pub fn with_locator(files: &'s StoreFiles, locator: &'s dyn ChunkLocator) -> Self {
        Self { files, locator }
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
            let frame = if self.files.remote().is_some() {
                self.files
                    .read_pack_range(&loc.pack, loc.frame_offset, u64::from(loc.frame_len))
                    .map_err(|e| damaged(format!("frame unreadable: {e}")))?
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
