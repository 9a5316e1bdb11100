//! What snapshots reference: the [`Catalog`] of every pack's trailer (each
//! chunk's home copy, read without the index or the store lock) and the
//! [`LiveSet`] of chunks reachable from manifests. Prune, purge and
//! replicate mark with these.

use std::collections::{HashMap, HashSet};

use cairn_format::pack::{PackEntry, PackTrailer};
use cairn_format::{ChunkId, ChunkList, EntryKind, FileContent, Manifest, PackId, TreeEntry};
use cairn_index::ChunkLocation;
use cairn_remote::RemoteError;
use rayon::prelude::*;

use crate::error::{Result, StoreError};
use crate::files::StoreFiles;
use crate::reader::{ChunkLocator, ChunkReader, FrameCache};
use crate::tree::{load_file_record, load_list_node, load_tree};

/// Every pack's trailer and each chunk's home copy.
pub struct Catalog {
    pub(crate) packs: Vec<(PackId, u64, Vec<PackEntry>)>,
    home: HashMap<ChunkId, (u32, u32)>,
}

impl Catalog {
    /// Reads the trailer of every pack of `files`. A pack whose trailer
    /// cannot be read stops the prune (its chunks' liveness is unknown).
    pub fn read(files: &StoreFiles) -> Result<Self> {
        let listed: Vec<(PackId, u64)> = files.pack_files()?.into_iter().collect();
        // In parallel: a remote store's trailers cost a request or two each.
        let trailers: Vec<Result<PackTrailer>> = listed
            .par_iter()
            .map(|(id, len)| files.read_listed_trailer(id, *len))
            .collect();
        let mut packs = Vec::new();
        let mut home = HashMap::new();
        for ((id, len), trailer) in listed.into_iter().zip(trailers) {
            let trailer = match trailer {
                Ok(t) => t,
                // Removed since the listing (an abandoned run's pack).
                Err(StoreError::Io { cause, .. })
                    if cause.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue
                }
                Err(StoreError::Remote(RemoteError::NotFound { .. })) => continue,
                Err(e) => {
                    return Err(StoreError::Usage(format!(
                        "pack {id} is unreadable ({e}); nothing was changed: run `cairn check` and `cairn repair` first"
                    )))
                }
            };
            let p = packs.len() as u32;
            for (i, e) in trailer.entries.iter().enumerate() {
                home.entry(e.id).or_insert((p, i as u32));
            }
            packs.push((id, len, trailer.entries));
        }
        Ok(Self { packs, home })
    }

    pub(crate) fn entry(&self, id: &ChunkId) -> Option<(&PackId, &PackEntry)> {
        let (p, i) = *self.home.get(id)?;
        let (pack, _, entries) = &self.packs[p as usize];
        Some((pack, &entries[i as usize]))
    }

    /// Every pack with its length and trailer entries, in id order.
    pub fn packs(&self) -> impl Iterator<Item = (&PackId, u64, &[PackEntry])> {
        self.packs
            .iter()
            .map(|(id, len, e)| (id, *len, e.as_slice()))
    }

    /// The pack holding the home copy of `id`.
    pub fn home_pack(&self, id: &ChunkId) -> Option<&PackId> {
        self.entry(id).map(|(p, _)| p)
    }

    pub(crate) fn is_home(&self, p: usize, i: usize, id: &ChunkId) -> bool {
        self.home.get(id) == Some(&(p as u32, i as u32))
    }
}

impl ChunkLocator for Catalog {
    fn locate(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        Ok(self.entry(id).map(|(pack, e)| ChunkLocation {
            pack: *pack,
            kind: e.kind,
            frame_offset: e.frame_offset,
            frame_len: e.frame_len,
            offset: e.offset,
            len: e.len,
        }))
    }
}

/// The set of chunks reachable from some manifests.
#[derive(Default)]
pub struct LiveSet {
    /// Every reachable chunk (data and metadata).
    pub chunks: HashSet<ChunkId>,
    /// Tree and list nodes already walked (their subtrees are in `chunks`).
    pub(crate) expanded: HashSet<ChunkId>,
}

impl LiveSet {
    /// Marks everything reachable from `m`.
    pub fn mark(&mut self, reader: &ChunkReader<'_>, m: &Manifest) -> Result<()> {
        let mut cache = FrameCache::default();
        let context = || format!("snapshot {}", m.id);
        for root in &m.roots {
            if let Some(t) = &root.tree {
                self.tree(reader, &mut cache, &context, t)?;
            }
            if let Some(e) = &root.file {
                self.entry(reader, &mut cache, &context, e)?;
            }
        }
        Ok(())
    }

    /// Marks the chunks of one tree entry (and below, for a directory).
    pub fn entry(
        &mut self,
        reader: &ChunkReader<'_>,
        cache: &mut FrameCache,
        context: &dyn Fn() -> String,
        e: &TreeEntry,
    ) -> Result<()> {
        match &e.kind {
            EntryKind::File(c) => self.content(reader, cache, context, c),
            EntryKind::Dir(id) => self.tree(reader, cache, context, id),
            EntryKind::Symlink(_) => Ok(()),
        }
    }

    /// Marks a file's chunks and, for a delta, every base down its chain:
    /// a base is live as long as a delta on it is. A base record that
    /// cannot be read fails the mark (and so the prune), never drops it.
    fn content(
        &mut self,
        reader: &ChunkReader<'_>,
        cache: &mut FrameCache,
        context: &dyn Fn() -> String,
        c: &FileContent,
    ) -> Result<()> {
        self.list(reader, cache, context, &c.chunks)?;
        let mut next = c.delta_base();
        while let Some((base, _)) = next {
            self.chunks.insert(base);
            if !self.expanded.insert(base) {
                break;
            }
            let rec = load_file_record(reader, &base, cache, context)?;
            self.list(reader, cache, context, &rec.chunks)?;
            next = rec.delta_base();
        }
        Ok(())
    }

    fn tree(
        &mut self,
        reader: &ChunkReader<'_>,
        cache: &mut FrameCache,
        context: &dyn Fn() -> String,
        id: &ChunkId,
    ) -> Result<()> {
        self.chunks.insert(*id);
        if !self.expanded.insert(*id) {
            return Ok(());
        }
        let node = load_tree(reader, id, cache, context)?;
        for e in &node.entries {
            self.entry(reader, cache, context, e)?;
        }
        Ok(())
    }

    fn list(
        &mut self,
        reader: &ChunkReader<'_>,
        cache: &mut FrameCache,
        context: &dyn Fn() -> String,
        list: &ChunkList,
    ) -> Result<()> {
        match list {
            ChunkList::Inline(children) => {
                self.chunks.extend(children.iter().map(|c| c.id));
                Ok(())
            }
            ChunkList::Tree { root, level } => self.list_node(reader, cache, context, root, *level),
        }
    }

    fn list_node(
        &mut self,
        reader: &ChunkReader<'_>,
        cache: &mut FrameCache,
        context: &dyn Fn() -> String,
        id: &ChunkId,
        level: u8,
    ) -> Result<()> {
        self.chunks.insert(*id);
        if !self.expanded.insert(*id) {
            return Ok(());
        }
        let node = load_list_node(reader, id, cache, context)?;
        for child in &node.children {
            if level == 0 {
                self.chunks.insert(child.id);
            } else {
                self.list_node(reader, cache, context, &child.id, level - 1)?;
            }
        }
        Ok(())
    }
}
