//! The sled index: a derived cache of where chunks live and which
//! snapshots exist.
//!
//! Nothing here is the truth: packs (with their trailers) and manifests
//! are. The index can be deleted at any time and rebuilt from them, and
//! the engine checks it against the pack directory on open. sled 0.34 is
//! unmaintained beta software, which is one more reason it sits behind
//! this narrow interface and holds nothing that cannot be recomputed.
//!
//! Trees:
//! - `meta`: index format version, store id, `complete` marker;
//! - `packs`: pack id -> (pack number u32, pack length u64);
//! - `packno`: pack number -> pack id;
//! - `chunks`: chunk id -> [`ChunkLocation`] (fixed 25-byte encoding);
//! - `snapshots`: snapshot id (i64 BE) -> manifest bytes;
//! - `files`: whole-file blake3 -> encoded file content (whole-file dedup).
//!
//! The byte layout of these records is in [`record`].
#![deny(missing_docs)]

pub mod record;

use std::path::{Path, PathBuf};

use cairn_format::pack::{BlobKind, PackEntry};
use cairn_format::{ChunkId, PackId, SnapshotId};

/// Version of the index layout; a different one means rebuild.
pub const INDEX_VERSION: u32 = 1;

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled failed.
    #[error("index at {path}: {cause}")]
    Sled {
        /// The index directory.
        path: PathBuf,
        /// sled's error (part of the message, so not exposed as a source).
        cause: sled::Error,
    },
    /// A record does not decode: the cache is damaged.
    #[error("index at {path} holds a damaged {what} record; run `cairn index rebuild`")]
    Damaged {
        /// The index directory.
        path: PathBuf,
        /// Which record kind.
        what: &'static str,
    },
}

type Result<T> = std::result::Result<T, IndexError>;

/// Where a chunk lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLocation {
    /// The pack.
    pub pack: PackId,
    /// Data or metadata.
    pub kind: BlobKind,
    /// Frame offset in the pack.
    pub frame_offset: u64,
    /// Frame length.
    pub frame_len: u32,
    /// Offset inside the decoded frame.
    pub offset: u32,
    /// Chunk length.
    pub len: u32,
}

/// Whether an opened index can be trusted as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexState {
    /// Built completely for this store and this index version.
    Ready,
    /// Empty, of another version or store, or a rebuild was interrupted:
    /// it has been cleared and must be rebuilt.
    NeedsRebuild,
}

/// The opened index.
pub struct Index {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    packs: sled::Tree,
    packno: sled::Tree,
    chunks: sled::Tree,
    snapshots: sled::Tree,
    files: sled::Tree,
}

impl Index {
    /// Opens (creating if needed) the index at `path` for the store
    /// `store_id`. A damaged, foreign or outdated index is cleared and
    /// reported as [`IndexState::NeedsRebuild`].
    pub fn open(path: &Path, store_id: [u8; 16]) -> Result<(Self, IndexState)> {
        let err = |cause| IndexError::Sled {
            path: path.to_owned(),
            cause,
        };
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(16 << 20)
            .flush_every_ms(None)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(err)?;
        let tree = |name: &str| db.open_tree(name).map_err(err);
        let index = Self {
            meta: tree("meta")?,
            packs: tree("packs")?,
            packno: tree("packno")?,
            chunks: tree("chunks")?,
            snapshots: tree("snapshots")?,
            files: tree("files")?,
            path: path.to_owned(),
            db,
        };
        let version = index.meta_get("version")?;
        let id = index.meta_get("store_id")?;
        let complete = index.meta_get("complete")?;
        let ok = version.as_deref() == Some(&INDEX_VERSION.to_le_bytes()[..])
            && id.as_deref() == Some(&store_id[..])
            && complete.is_some();
        if ok {
            return Ok((index, IndexState::Ready));
        }
        index.clear()?;
        index
            .meta
            .insert("version", &INDEX_VERSION.to_le_bytes())
            .map_err(err)?;
        index.meta.insert("store_id", &store_id).map_err(err)?;
        Ok((index, IndexState::NeedsRebuild))
    }

    fn err(&self, cause: sled::Error) -> IndexError {
        IndexError::Sled {
            path: self.path.clone(),
            cause,
        }
    }

    fn damaged(&self, what: &'static str) -> IndexError {
        IndexError::Damaged {
            path: self.path.clone(),
            what,
        }
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .meta
            .get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    /// Empties every tree and drops the `complete` marker.
    pub fn clear(&self) -> Result<()> {
        for t in [
            &self.meta,
            &self.packs,
            &self.packno,
            &self.chunks,
            &self.snapshots,
            &self.files,
        ] {
            t.clear().map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Marks a rebuild (or creation) as finished and flushes.
    pub fn mark_complete(&self) -> Result<()> {
        self.meta
            .insert("version", &INDEX_VERSION.to_le_bytes())
            .map_err(|e| self.err(e))?;
        self.meta
            .insert("complete", &[1u8])
            .map_err(|e| self.err(e))?;
        self.flush()
    }

    /// Writes everything to disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| self.err(e))
    }

    /// Where `id` lives, if indexed.
    pub fn lookup(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        let Some(v) = self.chunks.get(id.0).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        // The pack is resolved before the rest of the record is decoded, so
        // that a record damaged in several ways is named as it always was.
        let no = record::location_pack_no(&v).ok_or_else(|| self.damaged("chunk"))?;
        let Some(pack) = self
            .packno
            .get(record::encode_pack_no(no))
            .map_err(|e| self.err(e))?
        else {
            return Err(self.damaged("pack number"));
        };
        let pack = record::decode_pack_id(&pack).map_err(|what| self.damaged(what))?;
        let rec = record::decode_location(&v).map_err(|what| self.damaged(what))?;
        Ok(Some(ChunkLocation {
            pack,
            kind: rec.kind,
            frame_offset: rec.frame_offset,
            frame_len: rec.frame_len,
            offset: rec.offset,
            len: rec.len,
        }))
    }

    /// Whether `id` is indexed.
    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        self.chunks.contains_key(id.0).map_err(|e| self.err(e))
    }

    /// Records a pack and all its entries. The pack record is written last,
    /// so a pack listed in `packs` has all its chunks indexed.
    pub fn add_pack(&self, pack: PackId, pack_len: u64, entries: &[PackEntry]) -> Result<()> {
        if self.packs.contains_key(pack.0).map_err(|e| self.err(e))? {
            return Ok(());
        }
        let no = self.db.generate_id().map_err(|e| self.err(e))? as u32;
        self.packno
            .insert(record::encode_pack_no(no), &pack.0)
            .map_err(|e| self.err(e))?;
        let mut batch = sled::Batch::default();
        for e in entries {
            let v = record::encode_location(&record::LocationRecord {
                pack_no: no,
                kind: e.kind,
                frame_offset: e.frame_offset,
                frame_len: e.frame_len,
                offset: e.offset,
                len: e.len,
            });
            batch.insert(&e.id.0, &v);
        }
        self.chunks.apply_batch(batch).map_err(|e| self.err(e))?;
        let rec = record::encode_pack(&record::PackRecord {
            pack_no: no,
            pack_len,
        });
        self.packs.insert(pack.0, &rec).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forgets a pack: its record first, then those of `entries` that
    /// still point into it.
    pub fn remove_pack(&self, pack: PackId, entries: &[PackEntry]) -> Result<()> {
        let Some(rec) = self.packs.remove(pack.0).map_err(|e| self.err(e))? else {
            return Ok(());
        };
        let no = record::decode_pack(&rec)
            .map_err(|what| self.damaged(what))?
            .pack_no;
        for e in entries {
            if let Some(v) = self.chunks.get(e.id.0).map_err(|e| self.err(e))? {
                if record::location_pack_no(&v) == Some(no) {
                    self.chunks.remove(e.id.0).map_err(|e| self.err(e))?;
                }
            }
        }
        self.packno
            .remove(record::encode_pack_no(no))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every chunk the index places in `pack` (a scan of all chunks: for
    /// repair, not for hot paths).
    pub fn chunks_in_pack(&self, pack: &PackId) -> Result<Vec<ChunkId>> {
        let Some(rec) = self.packs.get(pack.0).map_err(|e| self.err(e))? else {
            return Ok(Vec::new());
        };
        let no = record::decode_pack(&rec)
            .map_err(|what| self.damaged(what))?
            .pack_no;
        let mut out = Vec::new();
        for kv in self.chunks.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            if record::location_pack_no(&v) == Some(no) {
                out.push(record::decode_chunk_id(&k).map_err(|what| self.damaged(what))?);
            }
        }
        Ok(out)
    }

    /// Drops every whole-file record (they may name chunks that are gone).
    pub fn forget_files(&self) -> Result<()> {
        self.files.clear().map_err(|e| self.err(e))
    }

    /// Every indexed pack and its length.
    pub fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        let mut out = Vec::new();
        for kv in self.packs.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let id = record::decode_pack_id(&k).map_err(|what| self.damaged(what))?;
            let rec = record::decode_pack(&v).map_err(|what| self.damaged(what))?;
            out.push((id, rec.pack_len));
        }
        Ok(out)
    }

    /// Number of indexed chunks.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Records a snapshot's manifest bytes in the catalog.
    pub fn add_snapshot(&self, id: SnapshotId, manifest: &[u8]) -> Result<()> {
        self.snapshots
            .insert(record::encode_snapshot_key(id), manifest)
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Drops a snapshot from the catalog.
    pub fn remove_snapshot(&self, id: SnapshotId) -> Result<()> {
        self.snapshots
            .remove(record::encode_snapshot_key(id))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The catalog: every snapshot id with its manifest bytes, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Vec<u8>)>> {
        let mut out = Vec::new();
        for kv in self.snapshots.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let id = record::decode_snapshot_key(&k).map_err(|what| self.damaged(what))?;
            out.push((id, v.to_vec()));
        }
        Ok(out)
    }

    /// The encoded file content recorded for a whole-file hash.
    pub fn file_by_hash(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .files
            .get(hash)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    /// Records the encoded content of a whole file under its hash.
    pub fn put_file(&self, hash: &[u8; 32], content: &[u8]) -> Result<()> {
        self.files.insert(hash, content).map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_entries_round_trip_and_foreign_store_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let entry = PackEntry {
            id: ChunkId::of(b"a"),
            kind: BlobKind::Meta,
            frame_offset: 16,
            frame_len: 40,
            offset: 3,
            len: 1,
        };
        let pack = PackId::of(b"pack");
        {
            let (idx, state) = Index::open(&path, [1; 16]).unwrap();
            assert_eq!(state, IndexState::NeedsRebuild);
            idx.add_pack(pack, 100, &[entry]).unwrap();
            idx.mark_complete().unwrap();
            let loc = idx.lookup(&entry.id).unwrap().unwrap();
            assert_eq!(loc.pack, pack);
            assert_eq!(
                (loc.kind, loc.frame_offset, loc.len),
                (BlobKind::Meta, 16, 1)
            );
            assert_eq!(idx.packs().unwrap(), vec![(pack, 100)]);
        }
        {
            let (idx, state) = Index::open(&path, [1; 16]).unwrap();
            assert_eq!(state, IndexState::Ready);
            assert!(idx.contains(&entry.id).unwrap());
        }
        let (idx, state) = Index::open(&path, [2; 16]).unwrap();
        assert_eq!(state, IndexState::NeedsRebuild);
        assert!(!idx.contains(&entry.id).unwrap());
    }
}
